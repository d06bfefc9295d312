// SPDX-License-Identifier: Apache-2.0
//
// The reference model of the kernel programs: docs/verdicts.md written in
// Swift, branch for branch. The differential test runs the same frames through
// this and through the real programs (BPF_PROG_TEST_RUN) and demands identical
// (action, reason) pairs, so any change here must be made in verdicts.md and in
// bpf/ as well.

/// The 5-tuple of an IPv4 packet, host order, as the packet carries it.
public struct FlowTuple: Hashable, Sendable, CustomStringConvertible {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var proto: UInt8

    public init(
        source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16, proto: UInt8
    ) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.proto = proto
    }

    public var description: String { "\(proto) \(source):\(sourcePort) → \(destination):\(destinationPort)" }
}

/// An IPv6 TCP/UDP 5-tuple, as the ext program asks conntrack about it.
public struct FlowTuple6: Hashable, Sendable, CustomStringConvertible {
    public var source: IPv6Address
    public var destination: IPv6Address
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var proto: UInt8

    public init(
        source: IPv6Address, destination: IPv6Address, sourcePort: UInt16, destinationPort: UInt16, proto: UInt8
    ) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.proto = proto
    }

    public var description: String { "\(proto) [\(source)]:\(sourcePort) → [\(destination)]:\(destinationPort)" }
}

/// Why a frame is malformed (verdicts.md "Parsing"); all of them are **drop MALFORMED**.
public enum Malformation: String, Hashable, Sendable {
    /// Fewer than 14 bytes.
    case ethernetTruncated = "ethernet header truncated"
    /// A VLAN tag (0x8100/0x88A8) without its 4 bytes.
    case vlanTruncated = "VLAN tag truncated"
    /// Fewer than 40 bytes of IPv6 header.
    case ipv6Truncated = "IPv6 header truncated"
    /// Fewer than 20 bytes of IPv4 header.
    case ipv4Truncated = "IPv4 header truncated"
    case ipv4Version = "IPv4 version is not 4"
    case ipv4HeaderLengthTooSmall = "IPv4 IHL < 5"
    /// IHL×4 bytes are not there.
    case ipv4OptionsTruncated = "IPv4 options truncated"
    /// tot_len < IHL×4.
    case ipv4TotalLengthTooSmall = "IPv4 tot_len shorter than its header"
    /// tot_len beyond the frame.
    case ipv4TotalLengthTooLarge = "IPv4 tot_len beyond the frame"
    /// TCP 20 / UDP 8 / SCTP 12 bytes not within the frame and tot_len.
    case l4Truncated = "L4 header truncated"
}

/// An IPv4 packet that passed the parse checks.
public struct IPv4Summary: Hashable, Sendable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var proto: UInt8
    /// `(frag_off & 0x1FFF) != 0`: no ports, judged separately.
    public var isNonFirstFragment: Bool
    /// Source and destination port for TCP/UDP/SCTP that are not non-first fragments.
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// Offset of the IPv4 header in the frame (14, 18 or 22).
    public var offset: Int
    /// For an ICMP error (destination unreachable, time exceeded, parameter
    /// problem) about a TCP/UDP datagram with a plain 20-byte header, sent
    /// back to that datagram's source: the tuple a reply to that datagram
    /// would have. The ext program asks conntrack whether it is a reply
    /// (`is_related_icmp_error`).
    public var icmpErrorReplyTuple: FlowTuple?

    /// TCP, UDP or SCTP with ports.
    public var hasPorts: Bool { sourcePort != nil }

    public var tuple: FlowTuple {
        FlowTuple(
            source: source, destination: destination, sourcePort: sourcePort ?? 0,
            destinationPort: destinationPort ?? 0, proto: proto)
    }
}

/// An IPv4-over-Ethernet ARP packet (28 bytes, hardware type 1, protocol 0x0800).
public struct ARPSummary: Hashable, Sendable {
    public var senderMAC: MACAddress
    public var senderAddress: IPv4Address

    public init(senderMAC: MACAddress, senderAddress: IPv4Address) {
        self.senderMAC = senderMAC
        self.senderAddress = senderAddress
    }
}

/// A frame's Ethernet addresses (all-zero when it is shorter than a header).
public struct EthernetAddresses: Hashable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress

    public init(destination: MACAddress, source: MACAddress) {
        self.destination = destination
        self.source = source
    }

    public init(of frame: UnsafeBufferPointer<UInt8>) {
        guard frame.count >= 14 else {
            self.init(destination: .zero, source: .zero)
            return
        }
        self.init(
            destination: MACAddress(frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]),
            source: MACAddress(frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]))
    }

    public init(of frame: [UInt8]) {
        self = frame.withUnsafeBufferPointer { EthernetAddresses(of: $0) }
    }
}

