// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet-probe serve`: one thread, one poll(2) loop over every listening TCP
// socket and every UDP socket. A TCP peer gets one line naming the server and
// the peer address:port the server saw, then the connection is closed; a UDP
// datagram is answered from the address it was sent to (IP_PKTINFO), padded
// to the size the request asks for.
//
// Every socket has SO_REUSEPORT, and so has a client probe with --sport: a
// container can then serve on its exposed port and, at the same time, send
// FROM that port (Docker's reverse link rule) without a bind conflict. The
// connected client socket wins the lookup for its own 4-tuple.

#if canImport(Glibc)
import Glibc
#endif

enum Server {
    struct Socket {
        var fd: Int32
        var proto: String
        var port: UInt16
    }

    /// Largest UDP payload in one IPv4 datagram.
    static let maxUDPPayload = 65507

    static func run(_ args: Arguments) throws -> ExitCode {
        let tcpPorts = try args.portList("tcp")
        let udpPorts = try args.portList("udp")
        guard !tcpPorts.isEmpty || !udpPorts.isEmpty else {
            throw UsageError(message: "serve needs at least one of --tcp PORTS or --udp PORTS")
        }
        let name = args.options["name"] ?? "probe"
        guard !name.contains(where: { $0 == " " || $0 == "\n" || $0 == "=" }) else {
            throw UsageError(message: "--name \(name): no spaces, newlines or '='")
        }
        let bindAddress = try args.address("bind") ?? 0
        let duration = try args.integer("duration", default: 0, range: 0...(1 << 30))
        let exitWithParent = args.flags.contains("exit-with-parent")

        var sockets: [Socket] = []
        for port in tcpPorts {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw LocalError("socket(tcp)") }
            try setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            try bindSocket(fd, Endpoint(address: bindAddress, port: port))
            guard listen(fd, 1024) == 0 else { throw LocalError("listen tcp \(port)") }
            sockets.append(Socket(fd: fd, proto: "tcp", port: port))
        }
        for port in udpPorts {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw LocalError("socket(udp)") }
            try setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
            try setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
            try setIntOption(fd, Int32(IPPROTO_IP), IP_PKTINFO, 1)
            // Large replies are fragmented locally instead of failing with EMSGSIZE.
            try setIntOption(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            try bindSocket(fd, Endpoint(address: bindAddress, port: port))
            sockets.append(Socket(fd: fd, proto: "udp", port: port))
        }
        emit("ready name=\(name) pid=\(getpid()) tcp=\(tcpPorts.count) udp=\(udpPorts.count)")

        let parent = getppid()
        let deadline = duration > 0 ? nowMilliseconds() + Int64(duration) * 1000 : Int64.max
        var pollSet = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var udp = UDPResponder(name: name)
        while true {
            var timeout: Int32 = -1
            if deadline != Int64.max {
                let remaining = deadline - nowMilliseconds()
                if remaining <= 0 { break }
                timeout = Int32(min(remaining, 1 << 30))
            }
            if exitWithParent {
                // Reparenting means whoever started us is gone: stop with it.
                if getppid() != parent { break }
                timeout = timeout < 0 ? 250 : min(timeout, 250)
            }
            let ready = poll(&pollSet, nfds_t(pollSet.count), timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw LocalError("poll")
            }
            if ready == 0 { continue }
            for index in pollSet.indices where pollSet[index].revents != 0 {
                pollSet[index].revents = 0
                let socket = sockets[index]
                if socket.proto == "tcp" {
                    answerTCP(socket, name: name)
                } else {
                    udp.answer(socket)
                }
            }
        }
        for socket in sockets { close(socket.fd) }
        return .ok
    }

    /// Accepts every pending connection, writes the identification line, closes.
    static func answerTCP(_ socket: Socket, name: String) {
        while true {
            var peer = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept(socket.fd, $0, &length)
                }
            }
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return  // EAGAIN: drained; anything else: try again on the next wake-up
            }
            // accept4 is hidden behind _GNU_SOURCE; a blocking socket is fine
            // here, one short line always fits an empty send buffer.
            let line = "bpfnet-probe name=\(name) proto=tcp local=\(localEndpoint(fd)) peer=\(Endpoint(peer))\n"
            _ = line.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            close(fd)
        }
    }
}

/// Receives UDP requests with their destination address and answers each one.
struct UDPResponder {
    let name: String
    var buffer = [UInt8](repeating: 0, count: 65536)
    var control = [UInt8](repeating: 0, count: 128)

    init(name: String) { self.name = name }

    static let cmsgHeaderSize = MemoryLayout<cmsghdr>.size
    static func cmsgAlign(_ n: Int) -> Int { (n + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1) }

