// SPDX-License-Identifier: Apache-2.0
//
// The TCP and UDP probes. Each sends one request and waits for one answer
// within a single deadline; how it failed (refused, timeout, unreachable) is
// the point, because NetLab must tell "blocked" from "closed".

#if canImport(Glibc)
import Glibc
#endif

/// Names the failure a socket error stands for.
func classify(_ code: Int32, _ target: Endpoint) -> Outcome {
    switch code {
    case ECONNREFUSED:
        return .failed("refused", "\(target)")
    case EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, EACCES, EPERM:
        return .failed("unreachable", "\(target): \(errorText(code))")
    case ETIMEDOUT:
        return .failed("timeout", "\(target): \(errorText(code))")
    case ECONNRESET, EPIPE:
        return .failed("reset", "\(target): \(errorText(code))")
    default:
        return Outcome(code: .localError, line: "error \(target): \(errorText(code))")
    }
}

/// Creates a socket and binds it to `--source`/`--sport` when either is given.
func clientSocket(_ type: __socket_type, _ args: Arguments) throws -> (Int32, String) {
    let fd = socket(AF_INET, Int32(type.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw LocalError("socket") }
    let sport = try args.port("sport")
    let source = try args.address("source")
    if sport != nil || source != nil {
        // SO_REUSEADDR lets the same fixed source port be reused right after
        // an earlier probe; SO_REUSEPORT lets it be a port our own server
        // listens on (Docker's reverse link rule is tested that way).
        try setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        try setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1)
        try bindSocket(fd, Endpoint(address: source ?? 0, port: sport ?? 0))
    }
    var note = ""
    if let sport { note += " sport=\(sport)" }
    if let source { note += " source=\(Endpoint.format(source))" }
    return (fd, note)
}

func probeTCP(_ target: Endpoint, _ args: Arguments) throws -> Outcome {
    let timeout = try args.integer("timeout", default: 500, range: 1...600_000)
    let deadline = nowMilliseconds() + Int64(timeout)
    let (fd, note) = try clientSocket(SOCK_STREAM, args)
    defer {
        // Abortive close: no TIME_WAIT on either side, so the next probe
        // with the same fixed source port starts clean.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
    let started = connectSocket(fd, target)
    if started != 0 && started != EINPROGRESS { return classify(started, target) }
    if started == EINPROGRESS {
        let events = waitFor(fd, Int32(POLLOUT), until: deadline)
        if events == 0 {
            return .failed("timeout", "\(target) no answer to SYN within \(timeout) ms\(note)")
        }
        let code = socketError(fd)
        if code != 0 { return classify(code, target) }
    }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 512)
    while !reply.contains(UInt8(ascii: "\n")) {
        let events = waitFor(fd, Int32(POLLIN), until: deadline)
        if events == 0 {
            return .failed("noreply", "\(target) connected but no reply within \(timeout) ms\(note)")
        }
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { continue }
            return classify(errno, target)
        }
        if n == 0 { break }
        reply.append(contentsOf: chunk[..<n])
    }
    let line = String(decoding: reply.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    guard line.hasPrefix("bpfnet-probe ") else {
        return .failed("noreply", "\(target) connected but the peer closed without a reply\(note)")
    }
    return .ok(line)
}

func probeUDP(_ target: Endpoint, _ args: Arguments) throws -> Outcome {
    let timeout = try args.integer("timeout", default: 500, range: 1...600_000)
    let size = try args.integer("size", default: 64, range: 32...Server.maxUDPPayload)
    let replySize = try args.integer("reply-size", default: size, range: 0...Server.maxUDPPayload)
    let deadline = nowMilliseconds() + Int64(timeout)
    let (fd, note) = try clientSocket(SOCK_DGRAM, args)
    defer { close(fd) }
    // Fragment large datagrams locally (no DF) instead of failing with EMSGSIZE.
    try setIntOption(fd, Int32(IPPROTO_IP), IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    // Connected, so ICMP port-unreachable surfaces as ECONNREFUSED.
    let code = connectSocket(fd, target)
    if code != 0 { return classify(code, target) }

    var request = Array("bpfnet-probe-udp reply=\(replySize)\n".utf8)
    request.append(contentsOf: repeatElement(UInt8(ascii: "."), count: max(0, size - request.count)))
    let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if sent < 0 { return classify(errno, target) }

    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let events = waitFor(fd, Int32(POLLIN), until: deadline)
        if events == 0 {
            return .failed("timeout", "\(target) no reply to a \(size)-byte datagram within \(timeout) ms\(note)")
        }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { continue }
            return classify(errno, target)
        }
        let line = String(decoding: buffer[..<n].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        guard line.hasPrefix("bpfnet-probe ") else { continue }  // not our server's answer
        return .ok("\(line) received=\(n)")
    }
}
