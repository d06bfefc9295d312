// SPDX-License-Identifier: Apache-2.0
//
// The frames of the differential suite. FrameFuzzer draws addresses and ports
// from the policy independently, so a frame between a linked pair on the
// exposed port is rare; this source adds frames built along the link rules
// themselves (forward, reverse and pair, sometimes one port or protocol off),
// and turns each base frame into cheap variants in a reused buffer: reversed
// (addresses, ports and MACs swapped, which turns a forward link frame into
// a reverse-rule one), one byte set at a field the programs read, and cut at
// a header boundary. Frames from a peer host's subnet to a container, from
// the neighbour the route to the peer has or another MAC, are rare too
// (rows 12, 13): they get their own share. Deterministic for a seed; no
// allocation per variant.

import BPFNetCore
import BPFNetTestSupport

struct FrameSource {
    enum Origin: String {
        case fuzzer, link, peer
    }

    enum Variant: Int, CaseIterable, CustomStringConvertible {
        case base, reversed, byteSet, cut

        var description: String {
            switch self {
            case .base: "as generated"
            case .reversed: "reversed"
            case .byteSet: "one byte set"
            case .cut: "cut"
            }
        }
    }

    private var fuzzer: FrameFuzzer
    private var random: Xoshiro256StarStar
    private let rules: [LinkRule]
    private let state: MapState
    private let ingresses: [UInt32]
    private let peerSubnets: [IPv4CIDR]
    private let peerNeighbours: [MACAddress]

    /// - Parameters:
    ///   - ingresses: real devices of the namespace the ext program may see as ingress.
    ///   - peerNeighbours: the MACs of the namespace's routes towards peers.
    init(state: MapState, seed: UInt64, ingresses: [UInt32], peerNeighbours: [MACAddress] = []) {
        var seeder = SplitMix64(seed: seed)
        fuzzer = FrameFuzzer(state: state, seed: seeder.next())
        random = Xoshiro256StarStar(seed: seeder.next())
        rules = state.links.sorted()
        self.state = state
        self.ingresses = ingresses
        peerSubnets = state.peers.keys.sorted()
        self.peerNeighbours = peerNeighbours
    }

    /// The next base frame, its ext ingress device and where it came from.
    mutating func next() -> (frame: [UInt8], ingress: UInt32, origin: Origin, kind: String) {
        if !rules.isEmpty && random.chance(30) {
            return (linkFrame(), random.pick(ingresses), .link, "link rule")
        }
        if !peerSubnets.isEmpty && random.chance(15) {
            return (peerFrame(), random.pick(ingresses), .peer, "peer subnet")
        }
        let fuzz = fuzzer.next()
        // The fuzzer also draws made-up ifindexes; the kernel needs real ones.
        let ingress =
            ingresses.contains(fuzz.ingressIfindex)
            ? fuzz.ingressIfindex : ingresses[Int(fuzz.ingressIfindex % UInt32(ingresses.count))]
        return (fuzz.frame, ingress, .fuzzer, fuzz.kind.rawValue)
    }

    private mutating func mac(of address: IPv4Address) -> MACAddress {
        state.containers[address]?.mac ?? MACAddress(dockerStyleFor: address)
    }

