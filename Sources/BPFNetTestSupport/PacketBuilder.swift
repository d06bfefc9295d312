// SPDX-License-Identifier: Apache-2.0
//
// Builds Ethernet frames byte for byte: VLAN tags, IPv4 (with options,
// fragments and deliberately wrong lengths), TCP/UDP/SCTP/ICMP with correct
// checksums, IPv6, ARP. Used by the unit tests, the differential fuzzer, the
// BPF test-run suite and the benchmarks, so that every frame in the project
// comes from one place.

import BPFNetCore

/// An 802.1Q (0x8100) or 802.1ad (0x88A8) tag.
public struct VLANTag: Hashable, Sendable {
    public var tpid: UInt16
    public var vid: UInt16
    public var pcp: UInt8
    public var dei: Bool

    public init(vid: UInt16, tpid: UInt16 = EtherType.vlan, pcp: UInt8 = 0, dei: Bool = false) {
        self.tpid = tpid
        self.vid = vid
        self.pcp = pcp
        self.dei = dei
    }

    public var tci: UInt16 { UInt16(pcp & 7) << 13 | (dei ? 1 << 12 : 0) | vid & 0x0FFF }
}

public struct EthernetHeader: Hashable, Sendable {
    public var destination: MACAddress
    public var source: MACAddress
    /// Outermost first.
    public var vlans: [VLANTag]

    public init(destination: MACAddress, source: MACAddress, vlans: [VLANTag] = []) {
        self.destination = destination
        self.source = source
        self.vlans = vlans
    }
}

/// IPv4 header fields, with overrides for building malformed packets.
public struct IPv4Header: Hashable, Sendable {
    public var source: IPv4Address
    public var destination: IPv4Address
    /// Protocol number; the `ipv4Frame` helpers set it from the transport.
    public var proto: UInt8
    public var ttl: UInt8
    public var tos: UInt8
    public var identification: UInt16
    public var dontFragment: Bool
    public var moreFragments: Bool
    /// In 8-byte units (0-8191).
    public var fragmentOffset: UInt16
    /// Option bytes; padded with zeros (end of options) to a multiple of 4.
    public var options: [UInt8]
    /// Written into the IHL nibble instead of the real header length.
    public var headerLengthOverride: UInt8?
    /// Written into tot_len instead of the real length.
    public var totalLengthOverride: UInt16?
    /// Written into the version nibble instead of 4.
    public var versionOverride: UInt8?
    /// Written instead of the computed header checksum.
    public var checksumOverride: UInt16?

    public init(
        source: IPv4Address, destination: IPv4Address, proto: UInt8 = IPProtocol.tcp, ttl: UInt8 = 64,
        tos: UInt8 = 0, identification: UInt16 = 0, dontFragment: Bool = false, moreFragments: Bool = false,
        fragmentOffset: UInt16 = 0, options: [UInt8] = [], headerLengthOverride: UInt8? = nil,
        totalLengthOverride: UInt16? = nil, versionOverride: UInt8? = nil, checksumOverride: UInt16? = nil
    ) {
        self.source = source
        self.destination = destination
        self.proto = proto
        self.ttl = ttl
        self.tos = tos
        self.identification = identification
        self.dontFragment = dontFragment
        self.moreFragments = moreFragments
        self.fragmentOffset = fragmentOffset
        self.options = options
        self.headerLengthOverride = headerLengthOverride
        self.totalLengthOverride = totalLengthOverride
        self.versionOverride = versionOverride
        self.checksumOverride = checksumOverride
    }

    /// The raw frag_off field: flags and offset.
    public var fragmentField: UInt16 {
        (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0) | fragmentOffset & 0x1FFF
    }
}

public struct TCPFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
}

/// The L4 part of an IPv4 packet.
public enum Transport: Hashable, Sendable {
    case tcp(
        sourcePort: UInt16, destinationPort: UInt16, flags: TCPFlags = .syn, sequence: UInt32 = 0,
        acknowledgement: UInt32 = 0, window: UInt16 = 65535)
    case udp(sourcePort: UInt16, destinationPort: UInt16)
    case sctp(sourcePort: UInt16, destinationPort: UInt16, verificationTag: UInt32 = 0)
    case icmpEcho(identifier: UInt16 = 1, sequence: UInt16 = 1, reply: Bool = false)
    /// An ICMP error (3 destination unreachable, 11 time exceeded, …); the
    /// payload is the start of the datagram it is about (`PacketBuilder.icmpErrorQuote`).
    case icmpError(type: UInt8, code: UInt8 = 0, mtu: UInt16 = 0)
    /// Any protocol; the payload is taken as-is.
    case raw(proto: UInt8)