/// The route `bpf_fib_lookup` finds from an ingress interface towards a peer
/// host's address: its egress interface and neighbour MAC (the peer's, or the
/// router's towards it).
public struct PeerRoute: Hashable, Sendable {
    public var ifindex: UInt32
    public var neighbour: MACAddress

    public init(ifindex: UInt32, neighbour: MACAddress) {
        self.ifindex = ifindex
        self.neighbour = neighbour
    }
}

/// Who sends on the bridge port a frame enters: the port's `bn_ports` entry
/// (the container it names, or only its network when `known` is false), or
/// no entry at all (an unknown port of the default bridge).
public enum PortSender: Hashable, Sendable {
    case unknown
    case container(PortRecord)

    /// A port of network `network` whose container is unknown.
    public static func unknown(network: UInt16) -> PortSender { .container(.unknown(network: network)) }

    /// The container the frame claims to come from: its source MAC and its
    /// IPv4 source (an ARP packet's sender; 0.0.0.0 for other frames). For
    /// tests whose subject is not the identity check.
    public static func claimed(by frame: [UInt8]) -> PortSender {
        let mac = EthernetAddresses(of: frame).source
        switch FrameParser.parse(frame) {
        case .ipv4(let packet): return .container(PortRecord(address: packet.source, mac: mac))
        case .arp(let arp): return .container(PortRecord(address: arp.senderAddress, mac: mac))
        default: return .container(PortRecord(address: .any, mac: mac))
        }
    }
}

/// What a frame is, as both programs parse it.
public enum ParsedFrame: Hashable, Sendable {
    case malformed(Malformation)
    /// Still a VLAN tag (0x8100/0x88A8) after the two the parser reads.
    case encapsulated
    /// Neither IPv4, IPv6 nor IPv4 ARP (after at most two VLAN tags); the inner ethertype.
    case nonIP(etherType: UInt16)
    case arp(ARPSummary)
    /// IPv6 with a full 40-byte header: the port program judges it by the
    /// destination MAC, the ext program by what lies behind the header.
    case ipv6(IPv6Summary)
    case ipv4(IPv4Summary)
}

/// An IPv6 packet as the programs see it.
public struct IPv6Summary: Hashable, Sendable {
    /// What the ext program's walk over at most four extension headers
    /// (hop-by-hop, routing, fragment, destination options) finds.
    public enum Transport: Hashable, Sendable {
        /// TCP or UDP with its ports.
        case ports(proto: UInt8, sourcePort: UInt16, destinationPort: UInt16)
        /// Another next header (ICMPv6, …).
        case other(UInt8)
        /// A fragment header with a non-zero offset.
        case nonFirstFragment
        /// Cut short, more than four extension headers, or beyond 512 bytes.
        case unreadable
    }

    public var destinationMAC: MACAddress
    public var source: IPv6Address
    public var destination: IPv6Address
    /// The destination address is in ff00::/8.
    public var destinationIsMulticast: Bool { destination.isMulticast }
    public var transport: Transport
    /// An ICMPv6 error (types 1-4) right after the fixed header, quoting a
    /// TCP/UDP datagram (ports right after the quoted header) that
    /// `destination` sent: the quoted tuple reversed (the reply direction
    /// of that connection). nil for anything else.
    public var icmpErrorReplyTuple: FlowTuple6?
    /// What the packet claims in neighbour discovery (`port_nd_claim`): nil
    /// unless it has hop limit 255 (receivers take no other as ND) and is a
    /// router or neighbour solicitation, a router or neighbour
    /// advertisement, or a redirect, or might be one (`unreadable`).
    public var neighbourDiscovery: NeighbourDiscoveryClaim?

    public enum NeighbourDiscoveryClaim: Hashable, Sendable {
        /// A router advertisement or a redirect: only routers send them.
        case router
        /// A neighbour advertisement for this target address, with the
        /// link-layer addresses its options name.
        case neighbour(target: IPv6Address, linkLayer: [MACAddress])
        /// A router or neighbour solicitation, with the link-layer
        /// addresses its options name.
        case solicitation(linkLayer: [MACAddress])
        /// Hop limit 255 behind extension headers the walk cannot follow,
        /// an advertisement cut short, or options `nd_link_layer_options`
        /// does not pass unread (a zero length, more than four, a
        /// link-layer option cut short).
        case unreadable
        /// The first fragment of a neighbour discovery message (RFC 6980:
        /// never fragmented; receivers drop it).
        case fragmented
    }

    public init(
        destinationMAC: MACAddress, source: IPv6Address, destination: IPv6Address, transport: Transport,
        icmpErrorReplyTuple: FlowTuple6? = nil
    ) {
        self.destinationMAC = destinationMAC
        self.source = source
        self.destination = destination
        self.transport = transport
        self.icmpErrorReplyTuple = icmpErrorReplyTuple
    }

