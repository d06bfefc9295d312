// SPDX-License-Identifier: Apache-2.0
//
// Deterministic random and mutated frames for the differential test (kernel
// programs vs ReferenceDataplane) and for benchmarks. The same seed gives the
// same frames on every machine and Swift version: the generator and every
// bounded draw are implemented here, not taken from the standard library.

import BPFNetCore

/// SplitMix64 (Steele, Lea, Flood 2014): seeds other generators.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256** 1.0 (Blackman, Vigna), seeded through SplitMix64.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable {
    public var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var seeder = SplitMix64(seed: seed)
        s = (seeder.next(), seeder.next(), seeder.next(), seeder.next())
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { x << k | x >> (64 - k) }

    /// Uniform in 0..<bound (Lemire's method with rejection); 0 when bound is 0.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        guard bound > 0 else { return 0 }
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return product.high
    }

    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(below(UInt64(range.upperBound - range.lowerBound) + 1))
    }

    public mutating func chance(_ percent: Int) -> Bool { below(100) < UInt64(percent) }

    public mutating func pick<T>(_ items: [T]) -> T { items[Int(below(UInt64(items.count)))] }

    public mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }

    public mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in byte() } }
}

/// One generated input.
public struct FuzzCase: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        case ipv4, ipv4Header, fragment, ipv6, nonIP, truncated, mutated, tiny
    }

    public var frame: [UInt8]
    /// For the ext program: drawn from the state's ext interfaces (mostly) and others.
    public var ingressIfindex: UInt32
    public var kind: Kind
}

/// Frames biased towards the cases where the programs can disagree: addresses
/// and ports from the `MapState` (containers, bridge address, subnet
/// broadcast, published ports, link ports, allow-list edges), VLAN tags (up to
/// three), fragments, IHL and tot_len errors, truncation at every header
/// boundary, IPv6 to container MACs, non-IP, and byte-level mutations.
public struct FrameFuzzer: Sendable {
    public struct Options: Hashable, Sendable {
        /// Shortest frame produced. BPF_PROG_TEST_RUN refuses frames shorter
        /// than an Ethernet header, so the default is 14; set 0 to also get
        /// truncated Ethernet headers (the reference model handles them).
        public var minimumFrameLength: Int
        /// Longest frame produced.
        public var maximumFrameLength: Int

        public init(minimumFrameLength: Int = 14, maximumFrameLength: Int = 1514) {
            self.minimumFrameLength = minimumFrameLength
            self.maximumFrameLength = maximumFrameLength
        }
    }

    public private(set) var random: Xoshiro256StarStar
    public let options: Options
    let addresses: [IPv4Address]
    /// IPv6: link-local, multicast, outside, and the state's containers,
    /// gateways and subnets (dual stack).
    let addresses6: [IPv6Address]
    /// The MAC of each container IPv6 address, so that a frame can carry both.
    let macs6: [IPv6Address: MACAddress]
    let macs: [MACAddress]
    let ports: [UInt16]
    let ifindexes: [UInt32]