    public var proto: UInt8 {
        switch self {
        case .tcp: IPProtocol.tcp
        case .udp: IPProtocol.udp
        case .sctp: IPProtocol.sctp
        case .icmpEcho, .icmpError: IPProtocol.icmp
        case .raw(let proto): proto
        }
    }
}

/// A container-like endpoint: the MAC and address a frame is sent from or to.
public struct Endpoint: Hashable, Sendable {
    public var mac: MACAddress
    public var ip: IPv4Address

    public init(mac: MACAddress, ip: IPv4Address) {
        self.mac = mac
        self.ip = ip
    }

    public init(_ container: Container) { self.init(mac: container.mac, ip: container.ip) }
}

public enum PacketBuilder {
    // MARK: Layer 2

    /// Ethernet header (+ VLAN tags) + payload.
    public static func ethernet(_ header: EthernetHeader, etherType: UInt16, payload: [UInt8]) -> [UInt8] {
        var frame = header.destination.array + header.source.array
        frame.reserveCapacity(14 + 4 * header.vlans.count + payload.count)
        for tag in header.vlans {
            frame.append(be16: tag.tpid)
            frame.append(be16: tag.tci)
        }
        frame.append(be16: etherType)
        return frame + payload
    }

    /// An ARP request or reply (operation 1 or 2) in an Ethernet frame.
    public static func arpFrame(
        _ header: EthernetHeader, operation: UInt16 = 1, senderMAC: MACAddress,
        senderIP: IPv4Address, targetMAC: MACAddress = MACAddress(0, 0, 0, 0, 0, 0),
        targetIP: IPv4Address
    ) -> [UInt8] {
        var arp: [UInt8] = []
        arp.append(be16: 1)  // Ethernet
        arp.append(be16: EtherType.ipv4)
        arp += [6, 4]
        arp.append(be16: operation)
        arp += senderMAC.array
        arp.append(be32: senderIP.value)
        arp += targetMAC.array
        arp.append(be32: targetIP.value)
        return ethernet(header, etherType: EtherType.arp, payload: arp)
    }

    // MARK: IPv4

    /// IPv4 header + payload, with the header checksum (unless overridden).
    public static func ipv4(_ header: IPv4Header, payload: [UInt8]) -> [UInt8] {
        var options = header.options
        while options.count % 4 != 0 { options.append(0) }
        let headerLength = 20 + options.count
        let ihl = header.headerLengthOverride ?? UInt8(truncatingIfNeeded: headerLength / 4)
        let version = header.versionOverride ?? 4
        let totalLength = header.totalLengthOverride ?? UInt16(truncatingIfNeeded: headerLength + payload.count)

        var bytes: [UInt8] = [(version & 0x0F) << 4 | ihl & 0x0F, header.tos]
        bytes.reserveCapacity(headerLength + payload.count)
        bytes.append(be16: totalLength)
        bytes.append(be16: header.identification)
        bytes.append(be16: header.fragmentField)
        bytes += [header.ttl, header.proto, 0, 0]
        bytes.append(be32: header.source.value)
        bytes.append(be32: header.destination.value)
        bytes += options
        let checksum = header.checksumOverride ?? internetChecksum(bytes)
        bytes[10] = UInt8(checksum >> 8)
        bytes[11] = UInt8(checksum & 0xFF)
        return bytes + payload
    }