    /// The packet's own TCP/UDP tuple, when the walk reached its ports.
    public var tuple: FlowTuple6? {
        guard case .ports(let proto, let sourcePort, let destinationPort) = transport else { return nil }
        return FlowTuple6(
            source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
            proto: proto)
    }
}

public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let arp: UInt16 = 0x0806
    public static let ipv6: UInt16 = 0x86DD
    public static let vlan: UInt16 = 0x8100
    public static let qinq: UInt16 = 0x88A8
    public static let lldp: UInt16 = 0x88CC
}

public enum IPProtocol {
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let icmpv6: UInt8 = 58
    public static let sctp: UInt8 = 132

    /// Minimum L4 header the programs read ports from; nil for protocols without ports.
    public static func minimumHeader(_ proto: UInt8) -> Int? {
        switch proto {
        case tcp: 20
        case udp: 8
        case sctp: 12
        default: nil
        }
    }
}

/// The frame parser shared by both programs (verdicts.md "Parsing").
public enum FrameParser {
    public static let maximumVLANTags = 2

    public static func parse(_ frame: [UInt8]) -> ParsedFrame {
        frame.withUnsafeBufferPointer { parse($0) }
    }

    public static func parse(_ frame: UnsafeBufferPointer<UInt8>) -> ParsedFrame {
        let end = frame.count
        func be16(_ at: Int) -> UInt16 { UInt16(frame[at]) << 8 | UInt16(frame[at + 1]) }
        func be32(_ at: Int) -> UInt32 {
            UInt32(frame[at]) << 24 | UInt32(frame[at + 1]) << 16 | UInt32(frame[at + 2]) << 8 | UInt32(frame[at + 3])
        }
        func address6(_ at: Int) -> IPv6Address { IPv6Address(bytes: frame[at..<(at + 16)]) }
        /// Where `ipv6_walk_to_l4` ends: at the L4 header (its protocol and
        /// offset, and whether a fragment header was on the way), in a
        /// non-first fragment, or in headers it cannot follow.
        enum IPv6Walk {
            case l4(next: UInt8, offset: Int, fragmented: Bool)
            case nonFirstFragment
            case unreadable
        }
        /// `ipv6_walk_to_l4` from the first header after the fixed one at `start`.
        func ipv6Walk(nextHeader: UInt8, at start: Int) -> IPv6Walk {
            let extensions: Set<UInt8> = [0, 43, 44, 60]
            var next = nextHeader
            var offset = start
            var fragmented = false
            for _ in 0..<4 where extensions.contains(next) {
                guard offset <= 512, offset + 8 <= end else { return .unreadable }
                let header = offset
                if next == 44 {
                    if be16(header + 2) & 0xFFF8 != 0 { return .nonFirstFragment }
                    fragmented = true
                    offset += 8
                } else {
                    offset += (Int(frame[header + 1]) + 1) * 8
                }
                next = frame[header]
            }
            if extensions.contains(next) { return .unreadable }
            return .l4(next: next, offset: offset, fragmented: fragmented)
        }
        /// The ext program's view of the walk: the ports of TCP/UDP, and where the L4 header starts.
        func ipv6Transport(_ walk: IPv6Walk) -> (IPv6Summary.Transport, l4: Int) {
            switch walk {
            case .nonFirstFragment: return (.nonFirstFragment, 0)
            case .unreadable: return (.unreadable, 0)
            case .l4(let next, let offset, _):
                guard next == IPProtocol.tcp || next == IPProtocol.udp else { return (.other(next), offset) }
                guard offset <= 512, offset + 4 <= end else { return (.unreadable, offset) }
                return (.ports(proto: next, sourcePort: be16(offset), destinationPort: be16(offset + 2)), offset)
            }
        }

        /// `port_nd_claim` after the walk, for a hop-limit-255 packet.
        func neighbourDiscovery(_ walk: IPv6Walk) -> IPv6Summary.NeighbourDiscoveryClaim? {
            switch walk {
            case .nonFirstFragment: return nil
            case .unreadable: return .unreadable
            case .l4(let next, let l4, let fragmented):
                guard next == IPProtocol.icmpv6 else { return nil }
                guard l4 <= 512, l4 + 1 <= end else { return .unreadable }
                // RFC 6980: neighbour discovery is never fragmented.
                if fragmented, (133...137).contains(frame[l4]) { return .fragmented }
                switch frame[l4] {
                case 134, 137: return .router
                case 133: return linkLayerOptions(at: l4 + 8).map { .solicitation(linkLayer: $0) } ?? .unreadable
                case 135: return linkLayerOptions(at: l4 + 24).map { .solicitation(linkLayer: $0) } ?? .unreadable
                case 136:
                    guard l4 + 24 <= end, let linkLayer = linkLayerOptions(at: l4 + 24) else { return .unreadable }
                    return .neighbour(target: address6(l4 + 8), linkLayer: linkLayer)
                default: return nil
                }
            }
        }
        /// `nd_link_layer_options`: the Ethernet addresses of the source and
        /// target link-layer options from `start` to the end of the frame (at
        /// most four options, none past byte 1024); nil for what the program
        /// drops unread.
        func linkLayerOptions(at start: Int) -> [MACAddress]? {
            var addresses: [MACAddress] = []
            var offset = start
            for _ in 0..<4 {
                guard offset <= 1024 else { return nil }
                guard offset + 2 <= end else { return addresses }
                let length = Int(frame[offset + 1])
                guard length != 0 else { return nil }
                if frame[offset] == 1 || frame[offset] == 2, length == 1 {
                    guard offset + 8 <= end else { return nil }
                    let at = offset + 2
                    addresses.append(
                        MACAddress(frame[at], frame[at + 1], frame[at + 2], frame[at + 3], frame[at + 4], frame[at + 5])
                    )
                }
                offset += length * 8
            }
            guard offset <= 1024 else { return nil }
            return offset + 1 <= end ? nil : addresses
        }

        // 1. Ethernet.
        guard end >= 14 else { return .malformed(.ethernetTruncated) }
        var etherType = be16(12)
        var offset = 14

        // 2. Up to two VLAN tags; a third one is encapsulation the programs do not look into.
        for _ in 0..<maximumVLANTags where etherType == EtherType.vlan || etherType == EtherType.qinq {
            guard end - offset >= 4 else { return .malformed(.vlanTruncated) }
            etherType = be16(offset + 2)
            offset += 4
        }

        switch etherType {
        case EtherType.vlan, EtherType.qinq:
            return .encapsulated

        case EtherType.arp:
            // IPv4 over Ethernet only, all 28 bytes; any other ARP is non-IP.
            guard end - offset >= 28, be16(offset) == 1, be16(offset + 2) == EtherType.ipv4, frame[offset + 4] == 6,
                frame[offset + 5] == 4
            else { return .nonIP(etherType: etherType) }
            let sha = offset + 8
            return .arp(
                ARPSummary(
                    senderMAC: MACAddress(
                        frame[sha], frame[sha + 1], frame[sha + 2], frame[sha + 3], frame[sha + 4], frame[sha + 5]),
                    senderAddress: IPv4Address(be32(offset + 14))))

        case EtherType.ipv6:
            // 3. IPv6: the fixed header must be there; extension headers are not parsed.
            guard end - offset >= 40 else { return .malformed(.ipv6Truncated) }
            let walk = ipv6Walk(nextHeader: frame[offset + 6], at: offset + 40)
            let (transport, l4) = ipv6Transport(walk)
            var summary = IPv6Summary(
                destinationMAC: MACAddress(frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]),
                source: address6(offset + 8), destination: address6(offset + 24), transport: transport)
            if frame[offset + 7] == 255 {
                summary.neighbourDiscovery = neighbourDiscovery(walk)
            }
            // `is_reply6`'s ICMPv6 error: 8 bytes, the quoted 40-byte header, 4 bytes of ports.
            if transport == .other(IPProtocol.icmpv6), l4 <= 512, l4 + 52 <= end, (1...4).contains(frame[l4]),
                frame[l4 + 14] == IPProtocol.tcp || frame[l4 + 14] == IPProtocol.udp,
                address6(l4 + 16) == summary.destination
            {
                summary.icmpErrorReplyTuple = FlowTuple6(
                    source: address6(l4 + 32), destination: address6(l4 + 16), sourcePort: be16(l4 + 50),
                    destinationPort: be16(l4 + 48), proto: frame[l4 + 14])
            }
            return .ipv6(summary)

        case EtherType.ipv4:
            // 4. IPv4 checks, in this order.
            let remaining = end - offset
            guard remaining >= 20 else { return .malformed(.ipv4Truncated) }
            let versionIHL = frame[offset]
            guard versionIHL >> 4 == 4 else { return .malformed(.ipv4Version) }
            let headerLength = Int(versionIHL & 0x0F) * 4
            guard headerLength >= 20 else { return .malformed(.ipv4HeaderLengthTooSmall) }
            guard headerLength <= remaining else { return .malformed(.ipv4OptionsTruncated) }
            let totalLength = Int(be16(offset + 2))
            guard totalLength >= headerLength else { return .malformed(.ipv4TotalLengthTooSmall) }
            guard totalLength <= remaining else { return .malformed(.ipv4TotalLengthTooLarge) }

            // 6. Fragments: non-first when the offset field is non-zero.
            let nonFirst = be16(offset + 6) & 0x1FFF != 0
            let proto = frame[offset + 9]
            var summary = IPv4Summary(
                source: IPv4Address(be32(offset + 12)), destination: IPv4Address(be32(offset + 16)),
                proto: proto, isNonFirstFragment: nonFirst, offset: offset)

            // 7. Ports for TCP/UDP/SCTP unless non-first; the minimum L4 header
            // must lie within both the frame and tot_len (tot_len ≤ frame here).
            if !nonFirst, let minimum = IPProtocol.minimumHeader(proto) {
                let l4 = offset + headerLength
                guard l4 + minimum <= offset + totalLength else { return .malformed(.l4Truncated) }
                summary.sourcePort = be16(l4)
                summary.destinationPort = be16(l4 + 2)
            }
            // 8. An ICMP error's embedded header (not a parse failure when short:
            // the packet is then judged like any other).
            let l4 = offset + headerLength
            let errorEnd = l4 + 8 + 20 + 4
            if !nonFirst, proto == IPProtocol.icmp, l4 <= 128, errorEnd <= offset + totalLength,
                [3, 11, 12].contains(frame[l4]), frame[l4 + 8] == 0x45,
                frame[l4 + 17] == IPProtocol.tcp || frame[l4 + 17] == IPProtocol.udp,
                IPv4Address(be32(l4 + 20)) == summary.destination
            {
                summary.icmpErrorReplyTuple = FlowTuple(
                    source: IPv4Address(be32(l4 + 24)), destination: IPv4Address(be32(l4 + 20)),
                    sourcePort: be16(l4 + 30), destinationPort: be16(l4 + 28), proto: frame[l4 + 17])
            }
            return .ipv4(summary)

        default:
            // 5. Anything else.
            return .nonIP(etherType: etherType)
        }
    }
}

