import BPFNetTestSupport
import XCTest

@testable import BPFNetCore

final class PacketBuilderTests: XCTestCase {
    let a = Endpoint(mac: MACAddress("02:42:ac:11:00:03")!, ip: IPv4Address(172, 17, 0, 3))
    let b = Endpoint(mac: MACAddress("02:42:ac:11:00:02")!, ip: IPv4Address(172, 17, 0, 2))

    func be16(_ bytes: [UInt8], _ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }

    func testIPv4HeaderChecksumKnownValue() {
        // The classic example: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
        let header = IPv4Header(
            source: IPv4Address(192, 168, 0, 1), destination: IPv4Address(192, 168, 0, 199),
            proto: 17, ttl: 64, dontFragment: true)
        let packet = PacketBuilder.ipv4(header, payload: Array(repeating: 0, count: 0x73 - 20))
        XCTAssertEqual(
            Array(packet.prefix(20)),
            [
                0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61,
                0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
            ])
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(packet.prefix(20))), 0, "a correct header sums to zero")
    }

    func testOptionsAndOverrides() {
        var header = IPv4Header(source: a.ip, destination: b.ip, options: [1, 1, 1])  // padded to 4
        let packet = PacketBuilder.ipv4(header, payload: [9, 9])
        XCTAssertEqual(packet[0], 0x46)
        XCTAssertEqual(be16(packet, 2), 26)
        XCTAssertEqual(Array(packet[20..<24]), [1, 1, 1, 0])
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(packet.prefix(24))), 0)

        header.headerLengthOverride = 3
        header.totalLengthOverride = 1000
        header.versionOverride = 6
        header.checksumOverride = 0xdead
        let bad = PacketBuilder.ipv4(header, payload: [])
        XCTAssertEqual(bad[0], 0x63)
        XCTAssertEqual(be16(bad, 2), 1000)
        XCTAssertEqual(be16(bad, 10), 0xdead)

        var fragment = IPv4Header(
            source: a.ip, destination: b.ip, identification: 0x1234, dontFragment: false,
            moreFragments: true, fragmentOffset: 185)
        XCTAssertEqual(fragment.fragmentField, 0x2000 | 185)
        fragment.dontFragment = true
        XCTAssertEqual(be16(PacketBuilder.ipv4(fragment, payload: []), 6), 0x6000 | 185)
    }

    func testUDPChecksumKnownValue() {
        let frame = PacketBuilder.udpFrame(
            from: a, to: b, sourcePort: 40000, destinationPort: 53, payload: Array("hello".utf8))
        XCTAssertEqual(frame.count, 14 + 20 + 8 + 5)
        XCTAssertEqual(Array(frame[0..<6]), b.mac.array)
        XCTAssertEqual(Array(frame[6..<12]), a.mac.array)
        XCTAssertEqual(be16(frame, 12), 0x0800)
        XCTAssertEqual(frame[14 + 9], 17)
        XCTAssertEqual(be16(frame, 34), 40000)
        XCTAssertEqual(be16(frame, 36), 53)
        XCTAssertEqual(be16(frame, 38), 13)
        XCTAssertEqual(be16(frame, 40), 0xc764)  // computed independently
        let segment = Array(frame[34...])
        XCTAssertEqual(PacketBuilder.transportChecksum(segment, proto: 17, source: a.ip, destination: b.ip), 0)
    }

    func testTCPChecksumKnownValue() {
        let frame = PacketBuilder.ipv4Frame(
            EthernetHeader(destination: b.mac, source: a.mac),
            IPv4Header(source: a.ip, destination: b.ip),
            .tcp(sourcePort: 40000, destinationPort: 80, flags: .syn, sequence: 1))
        XCTAssertEqual(frame.count, 54)
        XCTAssertEqual(frame[14 + 9], 6)
        XCTAssertEqual(frame[34 + 12], 0x50)
        XCTAssertEqual(frame[34 + 13], 0x02)
        XCTAssertEqual(be16(frame, 34 + 16), 0xbb29)  // computed independently
    }

    func testICMPAndSCTP() {
        let icmp = PacketBuilder.segment(
            .icmpEcho(identifier: 1, sequence: 1), source: a.ip, destination: b.ip, payload: [])
        XCTAssertEqual(icmp, [8, 0, 0xf7, 0xfd, 0, 1, 0, 1])
        let reply = PacketBuilder.segment(
            .icmpEcho(identifier: 1, sequence: 1, reply: true), source: a.ip, destination: b.ip,
            payload: [])
        XCTAssertEqual(reply[0], 0)
        XCTAssertEqual(PacketBuilder.internetChecksum(reply), 0)

        XCTAssertEqual(PacketBuilder.crc32c(Array("123456789".utf8)), 0xE306_9283)  // the CRC-32C check value
        let sctp = PacketBuilder.segment(
            .sctp(sourcePort: 5000, destinationPort: 132, verificationTag: 0xAABB_CCDD),
            source: a.ip, destination: b.ip, payload: [])
        XCTAssertEqual(sctp.count, 12)
        XCTAssertEqual(Array(sctp.prefix(8)), [0x13, 0x88, 0x00, 0x84, 0xAA, 0xBB, 0xCC, 0xDD])
        var zeroed = sctp
        zeroed.replaceSubrange(8..<12, with: [0, 0, 0, 0])
        let crc = PacketBuilder.crc32c(zeroed)
        XCTAssertEqual(
            Array(sctp[8..<12]), [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)])
    }

    func testVLANTags() {
        let frame = PacketBuilder.tcpFrame(
            from: a, to: b, sourcePort: 1, destinationPort: 2,
            vlans: [VLANTag(vid: 100, tpid: EtherType.qinq, pcp: 5), VLANTag(vid: 4095)])
        XCTAssertEqual(Array(frame[12..<22]), [0x88, 0xA8, 0xA0, 0x64, 0x81, 0x00, 0x0F, 0xFF, 0x08, 0x00])
        XCTAssertEqual(frame[22], 0x45)
        guard case .ipv4(let summary) = FrameParser.parse(frame) else { return XCTFail() }
        XCTAssertEqual(summary.offset, 22)
        XCTAssertEqual(summary.destinationPort, 2)
    }

    func testFragmentsReassembleToTheDatagram() {
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0) }
        let ip = IPv4Header(source: a.ip, destination: b.ip, identification: 9)
        let eth = EthernetHeader(destination: b.mac, source: a.mac)
        let pieces = PacketBuilder.fragments(
            eth, ip, .udp(sourcePort: 1, destinationPort: 2), payload: payload, fragmentSize: 300)
        XCTAssertEqual(pieces.count, 4)  // 1008 bytes of UDP in 296-byte pieces
        var reassembled: [UInt8] = []
        for (index, piece) in pieces.enumerated() {
            XCTAssertEqual(PacketBuilder.internetChecksum(Array(piece[14..<34])), 0)
            let field = be16(piece, 20)
            XCTAssertEqual(Int(field & 0x1FFF) * 8, reassembled.count)
            XCTAssertEqual(field & 0x2000 != 0, index < 3)
            XCTAssertEqual(be16(piece, 18), 9)
            XCTAssertEqual(Int(be16(piece, 16)), piece.count - 14)
            reassembled += piece[34...]
        }
        let whole = PacketBuilder.segment(
            .udp(sourcePort: 1, destinationPort: 2), source: a.ip, destination: b.ip, payload: payload)
        XCTAssertEqual(reassembled, whole)
    }

    func testIPv6AndARP() {
        let v6 = PacketBuilder.ipv6Frame(EthernetHeader(destination: b.mac, source: a.mac), payload: [1, 2, 3])
        XCTAssertEqual(v6.count, 14 + 40 + 3)
        XCTAssertEqual(be16(v6, 12), 0x86DD)
        XCTAssertEqual(v6[14] >> 4, 6)
        XCTAssertEqual(be16(v6, 18), 3)
        XCTAssertEqual(
            FrameParser.parse(v6),
            .ipv6(
                IPv6Summary(
                    destinationMAC: b.mac, source: IPv6Address(bytes: PacketBuilder.linkLocal1),
                    destination: IPv6Address(bytes: PacketBuilder.linkLocal2), transport: .other(IPProtocol.icmpv6))))

        let arp = PacketBuilder.arpFrame(
            EthernetHeader(destination: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), source: a.mac),
            senderMAC: a.mac, senderIP: a.ip, targetIP: b.ip)
        XCTAssertEqual(arp.count, 42)
        XCTAssertEqual(be16(arp, 12), 0x0806)
        XCTAssertEqual(Array(arp[14..<22]), [0, 1, 8, 0, 6, 4, 0, 1])
        XCTAssertEqual(Array(arp[38..<42]), [172, 17, 0, 2])
        XCTAssertEqual(FrameParser.parse(arp), .arp(ARPSummary(senderMAC: a.mac, senderAddress: a.ip)))
        // ARP for another protocol, or cut short, is not IPv4 ARP.
        XCTAssertEqual(FrameParser.parse(PacketBuilder.truncated(arp, to: 41)), .nonIP(etherType: 0x0806))
    }

    func testTruncateAndPad() {
        let frame = PacketBuilder.tcpFrame(from: a, to: b, sourcePort: 1, destinationPort: 2)
        XCTAssertEqual(PacketBuilder.truncated(frame, to: 20), Array(frame.prefix(20)))
        XCTAssertEqual(PacketBuilder.truncated(frame, to: -5), [])
        XCTAssertEqual(PacketBuilder.truncated(frame, to: 500), frame)
        XCTAssertEqual(PacketBuilder.padded(frame).count, 60)
        XCTAssertEqual(PacketBuilder.padded(frame, to: 10), frame)
    }
}