    public init(state: MapState, seed: UInt64, options: Options = Options()) {
        random = Xoshiro256StarStar(seed: seed)
        self.options = options

        var addresses: [IPv4Address] = [
            .any, IPv4Address(255, 255, 255, 255), IPv4Address(224, 0, 0, 1), IPv4Address(224, 0, 0, 251),
            IPv4Address(239, 255, 255, 250), IPv4Address(127, 0, 0, 1), IPv4Address(198, 51, 100, 2),
            IPv4Address(198, 51, 100, 77), IPv4Address(203, 0, 113, 5), IPv4Address(10, 1, 2, 3),
            IPv4Address(8, 8, 8, 8),
        ]
        let config = state.config
        addresses.append(config.bridgeAddress)
        let mask = config.bridgeNetmask.value
        if mask != 0 {
            addresses.append(config.bridgeSubnet)  // network address
            addresses.append(IPv4Address(config.bridgeSubnet.value | ~mask))  // subnet broadcast
            addresses.append(IPv4Address(config.bridgeSubnet.value | (~mask & 0x7)))  // some unused host
            addresses.append(IPv4Address((config.bridgeSubnet.value | ~mask) &+ 1))  // just outside
        }
        addresses += state.containers.keys.sorted()
        addresses += state.published.keys.map(\.hostAddress).filter { $0 != .any }.sorted()
        for source in state.allowSources.sorted() {
            let prefix = source.prefix
            addresses.append(prefix.address)
            addresses.append(IPv4Address(prefix.address.value | ~prefix.netmask))
            addresses.append(IPv4Address(prefix.address.value &- 1))  // just below
            addresses.append(IPv4Address((prefix.address.value | ~prefix.netmask) &+ 1))  // just above
        }
        // Peer subnets' edges and the peers' own addresses (rows 12, 13).
        for (prefix, peer) in state.peers.sorted(by: { $0.key < $1.key }) {
            addresses.append(prefix.address)
            addresses.append(IPv4Address(prefix.address.value | 2))  // a peer's container
            addresses.append(IPv4Address(prefix.address.value | ~prefix.netmask))
            addresses.append(IPv4Address((prefix.address.value | ~prefix.netmask) &+ 1))  // just above
            addresses.append(peer)
        }
        self.addresses = addresses

        var addresses6: [IPv6Address] = [
            "fe80::1", "fe80::2", "::", "ff02::1", "ff02::1:ff00:2", "2001:db8::5", "2001:db8:77::9", "::1",
        ].compactMap { IPv6Address($0) }
        for (prefix, record) in state.subnets6.sorted(by: { $0.key < $1.key }) {
            addresses6 += [prefix.address, record.bridgeAddress, IPv6Address(high: prefix.address.high, low: 0x99)]
        }
        addresses6 += state.containers6.keys.sorted()
        for source in state.allowSources6.sorted() { addresses6.append(source.prefix.address) }
        self.addresses6 = addresses6
        macs6 = state.containers6.mapValues(\.mac)

        var macs: [MACAddress] = [
            MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), MACAddress(0x33, 0x33, 0, 0, 0, 1),
            MACAddress(0x01, 0x00, 0x5e, 0, 0, 0xfb), MACAddress(0x02, 0x42, 0xde, 0xad, 0xbe, 0xef),
            MACAddress(0x52, 0x54, 0, 0x12, 0x34, 0x56),
        ]
        macs += state.macs.keys.sorted { $0.description < $1.description }
        self.macs = macs

        var ports: Set<UInt16> = [0, 1, 22, 53, 80, 443, 8080, 65535]
        for rule in state.links { ports.insert(rule.port) }
        for (key, target) in state.published {
            ports.insert(key.hostPort)
            ports.insert(target.containerPort)
        }
        self.ports = ports.sorted()