/// The kernel programs' decisions over a `MapState`, for tests, the
/// differential fuzzer and `bpfnet` explanations.
public struct ReferenceDataplane: Sendable {
    public var state: MapState

    public init(state: MapState) { self.state = state }

    // MARK: Port program (rows 1-7)

    public func portVerdict(frame: [UInt8], sender: PortSender) -> Verdict {
        portVerdict(parsed: FrameParser.parse(frame), ethernet: EthernetAddresses(of: frame), sender: sender)
    }

    public func portVerdict(parsed: ParsedFrame, ethernet: EthernetAddresses, sender: PortSender) -> Verdict {
        switch parsed {
        case .malformed: return .drop(.malformed)
        case .encapsulated: return .drop(.encap)
        default: break
        }
        // Identity: a known port's frames must be its container's.
        var known = false
        var networkID: UInt16 = 0  // a port without an entry is the default bridge's
        if case .container(let port) = sender {
            networkID = port.network
        }
        if case .container(let port) = sender, port.known {
            if ethernet.source != port.mac { return .drop(.spoofed) }
            switch parsed {
            case .ipv4(let packet) where packet.source != port.address:
                return .drop(.spoofed)
            case .arp(let arp)
            where (arp.senderAddress != port.address && arp.senderAddress != .any) || arp.senderMAC != port.mac:
                return .drop(.spoofed)
            case .ipv6(let packet)
            where !packet.source.isLinkLocal && !packet.source.isUnspecified
                && state.containers6[packet.source]?.mac != port.mac:
                // A global source must be one of the container's own.
                return .drop(.spoofed)
            case .ipv6(let packet):
                // Neighbour discovery: no router's role, only its own
                // addresses (or link-local ones) advertised, and only its
                // own MAC as a link-layer address.
                switch packet.neighbourDiscovery {
                case .router, .unreadable, .fragmented: return .drop(.spoofed)
                case .neighbour(let target, _) where !target.isLinkLocal && state.containers6[target]?.mac != port.mac:
                    return .drop(.spoofed)
                case .neighbour(_, let linkLayer) where linkLayer.contains { $0 != port.mac },
                    .solicitation(let linkLayer) where linkLayer.contains { $0 != port.mac }:
                    return .drop(.spoofed)
                case .neighbour, .solicitation, nil: break
                }
            default: break
            }
            known = true
        }
        let network = state.networks[networkID] ?? NetworkRecord()
        let icc = network.flags.contains(.icc)
        switch parsed {
        case .malformed, .encapsulated, .nonIP, .arp:
            return .pass(.nonIP)
        case .ipv6(let packet):
            if let verdict = destinationVerdict6(packet, network: network, networkID: networkID) { return verdict }
            // Between containers: icc alone (links are IPv4 rules).
            if icc { return .pass(.iccAllowed) }
            return known ? .drop(.icc) : .drop(.unknownPort)
        case .ipv4(let packet):
            let s = packet.source
            let d = packet.destination
            // 1.-3. Where it goes (`port_destination`): between containers of
            // this network, or the host, the outside, another network.
            if let verdict = destinationVerdict(
                packet, destinationMAC: ethernet.destination, network: network, networkID: networkID)
            {
                return verdict
            }
            // 4. icc on.
            if icc { return .pass(.iccAllowed) }
            // 5. No container known on this port: no link is its own.
            if !known { return .drop(.unknownPort) }
            // 6. Non-first fragments: a linked pair or nothing.
            if packet.isNonFirstFragment {
                let pair = LinkRule(source: s, destination: d, port: 0, proto: packet.proto, direction: .pair)
                return state.links.contains(pair) ? .pass(.linkFragment) : .drop(.icc)
            }
            // 7. Link rules.
            if let sport = packet.sourcePort, let dport = packet.destinationPort {
                if state.links.contains(
                    LinkRule(source: s, destination: d, port: dport, proto: packet.proto, direction: .forward))
                {
                    return .pass(.link)
                }
                if state.links.contains(
                    LinkRule(source: s, destination: d, port: sport, proto: packet.proto, direction: .reverse))
                {
                    return .pass(.linkReverse)
                }
            }
            // 8. Everything else between containers.
            return .drop(.icc)
        }
    }