    mutating func answer(_ socket: Server.Socket) {
        while true {
            var peer = sockaddr_in()
            var destination: UInt32 = 0
            var specDestination: UInt32 = 0
            let received: Int = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { ctrl in
                    withUnsafeMutablePointer(to: &peer) { peerPointer in
                        var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                        return withUnsafeMutablePointer(to: &iov) { iovPointer in
                            var message = msghdr()
                            message.msg_name = UnsafeMutableRawPointer(peerPointer)
                            message.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
                            message.msg_iov = iovPointer
                            message.msg_iovlen = 1
                            message.msg_control = ctrl.baseAddress
                            message.msg_controllen = ctrl.count
                            let n = recvmsg(socket.fd, &message, Int32(MSG_DONTWAIT))
                            guard n >= 0 else { return n }
                            // Walk the control messages (CMSG_* are macros Swift cannot import).
                            var offset = 0
                            while offset + Self.cmsgHeaderSize <= message.msg_controllen {
                                let header = ctrl.load(fromByteOffset: offset, as: cmsghdr.self)
                                if header.cmsg_len < Self.cmsgHeaderSize { break }
                                if header.cmsg_level == Int32(IPPROTO_IP), header.cmsg_type == IP_PKTINFO {
                                    var info = in_pktinfo()
                                    withUnsafeMutableBytes(of: &info) {
                                        $0.copyMemory(
                                            from: UnsafeRawBufferPointer(
                                                rebasing: ctrl[(offset + Self.cmsgHeaderSize)...].prefix(
                                                    MemoryLayout<in_pktinfo>.size)))
                                    }
                                    destination = UInt32(bigEndian: info.ipi_addr.s_addr)
                                    specDestination = info.ipi_spec_dst.s_addr
                                }
                                offset += Self.cmsgAlign(header.cmsg_len)
                            }
                            return n
                        }
                    }
                }
            }
            if received < 0 {
                if errno == EINTR { continue }
                return
            }
            let requested = Self.requestedReplySize(buffer[..<received])
            var reply = Array(
                "bpfnet-probe name=\(name) proto=udp local=\(Endpoint(address: destination, port: socket.port)) peer=\(Endpoint(peer)) size=\(requested ?? 0)\n"
                    .utf8)
            if let requested, requested > reply.count {
                reply.append(contentsOf: repeatElement(UInt8(ascii: "."), count: requested - reply.count))
            }
            send(reply, to: &peer, from: specDestination, socket: socket.fd)
        }
    }

    /// "bpfnet-probe-udp reply=N" at the start of a request asks for an N-byte answer.
    static func requestedReplySize(_ payload: ArraySlice<UInt8>) -> Int? {
        let head = payload.prefix(64)
        guard let end = head.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let text = String(decoding: head[..<end], as: UTF8.self)
        for token in text.split(separator: " ") where token.hasPrefix("reply=") {
            if let n = Int(token.dropFirst(6)), n >= 0 { return min(n, Server.maxUDPPayload) }
        }
        return nil
    }

    /// sendmsg(2) with IP_PKTINFO so the answer leaves from the address the
    /// request was sent to (a socket bound to 0.0.0.0 would otherwise pick
    /// the route's preferred source and the client's connected socket would
    /// discard the answer).
    func send(_ reply: [UInt8], to peer: inout sockaddr_in, from source: UInt32, socket fd: Int32) {
        let infoSize = MemoryLayout<in_pktinfo>.size
        var ctrl = [UInt8](repeating: 0, count: Self.cmsgHeaderSize + Self.cmsgAlign(infoSize))
        ctrl.withUnsafeMutableBytes { raw in
            var header = cmsghdr()
            header.cmsg_len = Self.cmsgHeaderSize + infoSize
            header.cmsg_level = Int32(IPPROTO_IP)
            header.cmsg_type = IP_PKTINFO
            raw.storeBytes(of: header, as: cmsghdr.self)
            var info = in_pktinfo()
            info.ipi_spec_dst.s_addr = source
            withUnsafeBytes(of: &info) {
                UnsafeMutableRawBufferPointer(rebasing: raw[Self.cmsgHeaderSize...]).copyMemory(from: $0)
            }
        }
        var bytes = reply
        _ = bytes.withUnsafeMutableBytes { data in
            ctrl.withUnsafeMutableBytes { ctrlRaw in
                withUnsafeMutablePointer(to: &peer) { peerPointer in
                    var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &iov) { iovPointer in
                        var message = msghdr()
                        message.msg_name = UnsafeMutableRawPointer(peerPointer)
                        message.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
                        message.msg_iov = iovPointer
                        message.msg_iovlen = 1
                        message.msg_control = source == 0 ? nil : ctrlRaw.baseAddress
                        message.msg_controllen = source == 0 ? 0 : ctrlRaw.count
                        return sendmsg(fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                    }
                }
            }
        }
    }
}