    /// A frame along a link rule: the rule's pair, protocol and port
    /// (destination port for forward, source port for reverse, a non-first
    /// fragment for pair), one in four with the port or protocol off.
    private mutating func linkFrame() -> [UInt8] {
        let rule = random.pick(rules)
        var proto = rule.proto
        var port = rule.port
        switch random.below(8) {
        case 0: port &+= random.chance(50) ? 1 : 0xffff
        case 1: proto = random.pick([IPProtocol.tcp, IPProtocol.udp, IPProtocol.sctp, IPProtocol.icmp])
        default: break
        }
        let other = random.chance(50) ? UInt16(random.int(32768...60999)) : random.pick([port, 80, 53, 5432, 1])
        var ip = IPv4Header(
            source: rule.source, destination: rule.destination,
            identification: UInt16(truncatingIfNeeded: random.next()))
        if random.chance(10) { ip.options = [0x94, 0x04, 0, 0] + Array(repeating: 1, count: 4 * random.int(0...9)) }
        let vlans: [VLANTag] =
            random.chance(85)
            ? [] : random.pick([[VLANTag(vid: 5)], [VLANTag(vid: 5, tpid: EtherType.qinq), VLANTag(vid: 6)]])
        let ethernet = EthernetHeader(
            destination: mac(of: rule.destination), source: mac(of: rule.source), vlans: vlans)
        let payload = random.bytes(random.int(0...24))

        if rule.direction == .pair || random.chance(10) {
            ip.fragmentOffset = UInt16(random.int(1...185))
            ip.moreFragments = random.chance(50)
            ip.proto = proto
            return PacketBuilder.ethernet(
                ethernet, etherType: EtherType.ipv4, payload: PacketBuilder.ipv4(ip, payload: payload))
        }
        let (sport, dport) = rule.direction == .reverse ? (port, other) : (other, port)
        if random.chance(10) { ip.moreFragments = true }  // a first fragment
        let transport: Transport
        switch proto {
        case IPProtocol.tcp:
            transport = .tcp(
                sourcePort: sport, destinationPort: dport, flags: random.pick([.syn, .ack, [.syn, .ack]]))
        case IPProtocol.udp: transport = .udp(sourcePort: sport, destinationPort: dport)
        case IPProtocol.sctp: transport = .sctp(sourcePort: sport, destinationPort: dport)
        default: transport = .icmpEcho()
        }
        return PacketBuilder.ipv4Frame(ethernet, ip, transport, payload: payload)
    }

    /// A frame from an address of a peer's subnet (or just outside it) to a
    /// container (or another address), from a route's neighbour MAC or another.
    private mutating func peerFrame() -> [UInt8] {
        let subnet = random.pick(peerSubnets)
        let host = UInt32(truncatingIfNeeded: random.next()) & ~subnet.netmask
        let source =
            random.chance(90)
            ? IPv4Address(subnet.address.value | host) : IPv4Address((subnet.address.value | ~subnet.netmask) &+ 1)
        let containers = state.containers.keys.sorted()
        let destination =
            random.chance(85) && !containers.isEmpty
            ? random.pick(containers) : IPv4Address(UInt32(truncatingIfNeeded: random.next()))
        let sourceMAC =
            random.chance(70) && !peerNeighbours.isEmpty
            ? random.pick(peerNeighbours) : MACAddress(0x52, 0x54, 0x00, random.byte(), random.byte(), 0x01)
        let ethernet = EthernetHeader(destination: MACAddress(0x02, 0, 0, 0, 0, 1), source: sourceMAC)
        let ip = IPv4Header(source: source, destination: destination)
        let port = random.pick([80, 53, 5432, 443, UInt16(random.int(1...65535))])
        if random.chance(20) { return icmpErrorAboutPeerDatagram(to: source, container: destination, ethernet) }
        let transport: Transport =
            switch random.below(4) {
            case 0: .tcp(sourcePort: UInt16(random.int(32768...60999)), destinationPort: port, flags: .syn)
            case 1: .udp(sourcePort: UInt16(random.int(32768...60999)), destinationPort: port)
            case 2: .sctp(sourcePort: 5000, destinationPort: port)
            default: .icmpEcho()
            }
        return PacketBuilder.ipv4Frame(ethernet, ip, transport, payload: [])
    }