    /// `port_destination`: nil when the packet is judged between containers of
    /// its network (icc, links); else its verdict. A frame to a container's
    /// MAC goes port to port whatever its IP header says.
    func destinationVerdict(
        _ packet: IPv4Summary, destinationMAC: MACAddress, network: NetworkRecord, networkID: UInt16
    ) -> Verdict? {
        let d = packet.destination
        let toContainerMAC =
            !destinationMAC.isMulticast && destinationMAC != network.bridgeMAC && state.macs[destinationMAC] != nil
        if d == network.bridgeAddress { return toContainerMAC ? nil : .pass(.host) }
        if inSubnet(d, of: network) || d.isMulticast || d.isLimitedBroadcast { return nil }
        if let container = containerOutsideSubnet(d) {
            return container.network == networkID ? nil : .drop(.network)
        }
        if state.config.flags.contains(.networks), let other = subnet(of: d) {
            // Another Docker network: isolated, except its gateway (a host address).
            if d != other.bridgeAddress { return .drop(.network) }
            return toContainerMAC ? nil : .pass(.host)
        }
        if toContainerMAC { return nil }
        if network.flags.contains(.internal) { return .drop(.internal) }
        return .pass(.outside)
    }

    /// `port_destination6`: nil when the packet is judged between containers
    /// of its network; else its verdict.
    func destinationVerdict6(_ packet: IPv6Summary, network: NetworkRecord, networkID: UInt16) -> Verdict? {
        let d = packet.destination
        if packet.destinationMAC.isMulticast {
            // Neighbour discovery and MLD pass; a unicast destination in a
            // multicast frame is flooded to every port: between containers.
            return packet.destinationIsMulticast ? .pass(.ipv6) : nil
        }
        let toContainerMAC = packet.destinationMAC != network.bridgeMAC && state.macs[packet.destinationMAC] != nil
        if state.config.flags.contains(.ipv6), let (prefix, record) = subnet6(of: d) {
            _ = prefix
            if d == record.bridgeAddress { return toContainerMAC ? nil : .pass(.host) }
            return record.network == networkID ? nil : .drop(.network)
        }
        if toContainerMAC { return nil }
        if d.isLinkLocal { return .pass(.ipv6) }
        if network.flags.contains(.internal) { return .drop(.internal) }
        return .pass(.ipv6)
    }

