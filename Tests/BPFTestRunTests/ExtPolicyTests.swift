// SPDX-License-Identifier: Apache-2.0
//
// Rows 8, 9 and 11 of the policy table (docs/policy.md) through the real
// ext program, arriving on ext0 (allow-list 203.0.113.0/24 and
// 198.51.100.128/25), ext1 (no list), ext2 (a device that is no ext interface)
// and loopback, with the forward policy drop/accept and ext0's list on/off
// rewritten through the reconciler between cases. Row 10 (conntrack replies)
// is ConntrackReplyTests.

import BPFNetCore
import BPFNetTestSupport
import XCTest

final class ExtPolicyTests: TestRunTestCase {
    var withoutList: [UInt32] { [ext1, ext2, loopback] }

    // MARK: Row 8

    func testRow8PublishedPortsObeyTheIngressAllowList() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "forward=\(forward), ext0 list on"
            // Wildcard binding 8080/tcp.
            expectExt(
                everyIngress, tcp(admitted, host, 50000, 8080), .pass(.published),
                "8080 from an admitted source, \(label)")
            expectExt(
                [ext0], tcp(refused, host, 50000, 8080), .drop(.source), "8080 from a refused source on ext0, \(label)")
            expectExt(
                withoutList, tcp(refused, host, 50000, 8080), .pass(.published), "8080 where no list applies, \(label)")
            // The edges of 198.51.100.128/25.
            for (last, verdict) in [
                (UInt8(127), Verdict.drop(.source)), (128, .pass(.published)), (200, .pass(.published)),
                (255, .pass(.published)),
            ] {
                expectExt(
                    [ext0], tcp(endpoint(IPv4Address(198, 51, 100, last)), host, 50000, 8080), verdict,
                    "8080 from 198.51.100.\(last), \(label)")
            }
            expectExt(
                [ext0], tcp(endpoint(IPv4Address(203, 0, 114, 0)), host, 50000, 8080), .drop(.source),
                "8080 from just above 203.0.113.0/24, \(label)")
            expectExt(
                [ext0], tcp(endpoint(IPv4Address(203, 0, 112, 255)), host, 50000, 8080), .drop(.source),
                "8080 from just below 203.0.113.0/24, \(label)")
            // The wildcard binding is enforced for every non-container destination (fail-closed).
            expectExt(
                [ext0], tcp(refused, endpoint(Fixture.otherHostAddress, mac: Fixture.hostMAC), 50000, 8080),
                .drop(.source), "8080 on the host's other address, \(label)")
            expectExt(
                [ext0], tcp(refused, endpoint(IPv4Address(8, 8, 8, 8), mac: Fixture.hostMAC), 50000, 8080),
                .drop(.source), "8080 on a foreign address, \(label)")
            expectExt(
                [ext0], tcp(refused, bridgeEndpoint, 50000, 8080), .drop(.source),
                "8080 on the bridge address, \(label)")
            expectExt(
                [ext0], tcp(admitted, bridgeEndpoint, 50000, 8080), .pass(.published),
                "8080 on the bridge address, admitted, \(label)")
            // A binding to one host address: only that address.
            expectExt(
                [ext0], tcp(admitted, host, 50000, 8443), .pass(.published), "8443 on its address, admitted, \(label)")
            expectExt([ext0], tcp(refused, host, 50000, 8443), .drop(.source), "8443 on its address, refused, \(label)")
            expectExt(
                withoutList, tcp(refused, host, 50000, 8443), .pass(.published), "8443 where no list applies, \(label)")
            expectExt(
                [ext0], tcp(refused, endpoint(Fixture.otherHostAddress, mac: Fixture.hostMAC), 50000, 8443),
                .pass(.local), "8443 on another host address (not bound there), \(label)")
            // UDP binding; the protocol is part of the key.
            expectExt([ext0], udp(admitted, host, 50000, 5353), .pass(.published), "5353/udp admitted, \(label)")
            expectExt([ext0], udp(refused, host, 50000, 5353), .drop(.source), "5353/udp refused, \(label)")
            expectExt([ext0], tcp(refused, host, 50000, 5353), .pass(.local), "5353/tcp is not published, \(label)")
            expectExt([ext0], udp(refused, host, 50000, 8080), .pass(.local), "8080/udp is not published, \(label)")
            expectExt([ext0], sctp(refused, host, 50000, 8080), .pass(.local), "8080/sctp is not published, \(label)")
            // Matched on the host port, before DNAT: the container port means nothing here.
            expectExt(
                [ext0], tcp(refused, host, 50000, 80), .pass(.local), "the container port 80 on the host, \(label)")
            expectExt([ext0], tcp(refused, host, 8080, 50000), .pass(.local), "8080 as the source port, \(label)")
            expectExt([ext0], icmp(refused, host), .pass(.local), "ping the host, \(label)")

