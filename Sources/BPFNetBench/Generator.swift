// SPDX-License-Identifier: Apache-2.0
//
// The two packet sources. Both run on the measuring thread after it entered
// the sender's namespace.
//
// Live frames (default): bpf/bench_gen.bpf.c through BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES and ingress_ifindex = the sender's eth0 — about
// 110 ns per packet of its own, so it dilutes differences least.
//
// UDP sockets (`--profile udp`): one connected socket per flow, sendmmsg in
// batches — the skb path real containers use, ~1.8 µs of sender per packet.
//
// A kernel that refuses live frames (EPERM) gets the same frames through an
// AF_PACKET socket on the same eth0 instead (PacketSocketSender), and the
// report says so.

import BPF
import BPFNetBenchShared
import BPFNetCore
import BPFObjects
import CLibBPF
import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

final class LiveFrameGenerator {
    static let headerBytes = Int(BENCH_GEN_HEADER_LEN)
    static let maxFlows = Int(BENCH_GEN_MAX_FLOWS)
    /// Frames per batch (the kernel's default and maximum useful size).
    static let batchSize: UInt32 = 64

    private let object: BPFObject
    private let program: BPFProgram
    private let templates: BPFMap<UInt32, bench_gen_header>
    private let config: BPFMap<UInt32, bench_gen_config>
    /// data_in of every call: the page contents a frame starts from (its
    /// header is rewritten by the program each time).
    private var frame: [UInt8] = []

    init() throws {
        object = try BPFObject(
            bytes: BPFObjects.bench_gen.bytes, name: "bench_gen",
            options: BPFObject.Options(pinMaps: false))
        try object.load()
        program = try object.program(named: "bpfnet_gen_xdp")
        // Sizes are checked against the object here, once.
        templates = try BPFMap(object, name: BENCH_MAP_ID_GEN_FLOWS.name)
        config = try BPFMap(object, name: BENCH_MAP_ID_GEN_CONFIG.name)
    }

    /// Makes the generator cycle over `frames` (one per flow, equal length).
    func setFlows(_ frames: [[UInt8]]) throws {
        precondition(!frames.isEmpty && frames.count <= Self.maxFlows)
        precondition(frames.allSatisfy { $0.count == frames[0].count && $0.count >= Self.headerBytes })
        // Off while the templates change, so no frame mixes two sets.
        try config.update(0, bench_gen_config(flows: 0, reserved: 0))
        for (index, frame) in frames.enumerated() {
            var slot = [UInt8](repeating: 0, count: MemoryLayout<bench_gen_header>.size)
            slot.replaceSubrange(0..<Self.headerBytes, with: frame[0..<Self.headerBytes])
            let header = slot.withUnsafeBytes { $0.loadUnaligned(as: bench_gen_header.self) }
            try templates.update(UInt32(index), header)
        }
        frame = frames[0]
        flowFrames = frames
        try config.update(0, bench_gen_config(flows: UInt32(frames.count), reserved: 0))
    }

    /// How frames leave: XDP live frames, or, on a kernel that refuses them
    /// (EPERM: some hardened builds do, whatever the capabilities), an
    /// AF_PACKET socket on the same eth0 — the same frames into the same
    /// veth, at a higher sender cost per packet (~0.5 µs of syscall work) that
    /// dilutes every ratio alike. Decided by the first send.
    enum Mode: String, Sendable {
        case liveFrames = "XDP live frames"
        case packetSocket = "an AF_PACKET socket (this kernel refuses XDP live frames)"
    }

    private(set) var mode: Mode?
    /// The frames `setFlows` was given, for the packet socket.
    private var flowFrames: [[UInt8]] = []

    /// Sends `count` frames out of interface `ifindex` of the calling
    /// thread's namespace (the sender's eth0) and returns when the kernel has
    /// generated them. Delivery happens in softirq, mostly before it returns.
    func send(count: Int, ifindex: UInt32) throws {
        if mode != .packetSocket {
            var context = xdp_md()
            context.data = 0
            context.data_end = UInt32(frame.count)
            context.ingress_ifindex = ifindex
            do {
                _ = try program.testRun(
                    data: frame, context: &context,
                    options: BPFTestRunOptions(repeatCount: count, flags: .xdpLiveFrames, batchSize: Self.batchSize))
                mode = .liveFrames
                return
            } catch let error as BPFError where error.errno == .notPermitted && mode == nil {
                mode = .packetSocket
            }
        }
        try PacketSocketSender.send(flowFrames, count: count, ifindex: ifindex)
    }
}

/// Raw frames out of one interface of the calling thread's namespace, through
/// an AF_PACKET socket that bypasses the qdisc (as XDP_TX does), in sendmmsg
/// batches, round-robin over the flows' frames.
enum PacketSocketSender {
    private static let packetQdiscBypass: Int32 = 20  // PACKET_QDISC_BYPASS (linux/if_packet.h)
    private static let solPacket: Int32 = 263  // SOL_PACKET

    /// `rewrite`, when given, is called on every frame of a batch before it
    /// is sent (the new-flow sender writes a fresh source into each); each of
    /// a batch's frames then has a buffer of its own.
    static func send(
        _ frames: [[UInt8]], count: Int, ifindex: UInt32,
        rewrite: ((UnsafeMutableRawBufferPointer) -> Void)? = nil
    ) throws {
        precondition(!frames.isEmpty)
        // Protocol 0: the socket only sends (it receives nothing).
        let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw BenchError.runtime("socket(AF_PACKET, SOCK_RAW): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // struct sockaddr_ll (20 bytes): family, protocol, ifindex, hatype, pkttype, halen, addr[8].
        var address = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: UInt16(AF_PACKET)) { address.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: Int32(bitPattern: ifindex)) { address.replaceSubrange(4..<8, with: $0) }
        let bound = address.withUnsafeBytes {
            bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(20))
        }
        guard bound == 0 else {
            throw BenchError.runtime(
                "binding an AF_PACKET socket to ifindex \(ifindex): \(String(cString: strerror(errno)))")
        }
        var one: Int32 = 1
        _ = setsockopt(fd, solPacket, packetQdiscBypass, &one, socklen_t(MemoryLayout<Int32>.size))

