import BPFNetTestSupport
import XCTest

@testable import BPFNetCore

/// Every row of docs/policy.md and every parse rule of docs/verdicts.md,
/// through the reference model over the compiled sample policy.
final class ReferenceVerdictTests: XCTestCase {
    let web = Endpoint(Sample.web), client = Endpoint(Sample.client), db = Endpoint(Sample.db)
    let closed = ReferenceDataplane(state: Sample.state(withDB(icc: false)))
    let open = ReferenceDataplane(state: Sample.state(withDB(icc: true)))

    static func withDB(icc: Bool, forward: ForwardPolicy = .drop) -> Policy {
        var policy = Sample.policy
        policy.icc = icc
        policy.forwardPolicy = forward
        policy.containers.append(Sample.db)
        policy.containers[0].published.append(
            PublishedPort(
                hostIP: IPv4Address(10, 0, 0, 1), hostPort: 5353,
                containerPort: 53, proto: .udp))
        return policy
    }

    func tcp(_ from: Endpoint, _ to: Endpoint, _ sport: UInt16, _ dport: UInt16, vlans: [VLANTag] = []) -> [UInt8] {
        PacketBuilder.tcpFrame(from: from, to: to, sourcePort: sport, destinationPort: dport, vlans: vlans)
    }

    func udp(_ from: Endpoint, _ to: Endpoint, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
        PacketBuilder.udpFrame(from: from, to: to, sourcePort: sport, destinationPort: dport)
    }

    func at(_ ip: IPv4Address) -> Endpoint { Endpoint(mac: Sample.bridgeMAC, ip: ip) }

    // MARK: Port program