    /// `subnet6_lookup`: the longest `bn_subnets6` prefix holding `d`.
    func subnet6(of d: IPv6Address) -> (IPv6CIDR, Subnet6Record)? {
        for length in stride(from: 128, through: 0, by: -1) {
            let prefix = IPv6CIDR(address: d, prefixLength: UInt8(length))!
            if let record = state.subnets6[prefix] { return (prefix, record) }
        }
        return nil
    }

    /// `container_outside_subnet`: bn_containers is asked only when the
    /// config says some container lies outside its network's subnet.
    func containerOutsideSubnet(_ d: IPv4Address) -> ContainerRecord? {
        state.config.flags.contains(.outsideContainers) ? state.containers[d] : nil
    }

    /// `subnet_lookup`: the longest `bn_subnets` prefix holding `d`.
    func subnet(of d: IPv4Address) -> SubnetRecord? {
        for length in stride(from: 32, through: 0, by: -1) {
            let prefix = IPv4CIDR(address: d, prefixLength: UInt8(length))!
            if let record = state.subnets[prefix] { return record }
        }
        return nil
    }

    func inSubnet(_ d: IPv4Address, of network: NetworkRecord) -> Bool {
        let mask = network.netmask.value
        return mask != 0 && d.value & mask == network.subnet.value
    }