    /// The L4 bytes (header + payload) of `transport`, with its checksum.
    public static func segment(
        _ transport: Transport, source: IPv4Address, destination: IPv4Address,
        payload: [UInt8]
    ) -> [UInt8] {
        switch transport {
        case .tcp(let sport, let dport, let flags, let sequence, let acknowledgement, let window):
            var bytes: [UInt8] = []
            bytes.append(be16: sport)
            bytes.append(be16: dport)
            bytes.append(be32: sequence)
            bytes.append(be32: acknowledgement)
            bytes += [5 << 4, flags.rawValue]
            bytes.append(be16: window)
            bytes += [0, 0, 0, 0]  // checksum, urgent pointer
            bytes += payload
            let checksum = transportChecksum(bytes, proto: IPProtocol.tcp, source: source, destination: destination)
            bytes[16] = UInt8(checksum >> 8)
            bytes[17] = UInt8(checksum & 0xFF)
            return bytes
        case .udp(let sport, let dport):
            var bytes: [UInt8] = []
            bytes.append(be16: sport)
            bytes.append(be16: dport)
            bytes.append(be16: UInt16(truncatingIfNeeded: 8 + payload.count))
            bytes += [0, 0]
            bytes += payload
            var checksum = transportChecksum(bytes, proto: IPProtocol.udp, source: source, destination: destination)
            if checksum == 0 { checksum = 0xFFFF }  // RFC 768: 0 means "no checksum"
            bytes[6] = UInt8(checksum >> 8)
            bytes[7] = UInt8(checksum & 0xFF)
            return bytes
        case .sctp(let sport, let dport, let tag):
            var bytes: [UInt8] = []
            bytes.append(be16: sport)
            bytes.append(be16: dport)
            bytes.append(be32: tag)
            bytes += [0, 0, 0, 0]
            bytes += payload
            // RFC 9260 appendix A: CRC32c, transmitted least significant byte first.
            let crc = crc32c(bytes)
            bytes[8] = UInt8(crc & 0xFF)
            bytes[9] = UInt8(crc >> 8 & 0xFF)
            bytes[10] = UInt8(crc >> 16 & 0xFF)
            bytes[11] = UInt8(crc >> 24)
            return bytes
        case .icmpEcho(let identifier, let sequence, let reply):
            var bytes: [UInt8] = [reply ? 0 : 8, 0, 0, 0]
            bytes.append(be16: identifier)
            bytes.append(be16: sequence)
            bytes += payload
            let checksum = internetChecksum(bytes)
            bytes[2] = UInt8(checksum >> 8)
            bytes[3] = UInt8(checksum & 0xFF)
            return bytes
        case .icmpError(let type, let code, let mtu):
            var bytes: [UInt8] = [type, code, 0, 0, 0, 0]
            bytes.append(be16: mtu)
            bytes += payload
            let checksum = internetChecksum(bytes)
            bytes[2] = UInt8(checksum >> 8)
            bytes[3] = UInt8(checksum & 0xFF)
            return bytes
        case .raw:
            return payload
        }
    }

    /// What an ICMP error quotes of the datagram it is about: its IPv4 header
    /// and the first 8 bytes after it (RFC 792).
    public static func icmpErrorQuote(_ ip: IPv4Header, _ transport: Transport, payload: [UInt8] = []) -> [UInt8] {
        var ip = ip
        ip.proto = transport.proto
        let packet = ipv4(
            ip, payload: segment(transport, source: ip.source, destination: ip.destination, payload: payload))
        return Array(packet.prefix(28))
    }

    /// A complete IPv4 frame. `ip.proto` is taken from `transport`.
    public static func ipv4Frame(
        _ ethernet: EthernetHeader, _ ip: IPv4Header, _ transport: Transport,
        payload: [UInt8] = []
    ) -> [UInt8] {
        var ip = ip
        ip.proto = transport.proto
        let l4 = segment(transport, source: ip.source, destination: ip.destination, payload: payload)
        return self.ethernet(ethernet, etherType: EtherType.ipv4, payload: ipv4(ip, payload: l4))
    }

    /// The datagram `transport` + `payload` split into IPv4 fragments carrying
    /// at most `fragmentSize` L4 bytes each (rounded down to a multiple of 8).
    /// The first fragment carries the L4 header; all share `ip.identification`.
    public static func fragments(
        _ ethernet: EthernetHeader, _ ip: IPv4Header, _ transport: Transport,
        payload: [UInt8], fragmentSize: Int
    ) -> [[UInt8]] {
        precondition(fragmentSize >= 8, "fragments carry at least 8 bytes")
        var ip = ip
        ip.proto = transport.proto
        let l4 = segment(transport, source: ip.source, destination: ip.destination, payload: payload)
        let size = fragmentSize / 8 * 8
        var frames: [[UInt8]] = []
        var offset = 0
        repeat {
            let chunk = Array(l4[offset..<min(offset + size, l4.count)])
            var header = ip
            header.fragmentOffset = UInt16(offset / 8)
            header.moreFragments = offset + chunk.count < l4.count
            frames.append(self.ethernet(ethernet, etherType: EtherType.ipv4, payload: ipv4(header, payload: chunk)))
            offset += chunk.count
        } while offset < l4.count
        return frames
    }