        var ifindexes: [UInt32] = state.extInterfaces.keys.sorted()
        ifindexes += [1, state.config.bridgeIfindex, 999]
        ifindexes += state.containers.values.map(\.portIfindex).sorted().prefix(2)
        self.ifindexes = ifindexes
    }

    // MARK: Drawing

    mutating func address() -> IPv4Address {
        random.chance(85) ? random.pick(addresses) : IPv4Address(UInt32(truncatingIfNeeded: random.next()))
    }

    mutating func mac() -> MACAddress {
        random.chance(85)
            ? random.pick(macs)
            : MACAddress(
                random.byte() & 0xFE, random.byte(), random.byte(), random.byte(), random.byte(), random.byte())
    }

    mutating func port() -> UInt16 {
        random.chance(75) ? random.pick(ports) : UInt16(truncatingIfNeeded: random.next())
    }

    mutating func vlans() -> [VLANTag] {
        let count = random.chance(80) ? 0 : random.pick([1, 1, 2, 2, 3])
        return (0..<count).map { _ in
            VLANTag(vid: UInt16(random.below(4096)), tpid: random.chance(70) ? EtherType.vlan : EtherType.qinq)
        }
    }

    mutating func transport() -> Transport {
        switch random.below(10) {
        case 0...2:
            .tcp(
                sourcePort: port(), destinationPort: port(),
                flags: random.pick([.syn, .ack, [.syn, .ack], .rst, .fin]),
                sequence: UInt32(truncatingIfNeeded: random.next()))
        case 3...5: .udp(sourcePort: port(), destinationPort: port())
        case 6:
            .sctp(
                sourcePort: port(), destinationPort: port(), verificationTag: UInt32(truncatingIfNeeded: random.next()))
        case 7:
            .icmpEcho(identifier: UInt16(truncatingIfNeeded: random.next()), sequence: 1, reply: random.chance(30))
        case 8:
            .icmpError(type: random.pick([3, 3, 11, 12, 5, 0]), code: UInt8(random.below(16)), mtu: 1400)
        default: .raw(proto: random.pick([0, 2, 47, 50, 58, 89, 255]))
        }
    }

    mutating func ethernetHeader() -> EthernetHeader {
        EthernetHeader(destination: mac(), source: mac(), vlans: vlans())
    }

    mutating func ipHeader() -> IPv4Header {
        var header = IPv4Header(
            source: address(), destination: address(), ttl: UInt8(random.int(1...255)),
            identification: UInt16(truncatingIfNeeded: random.next()), dontFragment: random.chance(40))
        if random.chance(15) { header.options = random.bytes(4 * random.int(1...10)) }
        return header
    }

    mutating func payload() -> [UInt8] {
        random.bytes(random.chance(70) ? random.int(0...64) : random.int(0...600))
    }

    // MARK: Generation

    public mutating func next() -> FuzzCase {
        var frame: [UInt8]
        var kind: FuzzCase.Kind
        repeat {
            (frame, kind) = generate()
            if frame.count > options.maximumFrameLength { frame = Array(frame.prefix(options.maximumFrameLength)) }
        } while frame.count < options.minimumFrameLength
        let ingress = random.chance(80) && !ifindexes.isEmpty ? random.pick(ifindexes) : UInt32(random.int(1...4096))
        return FuzzCase(frame: frame, ingressIfindex: ingress, kind: kind)
    }

    mutating func generate() -> ([UInt8], FuzzCase.Kind) {
        switch random.below(100) {
        case 0..<35: (validIPv4(), .ipv4)
        case 35..<45: (badHeaderIPv4(), .ipv4Header)
        case 45..<53: (fragment(), .fragment)
        case 53..<61: (ipv6(), .ipv6)
        case 61..<67: (nonIP(), .nonIP)
        case 67..<82: (truncated(), .truncated)
        case 82..<98: (mutated(), .mutated)
        default: (random.bytes(random.int(0...34)), .tiny)
        }
    }

    /// A well-formed IPv4 frame, sometimes with trailing padding.
    public mutating func validIPv4() -> [UInt8] {
        let ethernet = ethernetHeader()
        let ip = ipHeader()
        let l4 = transport()
        let body: [UInt8]
        if case .icmpError = l4 {
            body = icmpErrorQuote(sentTo: ip.destination)
        } else {
            body = payload()
        }
        var frame = PacketBuilder.ipv4Frame(ethernet, ip, l4, payload: body)
        if random.chance(10) { frame += random.bytes(random.int(1...20)) }
        return frame
    }

    /// What an ICMP error quotes: mostly a TCP/UDP datagram that `errorDestination`
    /// sent, sometimes anything else, sometimes cut short.
    mutating func icmpErrorQuote(sentTo errorDestination: IPv4Address) -> [UInt8] {
        var inner = ipHeader()
        if random.chance(70) { inner.source = errorDestination }
        if random.chance(80) { inner.options = [] }
        let quoted: Transport =
            random.chance(80)
            ? (random.chance(50)
                ? .udp(sourcePort: port(), destinationPort: port()) : .tcp(sourcePort: port(), destinationPort: port()))
            : transport()
        if case .icmpError = quoted { return payload() }
        let quote = PacketBuilder.icmpErrorQuote(inner, quoted)
        return random.chance(85) ? quote : Array(quote.prefix(random.int(0...quote.count)))
    }

    /// IPv4 with a header error: version, IHL, tot_len too small or too large.
    mutating func badHeaderIPv4() -> [UInt8] {
        var ip = ipHeader()
        let l4 = transport()
        let body = payload()
        switch random.below(5) {
        case 0: ip.versionOverride = UInt8(random.pick([0, 5, 6, 15]))
        case 1: ip.headerLengthOverride = UInt8(random.int(0...4))
        case 2: ip.headerLengthOverride = UInt8(random.int(6...15))  // claims options that are not (all) there
        case 3: ip.totalLengthOverride = UInt16(random.int(0...40))
        default: ip.totalLengthOverride = UInt16(truncatingIfNeeded: 20 + 20 + body.count + random.int(1...1000))
        }
        return PacketBuilder.ipv4Frame(ethernetHeader(), ip, l4, payload: body)
    }

    /// One fragment of a datagram: first (MF), middle or last.
    mutating func fragment() -> [UInt8] {
        var ip = ipHeader()
        ip.dontFragment = false
        let l4 = transport()
        let pieces = PacketBuilder.fragments(
            ethernetHeader(), ip, l4, payload: random.bytes(random.int(16...400)),
            fragmentSize: 8 * random.int(1...24))
        var frame = random.pick(pieces)
        if random.chance(15) {
            // A "first" fragment so short that its L4 header is cut: fix tot_len to match.
            frame = coherentlyTruncated(frame, keepingL4: random.int(0...19))
        }
        return frame
    }

    mutating func address6() -> IPv6Address {
        random.chance(85) ? random.pick(addresses6) : IPv6Address(high: random.next(), low: random.next())
    }

    /// IPv6, to container MACs and others, between the state's container
    /// addresses, gateways and the outside (a container's address mostly
    /// with its MAC); ICMPv6 errors quoting a datagram the destination sent;
    /// sometimes shorter than its header.
    mutating func ipv6() -> [UInt8] {
        var eth = ethernetHeader()
        let source = address6()
        let destination = address6()
        if let mac = macs6[source], random.chance(60) { eth.source = mac }
        var frame: [UInt8]
        if random.chance(20) {
            frame = PacketBuilder.icmpv6Error(
                eth, type: UInt8(random.int(0...5)), source: source.bytes, destination: destination.bytes,
                quotedSource: random.chance(80) ? destination.bytes : address6().bytes,
                quotedDestination: address6().bytes,
                quotedProto: random.pick([IPProtocol.tcp, IPProtocol.udp, IPProtocol.icmpv6]),
                quotedSourcePort: port(), quotedDestinationPort: port())
        } else if random.chance(40) {
            frame = PacketBuilder.ipv6Frame(
                eth, source: source.bytes, destination: destination.bytes, payload: random.bytes(random.int(0...64)))
        } else {
            // TCP/UDP behind up to five extension headers, for the ext program's walk.
            let extensions = (0..<random.pick([0, 0, 1, 2, 4, 5])).map { _ -> (type: UInt8, body: [UInt8]) in
                let type = random.pick([UInt8(0), 43, 44, 60])
                return type == 44
                    ? (
                        type,
                        PacketBuilder.ipv6Fragment(offset: random.chance(70) ? 0 : UInt16(random.int(1...200)) * 8)
                    )
                    : (type, PacketBuilder.ipv6Options(extraUnits: UInt8(random.int(0...2))))
            }
            frame = PacketBuilder.ipv6TransportFrame(
                eth, source: source.bytes, destination: destination.bytes,
                proto: random.chance(50) ? IPProtocol.tcp : IPProtocol.udp, sourcePort: port(), destinationPort: port(),
                extensions: extensions)
        }
        if random.chance(15) {
            let ipStart = 14 + 4 * eth.vlans.count
            frame = PacketBuilder.truncated(frame, to: random.int(ipStart...(ipStart + 45)))
        }
        return frame
    }

    mutating func nonIP() -> [UInt8] {
        let eth = ethernetHeader()
        switch random.below(4) {
        case 0:
            return PacketBuilder.arpFrame(
                eth, operation: UInt16(random.int(1...2)), senderMAC: mac(), senderIP: address(),
                targetIP: address())
        case 1:
            return PacketBuilder.ethernet(eth, etherType: EtherType.lldp, payload: random.bytes(random.int(0...60)))
        case 2:
            // Three VLAN tags: the third is not parsed, so this is non-IP.
            let tags = (0..<3).map { _ in VLANTag(vid: UInt16(random.below(4096))) }
            var ip = ipHeader()
            ip.options = []
            return PacketBuilder.ipv4Frame(
                EthernetHeader(destination: mac(), source: mac(), vlans: tags), ip, transport())
        default:
            var type = UInt16(truncatingIfNeeded: random.next())
            if [EtherType.ipv4, EtherType.ipv6, EtherType.vlan, EtherType.qinq].contains(type) { type = 0x9000 }
            return PacketBuilder.ethernet(eth, etherType: type, payload: random.bytes(random.int(0...60)))
        }
    }

    /// A valid frame cut at (or next to) one of its header boundaries; half of
    /// the time tot_len is fixed to match, so the cut reaches the L4 checks.
    mutating func truncated() -> [UInt8] {
        let eth = ethernetHeader()
        let ip = ipHeader()
        let l4 = transport()
        let frame = PacketBuilder.ipv4Frame(eth, ip, l4, payload: random.bytes(random.int(0...8)))
        let ipStart = 14 + 4 * eth.vlans.count
        let headerLength = Int(frame.count > ipStart ? frame[ipStart] & 0x0F : 5) * 4
        let l4Start = ipStart + headerLength
        let minimum = IPProtocol.minimumHeader(l4.proto) ?? 8
        if random.chance(50), eth.vlans.count <= 2 {
            return coherentlyTruncated(frame, keepingL4: random.int(0...(minimum + 1)))
        }
        let boundaries = [
            0, 6, 12, 13, 14, 16, 18, 22, ipStart + 1, ipStart + 19, ipStart + 20,
            l4Start - 1, l4Start, l4Start + 2, l4Start + 4, l4Start + minimum - 1, l4Start + minimum,
        ]
        let cut = random.pick(boundaries) + random.int(-1...1)
        return PacketBuilder.truncated(frame, to: cut)
    }

    /// Cuts an IPv4 frame (at most two VLAN tags) to `keepingL4` bytes of L4
    /// and rewrites tot_len and the header checksum to match.
    mutating func coherentlyTruncated(_ frame: [UInt8], keepingL4: Int) -> [UInt8] {
        var ipStart = 14
        var type = frame.count >= 14 ? UInt16(frame[12]) << 8 | UInt16(frame[13]) : 0
        while (type == EtherType.vlan || type == EtherType.qinq) && ipStart - 14 < 8 && frame.count >= ipStart + 4 {
            type = UInt16(frame[ipStart + 2]) << 8 | UInt16(frame[ipStart + 3])
            ipStart += 4
        }
        guard type == EtherType.ipv4, frame.count >= ipStart + 20 else { return frame }
        let headerLength = Int(frame[ipStart] & 0x0F) * 4
        guard headerLength >= 20, frame.count >= ipStart + headerLength else { return frame }
        let keep = min(keepingL4, frame.count - ipStart - headerLength)
        var result = Array(frame.prefix(ipStart + headerLength + keep))
        let total = UInt16(headerLength + keep)
        result[ipStart + 2] = UInt8(total >> 8)
        result[ipStart + 3] = UInt8(total & 0xFF)
        result[ipStart + 10] = 0
        result[ipStart + 11] = 0
        let checksum = PacketBuilder.internetChecksum(Array(result[ipStart..<(ipStart + headerLength)]))
        result[ipStart + 10] = UInt8(checksum >> 8)
        result[ipStart + 11] = UInt8(checksum & 0xFF)
        return result
    }

    /// A valid frame with one to four byte-level mutations, biased to the
    /// fields the programs read.
    mutating func mutated() -> [UInt8] {
        var frame: [UInt8]
        switch random.below(4) {
        case 0: frame = fragment()
        case 1: frame = ipv6()
        default: frame = validIPv4()
        }
        let ipStart = 14 + (frame.count > 13 && (frame[12] == 0x81 || frame[12] == 0x88) ? 4 : 0)
        let interesting = [
            12, 13, 14, 15, 16, 17, ipStart, ipStart + 2, ipStart + 3, ipStart + 6, ipStart + 7,
            ipStart + 9, ipStart + 16, ipStart + 19, ipStart + 20, ipStart + 22, ipStart + 23,
        ]
        for _ in 0..<random.int(1...4) where !frame.isEmpty {
            switch random.below(7) {
            case 0:
                let at = random.pick(interesting)
                if at < frame.count { frame[at] = random.byte() }
            case 1:
                let at = Int(random.below(UInt64(frame.count)))
                frame[at] ^= 1 << UInt8(random.below(8))
            case 2:
                let at = Int(random.below(UInt64(frame.count)))
                frame[at] = random.pick([0x00, 0xFF, 0x45, 0x46, 0x4F, 0x40, 0x20, 0x08, 0x81, 0x86])
            case 3:
                frame = PacketBuilder.truncated(frame, to: Int(random.below(UInt64(frame.count + 1))))
            case 4:
                frame += random.bytes(random.int(1...16))
            case 5:
                let at = Int(random.below(UInt64(frame.count)))
                frame.insert(contentsOf: random.bytes(random.pick([1, 2, 4])), at: at)
            default:
                let at = Int(random.below(UInt64(frame.count)))
                frame.removeSubrange(at..<min(frame.count, at + random.pick([1, 2, 4])))
            }
        }
        return frame
    }
}