        let batch = UDPSender.batch
        let copies = rewrite == nil ? frames.count : max(frames.count, batch)
        let buffers = (0..<copies).map { index -> UnsafeMutableRawBufferPointer in
            let frame = frames[index % frames.count]
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 8)
            buffer.copyBytes(from: frame)
            return buffer
        }
        defer { for buffer in buffers { buffer.deallocate() } }
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        defer { vectors.deallocate() }
        var messages = [UDPSender.MessageHeader](
            repeating: UDPSender.MessageHeader(header: msghdr(), length: 0), count: batch)
        for index in 0..<batch {
            messages[index].header.msg_iov = vectors + index
            messages[index].header.msg_iovlen = 1
        }
        var sent = 0
        while sent < count {
            let wanted = min(batch, count - sent)
            // Round-robin over every flow's frame, also past the first batch's worth.
            for index in 0..<wanted {
                let buffer = buffers[(sent + index) % buffers.count]
                rewrite?(buffer)
                vectors[index] = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            }
            let result = messages.withUnsafeMutableBytes { UDPSender.sendmmsg!(fd, $0.baseAddress!, UInt32(wanted), 0) }
            if result < 0 {
                if errno == EINTR || errno == ENOBUFS || errno == EAGAIN { continue }
                throw BenchError.runtime("AF_PACKET sender: sendmmsg: \(String(cString: strerror(errno)))")
            }
            sent += Int(result)
        }
    }
}

/// Real UDP sockets in the sender's namespace.
enum UDPSender {
    /// Datagrams per sendmmsg call.
    static let batch = 64

    typealias SendMMsg = @convention(c) (Int32, UnsafeMutableRawPointer, UInt32, Int32) -> Int32

    /// glibc's sendmmsg(2) (declared only with _GNU_SOURCE).
    static let sendmmsg: SendMMsg? = {
        guard let symbol = dlsym(nil, "sendmmsg") else { return nil }
        return unsafeBitCast(symbol, to: SendMMsg.self)
    }()

    /// `struct mmsghdr`: a msghdr and the bytes sent; the array stride is 64 on LP64.
    struct MessageHeader {
        var header: msghdr
        var length: UInt32
    }

    /// One socket per flow, bound to the flow's source address and port and
    /// connected to receiver:5201. Call on a thread inside the sender's namespace.
    static func openSockets(_ workload: BenchWorkload) throws -> [CInt] {
        var sockets: [CInt] = []
        do {
            for k in 0..<workload.flows {
                let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard fd >= 0 else {
                    throw BenchError.runtime("socket(AF_INET, SOCK_DGRAM): \(String(cString: strerror(errno)))")
                }
                sockets.append(fd)
                let source = BenchWorkload.senderIP  // every flow is the sender's own (Workload.swift)
                try call(
                    bind, fd, address(source, workload.flowSourcePort(k)),
                    "binding \(source):\(workload.flowSourcePort(k))")
                try call(
                    connect, fd, address(BenchWorkload.receiverIP, BenchWorkload.receiverPort),
                    "connecting to \(BenchWorkload.receiverIP):\(BenchWorkload.receiverPort)")
            }
        } catch {
            for fd in sockets { close(fd) }
            throw error
        }
        return sockets
    }

    private static func address(_ ip: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = ip.networkOrder
        return address
    }

    private static func call(
        _ function: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32, _ fd: CInt,
        _ address: sockaddr_in, _ what: String
    ) throws {
        var address = address
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                function(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 { throw BenchError.runtime("UDP sender: \(what): \(String(cString: strerror(errno)))") }
    }

    /// Sends datagrams round-robin over `sockets` until the calling thread
    /// has used `cpuBudget` ns of CPU time; returns how many were sent.
    static func send(sockets: [CInt], cpuBudget: UInt64) throws -> UInt64 {
        guard let sendmmsg else { throw BenchError.runtime("sendmmsg is not available in this C library") }
        let payloadBytes = BenchWorkload.packetBytes - 14 - 20 - 8
        let payload = UnsafeMutableRawPointer.allocate(byteCount: payloadBytes, alignment: 8)
        payload.initializeMemory(as: UInt8.self, repeating: 0x62, count: payloadBytes)
        let vector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
        vector.initialize(to: iovec(iov_base: payload, iov_len: payloadBytes))
        var messages = [MessageHeader](repeating: MessageHeader(header: msghdr(), length: 0), count: batch)
        for index in messages.indices {
            messages[index].header.msg_iov = vector
            messages[index].header.msg_iovlen = 1
        }
        defer {
            vector.deallocate()
            payload.deallocate()
        }
        let start = CPUClock.threadNanoseconds()
        var sent: UInt64 = 0
        var next = 0
        while CPUClock.threadNanoseconds() - start < cpuBudget {
            let fd = sockets[next]
            next = next + 1 == sockets.count ? 0 : next + 1
            let result = messages.withUnsafeMutableBytes { sendmmsg(fd, $0.baseAddress!, UInt32(batch), 0) }
            if result < 0 {
                if errno == EINTR || errno == ENOBUFS || errno == EAGAIN { continue }
                throw BenchError.runtime("UDP sender: sendmmsg: \(String(cString: strerror(errno)))")
            }
            sent += UInt64(result)
        }
        return sent
    }
}
