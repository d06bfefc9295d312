// SPDX-License-Identifier: Apache-2.0
//
// Rows 1-7 of the policy table (docs/policy.md) through the real port
// program at both hooks (tc with and without a context, XDP), with icc on and
// off and both forward policies (which the port program must ignore), each
// configuration written through the reconciler between cases.

import BPF
import BPFNetCore
import BPFNetShared
import BPFNetTestSupport
import XCTest

final class PortPolicyTests: TestRunTestCase {
    /// Every combination the port program may see; only icc matters to it.
    let configurations: [(icc: Bool, forward: ForwardPolicy)] = [
        (true, .drop), (false, .drop), (true, .accept), (false, .accept),
    ]

    // MARK: Row 1

    func testRow1NonIPPassesUntouched() throws {
        for (icc, forward) in configurations {
            try apply(icc: icc, forward: forward)
            let label = "icc=\(icc) forward=\(forward)"
            expectPort(arp(from: app, target: Fixture.db.ip), .pass(.nonIP), "ARP request, \(label)")
            expectPort(
                PacketBuilder.arpFrame(
                    EthernetHeader(destination: db.mac, source: app.mac), operation: 2,
                    senderMAC: app.mac, senderIP: app.ip, targetMAC: db.mac, targetIP: db.ip),
                .pass(.nonIP), "ARP reply, \(label)")
            expectPort(
                PacketBuilder.ethernet(
                    EthernetHeader(destination: MACAddress(0x01, 0x80, 0xc2, 0, 0, 0x0e), source: app.mac),
                    etherType: EtherType.lldp, payload: Array(repeating: 0, count: 46)),
                .pass(.nonIP), "LLDP, \(label)")
            expectPort(
                PacketBuilder.ethernet(
                    EthernetHeader(destination: db.mac, source: app.mac), etherType: 0x9000,
                    payload: Array(repeating: 0, count: 46)),
                .pass(.nonIP), "ethertype 0x9000 (loopback test), \(label)")
            expectPort(
                arp(from: app, target: Fixture.db.ip, vlans: [q8021Q]), .pass(.nonIP), "802.1Q-tagged ARP, \(label)")
        }
    }

    // MARK: Row 2

    func testRow2ToTheBridgeAndOtherHostAddressesPasses() throws {
        for (icc, forward) in configurations {
            try apply(icc: icc, forward: forward)
            let label = "icc=\(icc) forward=\(forward)"
            expectPort(tcp(app, bridgeEndpoint, 40000, 22), .pass(.host), "TCP to the bridge address, \(label)")
            expectPort(udp(app, bridgeEndpoint, 40000, 53), .pass(.host), "DNS to the bridge address, \(label)")
            expectPort(icmp(app, bridgeEndpoint), .pass(.host), "ping the bridge address, \(label)")
            expectPort(raw(app, bridgeEndpoint), .pass(.host), "GRE to the bridge address, \(label)")
            // Another host address is not inside the bridge: the host's INPUT rules decide.
            expectPort(
                tcp(app, endpoint(Fixture.hostAddress, mac: Fixture.bridgeMAC), 40000, 22), .pass(.outside),
                "TCP to the host's other address, \(label)")
        }
    }

    // MARK: Row 3

