// SPDX-License-Identifier: Apache-2.0
//
// One dropped packet as the programs report it on the bn_drops ring buffer
// (sampled), and its explanation in Docker's terms for `bpfnet monitor`.

import BPFNetShared

public struct DropEvent: Hashable, Sendable, Codable {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    public var timestampNanoseconds: UInt64
    public var ifindex: UInt32
    public var program: String
    public var reason: String
    /// IPv4 fields; nil when the packet was not (parseable) IPv4.
    public var proto: String?
    public var source: String?
    public var destination: String?
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    public var fragment: Bool
    public var length: UInt32

    /// Decodes the C record; nil when `bytes` is not a whole `bpfnet_drop_event`.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= MemoryLayout<bpfnet_drop_event>.size else { return nil }
        let event = bytes.loadUnaligned(as: bpfnet_drop_event.self)
        let flags = UInt32(event.flags)
        timestampNanoseconds = event.timestamp_ns
        ifindex = event.ifindex
        program = ProgramKind(rawValue: UInt32(event.program)).name
        reason = Reason(rawValue: UInt32(event.reason)).name
        let ipv4 = flags & BPFNET_DROP_F_IPV4.rawValue != 0
        proto = ipv4 ? (TransportProtocol(number: event.proto)?.rawValue ?? Self.protocolName(event.proto)) : nil
        source = ipv4 ? IPv4Address(networkOrder: event.saddr).description : nil
        destination = ipv4 ? IPv4Address(networkOrder: event.daddr).description : nil
        let ports = flags & BPFNET_DROP_F_PORTS.rawValue != 0
        sourcePort = ports ? UInt16(bigEndian: event.sport) : nil
        destinationPort = ports ? UInt16(bigEndian: event.dport) : nil
        fragment = flags & BPFNET_DROP_F_FRAGMENT.rawValue != 0
        length = event.len
    }

    private static func protocolName(_ number: UInt8) -> String {
        switch number {
        case IPProtocol.icmp: "icmp"
        default: "proto \(number)"
        }
    }

    /// "10.88.0.6:40000 → 10.88.0.2:80/tcp", names substituted where known.
    public func flow(name: (String) -> String?) -> String {
        guard let source, let destination, let proto else { return "non-IPv4 frame, \(length) bytes" }
        func endpoint(_ address: String, _ port: UInt16?) -> String {
            let shown = name(address).map { "\($0)(\(address))" } ?? address
            return port.map { "\(shown):\($0)" } ?? shown
        }
        return "\(endpoint(source, sourcePort)) → \(endpoint(destination, destinationPort))/\(proto)"
            + (fragment ? " (fragment)" : "")
    }

    /// Why it was dropped, in the terms of Docker's own rules.
    public func explanation(interface: String) -> String {
        switch reason {
        case Reason.icc.name:
            "inter-container communication is off (--icc=false) and no --link opens this "
                + "(Docker: -A FORWARD -i docker0 -o docker0 -j DROP)"
        case Reason.source.name:
            "source not in the allow-list of \(interface) "
                + "(Docker: iptables -I DOCKER -i \(interface) ! -s <allowed> -j DROP)"
        case Reason.forward.name:
            "routed straight at a container address with forward policy drop "
                + "(Docker 28+: raw PREROUTING -d <container> ! -i docker0 -j DROP)"
        case Reason.malformed.name:
            "malformed packet: a truncated or inconsistent header"
        default:
            "dropped (\(reason))"
        }
    }
}