    /// An ICMP error from some router, sent to `container`, about a datagram
    /// it sent to `peerAddress` (row 10's stateless case), sometimes quoting
    /// another source, an inner header with options, or SCTP instead.
    private mutating func icmpErrorAboutPeerDatagram(
        to peerAddress: IPv4Address, container: IPv4Address, _ ethernet: EthernetHeader
    ) -> [UInt8] {
        let router = IPv4Address(203, 0, 113, random.byte())
        let quotedSource = random.chance(85) ? container : IPv4Address(UInt32(truncatingIfNeeded: random.next()))
        var inner = IPv4Header(source: quotedSource, destination: peerAddress)
        if random.chance(10) { inner.options = [1, 1, 1, 0] }
        let quoted: Transport =
            switch random.below(5) {
            case 0: .sctp(sourcePort: 5000, destinationPort: 80)
            case 1, 2: .udp(sourcePort: UInt16(random.int(32768...60999)), destinationPort: 53)
            default: .tcp(sourcePort: UInt16(random.int(32768...60999)), destinationPort: 443, flags: .ack)
            }
        let type = random.pick([3, 11, 12, 5] as [UInt8])
        return PacketBuilder.ipv4Frame(
            ethernet, IPv4Header(source: router, destination: container),
            .icmpError(type: type, code: type == 3 ? 4 : 0, mtu: type == 3 ? 1400 : 0),
            payload: PacketBuilder.icmpErrorQuote(inner, quoted))
    }

    // MARK: Variants

    /// Writes `variant` of `base` into `buffer` (at least 2 KiB) and returns its length.
    mutating func write(
        _ variant: Variant, of base: [UInt8], parsed: ParsedFrame,
        into buffer: UnsafeMutableBufferPointer<UInt8>
    ) -> Int {
        let count = min(base.count, buffer.count)
        _ = buffer.initialize(from: base.prefix(count))
        let ipStart = Self.networkOffset(base)
        switch variant {
        case .base:
            return count

        case .reversed:
            guard count >= 14 else { return count }
            for i in 0..<6 { buffer.swapAt(i, 6 + i) }
            if case .ipv4(let packet) = parsed {
                for i in 0..<4 { buffer.swapAt(packet.offset + 12 + i, packet.offset + 16 + i) }
                if packet.hasPorts {
                    let l4 = packet.offset + Int(buffer[packet.offset] & 0x0f) * 4
                    for i in 0..<2 { buffer.swapAt(l4 + i, l4 + 2 + i) }
                }
            }
            return count

        case .byteSet:
            guard count > 0 else { return count }
            let fields = [
                12, 13, ipStart, ipStart + 2, ipStart + 3, ipStart + 6, ipStart + 7, ipStart + 9,
                ipStart + 12, ipStart + 15, ipStart + 16, ipStart + 19,
            ]
            var at = random.chance(80) ? random.pick(fields) : Int(random.below(UInt64(count)))
            if case .ipv4(let packet) = parsed, random.chance(40) {
                at = packet.offset + Int(buffer[packet.offset] & 0x0f) * 4 + random.int(0...3)  // a port byte
            }
            if at < count {
                buffer[at] =
                    random.chance(50)
                    ? random.byte() : random.pick([0x00, 0xff, 0x01, 0x45, 0x4f, 0x40, 0x20, 0x81, 0x88, 0x86, 0x0a])
            }
            return count

        case .cut:
            guard count > 14 else { return count }
            var boundaries = [
                14, 15, ipStart - 1, ipStart, ipStart + 1, ipStart + 19, ipStart + 20, ipStart + 39, ipStart + 40,
            ]
            if case .ipv4(let packet) = parsed {
                let l4 = packet.offset + Int(buffer[packet.offset] & 0x0f) * 4
                boundaries += [l4 - 1, l4, l4 + 2, l4 + 4, l4 + 7, l4 + 8, l4 + 11, l4 + 12, l4 + 19, l4 + 20]
            }
            let cut = random.chance(75) ? random.pick(boundaries) : random.int(14...count)
            return max(14, min(count, cut))
        }
    }

    /// Where the inner packet starts after at most two VLAN tags (14, 18 or 22).
    static func networkOffset(_ frame: [UInt8]) -> Int {
        var offset = 14
        var type = frame.count >= 14 ? UInt16(frame[12]) << 8 | UInt16(frame[13]) : 0
        while offset < 22, type == EtherType.vlan || type == EtherType.qinq, frame.count >= offset + 4 {
            type = UInt16(frame[offset + 2]) << 8 | UInt16(frame[offset + 3])
            offset += 4
        }
        return offset
    }
}