            try apply(icc: false, forward: forward, allowList: false)
            let open = "forward=\(forward), ext0 list off"
            expectExt(everyIngress, tcp(refused, host, 50000, 8080), .pass(.published), "8080 from anyone, \(open)")
            expectExt(everyIngress, tcp(refused, host, 50000, 8443), .pass(.published), "8443 from anyone, \(open)")
            expectExt(everyIngress, udp(refused, host, 50000, 5353), .pass(.published), "5353/udp from anyone, \(open)")
        }
    }

    // MARK: Row 9

    func testRow9DirectRoutingToContainersFollowsTheForwardPolicy() throws {
        let containerTargets: [(String, (Endpoint) -> [UInt8])] = [
            ("TCP to a container's exposed port", { tcp($0, web, 50000, 80) }),
            ("TCP to a container on the published host port", { tcp($0, web, 50000, 8080) }),
            ("UDP to a container", { udp($0, db, 50000, 53) }),
            ("SCTP to a container", { sctp($0, db, 50000, 9899) }),
            ("ping a container", { icmp($0, db) }),
            ("GRE to a container", { raw($0, app) }),
            ("an unused subnet address", { tcp($0, endpoint(IPv4Address(10, 88, 0, 99)), 50000, 80) }),
            ("the subnet broadcast", { udp($0, endpoint(IPv4Address(10, 88, 0, 255)), 50000, 137) }),
            ("the subnet network address", { udp($0, endpoint(IPv4Address(10, 88, 0, 0)), 50000, 137) }),
            ("a container outside the subnet", { tcp($0, stray, 50000, 80) }),
        ]

        for icc in [true, false] {
            try apply(icc: icc, forward: .drop)
            for (name, frame) in containerTargets {
                expectExt(everyIngress, frame(admitted), .drop(.forward), "\(name), forward drop, icc=\(icc)")
                expectExt([ext0], frame(refused), .drop(.forward), "\(name) from a refused source, forward drop")
            }
            try apply(icc: icc, forward: .accept)
            for (name, frame) in containerTargets {
                expectExt(
                    everyIngress, frame(admitted), .pass(.forwardAccept),
                    "\(name), forward accept, admitted, icc=\(icc)")
                expectExt([ext0], frame(refused), .drop(.source), "\(name), forward accept, refused on ext0")
                expectExt(
                    withoutList, frame(refused), .pass(.forwardAccept),
                    "\(name), forward accept, refused source where no list applies")
            }
            try apply(icc: icc, forward: .accept, allowList: false)
            for (name, frame) in containerTargets {
                expectExt(
                    everyIngress, frame(refused), .pass(.forwardAccept),
                    "\(name), forward accept, ext0 list off")
            }
        }

        // Neither the bridge's own address nor multicast is a container address.
        try apply(icc: false, forward: .drop)
        expectExt(everyIngress, tcp(refused, bridgeEndpoint, 50000, 22), .pass(.local), "the bridge address, ssh")
        expectExt(
            everyIngress, udp(refused, endpoint(IPv4Address(239, 255, 255, 250)), 1900, 1900), .pass(.local),
            "multicast")
        // ... and a wildcard published port does not cover it: Docker DNATs only local unicast addresses.
        expectExt(
            [ext0], udp(refused, endpoint(IPv4Address(224, 0, 0, 251)), 5353, 5353), .pass(.local),
            "multicast to the published 5353/udp")
        expectExt(
            [ext0], udp(refused, endpoint(IPv4Address(255, 255, 255, 255)), 5353, 5353), .pass(.local),
            "broadcast to the published 5353/udp")
        expectExt(
            everyIngress, udp(refused, endpoint(IPv4Address(255, 255, 255, 255)), 68, 67), .pass(.local),
            "limited broadcast")
        expectExt(
            everyIngress, tcp(refused, endpoint(IPv4Address(10, 88, 1, 2)), 50000, 80), .pass(.local),
            "just outside the bridge subnet")
    }

    // MARK: Row 11

    func testRow11TheHostsOwnTrafficIsNotBpfnetsBusiness() throws {
        for forward in ForwardPolicy.allCases {
            for allowList in [true, false] {
                try apply(icc: true, forward: forward, allowList: allowList)
                let label = "forward=\(forward) list=\(allowList)"
                for source in [admitted, refused] {
                    expectExt(everyIngress, tcp(source, host, 50000, 22), .pass(.local), "ssh to the host, \(label)")
                    expectExt(everyIngress, udp(source, host, 50000, 9999), .pass(.local), "UDP to the host, \(label)")
                    expectExt(
                        everyIngress, sctp(source, host, 50000, 9899), .pass(.local), "SCTP to the host, \(label)")
                    expectExt(everyIngress, icmp(source, host), .pass(.local), "ping the host, \(label)")
                    expectExt(everyIngress, raw(source, host), .pass(.local), "GRE to the host, \(label)")
                    expectExt(
                        everyIngress, tcp(source, host, 50000, 8081), .pass(.local), "an unpublished port, \(label)")
                }
            }
        }
    }

    // MARK: Not IPv4

    func testNonIPAndIPv6PassOnExternalInterfaces() throws {
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            expectExt(
                everyIngress, arp(from: admitted, target: Fixture.hostAddress), .pass(.nonIP), "ARP, forward=\(forward)"
            )
            expectExt(
                everyIngress, arp(from: refused, target: Fixture.hostAddress, vlans: [q8021Q]), .pass(.nonIP),
                "tagged ARP, forward=\(forward)")
            expectExt(
                everyIngress,
                PacketBuilder.ethernet(
                    EthernetHeader(
                        destination: MACAddress(0x01, 0x80, 0xc2, 0, 0, 0x0e),
                        source: Fixture.routerMAC),
                    etherType: EtherType.lldp, payload: Array(repeating: 0, count: 46)),
                .pass(.nonIP), "LLDP, forward=\(forward)")
            // The default bridge is IPv4-only: IPv6 is the host's, whatever the MAC.
            expectExt(
                everyIngress, ipv6(to: Fixture.hostMAC, from: Fixture.routerMAC), .pass(.ipv6), "IPv6 to the host")
            expectExt(
                everyIngress, ipv6(to: Fixture.db.mac, from: Fixture.routerMAC), .pass(.ipv6),
                "IPv6 to a container's MAC")
            expectExt(
                everyIngress, ipv6(to: MACAddress(0x33, 0x33, 0, 0, 0, 1), from: Fixture.routerMAC), .pass(.ipv6),
                "IPv6 multicast")
            expectExt(
                [ext0], ipv6(to: Fixture.hostMAC, from: Fixture.routerMAC, vlans: [q8021ad, q8021Q]), .pass(.ipv6),
                "double-tagged IPv6")
            // Three tags: not parsed, and what the stack behind might peel
            // off to is never judged, so dropped.
            expectExt(
                [ext0], tcp(refused, web, 50000, 80, vlans: [q8021ad, q8021Q, VLANTag(vid: 3)]), .drop(.encap),
                "three tags around TCP to a container")
        }
    }

    // MARK: IPv6 and published ports

    /// docker-proxy listens on [::]:HOSTPORT for every port published on all
    /// addresses: with an allow-list (which lists no IPv6 source), IPv6
    /// TCP/UDP to such a port is refused, through up to four extension
    /// headers; anything the walk cannot finish is refused too. The rest of
    /// IPv6 stays the host's.
    func testIPv6ToAPublishedPortObeysTheAllowList() throws {
        func v6(
            _ port: UInt16, _ extensions: [(type: UInt8, body: [UInt8])] = [], proto: UInt8 = IPProtocol.tcp,
            from source: String = "2001:db8:78::5"
        ) -> [UInt8] {
            PacketBuilder.ipv6TransportFrame(
                EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC),
                source: IPv6Address(source)!.bytes, proto: proto, destinationPort: port, extensions: extensions)
        }
        let options = PacketBuilder.ipv6Options()
        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "forward=\(forward)"
            expectExt([ext0], v6(8080), .drop(.source), "IPv6 TCP to 8080 (published on every address), \(label)")
            expectExt(
                [ext0], v6(8080, from: "2001:db8:77:1::5"), .pass(.published),
                "the same from a source in ext0's IPv6 list (2001:db8:77::/48), \(label)")
            expectExt(
                [ext0], v6(8080, Array(repeating: (0, options), count: 5), from: "2001:db8:77::9"), .pass(.ipv6),
                "unreadable, but from a listed source, \(label)")
            expectExt(withoutList, v6(8080), .pass(.ipv6), "the same where no list applies, \(label)")
            expectExt([ext0], v6(5353, proto: IPProtocol.udp), .drop(.source), "IPv6 UDP to 5353/udp, \(label)")
            expectExt([ext0], v6(5353), .pass(.ipv6), "IPv6 TCP to 5353 (published for UDP only), \(label)")
            expectExt([ext0], v6(8443), .pass(.ipv6), "8443 is published on an IPv4 address only, \(label)")
            expectExt([ext0], v6(22), .pass(.ipv6), "an unpublished port, \(label)")
            expectExt(
                [ext0], v6(8080, [(0, options)]), .drop(.source), "behind a hop-by-hop header, \(label)")
            expectExt(
                [ext0], v6(8080, [(0, options), (60, PacketBuilder.ipv6Options(extraUnits: 1)), (43, options)]),
                .drop(.source), "behind three extension headers, one of 16 bytes, \(label)")
            expectExt(
                [ext0], v6(8080, [(44, PacketBuilder.ipv6Fragment(offset: 0))]), .drop(.source),
                "the first fragment, \(label)")
            expectExt(
                [ext0], v6(8080, [(44, PacketBuilder.ipv6Fragment(offset: 1448, more: false))]), .pass(.fragment),
                "a non-first fragment: judged by the first, \(label)")
            expectExt(
                [ext0], v6(22, Array(repeating: (0, options), count: 5)), .drop(.source),
                "five extension headers: deeper than the walk, refused, \(label)")
            expectExt(
                [ext0], v6(22, Array(repeating: (60, options), count: 4)), .pass(.ipv6),
                "four extension headers to an unpublished port, \(label)")
            let cut = v6(8080, [(0, options)])
            expectExt(
                [ext0], Array(cut.prefix(cut.count - 18)), .drop(.source), "the TCP header cut short, \(label)")
            expectExt(
                withoutList, Array(cut.prefix(cut.count - 18)), .pass(.ipv6), "the same without a list, \(label)")
        }
    }

    // MARK: VLAN tags

    func testVLANTaggedFramesAreJudgedByTheInnerPacket() throws {
        try apply(icc: false, forward: .drop)
        for tags in [[q8021Q], [q8021ad], [q8021ad, q8021Q]] {
            let name = tags.map { $0.tpid == EtherType.vlan ? "802.1Q" : "802.1ad" }.joined(separator: "+")
            expectExt([ext0], tcp(admitted, web, 50000, 80, vlans: tags), .drop(.forward), "\(name) to a container")
            expectExt([ext0], tcp(refused, host, 50000, 8080, vlans: tags), .drop(.source), "\(name) refused to 8080")
            expectExt(
                [ext0], tcp(admitted, host, 50000, 8080, vlans: tags), .pass(.published), "\(name) admitted to 8080")
            expectExt([ext0], tcp(refused, host, 50000, 22, vlans: tags), .pass(.local), "\(name) ssh to the host")
        }
    }

    // MARK: Fragments

    func testNonFirstFragmentsPassTheFirstDecides() throws {
        func fragments(_ s: Endpoint, _ d: Endpoint, _ dport: UInt16) -> [[UInt8]] {
            PacketBuilder.fragments(
                EthernetHeader(destination: d.mac, source: s.mac),
                IPv4Header(source: s.ip, destination: d.ip, identification: 0x5151),
                .udp(sourcePort: 50000, destinationPort: dport),
                payload: Array(repeating: 0x44, count: 300), fragmentSize: 128)
        }
        try apply(icc: false, forward: .drop)
        var f = fragments(admitted, db, 53)
        expectExt(everyIngress, f[0], .drop(.forward), "first fragment (MF) to a container, forward drop")
        expectExt(everyIngress, f[1], .pass(.fragment), "middle fragment to a container")
        expectExt(everyIngress, f[2], .pass(.fragment), "last fragment to a container")
        f = fragments(refused, host, 5353)
        expectExt([ext0], f[0], .drop(.source), "first fragment to a published port from a refused source")
        expectExt([ext0], f[1], .pass(.fragment), "middle fragment to a published port")
        expectExt(withoutList, f[0], .pass(.published), "first fragment to a published port where no list applies")
        f = fragments(refused, host, 9999)
        expectExt([ext0], f[0], .pass(.local), "first fragment to the host")
        expectExt([ext0], f[2], .pass(.fragment), "last fragment to the host")

        try apply(icc: false, forward: .accept)
        f = fragments(admitted, db, 53)
        expectExt([ext0], f[0], .pass(.forwardAccept), "first fragment to a container, forward accept")
        expectExt([ext0], f[1], .pass(.fragment), "middle fragment to a container, forward accept")
        f = fragments(refused, db, 53)
        expectExt([ext0], f[0], .drop(.source), "first fragment to a container from a refused source")
        expectExt([ext0], f[1], .pass(.fragment), "middle fragment from a refused source: its first is dropped")
    }
}