    /// `to_container_network`: the network of a container address (in some
    /// network's subnet but not its gateway, or a known container outside its
    /// subnet), or nil when `d` is not one.
    func containerNetwork(of d: IPv4Address) -> UInt16? {
        if d == state.config.bridgeAddress { return nil }
        if inSubnet(d) { return 0 }
        if let container = containerOutsideSubnet(d) { return container.network }
        guard state.config.flags.contains(.networks), let other = subnet(of: d), d != other.bridgeAddress else {
            return nil
        }
        return other.network
    }

    func inSubnet(_ d: IPv4Address) -> Bool {
        let mask = state.config.bridgeNetmask.value
        return mask != 0 && d.value & mask == state.config.bridgeSubnet.value
    }

    // MARK: Ext program (rows 8-11)

    /// - Parameter isConntrackReply: whether the kernel's conntrack holds an
    ///   entry for this tuple in the reply direction; asked only on the drop
    ///   path for TCP/UDP. Test runs have an empty table (the default).
    /// - Parameter routeToPeer: what the kernel's FIB says about the route
    ///   from the ingress interface to a peer host's address (asked only for
    ///   packets from a peer's subnet to a container); nil when the lookup
    ///   fails. Test runs' namespaces have no such routes (the default).
    public func extVerdict(
        frame: [UInt8], ingressIfindex: UInt32,
        isConntrackReply: (FlowTuple) -> Bool = { _ in false },
        routeToPeer: (IPv4Address) -> PeerRoute? = { _ in nil },
        isConntrackReply6: (FlowTuple6) -> Bool = { _ in false }
    ) -> Verdict {
        extVerdict(
            parsed: FrameParser.parse(frame), ethernet: EthernetAddresses(of: frame), ingressIfindex: ingressIfindex,
            isConntrackReply: isConntrackReply, routeToPeer: routeToPeer, isConntrackReply6: isConntrackReply6)
    }

    public func extVerdict(
        parsed: ParsedFrame, ethernet: EthernetAddresses = EthernetAddresses(destination: .zero, source: .zero),
        ingressIfindex: UInt32,
        isConntrackReply: (FlowTuple) -> Bool = { _ in false },
        routeToPeer: (IPv4Address) -> PeerRoute? = { _ in nil },
        isConntrackReply6: (FlowTuple6) -> Bool = { _ in false }
    ) -> Verdict {
        let config = state.config
        switch parsed {
        case .malformed:
            return .drop(.malformed)
        case .encapsulated:
            return .drop(.encap)
        case .nonIP, .arp:
            return .pass(.nonIP)
        case .ipv6(let packet):
            let listed = state.extInterfaces[ingressIfindex]?.flags.contains(.allowList) ?? false
            var toContainer: UInt16? = nil
            if config.flags.contains(.ipv6), let (_, record) = subnet6(of: packet.destination),
                packet.destination != record.bridgeAddress
            {
                toContainer = record.network
            }
            guard toContainer != nil || listed else { return .pass(.ipv6) }
            if packet.transport == .nonFirstFragment { return .pass(.fragment) }
            if let networkID = toContainer {
                // Routed straight at a container, without NAT (row 9).
                let verdict: Verdict
                if !config.flags.contains(.forwardAccept) {
                    verdict = .drop(.forward)
                } else if state.networks[networkID]?.flags.contains(.internal) == true {
                    verdict = .drop(.internal)
                } else if listed && !isAllowed(source6: packet.source, ingressIfindex: ingressIfindex) {
                    verdict = .drop(.source)
                } else {
                    return .pass(.forwardAccept)
                }
                // Row 10: replies to connections opened from this side, and ICMPv6 errors about them.
                if let tuple = packet.tuple, isConntrackReply6(tuple) { return .pass(.reply) }
                if let reply = packet.icmpErrorReplyTuple, isConntrackReply6(reply) { return .pass(.related) }
                return verdict
            }
            // To the host: with an allow-list, TCP/UDP to a port published on
            // every address (docker-proxy listens on [::] too) needs a listed source.
            switch packet.transport {
            case .nonFirstFragment: return .pass(.fragment)
            case .unreadable:
                return isAllowed(source6: packet.source, ingressIfindex: ingressIfindex) ? .pass(.ipv6) : .drop(.source)
            case .other: return .pass(.ipv6)
            case .ports(let proto, _, let port):
                let key = PublishedKey(hostAddress: .any, hostPort: port, proto: proto)
                guard state.published[key] != nil else { return .pass(.ipv6) }
                return isAllowed(source6: packet.source, ingressIfindex: ingressIfindex)
                    ? .pass(.published) : .drop(.source)
            }
        case .ipv4(let packet):
            if packet.isNonFirstFragment { return .pass(.fragment) }
            let s = packet.source
            let d = packet.destination
            let verdict: Verdict
            if let peer = peerVerdict(
                source: s, destination: d, ethernetSource: ethernet.source, ingressIfindex: ingressIfindex,
                routeToPeer: routeToPeer)
            {
                // Rows 12-13. A claim on a peer's subnet from elsewhere is never a reply.
                if peer == .drop(.peerSpoofed) { return peer }
                verdict = peer
            } else if let networkID = containerNetwork(of: d) {
                // 1. Routed straight to a container (row 9).
                if !config.flags.contains(.forwardAccept) {
                    verdict = .drop(.forward)
                } else if state.networks[networkID]?.flags.contains(.internal) == true {
                    verdict = .drop(.internal)
                } else {
                    verdict =
                        isAllowed(source: s, ingressIfindex: ingressIfindex) ? .pass(.forwardAccept) : .drop(.source)
                }
            } else if let dport = packet.destinationPort, !d.isMulticast, !d.isLimitedBroadcast,
                state.published[PublishedKey(hostAddress: d, hostPort: dport, proto: packet.proto)] != nil
                    || state.published[PublishedKey(hostAddress: .any, hostPort: dport, proto: packet.proto)] != nil
            {
                // 2. A published port (row 8), before DNAT.
                verdict = isAllowed(source: s, ingressIfindex: ingressIfindex) ? .pass(.published) : .drop(.source)
            } else {
                // 3. The host's business (row 11).
                verdict = .pass(.local)
            }
            // Row 10: replies to connections opened from this side are never dropped.
            if verdict.action == .drop, packet.proto == IPProtocol.tcp || packet.proto == IPProtocol.udp,
                isConntrackReply(packet.tuple)
            {
                return .pass(.reply)
            }
            // Row 10 for ICMP errors about this side's connections (path MTU
            // discovery), and without state about datagrams to a peer host's
            // containers (the cross-host fast path bypasses conntrack).
            if verdict.action == .drop, let reply = packet.icmpErrorReplyTuple,
                isConntrackReply(reply) || isAboutPeerDatagram(reply, toContainer: d)
            {
                return .pass(.related)
            }
            return verdict
        }
    }

