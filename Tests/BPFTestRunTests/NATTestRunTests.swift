// SPDX-License-Identifier: Apache-2.0
//
// eBPF NAT for published ports (nat.h, docs/nat.md) through BPF_PROG_TEST_RUN
// of the real ext and port programs: the translation both ways (addresses,
// ports, MACs, TTL, and checksums verified by recomputing them), the state
// bn_nat keeps (opened by a SYN or a datagram, established by a reply, closing
// on FIN/RST, expired by time), and every case that goes to the stack
// untouched with its reason counted. The lab is FastPathTestRunTests': a
// namespace with br0 (b behind it) and veth1 as the external interface, whose
// router 10.250.0.254 leads to the outside client. Root only.

import BPF
import BPFNetCore
import BPFNetDataplane
import BPFNetShared
import BPFNetTestSupport
import Foundation
import SystemPackage
import XCTest

final class NATTestRunTests: XCTestCase {
    private static let tcOK: UInt32 = 0, tcRedirect: UInt32 = 7
    private static let xdpPass: UInt32 = 2, xdpRedirect: UInt32 = 4

    private let bridgeMAC = MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x01)
    private let routerMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)
    private let a = Endpoint(mac: MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x02), ip: IPv4Address(10, 88, 0, 2))
    private let b = Endpoint(mac: MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x03), ip: IPv4Address(10, 88, 0, 3))
    /// The outside client, behind the router.
    private let client = IPv4Address(203, 0, 113, 7)
    /// veth1's address: the host address the client reaches.
    private let hostAddress = IPv4Address(10, 250, 0, 1)

    private var lab: FastPathLab!
    private var ext: UInt32 = 0
    private var extMAC = MACAddress.zero
    private var nat: BPFMap<bpfnet_nat_key, bpfnet_nat_entry>!

    override func setUpWithError() throws {
        try requireRoot("test-runs the ext and port programs with pinned maps")
        lab = try FastPathLab.make(in: self)
        try lab.crossHostTopology(bridgeMAC: bridgeMAC, b: b, routerMAC: routerMAC)
        try lab.inNamespace(["ip", "route", "replace", "default", "via", "10.250.0.254", "dev", "veth1"])
        ext = try lab.ifindex("veth1")
        extMAC = try lab.mac("veth1")
        nat = try BPFMap(pinnedAt: lab.bpffs.appending("pins/bn_nat"))
        // b's port is lo: a tc test run enters there, so b's replies come from its own port.
        try configure(flags: [.nat, .natDrain])
        try lab.setInterface(ext, flags: BPFNET_FP_IF_FULL_CSUM.rawValue, mac: extMAC)
        try lab.addTarget(1)
    }

    private func configure(
        flags: ConfigFlags,
        published: [PublishedKey: PublishedTarget]? = nil
    ) throws {
        try lab.configure(
            icc: true, fastPath: false, a: a, b: b, bPort: 1, extIfindex: ext,
            bridgeIfindex: try lab.ifindex("br0"), bridgeMAC: bridgeMAC, extraFlags: flags,
            published: published ?? [
                PublishedKey(hostAddress: hostAddress, hostPort: 8080, proto: 6): PublishedTarget(
                    containerAddress: b.ip, containerPort: 80),
                PublishedKey(hostPort: 5353, proto: 17): PublishedTarget(containerAddress: b.ip, containerPort: 53),
            ])
    }

    // MARK: frames

    private func fromClient(
        _ transport: Transport, to destination: IPv4Address? = nil, ttl: UInt8 = 64, mac: MACAddress? = nil,
        options: [UInt8] = [], moreFragments: Bool = false, vlans: [VLANTag] = [], payload: [UInt8] = [1, 2, 3]
    ) -> [UInt8] {
        var ip = IPv4Header(source: client, destination: destination ?? hostAddress, proto: transport.proto, ttl: ttl)
        ip.options = options
        ip.moreFragments = moreFragments
        return PacketBuilder.ipv4Frame(
            EthernetHeader(destination: mac ?? extMAC, source: routerMAC, vlans: vlans), ip, transport,
            payload: payload)
    }

    private func fromB(_ transport: Transport, payload: [UInt8] = [4, 5, 6, 7]) -> [UInt8] {
        PacketBuilder.ipv4Frame(
            EthernetHeader(destination: bridgeMAC, source: b.mac),
            IPv4Header(source: b.ip, destination: client, proto: transport.proto, ttl: 64), transport,
            payload: payload)
    }

    private func tcp(_ sport: UInt16, _ dport: UInt16, _ flags: TCPFlags) -> Transport {
        .tcp(sourcePort: sport, destinationPort: dport, flags: flags, sequence: 1000, acknowledgement: 77)
    }

    private func connections() throws -> NATConnectionTable {
        let now = try XCTUnwrap(
            { () -> UInt64 in
                var time = timespec()
                clock_gettime(CLOCK_MONOTONIC, &time)
                return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
            }())
        return NATConnectionTable(entries: try nat.entries().map { (NATKey($0.key), NATEntry($0.value)) }, now: now)
    }

    // MARK: translation

    /// SYN in, SYN-ACK out, data both ways, FIN: every frame translated with
    /// checksums a receiver accepts, and the connection's state following.
    func testTCPConnectionIsTranslatedBothWays() throws {
        let syn = fromClient(tcp(40000, 8080, .syn))
        let (verdict, inbound) = try lab.runXDPWithOutput(program: .ext, syn, ingress: ext)
        XCTAssertEqual(verdict, Self.xdpRedirect)
        try expectTranslated(
            syn, inbound, macs: (b.mac, bridgeMAC), addressOffset: 30, address: b.ip, portOffset: 36, port: 80,
            "SYN in")
        XCTAssertEqual(try lab.reasonCount(.extXDP, .published), 1, "row 8 judged it first")
        XCTAssertEqual(try lab.fastPathCount(.extXDP, .hit), 1)
        var table = try connections()
        XCTAssertEqual(table.connections.count, 1)
        XCTAssertEqual(table.connections.first?.state, "syn-sent")
        XCTAssertEqual(table.connections.first?.outside, "203.0.113.7:40000")
        XCTAssertEqual(table.connections.first?.published, "10.250.0.1:8080")
        XCTAssertEqual(table.connections.first?.container, "10.88.0.3:80")
        XCTAssertEqual(table.expired, [])

        let synAck = fromB(tcp(80, 40000, [.syn, .ack]))
        let (replyVerdict, outbound) = try lab.runTCWithOutput(synAck)
        XCTAssertEqual(replyVerdict, Self.tcRedirect)
        try expectTranslated(
            synAck, outbound, macs: (routerMAC, extMAC), addressOffset: 26, address: hostAddress, portOffset: 34,
            port: 8080, "SYN-ACK out")
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 1)
        XCTAssertEqual(try lab.reasonCount(.portTC, .outside), 1, "row 7 judged it first")
        table = try connections()
        XCTAssertEqual(table.connections.first?.state, "established")
        try expectNear(table.connections.first?.expiresInSeconds, 432_000)

        // Data (ACK, not SYN) both ways, then FIN from the outside.
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, [.ack, .psh]), payload: [9, 9]), ingress: ext),
            Self.xdpRedirect)
        XCTAssertEqual(try lab.runTC(fromB(tcp(80, 40000, [.ack, .psh]))), Self.tcRedirect)
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, [.fin, .ack])), ingress: ext), Self.xdpRedirect)
        table = try connections()
        XCTAssertEqual(table.connections.first?.state, "fin-wait")
        XCTAssertEqual(table.connections.first?.packetsIn, 3)
        XCTAssertEqual(table.connections.first?.packetsOut, 2)
        try expectNear(table.connections.first?.expiresInSeconds, 120)
        XCTAssertEqual(try lab.runTC(fromB(tcp(80, 40000, [.fin, .ack]))), Self.tcRedirect)
        XCTAssertEqual(try connections().connections.first?.state, "time-wait")

        // A new SYN on the closing tuple opens a fresh connection at once.
        XCTAssertEqual(try lab.runXDP(program: .ext, syn, ingress: ext), Self.xdpRedirect)
        XCTAssertEqual(try connections().connections.first?.state, "syn-sent")
        XCTAssertEqual(try connections().connections.first?.packetsIn, 1)
        // RST: close.
        XCTAssertEqual(try lab.runTC(fromB(tcp(80, 40000, [.rst, .ack]))), Self.tcRedirect)
        XCTAssertEqual(try connections().connections.first?.state, "close")
        try expectNear(try connections().connections.first?.expiresInSeconds, 10)
    }

    /// UDP to a wildcard binding on a local address: any datagram opens; a
    /// zero checksum (none) stays zero, a real one is updated.
    func testUDPIsTranslatedAndAZeroChecksumStaysZero() throws {
        let query = fromClient(
            .udp(sourcePort: 5000, destinationPort: 5353), payload: Array(repeating: 0xab, count: 33))
        let (verdict, inbound) = try lab.runXDPWithOutput(program: .ext, query, ingress: ext)
        XCTAssertEqual(verdict, Self.xdpRedirect)
        try expectTranslated(
            query, inbound, macs: (b.mac, bridgeMAC), addressOffset: 30, address: b.ip, portOffset: 36, port: 53,
            "UDP in")
        let answer = fromB(.udp(sourcePort: 53, destinationPort: 5000), payload: Array(repeating: 0xcd, count: 41))
        let (replyVerdict, outbound) = try lab.runTCWithOutput(answer)
        XCTAssertEqual(replyVerdict, Self.tcRedirect)
        try expectTranslated(
            answer, outbound, macs: (routerMAC, extMAC), addressOffset: 26, address: hostAddress, portOffset: 34,
            port: 5353, "UDP out")
        XCTAssertEqual(try connections().connections.first?.state, "replied")

        var unchecked = fromClient(.udp(sourcePort: 5001, destinationPort: 5353))
        unchecked[40] = 0
        unchecked[41] = 0
        let (uncheckedVerdict, out) = try lab.runXDPWithOutput(program: .ext, unchecked, ingress: ext)
        XCTAssertEqual(uncheckedVerdict, Self.xdpRedirect)
        XCTAssertEqual(Array(out[40...41]), [0, 0], "no checksum stays no checksum")
        XCTAssertEqual(Array(out[30..<34]), b.ip.octets4)
    }

    /// A UDP answer larger than b's MTU leaves b in fragments b's own stack
    /// made: the first (with the UDP header) is translated by its
    /// connection, the others follow it by IP id (bn_nat_frags). Reassembled,
    /// the datagram comes from the published port with a checksum that holds
    /// over all of it. A later fragment whose first was not translated, that
    /// is not the next one, or that comes from another port, is left to the
    /// stack; a TCP fragment too.
    func testAFragmentedUDPAnswerIsTranslatedFragmentByFragment() throws {
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(.udp(sourcePort: 5000, destinationPort: 5353)), ingress: ext),
            Self.xdpRedirect)
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        func answer(id: UInt16, vlans: [VLANTag] = []) -> [[UInt8]] {
            PacketBuilder.fragments(
                EthernetHeader(destination: bridgeMAC, source: b.mac, vlans: vlans),
                IPv4Header(source: b.ip, destination: client, proto: 17, identification: id),
                .udp(sourcePort: 53, destinationPort: 5000), payload: payload, fragmentSize: 1480)
        }
        let pieces = answer(id: 0x4242)
        XCTAssertEqual(pieces.count, 3)
        var datagram: [UInt8] = []
        for (index, piece) in pieces.enumerated() {
            let (verdict, out) = try lab.runTCWithOutput(piece)
            XCTAssertEqual(verdict, Self.tcRedirect, "fragment \(index)")
            guard out.count == piece.count else { return XCTFail("fragment \(index): length \(out.count)") }
            XCTAssertEqual(Array(out[0..<6]), routerMAC.array, "fragment \(index): destination MAC")
            XCTAssertEqual(Array(out[6..<12]), extMAC.array, "fragment \(index): source MAC")
            XCTAssertEqual(out[22], piece[22] - 1, "fragment \(index): TTL")
            XCTAssertEqual(Array(out[26..<30]), hostAddress.octets4, "fragment \(index): source address")
            XCTAssertEqual(
                PacketBuilder.internetChecksum(Array(out[14..<34])), 0, "fragment \(index): IPv4 checksum")
            XCTAssertEqual(Array(out[18..<22]), Array(piece[18..<22]), "fragment \(index): id and offset kept")
            datagram += out[34...]
        }
        XCTAssertEqual(UInt16(datagram[0]) << 8 | UInt16(datagram[1]), 5353, "from the published port")
        XCTAssertEqual(Array(datagram[8...]), payload)
        XCTAssertEqual(
            PacketBuilder.transportChecksum(datagram, proto: 17, source: hostAddress, destination: client), 0,
            "the UDP checksum holds over the reassembled datagram")
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 3)
        XCTAssertEqual(
            try lab.runTCWithOutput(pieces[1]).1, pieces[1], "the last fragment removed its datagram's entry")

        // Each fragment must start where the one before it ended: no other
        // piece leaves with the host's address.
        let skipping = answer(id: 0x4444)
        XCTAssertEqual(try lab.runTC(skipping[0]), Self.tcRedirect)
        XCTAssertEqual(try lab.runTCWithOutput(skipping[2]).1, skipping[2], "not the next fragment")
        XCTAssertEqual(try lab.runTC(skipping[1]), Self.tcRedirect, "the next one")
        XCTAssertEqual(try lab.runTCWithOutput(skipping[1]).1, skipping[1], "the same fragment again")
        XCTAssertEqual(try lab.runTC(skipping[2]), Self.tcRedirect, "the last one")
        let tagged = answer(id: 0x4646, vlans: [VLANTag(vid: 5)])
        let untagged = answer(id: 0x4646)
        XCTAssertEqual(try lab.runTC(untagged[0]), Self.tcRedirect)
        XCTAssertEqual(try lab.runTCWithOutput(tagged[1]).1, tagged[1], "the next fragment, VLAN-tagged")
        XCTAssertEqual(try lab.runTC(untagged[1]), Self.tcRedirect, "the tagged one did not move the entry on")

        let stray = answer(id: 0x4343)
        XCTAssertEqual(try lab.runTCWithOutput(stray[1]).1, stray[1], "its first fragment was never translated")
        XCTAssertEqual(try lab.runTC(stray[0]), Self.tcRedirect)
        let frags = try BPFMap<bpfnet_nat_frag_key, bpfnet_nat_frag>(pinnedAt: lab.bpffs.appending("pins/bn_nat_frags"))
        var key = bpfnet_nat_frag_key()
        key.saddr = b.ip.networkOrder
        key.daddr = client.networkOrder
        key.id = UInt16(0x4343).bigEndian
        key.proto = 17
        var entry = try XCTUnwrap(try frags.lookup(key), "the first fragment left its translation")
        entry.port_ifindex = 4242
        try frags.update(key, entry)
        XCTAssertEqual(try lab.runTCWithOutput(stray[1]).1, stray[1], "another port's fragment is left alone")

        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        let tcpFragment = PacketBuilder.ipv4Frame(
            EthernetHeader(destination: bridgeMAC, source: b.mac),
            IPv4Header(source: b.ip, destination: client, proto: 6, moreFragments: true), tcp(80, 40000, .ack),
            payload: [1, 2, 3])
        let (tcpVerdict, tcpOut) = try lab.runTCWithOutput(tcpFragment)
        XCTAssertEqual(tcpVerdict, Self.tcOK)
        XCTAssertEqual(tcpOut, tcpFragment, "a TCP connection's fragment is the stack's")
    }

    // MARK: what goes to the stack

    func testWhatTheProgramsDoNotTakeGoesUpTheStackUntouched() throws {
        let syn = tcp(40000, 8080, .syn)
        try expectStack(fromClient(tcp(40000, 8080, .ack)), .natState, "mid-stream TCP without a connection")
        try expectStack(fromClient(syn, ttl: 1), .ttl, "TTL 1: the stack answers time exceeded")
        try expectStack(fromClient(syn, options: [1, 1, 1, 0]), .ipOptions, "IPv4 options")
        try expectStack(
            fromClient(.udp(sourcePort: 5000, destinationPort: 5353), moreFragments: true), .fragment,
            "a first fragment")
        try expectStack(fromClient(syn, vlans: [VLANTag(vid: 5)]), .vlan, "VLAN-tagged")
        try expectStack(fromClient(syn, mac: MACAddress(0x02, 0, 0, 0, 0, 0x42)), .mac, "not addressed to veth1")
        try expectStack(
            fromClient(.udp(sourcePort: 5000, destinationPort: 5353), to: IPv4Address(10, 250, 0, 99)), .natState,
            "a wildcard binding reached at an address that is not the host's (Docker DNATs only local addresses)")
        XCTAssertEqual(try connections().connections.count, 0)

        // Nothing arranged on the ingress: its frames may carry partial checksums.
        try lab.setInterface(ext, flags: 0, mac: extMAC)
        try expectStack(fromClient(syn), .partialChecksum, "partial checksums possible")
        try lab.setInterface(ext, flags: BPFNET_FP_IF_FULL_CSUM.rawValue, mac: extMAC)
        // --nat netfilter with nothing to drain: netfilter's DNAT.
        try configure(flags: [])
        try expectStack(fromClient(syn), .verdict, "--nat netfilter")
        // No route to b (forwarding off on the ingress device).
        try configure(flags: [.nat, .natDrain])
        try lab.inNamespace(["sysctl", "-qw", "net.ipv4.conf.veth1.forwarding=0"])
        try expectStack(fromClient(syn), .forwardingDisabled, "forwarding off where it came in")
        try lab.inNamespace(["sysctl", "-qw", "net.ipv4.conf.veth1.forwarding=1"])
        XCTAssertEqual(try connections().connections.count, 0, "nothing opened a connection")
        XCTAssertEqual(try lab.fastPathCount(.extXDP, .hit), 0)
    }

    /// The same outside address and port to two published ports of one
    /// container would share the reply tuple: the second goes to netfilter
    /// (whose conntrack resolves such clashes) while the first is live.
    func testAReplyTupleHeldByALiveConnectionIsNotTakenTwice() throws {
        try configure(
            flags: [.nat, .natDrain],
            published: [
                PublishedKey(hostAddress: hostAddress, hostPort: 8080, proto: 6): PublishedTarget(
                    containerAddress: b.ip, containerPort: 80),
                PublishedKey(hostAddress: hostAddress, hostPort: 8081, proto: 6): PublishedTarget(
                    containerAddress: b.ip, containerPort: 80),
            ])
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        try expectStack(fromClient(tcp(40000, 8081, .syn)), .natState, "second port, same reply tuple")
        XCTAssertEqual(try connections().connections.map(\.published), ["10.250.0.1:8080"])
    }

    /// --nat switched to netfilter: live connections keep being translated
    /// both ways (NAT_DRAIN), new ones go to netfilter.
    func testDrainingKeepsLiveConnectionsAndOpensNoNewOnes() throws {
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        try configure(flags: [.natDrain])
        XCTAssertEqual(try lab.runTC(fromB(tcp(80, 40000, [.syn, .ack]))), Self.tcRedirect)
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .ack)), ingress: ext), Self.xdpRedirect)
        try expectStack(fromClient(tcp(40001, 8080, .syn)), .natState, "a new connection while draining")
        // Neither flag: nothing is translated, replies go to the stack as they are.
        try configure(flags: [])
        let reply = fromB(tcp(80, 40000, .ack))
        let (verdict, out) = try lab.runTCWithOutput(reply)
        XCTAssertEqual(verdict, Self.tcOK)
        XCTAssertEqual(out, reply)
    }

    /// "Fragmentation needed" from a router on the way out, about the
    /// container's translated reply: delivered to the container with the
    /// quote translated back (path MTU discovery), checksums recomputed to check.
    func testICMPErrorAboutAConnectionReachesTheContainer() throws {
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        func error(about source: IPv4Address, port: UInt16) -> [UInt8] {
            let quote = PacketBuilder.icmpErrorQuote(
                IPv4Header(source: source, destination: client, ttl: 63), tcp(port, 40000, [.syn, .ack]))
            return PacketBuilder.ipv4Frame(
                EthernetHeader(destination: extMAC, source: routerMAC),
                IPv4Header(source: IPv4Address(10, 250, 0, 254), destination: hostAddress, proto: 1, ttl: 64),
                .icmpError(type: 3, code: 4, mtu: 1400), payload: quote)
        }
        let frame = error(about: hostAddress, port: 8080)
        let (verdict, out) = try lab.runXDPWithOutput(program: .ext, frame, ingress: ext)
        XCTAssertEqual(verdict, Self.xdpRedirect)
        XCTAssertEqual(out.count, frame.count)
        guard out.count == frame.count, out.count >= 70 else { return }
        XCTAssertEqual(Array(out[0..<6]), b.mac.array)
        XCTAssertEqual(Array(out[30..<34]), b.ip.octets4, "outer destination: the container")
        XCTAssertEqual(out[22], frame[22] - 1, "TTL")
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(out[14..<34])), 0, "IPv4 checksum")
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(out[34...])), 0, "ICMP checksum")
        XCTAssertEqual(Array(out[54..<58]), b.ip.octets4, "quoted source: the container")
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(out[42..<62])), 0, "quoted IPv4 checksum")
        XCTAssertEqual(Array(out[62..<64]), [0, 80], "quoted source port: the container's")
        XCTAssertEqual(Array(out[64..<66]), Array(frame[64..<66]), "quoted destination port unchanged")
        XCTAssertEqual(try lab.reasonCount(.extXDP, .local), 1, "row 11 judged it first")

        // About anything else (the host's own connection): the stack's, untouched.
        try expectStack(error(about: hostAddress, port: 22), .verdict, "not an eBPF connection")
        try expectStack(error(about: IPv4Address(10, 250, 0, 7), port: 8080), .verdict, "quoting another source")
    }

    /// The LRU evicts entries one by one: a connection that lost either
    /// half gets it back from the other on its next packet, unless another
    /// connection took the tuple meanwhile (then netfilter takes it, both ways).
    func testAConnectionThatLostAnEntryGetsItBack() throws {
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        let original = NATKey(
            source: client, destination: hostAddress, sourcePort: 40000, destinationPort: 8080, proto: 6)
        let reply = NATKey(source: b.ip, destination: client, sourcePort: 80, destinationPort: 40000, proto: 6)
        XCTAssertTrue(try nat.delete(reply.cValue))
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .ack)), ingress: ext), Self.xdpRedirect)
        XCTAssertEqual(try connections().connections.count, 1, "the reply entry is back")
        XCTAssertTrue(try nat.delete(original.cValue))
        XCTAssertEqual(try lab.runTC(fromB(tcp(80, 40000, .ack))), Self.tcRedirect)
        XCTAssertEqual(try connections().connections.first?.state, "established", "the original is back, answered")

        // The reply tuple taken by another connection's entry: the stack.
        XCTAssertTrue(try nat.delete(reply.cValue))
        var foreign = try XCTUnwrap(try nat.lookup(original.cValue))
        foreign.direction = UInt8(BPFNET_NAT_REPLY.rawValue)
        foreign.other =
            NATKey(source: client, destination: hostAddress, sourcePort: 40000, destinationPort: 9, proto: 6)
            .cValue
        try nat.update(reply.cValue, foreign)
        try expectStack(fromClient(tcp(40000, 8080, .ack)), .natState, "its reply tuple is someone else's")

        // A lone reply entry past its timeout (UDP, answered: 120 s) revives nothing.
        let query = fromClient(.udp(sourcePort: 5000, destinationPort: 5353))
        XCTAssertEqual(try lab.runXDP(program: .ext, query, ingress: ext), Self.xdpRedirect)
        let udpOriginal = NATKey(
            source: client, destination: hostAddress, sourcePort: 5000, destinationPort: 5353, proto: 17)
        let udpReply = NATKey(source: b.ip, destination: client, sourcePort: 53, destinationPort: 5000, proto: 17)
        XCTAssertTrue(try nat.delete(udpOriginal.cValue))
        var stale = try XCTUnwrap(try nat.lookup(udpReply.cValue))
        stale.created_ns -= 121 * 1_000_000_000
        stale.seen_ns = stale.created_ns
        try nat.update(udpReply.cValue, stale)
        let late = fromB(.udp(sourcePort: 53, destinationPort: 5000))
        XCTAssertEqual(try lab.runTCWithOutput(late).1, late, "not translated")
        XCTAssertNil(try nat.lookup(udpOriginal.cValue))
    }

    /// An expired connection is ignored by the programs and reported for
    /// deletion; a reply from another port than the connection's is not translated.
    func testExpiredAndForeignRepliesAreNotTranslated() throws {
        XCTAssertEqual(
            try lab.runXDP(program: .ext, fromClient(tcp(40000, 8080, .syn)), ingress: ext), Self.xdpRedirect)
        let key = NATKey(
            source: client, destination: hostAddress, sourcePort: 40000, destinationPort: 8080, proto: 6
        ).cValue
        var entry = try XCTUnwrap(try nat.lookup(key))
        let port = entry.port_ifindex
        entry.port_ifindex = 4242
        try nat.update(key, entry)
        let reply = fromB(tcp(80, 40000, [.syn, .ack]))
        XCTAssertEqual(try lab.runTCWithOutput(reply).1, reply, "another port's reply is left alone")

        entry.port_ifindex = port
        entry.seen_ns -= 121 * 1_000_000_000  // syn-sent lasts 120 s
        try nat.update(key, entry)
        XCTAssertEqual(try lab.runTCWithOutput(reply).1, reply, "an expired connection translates nothing")
        try expectStack(fromClient(tcp(40000, 8080, .ack)), .natState, "expired: mid-stream goes to netfilter")
        let table = try connections()
        XCTAssertEqual(table.connections.count, 0)
        XCTAssertEqual(table.expired.count, 2, "both entries are due for deletion")
    }

    // MARK: helpers

    private func expectNear(_ value: UInt64?, _ expected: UInt64, line: UInt = #line) throws {
        let value = try XCTUnwrap(value, line: line)
        XCTAssertLessThanOrEqual(max(value, expected) - min(value, expected), 2, "\(value) ≠ \(expected)", line: line)
    }

    private func expectStack(
        _ frame: [UInt8], _ event: FastPathEvent, _ what: String, line: UInt = #line
    ) throws {
        let before = try lab.fastPathCount(.extXDP, event)
        let (verdict, out) = try lab.runXDPWithOutput(program: .ext, frame, ingress: ext)
        XCTAssertEqual(verdict, Self.xdpPass, what, line: line)
        XCTAssertEqual(out, frame, "\(what): the frame must be unchanged", line: line)
        XCTAssertEqual(try lab.fastPathCount(.extXDP, event), before + 1, "\(what): expected \(event)", line: line)
    }

    /// `out` is `frame` with new MACs, one address and one port replaced, TTL
    /// one less, and valid IPv4 and TCP/UDP checksums; nothing else changed.
    private func expectTranslated(
        _ frame: [UInt8], _ out: [UInt8], macs: (destination: MACAddress, source: MACAddress), addressOffset: Int,
        address: IPv4Address, portOffset: Int, port: UInt16, _ label: String, line: UInt = #line
    ) throws {
        XCTAssertEqual(out.count, frame.count, label, line: line)
        guard out.count == frame.count, out.count >= 42 else { return }
        XCTAssertEqual(Array(out[0..<6]), macs.destination.array, "\(label): destination MAC", line: line)
        XCTAssertEqual(Array(out[6..<12]), macs.source.array, "\(label): source MAC", line: line)
        XCTAssertEqual(out[22], frame[22] - 1, "\(label): TTL", line: line)
        XCTAssertEqual(Array(out[addressOffset..<addressOffset + 4]), address.octets4, "\(label): address", line: line)
        XCTAssertEqual(
            UInt16(out[portOffset]) << 8 | UInt16(out[portOffset + 1]), port, "\(label): port", line: line)
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(out[14..<34])), 0, "\(label): IPv4 checksum", line: line)
        let source = IPv4Address(UInt32(out[26]) << 24 | UInt32(out[27]) << 16 | UInt32(out[28]) << 8 | UInt32(out[29]))
        let destination = IPv4Address(
            UInt32(out[30]) << 24 | UInt32(out[31]) << 16 | UInt32(out[32]) << 8 | UInt32(out[33]))
        let ipLength = Int(UInt16(out[16]) << 8 | UInt16(out[17]))
        let segment = Array(out[34..<(14 + ipLength)])
        XCTAssertEqual(
            PacketBuilder.transportChecksum(segment, proto: out[23], source: source, destination: destination), 0,
            "\(label): \(out[23] == 6 ? "TCP" : "UDP") checksum", line: line)
        var rest = out
        var original = frame
        let changed =
            Array(0..<12) + [22, 24, 25] + Array(addressOffset..<addressOffset + 4)
            + [portOffset, portOffset + 1] + (out[23] == 6 ? [50, 51] : [40, 41])
        for index in changed {
            rest[index] = 0
            original[index] = 0
        }
        XCTAssertEqual(rest, original, "\(label): nothing else changes", line: line)
    }
}

extension IPv4Address {
    /// The four bytes in network order, as a frame carries them.
    fileprivate var octets4: [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}