    func testRow1NonIPPasses() {
        let eth = EthernetHeader(destination: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), source: client.mac)
        let arp = PacketBuilder.arpFrame(eth, senderMAC: client.mac, senderIP: client.ip, targetIP: web.ip)
        XCTAssertEqual(closed.portVerdict(frame: arp), .pass(.nonIP))
        let lldp = PacketBuilder.ethernet(eth, etherType: EtherType.lldp, payload: [1, 2, 3])
        XCTAssertEqual(closed.portVerdict(frame: lldp), .pass(.nonIP))
        // Three tags: the third is not parsed; the receiving stack could peel
        // it (VID 0) to an IPv4 packet nobody judged, so the frame is dropped.
        let tags = [VLANTag(vid: 1, tpid: EtherType.qinq), VLANTag(vid: 2), VLANTag(vid: 3)]
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 1, 81, vlans: tags)), .drop(.encap))
        XCTAssertEqual(open.portVerdict(frame: tcp(client, web, 1, 81, vlans: tags)), .drop(.encap))
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(Sample.outside, web, 1, 80, vlans: tags), ingressIfindex: 2), .drop(.encap))
    }

    func testRow2ToTheBridgePasses() {
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, Sample.gateway, 40000, 22)), .pass(.host))
        XCTAssertEqual(
            closed.portVerdict(frame: PacketBuilder.icmpEchoFrame(from: client, to: Sample.gateway)), .pass(.host))
        // The host's other addresses are outside the bridge.
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, at(IPv4Address(10, 0, 0, 1)), 40000, 22)), .pass(.outside))
    }

    func testRow3ICCOnPasses() {
        XCTAssertEqual(open.portVerdict(frame: tcp(client, web, 40000, 9999)), .pass(.iccAllowed))
        XCTAssertEqual(open.portVerdict(frame: PacketBuilder.icmpEchoFrame(from: db, to: client)), .pass(.iccAllowed))
        XCTAssertEqual(
            open.portVerdict(frame: tcp(client, at(IPv4Address(172, 17, 255, 255)), 1, 2)), .pass(.iccAllowed))
    }

    func testRow4LinkForward() {
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 40000, 80)), .pass(.link))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, web, 40000, 53)), .pass(.link))
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 40000, 81)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, web, 40000, 80)), .drop(.icc))  // 80 is tcp only
        XCTAssertEqual(
            closed.portVerdict(
                frame: PacketBuilder.sctpFrame(from: client, to: web, sourcePort: 1, destinationPort: 80)),
            .drop(.icc))
        // Only parent → child: web is not client's parent.
        XCTAssertEqual(closed.portVerdict(frame: tcp(db, web, 40000, 80)), .drop(.icc))
    }

    func testRow5LinkReverseIsStateless() {
        XCTAssertEqual(closed.portVerdict(frame: tcp(web, client, 80, 40000)), .pass(.linkReverse))
        // Stateless: it passes even when it answers nothing the client opened.
        XCTAssertEqual(closed.portVerdict(frame: tcp(web, client, 80, 9090)), .pass(.linkReverse))
        XCTAssertEqual(closed.portVerdict(frame: udp(web, client, 53, 53)), .pass(.linkReverse))
        XCTAssertEqual(closed.portVerdict(frame: tcp(web, client, 81, 40000)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: tcp(web, client, 40000, 80)), .drop(.icc))
    }

    func testRow6EverythingElseBetweenContainersDrops() {
        XCTAssertEqual(closed.portVerdict(frame: PacketBuilder.icmpEchoFrame(from: client, to: web)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, db, 40000, 5432)), .drop(.icc))
        // An address in the subnet that is no container's.
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, at(IPv4Address(172, 17, 0, 99)), 1, 2)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, at(IPv4Address(172, 17, 255, 255)), 68, 67)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, at(IPv4Address(255, 255, 255, 255)), 68, 67)), .drop(.icc))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, at(IPv4Address(224, 0, 0, 251)), 5353, 5353)), .drop(.icc))
    }

    func testRow7OutsidePasses() {
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, Sample.outside, 40000, 443)), .pass(.outside))
        XCTAssertEqual(
            closed.portVerdict(frame: PacketBuilder.icmpEchoFrame(from: client, to: Sample.outside)), .pass(.outside))
        XCTAssertEqual(closed.portVerdict(frame: udp(client, at(IPv4Address(172, 18, 0, 1)), 1, 2)), .pass(.outside))
    }

    func testContainerOutsideTheSubnetIsStillInside() {
        var policy = Sample.policy
        policy.containers.append(
            Container(
                name: "far", ip: IPv4Address(10, 9, 9, 9), mac: MACAddress("02:42:0a:09:09:09")!,
                port: "vethother"))
        let dataplane = ReferenceDataplane(state: Sample.state(policy))
        XCTAssertEqual(dataplane.portVerdict(frame: tcp(client, at(IPv4Address(10, 9, 9, 9)), 1, 2)), .drop(.icc))
    }

    func testIPv6FollowsICCByMAC() {
        let toWeb = PacketBuilder.ipv6Frame(EthernetHeader(destination: web.mac, source: client.mac))
        XCTAssertEqual(closed.portVerdict(frame: toWeb), .drop(.icc))
        XCTAssertEqual(open.portVerdict(frame: toWeb), .pass(.iccAllowed))
        let allNodes: [UInt8] = [0xff, 0x02] + Array(repeating: 0, count: 13) + [1]
        let multicast = PacketBuilder.ipv6Frame(
            EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: client.mac),
            destination: allNodes)
        XCTAssertEqual(closed.portVerdict(frame: multicast), .pass(.ipv6))
        // The bridge floods a multicast frame to every port, and a stack accepts a
        // unicast destination address in it: judged between containers.
        let unicastInside = PacketBuilder.ipv6Frame(
            EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: client.mac))
        XCTAssertEqual(closed.portVerdict(frame: unicastInside), .drop(.icc))
        XCTAssertEqual(open.portVerdict(frame: unicastInside), .pass(.iccAllowed))
        let router = PacketBuilder.ipv6Frame(EthernetHeader(destination: Sample.bridgeMAC, source: client.mac))
        XCTAssertEqual(closed.portVerdict(frame: router), .pass(.ipv6))
        // VLAN-tagged IPv6 to a container is judged the same.
        let tagged = PacketBuilder.ipv6Frame(
            EthernetHeader(destination: web.mac, source: client.mac, vlans: [VLANTag(vid: 5)]))
        XCTAssertEqual(closed.portVerdict(frame: tagged), .drop(.icc))
        // 39 bytes of IPv6 header.
        XCTAssertEqual(closed.portVerdict(frame: PacketBuilder.truncated(toWeb, to: 14 + 39)), .drop(.malformed))
        XCTAssertEqual(closed.portVerdict(frame: PacketBuilder.truncated(toWeb, to: 14 + 40)), .drop(.icc))
    }

    func testVLANTagsCannotBypassThePolicy() {
        for tags in [
            [VLANTag(vid: 10)], [VLANTag(vid: 10, tpid: EtherType.qinq)],
            [VLANTag(vid: 10, tpid: EtherType.qinq), VLANTag(vid: 20)], [VLANTag(vid: 1), VLANTag(vid: 2)],
        ] {
            XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 1, 81, vlans: tags)), .drop(.icc), "\(tags)")
            XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 1, 80, vlans: tags)), .pass(.link), "\(tags)")
            XCTAssertEqual(
                closed.extVerdict(frame: tcp(Sample.outside, web, 1, 80, vlans: tags), ingressIfindex: 2),
                .drop(.forward), "\(tags)")
        }
        // A tag cut short.
        let tagged = tcp(client, web, 1, 80, vlans: [VLANTag(vid: 10)])
        XCTAssertEqual(closed.portVerdict(frame: PacketBuilder.truncated(tagged, to: 17)), .drop(.malformed))
        // Tag complete, IPv4 header missing.
        XCTAssertEqual(FrameParser.parse(PacketBuilder.truncated(tagged, to: 18)), .malformed(.ipv4Truncated))
    }

    func testFragments() {
        let ip = IPv4Header(source: client.ip, destination: web.ip, identification: 77)
        let eth = EthernetHeader(destination: web.mac, source: client.mac)
        let big = Array(repeating: UInt8(0xAB), count: 3000)
        // Large UDP from parent to child on a linked port: every fragment passes.
        let toChild = PacketBuilder.fragments(
            eth, ip, .udp(sourcePort: 40000, destinationPort: 53), payload: big, fragmentSize: 1480)
        XCTAssertEqual(toChild.count, 3)
        XCTAssertEqual(
            toChild.map { closed.portVerdict(frame: $0) }, [.pass(.link), .pass(.linkFragment), .pass(.linkFragment)])
        // The reply from the child, fragmented too.
        var back = ip
        (back.source, back.destination) = (web.ip, client.ip)
        let toParent = PacketBuilder.fragments(
            EthernetHeader(destination: client.mac, source: web.mac), back,
            .udp(sourcePort: 53, destinationPort: 40000), payload: big, fragmentSize: 1480)
        XCTAssertEqual(
            toParent.map { closed.portVerdict(frame: $0) },
            [.pass(.linkReverse), .pass(.linkFragment), .pass(.linkFragment)])
        // To a port the link does not cover: the first fragment drops, the
        // others pass (the datagram can never be reassembled).
        let wrongPort = PacketBuilder.fragments(
            eth, ip, .udp(sourcePort: 40000, destinationPort: 54), payload: big, fragmentSize: 1480)
        XCTAssertEqual(
            wrongPort.map { closed.portVerdict(frame: $0) }, [.drop(.icc), .pass(.linkFragment), .pass(.linkFragment)])
        // Between an unlinked pair, or for a protocol without rules: all dropped.
        let unlinked = PacketBuilder.fragments(
            EthernetHeader(destination: db.mac, source: client.mac),
            IPv4Header(source: client.ip, destination: db.ip),
            .udp(sourcePort: 1, destinationPort: 2), payload: big, fragmentSize: 1480)
        XCTAssertEqual(unlinked.map { closed.portVerdict(frame: $0) }, [.drop(.icc), .drop(.icc), .drop(.icc)])
        let icmp = PacketBuilder.fragments(eth, ip, .icmpEcho(), payload: big, fragmentSize: 1480)
        XCTAssertEqual(icmp.map { closed.portVerdict(frame: $0) }, [.drop(.icc), .drop(.icc), .drop(.icc)])
        // icc on: everything passes as icc.
        XCTAssertEqual(unlinked.map { open.portVerdict(frame: $0) }, Array(repeating: .pass(.iccAllowed), count: 3))
        // The ext program lets non-first fragments through for the host to reassemble.
        XCTAssertEqual(
            toChild.map { closed.extVerdict(frame: $0, ingressIfindex: 2) },
            [.drop(.forward), .pass(.fragment), .pass(.fragment)])
        // A first fragment (MF set, offset 0) is judged like a whole packet; DF is irrelevant.
        var first = ip
        first.moreFragments = true
        XCTAssertEqual(
            closed.portVerdict(frame: PacketBuilder.ipv4Frame(eth, first, .tcp(sourcePort: 1, destinationPort: 80))),
            .pass(.link))
        // Only the offset bits decide "non-first": flags alone do not.
        var flagsOnly = ip
        flagsOnly.dontFragment = true
        flagsOnly.moreFragments = true
        XCTAssertEqual(
            closed.portVerdict(
                frame: PacketBuilder.ipv4Frame(eth, flagsOnly, .tcp(sourcePort: 1, destinationPort: 81))),
            .drop(.icc))
    }

    // MARK: Malformed frames (verdicts.md "Parsing")

    func testMalformedFrames() {
        let good = tcp(client, web, 40000, 80)
        let eth = EthernetHeader(destination: web.mac, source: client.mac)
        let ip = IPv4Header(source: client.ip, destination: web.ip)
        func frame(
            _ header: IPv4Header, _ transport: Transport = .tcp(sourcePort: 40000, destinationPort: 80),
            payload: [UInt8] = []
        ) -> [UInt8] {
            PacketBuilder.ipv4Frame(eth, header, transport, payload: payload)
        }
        func expect(
            _ bytes: [UInt8], _ malformation: Malformation?, _ verdict: Verdict = .drop(.malformed),
            line: UInt = #line
        ) {
            if let malformation {
                XCTAssertEqual(FrameParser.parse(bytes), .malformed(malformation), line: line)
            }
            XCTAssertEqual(closed.portVerdict(frame: bytes), verdict, line: line)
            if verdict == .drop(.malformed) {
                XCTAssertEqual(closed.extVerdict(frame: bytes, ingressIfindex: 2), verdict, line: line)
            }
        }

        // Ethernet.
        expect([], .ethernetTruncated)
        expect(Array(good.prefix(13)), .ethernetTruncated)
        // IPv4 header shorter than 20 bytes.
        expect(Array(good.prefix(14)), .ipv4Truncated)
        expect(Array(good.prefix(33)), .ipv4Truncated)
        // Version.
        var v6 = ip
        v6.versionOverride = 6
        expect(frame(v6), .ipv4Version)
        // IHL < 5.
        for ihl in 0...4 {
            var bad = ip
            bad.headerLengthOverride = UInt8(ihl)
            expect(frame(bad), .ipv4HeaderLengthTooSmall)
        }
        // IHL claims options that are not there.
        var longIHL = ip
        longIHL.headerLengthOverride = 15
        expect(Array(frame(longIHL).prefix(14 + 40)), .ipv4OptionsTruncated)
        // tot_len below the header length, and beyond the frame.
        var short = ip
        short.totalLengthOverride = 19
        expect(frame(short), .ipv4TotalLengthTooSmall)
        var withOptions = ip
        withOptions.options = [1, 1, 1, 1]
        withOptions.totalLengthOverride = 23
        expect(frame(withOptions), .ipv4TotalLengthTooSmall)
        var long = ip
        long.totalLengthOverride = 41
        expect(frame(long), .ipv4TotalLengthTooLarge)
        expect(Array(good.prefix(good.count - 1)), .ipv4TotalLengthTooLarge)
        // Trailing bytes beyond tot_len are padding: fine.
        XCTAssertEqual(closed.portVerdict(frame: PacketBuilder.padded(good, to: 80)), .pass(.link))
        // Options are skipped: ports are read after IHL×4.
        var options = ip
        options.options = [0x94, 0x04, 0, 0, 1, 1, 1, 0]
        XCTAssertEqual(closed.portVerdict(frame: frame(options)), .pass(.link))

        // L4 minimum lengths: TCP 20, UDP 8, SCTP 12, within tot_len.
        for (transport, minimum) in [
            (Transport.tcp(sourcePort: 40000, destinationPort: 80), 20),
            (.udp(sourcePort: 40000, destinationPort: 53), 8),
            (.sctp(sourcePort: 40000, destinationPort: 80), 12),
        ] {
            let whole = frame(ip, transport)
            var cut = ip
            cut.totalLengthOverride = UInt16(20 + minimum - 1)
            expect(Array(frame(cut, transport).prefix(14 + 20 + minimum - 1)), .l4Truncated)
            // The header is in the frame, but tot_len ends before it.
            expect(frame(cut, transport), .l4Truncated)
            var exact = ip
            exact.totalLengthOverride = UInt16(20 + minimum)
            XCTAssertNotEqual(
                closed.portVerdict(frame: Array(frame(exact, transport).prefix(14 + 20 + minimum))),
                .drop(.malformed), "\(transport)")
            XCTAssertNotEqual(closed.portVerdict(frame: whole), .drop(.malformed))
        }
        // Protocols without ports have no length check.
        var bare = ip
        bare.proto = IPProtocol.icmp
        expect(
            PacketBuilder.ethernet(eth, etherType: EtherType.ipv4, payload: PacketBuilder.ipv4(bare, payload: [])),
            nil, .drop(.icc))
        // Neither have non-first fragments.
        var fragment = ip
        fragment.fragmentOffset = 100
        expect(
            PacketBuilder.ethernet(eth, etherType: EtherType.ipv4, payload: PacketBuilder.ipv4(fragment, payload: [])),
            nil, .pass(.linkFragment))
        // But a first fragment with MF set does.
        var first = ip
        first.moreFragments = true
        expect(
            PacketBuilder.ethernet(
                eth, etherType: EtherType.ipv4, payload: PacketBuilder.ipv4(first, payload: [0, 80, 0])),
            .l4Truncated)
    }

    func testMalformedIsCheckedInOrder() {
        // Version is checked before IHL, IHL before tot_len.
        var ip = IPv4Header(source: client.ip, destination: web.ip)
        ip.versionOverride = 5
        ip.headerLengthOverride = 2
        ip.totalLengthOverride = 1
        let bytes = PacketBuilder.ipv4Frame(
            EthernetHeader(destination: web.mac, source: client.mac), ip, .raw(proto: 1))
        XCTAssertEqual(FrameParser.parse(bytes), .malformed(.ipv4Version))
    }

    // MARK: Ext program

    let host = IPv4Address(10, 0, 0, 1)
    let allowed = Endpoint(mac: Sample.bridgeMAC, ip: IPv4Address(198, 51, 100, 2))
    let allowedNet = Endpoint(mac: Sample.bridgeMAC, ip: IPv4Address(203, 0, 113, 99))
    let stranger = Endpoint(mac: Sample.bridgeMAC, ip: IPv4Address(198, 51, 100, 77))

    func testExtNonIPAndIPv6Pass() {
        let eth = EthernetHeader(destination: Sample.bridgeMAC, source: stranger.mac)
        XCTAssertEqual(
            closed.extVerdict(
                frame: PacketBuilder.arpFrame(
                    eth, senderMAC: stranger.mac, senderIP: stranger.ip,
                    targetIP: host), ingressIfindex: 2), .pass(.nonIP))
        XCTAssertEqual(
            closed.extVerdict(
                frame: PacketBuilder.ipv6Frame(EthernetHeader(destination: web.mac, source: stranger.mac)),
                ingressIfindex: 2), .pass(.ipv6))
    }

    func testRow8PublishedPortsObeyTheAllowList() {
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(stranger, at(host), 50000, 8080), ingressIfindex: 2), .drop(.source))
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(allowed, at(host), 50000, 8080), ingressIfindex: 2), .pass(.published))
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(allowedNet, at(host), 50000, 8080), ingressIfindex: 2), .pass(.published))
        // An interface without allow-list (or unknown to bpfnet) admits everyone.
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(stranger, at(host), 50000, 8080), ingressIfindex: 4), .pass(.published))
        // Wrong protocol: not published.
        XCTAssertEqual(closed.extVerdict(frame: udp(stranger, at(host), 50000, 8080), ingressIfindex: 2), .pass(.local))
        // A binding on one host address matches that address only.
        XCTAssertEqual(
            closed.extVerdict(frame: udp(stranger, at(host), 50000, 5353), ingressIfindex: 2), .drop(.source))
        XCTAssertEqual(
            closed.extVerdict(frame: udp(stranger, at(IPv4Address(10, 0, 0, 2)), 50000, 5353), ingressIfindex: 2),
            .pass(.local))
        // A wildcard binding matches any destination that is not a container, the bridge address included.
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(stranger, Sample.gateway, 50000, 8080), ingressIfindex: 2), .drop(.source))
    }

    func testRow9DirectToContainers() {
        XCTAssertEqual(closed.extVerdict(frame: tcp(allowed, web, 50000, 80), ingressIfindex: 2), .drop(.forward))
        XCTAssertEqual(closed.extVerdict(frame: tcp(stranger, web, 50000, 80), ingressIfindex: 4), .drop(.forward))
        XCTAssertEqual(
            closed.extVerdict(frame: PacketBuilder.icmpEchoFrame(from: allowed, to: web), ingressIfindex: 2),
            .drop(.forward))
        // Subnet addresses that are not (yet) containers too.
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(allowed, at(IPv4Address(172, 17, 3, 3)), 1, 80), ingressIfindex: 2),
            .drop(.forward))

        let accepting = ReferenceDataplane(state: Sample.state(Self.withDB(icc: false, forward: .accept)))
        XCTAssertEqual(
            accepting.extVerdict(frame: tcp(allowed, web, 50000, 80), ingressIfindex: 2), .pass(.forwardAccept))
        XCTAssertEqual(accepting.extVerdict(frame: tcp(stranger, web, 50000, 80), ingressIfindex: 2), .drop(.source))
        XCTAssertEqual(
            accepting.extVerdict(frame: tcp(stranger, web, 50000, 80), ingressIfindex: 4), .pass(.forwardAccept))
        // The bridge's own address is not a container address.
        XCTAssertEqual(
            accepting.extVerdict(frame: tcp(stranger, Sample.gateway, 50000, 22), ingressIfindex: 2), .pass(.local))
    }

    func testRow10RepliesAreNeverDropped() {
        var asked: [FlowTuple] = []
        let verdict = closed.extVerdict(frame: tcp(Sample.outside, web, 443, 40000), ingressIfindex: 2) { tuple in
            asked.append(tuple)
            return true
        }
        XCTAssertEqual(verdict, .pass(.reply))
        XCTAssertEqual(
            asked,
            [
                FlowTuple(
                    source: Sample.outside.ip, destination: web.ip, sourcePort: 443,
                    destinationPort: 40000, proto: 6)
            ])
        XCTAssertEqual(
            closed.extVerdict(frame: udp(stranger, at(host), 53, 5353), ingressIfindex: 2) { _ in true },
            .pass(.reply))
        // Only TCP and UDP are looked up.
        XCTAssertEqual(
            closed.extVerdict(
                frame: PacketBuilder.icmpEchoFrame(from: Sample.outside, to: web),
                ingressIfindex: 2
            ) { _ in true }, .drop(.forward))
        XCTAssertEqual(
            closed.extVerdict(
                frame: PacketBuilder.sctpFrame(
                    from: Sample.outside, to: web, sourcePort: 1,
                    destinationPort: 2), ingressIfindex: 2
            ) { _ in true },
            .drop(.forward))
        // Conntrack is consulted on the drop path only.
        var consulted = false
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(allowed, at(host), 1, 8080), ingressIfindex: 2) { _ in
                consulted = true
                return true
            }, .pass(.published))
        XCTAssertFalse(consulted)
        // Malformed frames never reach it.
        XCTAssertEqual(
            closed.extVerdict(frame: Array(tcp(Sample.outside, web, 1, 2).prefix(40)), ingressIfindex: 2) { _ in true },
            .drop(.malformed))
    }

    /// An ICMP error about a datagram a container sent on a connection it
    /// opened passes (path MTU discovery through routers no list admits);
    /// conntrack is asked for the reply direction of the quoted datagram.
    func testRow10ICMPErrorsAboutThisSidesConnectionsPass() {
        let router = Endpoint(mac: Sample.bridgeMAC, ip: IPv4Address(100, 64, 0, 1))
        func error(
            type: UInt8 = 3, to destination: Endpoint = web, quoting inner: IPv4Header,
            _ transport: Transport = .udp(sourcePort: 40000, destinationPort: 53)
        ) -> [UInt8] {
            PacketBuilder.ipv4Frame(
                EthernetHeader(destination: Sample.bridgeMAC, source: router.mac),
                IPv4Header(source: router.ip, destination: destination.ip), .icmpError(type: type, code: 4, mtu: 1400),
                payload: PacketBuilder.icmpErrorQuote(inner, transport))
        }
        let sent = IPv4Header(source: web.ip, destination: Sample.outside.ip)
        let reply = FlowTuple(
            source: Sample.outside.ip, destination: web.ip, sourcePort: 53, destinationPort: 40000, proto: 17)
        var asked: [FlowTuple] = []
        XCTAssertEqual(
            closed.extVerdict(frame: error(quoting: sent), ingressIfindex: 2) {
                asked.append($0)
                return $0 == reply
            },
            .pass(.related))
        XCTAssertEqual(asked, [reply], "the quoted datagram's reply tuple, asked once")
        for type in [UInt8(11), 12] {
            XCTAssertEqual(
                closed.extVerdict(frame: error(type: type, quoting: sent), ingressIfindex: 2) { $0 == reply },
                .pass(.related), "type \(type)")
        }
        let tcpSent = error(quoting: sent, .tcp(sourcePort: 40000, destinationPort: 443))
        XCTAssertEqual(
            closed.extVerdict(frame: tcpSent, ingressIfindex: 2) {
                $0
                    == FlowTuple(
                        source: Sample.outside.ip, destination: web.ip, sourcePort: 443, destinationPort: 40000,
                        proto: 6)
            }, .pass(.related))

        // Not related: no such connection, the error sent elsewhere than the
        // quoted source, a redirect or an echo, a quoted ICMP or a quoted header with options.
        XCTAssertEqual(
            closed.extVerdict(frame: error(quoting: sent), ingressIfindex: 2) { _ in false }, .drop(.forward))
        XCTAssertEqual(
            closed.extVerdict(frame: error(to: db, quoting: sent), ingressIfindex: 2) { _ in true }, .drop(.forward))
        XCTAssertEqual(
            closed.extVerdict(frame: error(type: 5, quoting: sent), ingressIfindex: 2) { _ in true }, .drop(.forward))
        XCTAssertEqual(
            closed.extVerdict(frame: error(quoting: sent, .icmpEcho()), ingressIfindex: 2) { _ in true },
            .drop(.forward))
        var withOptions = error(quoting: sent)
        withOptions[14 + 20 + 8] = 0x46
        XCTAssertEqual(closed.extVerdict(frame: withOptions, ingressIfindex: 2) { _ in true }, .drop(.forward))
        // Cut short: judged like any other packet, not malformed.
        let short = error(quoting: sent)
        var truncated = Array(short.prefix(short.count - 6))  // the quoted ports cut in half
        truncated[14 + 2] = 0
        truncated[14 + 3] = UInt8(truncated.count - 14)
        XCTAssertEqual(closed.extVerdict(frame: truncated, ingressIfindex: 2) { _ in true }, .drop(.forward))
    }

    func testRow11LocalTraffic() {
        XCTAssertEqual(closed.extVerdict(frame: tcp(stranger, at(host), 50000, 22), ingressIfindex: 2), .pass(.local))
        XCTAssertEqual(
            closed.extVerdict(frame: PacketBuilder.icmpEchoFrame(from: stranger, to: at(host)), ingressIfindex: 2),
            .pass(.local))
        XCTAssertEqual(
            closed.extVerdict(frame: tcp(stranger, Sample.gateway, 50000, 22), ingressIfindex: 2), .pass(.local))
    }

    func testAllowListLongestPrefixSemantics() {
        var policy = Sample.policy
        policy.extInterfaces = [
            ExternalInterface(name: "eth0", allowSources: [IPv4CIDR("10.0.0.0/8")!]),
            ExternalInterface(name: "eth1", allowSources: [IPv4CIDR("0.0.0.0/0")!]),
        ]
        let dataplane = ReferenceDataplane(state: Sample.state(policy))
        XCTAssertTrue(dataplane.isAllowed(source: IPv4Address(10, 255, 1, 1), ingressIfindex: 2))
        XCTAssertFalse(dataplane.isAllowed(source: IPv4Address(11, 0, 0, 1), ingressIfindex: 2))
        XCTAssertTrue(dataplane.isAllowed(source: IPv4Address(11, 0, 0, 1), ingressIfindex: 4))
        // Not an external interface: no allow-list applies.
        XCTAssertTrue(dataplane.isAllowed(source: IPv4Address(11, 0, 0, 1), ingressIfindex: 99))
        // An allow-list on one interface does not admit on another.
        XCTAssertFalse(dataplane.isAllowed(source: IPv4Address(203, 0, 113, 5), ingressIfindex: 2))
    }

    func testEmptyMapsJudgeEverythingOutside() {
        let empty = ReferenceDataplane(state: .empty)
        XCTAssertEqual(empty.portVerdict(frame: tcp(client, web, 1, 2)), .pass(.outside))
        XCTAssertEqual(empty.extVerdict(frame: tcp(stranger, web, 1, 2), ingressIfindex: 2), .pass(.local))
        // The zero config's bridge address is 0.0.0.0.
        XCTAssertEqual(empty.portVerdict(frame: tcp(client, at(.any), 1, 2)), .pass(.host))
    }
}