    func testRow3ICCOnPassesEverythingBetweenContainers() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: true, forward: forward)
            let label = "forward=\(forward)"
            expectPort(tcp(app, other, 40000, 80), .pass(.iccAllowed), "unlinked TCP, \(label)")
            expectPort(tcp(app, other, 40000, 8081), .pass(.iccAllowed), "unexposed port, \(label)")
            expectPort(udp(other, db, 40000, 9), .pass(.iccAllowed), "UDP, \(label)")
            expectPort(sctp(web, db, 40000, 1), .pass(.iccAllowed), "SCTP, \(label)")
            expectPort(icmp(app, db), .pass(.iccAllowed), "ping, \(label)")
            expectPort(raw(app, db), .pass(.iccAllowed), "GRE, \(label)")
            expectPort(tcp(app, db, 40000, 5432), .pass(.iccAllowed), "linked port: icc decides first, \(label)")
            expectPort(tcp(app, stray, 40000, 80), .pass(.iccAllowed), "container outside the subnet, \(label)")
            expectPort(
                udp(app, endpoint(IPv4Address(224, 0, 0, 251), mac: MACAddress(0x01, 0, 0x5e, 0, 0, 0xfb)), 5353, 5353),
                .pass(.iccAllowed), "mDNS multicast, \(label)")
            expectPort(
                udp(
                    app, endpoint(IPv4Address(255, 255, 255, 255), mac: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
                    68, 67),
                .pass(.iccAllowed), "limited broadcast, \(label)")
            expectPort(
                udp(app, endpoint(IPv4Address(10, 88, 0, 255)), 137, 137), .pass(.iccAllowed),
                "subnet broadcast, \(label)")
            expectPort(
                tcp(app, endpoint(IPv4Address(10, 88, 0, 77)), 40000, 80), .pass(.iccAllowed),
                "unused subnet address, \(label)")
        }
    }

    // MARK: Row 4

    func testRow4LinkParentToChildOnExposedPorts() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "icc=false forward=\(forward)"
            expectPort(tcp(app, db, 40000, 5432), .pass(.link), "TCP 5432 app→db, \(label)")
            expectPort(tcp(app, db, 5432, 5432, flags: .ack), .pass(.link), "TCP 5432 app→db from 5432, \(label)")
            expectPort(udp(app, db, 40000, 53), .pass(.link), "UDP link 53 app→db, \(label)")
            expectPort(sctp(app, db, 40000, 9899), .pass(.link), "SCTP link 9899 app→db, \(label)")
            expectPort(tcp(app, web, 40000, 80), .pass(.link), "TCP 80 app→web, \(label)")
            expectPort(tcp(app, web, 40000, 443), .pass(.link), "443 app→web: exposed through -p, \(label)")
        }
    }

    // MARK: Row 5

    func testRow5ReverseRuleIsStatelessOnTheChildsExposedSourcePort() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "icc=false forward=\(forward)"
            for dport: UInt16 in [40000, 1, 5432, 65535] {
                expectPort(
                    tcp(db, app, 5432, dport, flags: [.syn, .ack]), .pass(.linkReverse),
                    "TCP db:5432→app:\(dport), \(label)")
            }
            expectPort(
                tcp(db, app, 5432, 22), .pass(.linkReverse), "a SYN from the exposed port opens anything, \(label)")
            expectPort(udp(db, app, 53, 40000), .pass(.linkReverse), "UDP db:53→app, \(label)")
            expectPort(sctp(db, app, 9899, 7), .pass(.linkReverse), "SCTP db:9899→app, \(label)")
            expectPort(tcp(web, app, 80, 40000), .pass(.linkReverse), "TCP web:80→app, \(label)")
            expectPort(tcp(web, app, 443, 40000), .pass(.linkReverse), "TCP web:443→app, \(label)")

            // The wrong protocol for the exposed port.
            expectPort(udp(db, app, 5432, 40000), .drop(.icc), "UDP from 5432 (exposed as TCP), \(label)")
            expectPort(tcp(db, app, 53, 40000), .drop(.icc), "TCP from 53 (exposed as UDP), \(label)")
            expectPort(sctp(db, app, 5432, 40000), .drop(.icc), "SCTP from 5432 (exposed as TCP), \(label)")
            expectPort(tcp(db, app, 9899, 40000), .drop(.icc), "TCP from 9899 (exposed as SCTP), \(label)")
            // Only the source port counts for the child.
            expectPort(tcp(db, app, 40000, 5432), .drop(.icc), "db→app to 5432 from an unexposed port, \(label)")
            // Only towards its parent.
            expectPort(tcp(db, other, 5432, 40000), .drop(.icc), "db:5432→other (not its parent), \(label)")
            expectPort(tcp(db, web, 5432, 40000), .drop(.icc), "db:5432→web (a sibling), \(label)")
            // The parent gets nothing from its own source port.
            expectPort(tcp(app, db, 5432, 40000), .drop(.icc), "app:5432→db:40000, \(label)")
        }
    }

    // MARK: Row 6

    func testRow6ICCOffDropsEverythingElseBetweenContainers() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "icc=false forward=\(forward)"
            expectPort(tcp(app, other, 40000, 80), .drop(.icc), "exposed but unlinked, \(label)")
            expectPort(tcp(other, db, 40000, 5432), .drop(.icc), "to a linked child from a non-parent, \(label)")
            expectPort(tcp(app, db, 40000, 5433), .drop(.icc), "unexposed port of a linked child, \(label)")
            expectPort(udp(app, db, 40000, 5432), .drop(.icc), "exposed TCP port over UDP, \(label)")
            expectPort(tcp(app, db, 40000, 53), .drop(.icc), "exposed UDP port over TCP, \(label)")
            expectPort(icmp(app, db), .drop(.icc), "ping a linked child, \(label)")
            expectPort(icmp(db, app), .drop(.icc), "ping the parent, \(label)")
            expectPort(raw(app, db), .drop(.icc), "GRE to a linked child, \(label)")
            expectPort(tcp(db, web, 40000, 80), .drop(.icc), "between two children, \(label)")
            expectPort(tcp(app, stray, 40000, 80), .drop(.icc), "to a container outside the subnet, \(label)")
            expectPort(tcp(stray, app, 40000, 80), .drop(.icc), "from a container outside the subnet, \(label)")
            // Multicast and broadcast stay inside the bridge: icc governs them.
            expectPort(
                udp(app, endpoint(IPv4Address(224, 0, 0, 251), mac: MACAddress(0x01, 0, 0x5e, 0, 0, 0xfb)), 5353, 5353),
                .drop(.icc), "mDNS 224.0.0.251, \(label)")
            expectPort(
                udp(
                    app, endpoint(IPv4Address(239, 255, 255, 250), mac: MACAddress(0x01, 0, 0x5e, 0x7f, 0xff, 0xfa)),
                    1900, 1900),
                .drop(.icc), "SSDP 239.255.255.250, \(label)")
            expectPort(icmp(app, endpoint(IPv4Address(224, 0, 0, 1))), .drop(.icc), "ping all-hosts, \(label)")
            expectPort(
                udp(
                    app, endpoint(IPv4Address(255, 255, 255, 255), mac: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
                    68, 67),
                .drop(.icc), "limited broadcast, \(label)")
            expectPort(
                udp(app, endpoint(IPv4Address(10, 88, 0, 255)), 137, 137), .drop(.icc), "subnet broadcast, \(label)")
            expectPort(
                udp(app, endpoint(IPv4Address(10, 88, 0, 0)), 137, 137), .drop(.icc), "subnet network address, \(label)"
            )
            expectPort(
                tcp(app, endpoint(IPv4Address(10, 88, 0, 77)), 40000, 80), .drop(.icc),
                "unused subnet address, \(label)")
        }
    }

    // MARK: The sender's port, low and high ifindexes

    /// Ports below `BPFNET_PORT_SLOTS` live in the ARRAY `bn_ports`, the rest
    /// in the HASH `bn_ports_high`: the program must find both, and the
    /// control plane write, read back and delete both alike.
    func testPortsAreFoundBelowAndAboveTheArraysSlots() throws {
        try apply(icc: false, forward: .drop)
        let highIndex = UInt32(BPFNET_PORT_SLOTS) + 4242
        try rig.namespace.ip("link", "add", "loport", "type", "veth", "peer", "name", "loportp")
        try rig.namespace.ip(
            "link", "add", "hiport", "index", "\(highIndex)", "type", "veth", "peer", "name", "hiportp")
        let lowIndex = try rig.namespace.run { try NetworkInterface.index(named: "loport") }
        XCTAssertLessThan(lowIndex, UInt32(BPFNET_PORT_SLOTS))
        let appPort = PortRecord(address: Fixture.app.ip, mac: Fixture.app.mac)
        let linked = tcp(app, db, 40000, 5432)
        for ingress in [lowIndex, highIndex] {
            let label = "ifindex \(ingress)"
            XCTAssertEqual(try rig.portXDPReason(linked, ingress: ingress), .unknownPort, "no entry yet, \(label)")
            try rig.setPort(ingress, appPort)
            XCTAssertEqual(try rig.portEntries()[ingress], appPort, "read back, \(label)")
            XCTAssertEqual(try rig.portXDPReason(linked, ingress: ingress), .link, label)
            XCTAssertEqual(
                try rig.portXDPReason(tcp(db, web, 40000, 80), ingress: ingress), .spoofed,
                "db's frame on app's port, \(label)")
            try rig.setPort(ingress, nil)
            XCTAssertNil(try rig.portEntries()[ingress], "deleted, \(label)")
            XCTAssertEqual(try rig.portXDPReason(linked, ingress: ingress), .unknownPort, "deleted, \(label)")
        }
    }

    // MARK: Row 7

    func testRow7ToTheOutsidePasses() throws {
        for (icc, forward) in configurations {
            try apply(icc: icc, forward: forward)
            let label = "icc=\(icc) forward=\(forward)"
            let gateway = Fixture.bridgeMAC
            expectPort(
                tcp(app, endpoint(IPv4Address(8, 8, 8, 8), mac: gateway), 40000, 443), .pass(.outside),
                "HTTPS out, \(label)")
            expectPort(
                udp(db, endpoint(IPv4Address(203, 0, 113, 53), mac: gateway), 40000, 53), .pass(.outside),
                "DNS out, \(label)")
            expectPort(
                icmp(other, endpoint(IPv4Address(203, 0, 113, 5), mac: gateway)), .pass(.outside), "ping out, \(label)")
            expectPort(
                tcp(app, endpoint(IPv4Address(10, 88, 1, 5), mac: gateway), 40000, 80), .pass(.outside),
                "just outside the subnet, \(label)")
            expectPort(
                tcp(app, endpoint(IPv4Address(10, 87, 255, 255), mac: gateway), 40000, 80), .pass(.outside),
                "just below the subnet, \(label)")
            expectPort(
                raw(stray, endpoint(IPv4Address(8, 8, 4, 4), mac: gateway)), .pass(.outside), "GRE out, \(label)")
        }
    }

    // MARK: IPv6 (follows icc, by destination MAC)

    func testIPv6FollowsICCByDestinationMAC() throws {
        for (icc, forward) in configurations {
            try apply(icc: icc, forward: forward)
            let label = "icc=\(icc) forward=\(forward)"
            let toContainer: Verdict = icc ? .pass(.iccAllowed) : .drop(.icc)
            expectPort(ipv6(to: Fixture.db.mac), toContainer, "IPv6 to a container's MAC, \(label)")
            expectPort(ipv6(to: Fixture.stray.mac), toContainer, "IPv6 to another container's MAC, \(label)")
            expectPort(
                ipv6(to: Fixture.db.mac, vlans: [q8021Q]), toContainer, "802.1Q-tagged IPv6 to a container, \(label)")
            expectPort(ipv6(to: MACAddress(0x33, 0x33, 0, 0, 0, 1)), .pass(.ipv6), "IPv6 all-nodes multicast, \(label)")
            expectPort(
                ipv6(
                    to: MACAddress(0x33, 0x33, 0xff, 0, 0, 3),
                    destination: [0xff, 0x02] + Array(repeating: 0, count: 9) + [1, 0xff, 0, 0, 3]),
                .pass(.ipv6), "neighbour solicitation to the solicited-node address, \(label)")
            // Flooded to every port, and a container's stack accepts the unicast address in it.
            expectPort(
                ipv6(to: MACAddress(0x33, 0x33, 0, 0, 0, 1), destination: PacketBuilder.linkLocal2), toContainer,
                "a unicast IPv6 address in a multicast frame, \(label)")
            expectPort(
                ipv6(to: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), destination: PacketBuilder.linkLocal2),
                toContainer, "a unicast IPv6 address in a broadcast frame, \(label)")
            expectPort(
                ipv6(to: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), .pass(.ipv6), "IPv6 to broadcast, \(label)")
            expectPort(ipv6(to: Fixture.bridgeMAC), .pass(.ipv6), "IPv6 to the bridge's MAC, \(label)")
            expectPort(
                ipv6(to: MACAddress(0x02, 0x42, 0xde, 0xad, 0xbe, 0xef)), .pass(.ipv6),
                "IPv6 to an unknown MAC, \(label)")
        }
    }

    // MARK: VLAN tags (policy applies to the inner packet)

    func testVLANTagsDoNotBypassThePolicy() throws {
        try apply(icc: false, forward: .drop)
        let stacks: [(String, [VLANTag])] = [
            ("802.1Q", [q8021Q]), ("802.1ad", [q8021ad]), ("802.1ad+802.1Q", [q8021ad, q8021Q]),
            ("802.1Q+802.1Q", [q8021Q, q8021Q]),
        ]
        for (name, tags) in stacks {
            expectPort(tcp(app, other, 40000, 80, vlans: tags), .drop(.icc), "\(name): unlinked")
            expectPort(tcp(app, db, 40000, 5432, vlans: tags), .pass(.link), "\(name): link")
            expectPort(tcp(db, app, 5432, 40000, vlans: tags), .pass(.linkReverse), "\(name): reverse link")
            expectPort(icmp(app, bridgeEndpoint, vlans: tags), .pass(.host), "\(name): to the bridge")
            expectPort(icmp(app, endpoint(IPv4Address(8, 8, 8, 8)), vlans: tags), .pass(.outside), "\(name): outside")
        }
        // A third tag is not parsed: the receiving stack might peel it (VID 0)
        // to a packet nobody judged, so the frame is dropped.
        let three = [q8021ad, q8021Q, VLANTag(vid: 300)]
        expectPort(tcp(app, other, 40000, 80, vlans: three), .drop(.encap), "three tags around an unlinked TCP SYN")
        expectPort(ipv6(to: Fixture.db.mac, vlans: three), .drop(.encap), "three tags around IPv6 to a container")

        try apply(icc: true, forward: .drop)
        for (name, tags) in stacks {
            expectPort(tcp(app, other, 40000, 80, vlans: tags), .pass(.iccAllowed), "\(name): icc on")
        }
    }

    // MARK: Fragments

    /// A UDP datagram split into three fragments: first (MF, ports), middle, last.
    func udpFragments(_ s: Endpoint, _ d: Endpoint, _ sport: UInt16, _ dport: UInt16) -> [[UInt8]] {
        let pieces = PacketBuilder.fragments(
            EthernetHeader(destination: d.mac, source: s.mac),
            IPv4Header(source: s.ip, destination: d.ip, identification: 0x4242),
            .udp(sourcePort: sport, destinationPort: dport),
            payload: Array(repeating: 0x33, count: 300), fragmentSize: 128)
        precondition(pieces.count == 3)
        return pieces
    }

    func testFragmentsFollowTheFirstFragmentBetweenLinkedPairs() throws {
        try apply(icc: false, forward: .drop)
        // Linked pair on an exposed port: the first fragment carries the
        // ports and decides; the rest pass as the pair's fragments.
        var f = udpFragments(app, db, 40000, 53)
        expectPort(f[0], .pass(.link), "first fragment (MF) app→db:53")
        expectPort(f[1], .pass(.linkFragment), "middle fragment app→db")
        expectPort(f[2], .pass(.linkFragment), "last fragment app→db")
        f = udpFragments(db, app, 53, 40000)
        expectPort(f[0], .pass(.linkReverse), "first fragment db:53→app")
        expectPort(f[1], .pass(.linkFragment), "middle fragment db→app")
        expectPort(f[2], .pass(.linkFragment), "last fragment db→app")
        // Linked pair, port not exposed: the first fragment is dropped, so the
        // datagram never completes although later fragments pass.
        f = udpFragments(app, db, 40000, 54)
        expectPort(f[0], .drop(.icc), "first fragment app→db:54")
        expectPort(f[1], .pass(.linkFragment), "middle fragment app→db (port unknown here)")
        // Unlinked pair: every fragment is dropped.
        f = udpFragments(other, db, 40000, 53)
        expectPort(f[0], .drop(.icc), "first fragment other→db:53")
        expectPort(f[1], .drop(.icc), "middle fragment other→db")
        expectPort(f[2], .drop(.icc), "last fragment other→db")
        // The pair rule is per protocol: web exposes only TCP to app.
        f = udpFragments(app, web, 40000, 80)
        expectPort(f[1], .drop(.icc), "UDP middle fragment app→web (TCP-only link)")
        var tcpFragment = IPv4Header(source: app.ip, destination: web.ip, identification: 7, fragmentOffset: 3)
        tcpFragment.proto = IPProtocol.tcp
        expectPort(
            PacketBuilder.ethernet(
                EthernetHeader(destination: web.mac, source: app.mac), etherType: EtherType.ipv4,
                payload: PacketBuilder.ipv4(tcpFragment, payload: Array(repeating: 1, count: 24))),
            .pass(.linkFragment), "TCP non-first fragment app→web")
        var icmpFragment = IPv4Header(source: app.ip, destination: db.ip, identification: 8, fragmentOffset: 10)
        icmpFragment.proto = IPProtocol.icmp
        expectPort(
            PacketBuilder.ethernet(
                EthernetHeader(destination: db.mac, source: app.mac), etherType: EtherType.ipv4,
                payload: PacketBuilder.ipv4(icmpFragment, payload: Array(repeating: 1, count: 24))),
            .drop(.icc), "ICMP non-first fragment app→db (links carry TCP/UDP/SCTP only)")
        // Fragments leaving the bridge, or to the bridge.
        f = udpFragments(app, endpoint(IPv4Address(8, 8, 8, 8)), 40000, 4500)
        expectPort(f[1], .pass(.outside), "middle fragment to the outside")
        f = udpFragments(app, bridgeEndpoint, 40000, 53)
        expectPort(f[2], .pass(.host), "last fragment to the bridge")

        try apply(icc: true, forward: .drop)
        f = udpFragments(other, db, 40000, 53)
        expectPort(f[0], .pass(.iccAllowed), "first fragment, icc on")
        expectPort(f[1], .pass(.iccAllowed), "middle fragment, icc on")
    }
}