    /// `ext_peer`: rows 12-13 for a packet from a peer host's container
    /// subnet to a local container; nil for any other packet.
    func peerVerdict(
        source s: IPv4Address, destination d: IPv4Address, ethernetSource: MACAddress, ingressIfindex: UInt32,
        routeToPeer: (IPv4Address) -> PeerRoute?
    ) -> Verdict? {
        guard state.config.flags.contains(.peers), let peer = peerAddress(of: s),
            let networkID = containerNetwork(of: d)
        else { return nil }
        // It must arrive the way this host routes towards the peer.
        guard let route = routeToPeer(peer), route.ifindex == ingressIfindex, route.neighbour == ethernetSource else {
            return .drop(.peerSpoofed)
        }
        let flags = state.networks[networkID]?.flags ?? []
        if flags.contains(.internal) { return .drop(.internal) }
        if state.config.flags.contains(.peerAllow) || flags.contains(.icc) { return .pass(.peer) }
        return .drop(.icc)
    }

    /// The stateless case of `is_related_icmp_error`: the quoted datagram went
    /// to a peer's subnet, and `d` is a container of a network that is not internal.
    func isAboutPeerDatagram(_ reply: FlowTuple, toContainer d: IPv4Address) -> Bool {
        guard state.config.flags.contains(.peers), peerAddress(of: reply.source) != nil,
            let networkID = containerNetwork(of: d)
        else { return false }
        return state.networks[networkID]?.flags.contains(.internal) != true
    }

    /// `peer_lookup`: the peer host whose subnet (longest prefix) holds `s`.
    func peerAddress(of s: IPv4Address) -> IPv4Address? {
        for length in stride(from: 32, through: 0, by: -1) {
            if let address = state.peers[IPv4CIDR(address: s, prefixLength: UInt8(length))!] { return address }
        }
        return nil
    }

    /// `source6_allowed`: a prefix in the interface's IPv6 list admits `source6`.
    public func isAllowed(source6: IPv6Address, ingressIfindex: UInt32) -> Bool {
        (0...UInt8(128)).contains { length in
            state.allowSources6.contains(
                AllowSource6(ifindex: ingressIfindex, prefix: IPv6CIDR(address: source6, prefixLength: length)!))
        }
    }

    /// `allowed(s)`: no allow-list on this interface, or a prefix admits `source`.
    public func isAllowed(source: IPv4Address, ingressIfindex: UInt32) -> Bool {
        guard let ext = state.extInterfaces[ingressIfindex], ext.flags.contains(.allowList) else { return true }
        // The LPM lookup: any stored prefix of any length that contains the source.
        for length in 0...UInt8(32) {
            let prefix = IPv4CIDR(address: source, prefixLength: length)!
            if state.allowSources.contains(AllowSource(ifindex: ingressIfindex, prefix: prefix)) { return true }
        }
        return false
    }
}