// MARK: - Fail-closed rows: the sender, spoofing, L2 destinations

final class PortSenderVerdictTests: XCTestCase {
    let web = Endpoint(Sample.web), client = Endpoint(Sample.client), db = Endpoint(Sample.db)
    let closed = ReferenceDataplane(state: Sample.state(ReferenceVerdictTests.withDB(icc: false)))
    let open = ReferenceDataplane(state: Sample.state(ReferenceVerdictTests.withDB(icc: true)))

    func port(of endpoint: Endpoint) -> PortSender { .container(PortRecord(address: endpoint.ip, mac: endpoint.mac)) }

    func tcp(_ from: Endpoint, _ to: Endpoint, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
        PacketBuilder.tcpFrame(from: from, to: to, sourcePort: sport, destinationPort: dport)
    }

    func testTheCompilerNamesTheContainerOfEveryPort() {
        let state = closed.state
        XCTAssertEqual(state.ports.count, state.containers.count)
        for (address, container) in state.containers {
            XCTAssertEqual(state.ports[container.portIfindex], PortRecord(address: address, mac: container.mac))
        }
    }

    func testAnUnknownPortReachesTheHostAndTheOutsideButNoContainer() {
        XCTAssertEqual(
            closed.portVerdict(frame: tcp(client, Sample.gateway, 1, 22), sender: .unknown),
            .pass(.host))
        XCTAssertEqual(
            closed.portVerdict(frame: tcp(client, Sample.outside, 40000, 443), sender: .unknown), .pass(.outside))
        // Not even along the link its forged source claims.
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 40000, 80), sender: .unknown), .drop(.unknownPort))
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 40000, 80), sender: port(of: client)), .pass(.link))
        XCTAssertEqual(
            closed.portVerdict(
                frame: PacketBuilder.ipv6Frame(EthernetHeader(destination: web.mac, source: client.mac)),
                sender: .unknown),
            .drop(.unknownPort))
        // icc on: everyone talks, as with Docker.
        XCTAssertEqual(open.portVerdict(frame: tcp(client, web, 40000, 81), sender: .unknown), .pass(.iccAllowed))
    }

    func testAContainerCannotUseAnotherContainersAddressOrMAC() {
        // db forges client's address to use client's link to web.
        let forged = PacketBuilder.tcpFrame(
            from: Endpoint(mac: db.mac, ip: client.ip), to: web, sourcePort: 40000, destinationPort: 80)
        XCTAssertEqual(closed.portVerdict(frame: forged, sender: port(of: db)), .drop(.spoofed))
        XCTAssertEqual(closed.portVerdict(frame: tcp(client, web, 40000, 80), sender: port(of: db)), .drop(.spoofed))
        // Spoofing is dropped whatever icc says and wherever the frame goes.
        XCTAssertEqual(open.portVerdict(frame: forged, sender: port(of: db)), .drop(.spoofed))
        let outside = PacketBuilder.tcpFrame(
            from: Endpoint(mac: db.mac, ip: IPv4Address(172, 17, 0, 200)), to: Sample.outside, sourcePort: 1,
            destinationPort: 443)
        XCTAssertEqual(open.portVerdict(frame: outside, sender: port(of: db)), .drop(.spoofed))
        // Every frame's source MAC, IPv6 and LLDP included.
        let v6 = PacketBuilder.ipv6Frame(EthernetHeader(destination: Sample.bridgeMAC, source: client.mac))
        XCTAssertEqual(open.portVerdict(frame: v6, sender: port(of: db)), .drop(.spoofed))
        XCTAssertEqual(open.portVerdict(frame: v6, sender: port(of: client)), .pass(.ipv6))
    }

    func testARPMustCarryThePortsOwnAddress() {
        let eth = EthernetHeader(destination: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), source: db.mac)
        // db claims the gateway's address (poisoning every neighbour).
        let poison = PacketBuilder.arpFrame(eth, senderMAC: db.mac, senderIP: Sample.gateway.ip, targetIP: web.ip)
        XCTAssertEqual(open.portVerdict(frame: poison, sender: port(of: db)), .drop(.spoofed))
        // Its own address, and an RFC 5227 probe from 0.0.0.0, pass.
        let own = PacketBuilder.arpFrame(eth, senderMAC: db.mac, senderIP: db.ip, targetIP: web.ip)
        XCTAssertEqual(closed.portVerdict(frame: own, sender: port(of: db)), .pass(.nonIP))
        let probe = PacketBuilder.arpFrame(eth, senderMAC: db.mac, senderIP: .any, targetIP: db.ip)
        XCTAssertEqual(closed.portVerdict(frame: probe, sender: port(of: db)), .pass(.nonIP))
        // The sender MAC inside the ARP packet counts too.
        let otherMAC = PacketBuilder.arpFrame(eth, senderMAC: web.mac, senderIP: db.ip, targetIP: client.ip)
        XCTAssertEqual(closed.portVerdict(frame: otherMAC, sender: port(of: db)), .drop(.spoofed))
    }

    func testAFrameToAContainersMACIsBetweenContainersWhateverItsIPSays() {
        // client poisoned web's neighbour entry for the gateway; web's traffic
        // to the outside now carries client's MAC.
        let hijacked = PacketBuilder.tcpFrame(
            from: web, to: Endpoint(mac: client.mac, ip: Sample.outside.ip), sourcePort: 40000, destinationPort: 443)
        XCTAssertEqual(closed.portVerdict(frame: hijacked, sender: port(of: web)), .drop(.icc))
        XCTAssertEqual(open.portVerdict(frame: hijacked, sender: port(of: web)), .pass(.iccAllowed))
        let toGateway = PacketBuilder.tcpFrame(
            from: web, to: Endpoint(mac: client.mac, ip: Sample.gateway.ip), sourcePort: 40000, destinationPort: 22)
        XCTAssertEqual(closed.portVerdict(frame: toGateway, sender: port(of: web)), .drop(.icc))
        // The positive control: the same packet to the bridge's MAC.
        let honest = PacketBuilder.tcpFrame(
            from: web, to: Endpoint(mac: Sample.bridgeMAC, ip: Sample.outside.ip), sourcePort: 40000,
            destinationPort: 443)
        XCTAssertEqual(closed.portVerdict(frame: honest, sender: port(of: web)), .pass(.outside))
        // Broadcast and multicast frames are judged by their IP destination.
        let broadcast = PacketBuilder.tcpFrame(
            from: web, to: Endpoint(mac: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), ip: client.ip),
            sourcePort: 40000, destinationPort: 81)
        XCTAssertEqual(closed.portVerdict(frame: broadcast, sender: port(of: web)), .drop(.icc))
    }
}

extension ReferenceDataplane {
    /// The verdict for a frame sent by the container it claims to come from
    /// (for tests whose subject is not the sender check).
    func portVerdict(frame: [UInt8]) -> Verdict { portVerdict(frame: frame, sender: .claimed(by: frame)) }
}