    // MARK: Convenience for container-to-container traffic

    public static func tcpFrame(
        from source: Endpoint, to destination: Endpoint, sourcePort: UInt16, destinationPort: UInt16,
        flags: TCPFlags = .syn, vlans: [VLANTag] = [], payload: [UInt8] = []
    ) -> [UInt8] {
        ipv4Frame(
            EthernetHeader(destination: destination.mac, source: source.mac, vlans: vlans),
            IPv4Header(source: source.ip, destination: destination.ip),
            .tcp(sourcePort: sourcePort, destinationPort: destinationPort, flags: flags), payload: payload)
    }

    public static func udpFrame(
        from source: Endpoint, to destination: Endpoint, sourcePort: UInt16, destinationPort: UInt16,
        vlans: [VLANTag] = [], payload: [UInt8] = []
    ) -> [UInt8] {
        ipv4Frame(
            EthernetHeader(destination: destination.mac, source: source.mac, vlans: vlans),
            IPv4Header(source: source.ip, destination: destination.ip),
            .udp(sourcePort: sourcePort, destinationPort: destinationPort), payload: payload)
    }

    public static func sctpFrame(
        from source: Endpoint, to destination: Endpoint, sourcePort: UInt16, destinationPort: UInt16,
        vlans: [VLANTag] = [], payload: [UInt8] = []
    ) -> [UInt8] {
        ipv4Frame(
            EthernetHeader(destination: destination.mac, source: source.mac, vlans: vlans),
            IPv4Header(source: source.ip, destination: destination.ip),
            .sctp(sourcePort: sourcePort, destinationPort: destinationPort), payload: payload)
    }

    public static func icmpEchoFrame(
        from source: Endpoint, to destination: Endpoint, vlans: [VLANTag] = [],
        payload: [UInt8] = Array(repeating: 0x42, count: 8)
    ) -> [UInt8] {
        ipv4Frame(
            EthernetHeader(destination: destination.mac, source: source.mac, vlans: vlans),
            IPv4Header(source: source.ip, destination: destination.ip), .icmpEcho(), payload: payload)
    }

    // MARK: IPv6

    /// fe80::1 and fe80::2, for frames that only need some IPv6 header.
    public static let linkLocal1: [UInt8] = [0xfe, 0x80] + Array(repeating: 0, count: 13) + [1]
    public static let linkLocal2: [UInt8] = [0xfe, 0x80] + Array(repeating: 0, count: 13) + [2]

    /// An IPv6 frame (40-byte header + payload; no extension headers).
    public static func ipv6Frame(
        _ ethernet: EthernetHeader, source: [UInt8] = linkLocal1, destination: [UInt8] = linkLocal2,
        nextHeader: UInt8 = IPProtocol.icmpv6, hopLimit: UInt8 = 64,
        payload: [UInt8] = [128, 0, 0, 0, 0, 1, 0, 1]
    ) -> [UInt8] {
        precondition(source.count == 16 && destination.count == 16, "IPv6 addresses are 16 bytes")
        var header: [UInt8] = [0x60, 0, 0, 0]
        header.append(be16: UInt16(truncatingIfNeeded: payload.count))
        header += [nextHeader, hopLimit]
        header += source + destination
        return self.ethernet(ethernet, etherType: EtherType.ipv6, payload: header + payload)
    }

    /// An IPv6 frame whose payload is `extensions` (each a next-header type
    /// and the header's bytes after its next-header byte) and then a TCP or
    /// UDP header from port 40000 to `destinationPort`.
    public static func ipv6TransportFrame(
        _ ethernet: EthernetHeader, source: [UInt8] = linkLocal1, destination: [UInt8] = linkLocal2, proto: UInt8,
        sourcePort: UInt16 = 40000, destinationPort: UInt16, extensions: [(type: UInt8, body: [UInt8])] = []
    ) -> [UInt8] {
        var payload: [UInt8] = []
        payload.append(be16: sourcePort)
        payload.append(be16: destinationPort)
        payload += Array(repeating: 0, count: proto == IPProtocol.tcp ? 16 : 4)
        var next = proto
        for (type, body) in extensions.reversed() {
            payload = [next] + body + payload
            next = type
        }
        return ipv6Frame(ethernet, source: source, destination: destination, nextHeader: next, payload: payload)
    }

