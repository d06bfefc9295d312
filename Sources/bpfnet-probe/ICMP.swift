// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet-probe icmp`: one echo request on a raw socket (root), matched by
// identifier and sequence so concurrent probes in one namespace do not take
// each other's replies.

#if canImport(Glibc)
import Glibc
#endif

/// RFC 1071 Internet checksum.
func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index + 1 < bytes.count {
        sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
        index += 2
    }
    if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
    while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

func probeICMP(_ target: UInt32, _ args: Arguments) throws -> Outcome {
    let timeout = try args.integer("timeout", default: 500, range: 1...600_000)
    let deadline = nowMilliseconds() + Int64(timeout)
    let targetText = Endpoint.format(target)
    let fd = socket(
        AF_INET, Int32(SOCK_RAW.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
    guard fd >= 0 else { throw LocalError("socket(raw icmp) — needs root or CAP_NET_RAW") }
    defer { close(fd) }
    if let source = try args.address("source") {
        try bindSocket(fd, Endpoint(address: source, port: 0))
    }

    let identifier = UInt16(truncatingIfNeeded: getpid())
    let sequence = UInt16(truncatingIfNeeded: nowMicroseconds())
    var packet: [UInt8] = [
        8, 0, 0, 0,
        UInt8(identifier >> 8), UInt8(identifier & 0xFF),
        UInt8(sequence >> 8), UInt8(sequence & 0xFF),
    ]
    packet.append(contentsOf: Array("bpfnet-probe-icmp".utf8))
    let checksum = internetChecksum(packet)
    packet[2] = UInt8(checksum >> 8)
    packet[3] = UInt8(checksum & 0xFF)

    let started = nowMicroseconds()
    var destination = Endpoint(address: target, port: 0).sockaddr
    let sent = withUnsafePointer(to: &destination) { sa in
        sa.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            packet.withUnsafeBytes {
                sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
    if sent < 0 { return classify(errno, Endpoint(address: target, port: 0)) }

    var buffer = [UInt8](repeating: 0, count: 2048)
    while true {
        let events = waitFor(fd, Int32(POLLIN), until: deadline)
        if events == 0 {
            return .failed("timeout", "\(targetText) no echo reply within \(timeout) ms")
        }
        var from = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = withUnsafeMutablePointer(to: &from) { sa in
            sa.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                buffer.withUnsafeMutableBytes { recvfrom(fd, $0.baseAddress, $0.count, 0, sa, &length) }
            }
        }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { continue }
            return classify(errno, Endpoint(address: target, port: 0))
        }
        // A raw socket hands us the IP header too.
        guard n >= 20 else { continue }
        let headerLength = Int(buffer[0] & 0x0F) * 4
        guard headerLength >= 20, n >= headerLength + 8 else { continue }
        let icmp = buffer[headerLength..<n]
        let type = icmp[icmp.startIndex]
        func matches(_ at: Int) -> Bool {
            buffer[at] == UInt8(identifier >> 8) && buffer[at + 1] == UInt8(identifier & 0xFF)
                && buffer[at + 2] == UInt8(sequence >> 8) && buffer[at + 3] == UInt8(sequence & 0xFF)
        }
        let sender = Endpoint(from).addressText
        if type == 0, Endpoint(from).address == target, matches(headerLength + 4) {
            let rtt = nowMicroseconds() - started
            return .ok("bpfnet-probe proto=icmp peer=\(sender) id=\(identifier) seq=\(sequence) rtt_us=\(rtt)")
        }
        if type == 3 || type == 11 {
            // Error carrying our own echo request: inner IP header, then 8 bytes of ICMP.
            let inner = headerLength + 8
            guard n >= inner + 20 else { continue }
            let innerLength = Int(buffer[inner] & 0x0F) * 4
            let echo = inner + innerLength
            guard innerLength >= 20, n >= echo + 8, buffer[echo] == 8, matches(echo + 4) else { continue }
            let code = icmp[icmp.startIndex + 1]
            let what = type == 3 ? "destination unreachable code \(code)" : "time exceeded"
            return .failed("unreachable", "\(targetText): \(what) from \(sender)")
        }
    }
}