    /// An ICMPv6 error (RFC 4443: 1 unreachable, 2 packet too big, 3 time
    /// exceeded, 4 parameter problem) from `source` to `destination`, quoting
    /// a TCP/UDP datagram `quotedSource` → `quotedDestination` (its 40-byte
    /// header and the first 8 bytes after it). Checksums are not computed.
    public static func icmpv6Error(
        _ ethernet: EthernetHeader, type: UInt8 = 2, source: [UInt8], destination: [UInt8],
        quotedSource: [UInt8], quotedDestination: [UInt8], quotedProto: UInt8 = IPProtocol.tcp,
        quotedSourcePort: UInt16, quotedDestinationPort: UInt16
    ) -> [UInt8] {
        var quoted: [UInt8] = [0x60, 0, 0, 0]
        quoted.append(be16: 20)
        quoted += [quotedProto, 64] + quotedSource + quotedDestination
        quoted.append(be16: quotedSourcePort)
        quoted.append(be16: quotedDestinationPort)
        quoted += [0, 0, 0, 0]
        let error: [UInt8] = [type, 0, 0, 0] + [0, 0, 0x05, 0x00] + quoted
        return ipv6Frame(
            ethernet, source: source, destination: destination, nextHeader: IPProtocol.icmpv6, payload: error)
    }

    /// Extension header bodies for `ipv6TransportFrame`: 8 bytes in all
    /// (hop-by-hop and destination options padded with PadN), or a fragment
    /// header at `fragmentOffset` (in bytes, a multiple of 8).
    public static func ipv6Options(extraUnits: UInt8 = 0) -> [UInt8] {
        [extraUnits, 1, 4] + Array(repeating: 0, count: 4 + 8 * Int(extraUnits))
    }

    public static func ipv6Fragment(offset fragmentOffset: UInt16, more: Bool = true) -> [UInt8] {
        var body: [UInt8] = [0]
        body.append(be16: fragmentOffset & 0xFFF8 | (more ? 1 : 0))
        return body + [0, 0, 0x12, 0x34]
    }

    // MARK: Cutting and padding

    /// The first `length` bytes of `frame` (all of it when shorter).
    public static func truncated(_ frame: [UInt8], to length: Int) -> [UInt8] {
        Array(frame.prefix(max(0, length)))
    }

    /// `frame` padded with zeros to `length` (Ethernet's 60-byte minimum by default).
    public static func padded(_ frame: [UInt8], to length: Int = 60) -> [UInt8] {
        frame.count >= length ? frame : frame + Array(repeating: 0, count: length - frame.count)
    }

    // MARK: Checksums

    /// RFC 1071 one's-complement sum, complemented.
    public static func internetChecksum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }

    /// TCP/UDP checksum over the IPv4 pseudo header and `segment`.
    public static func transportChecksum(
        _ segment: [UInt8], proto: UInt8, source: IPv4Address,
        destination: IPv4Address
    ) -> UInt16 {
        var pseudo = UInt32(source.value >> 16) + UInt32(source.value & 0xFFFF)
        pseudo += UInt32(destination.value >> 16) + UInt32(destination.value & 0xFFFF)
        pseudo += UInt32(proto) + UInt32(segment.count & 0xFFFF)
        return internetChecksum(segment, initial: pseudo)
    }

    /// CRC32c (Castagnoli, reflected, as SCTP uses it).
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = crc32cTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return ~crc
    }

    static let crc32cTable: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }
}

extension Array where Element == UInt8 {
    mutating func append(be16 value: UInt16) {
        append(UInt8(value >> 8))
        append(UInt8(value & 0xFF))
    }

    mutating func append(be32 value: UInt32) {
        append(UInt8(value >> 24))
        append(UInt8(value >> 16 & 0xFF))
        append(UInt8(value >> 8 & 0xFF))
        append(UInt8(value & 0xFF))
    }
}
