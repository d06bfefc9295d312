// SPDX-License-Identifier: Apache-2.0
//
// The attacks of docs/security.md ("Attacks, Docker 20.10 against bpfnet"),
// end to end: the demo host (icc=false, allow-list on, forward policy drop)
// loaded with `bpfnet load --backend B`, a hostile container (or a host
// outside) sending raw frames through an AF_PACKET socket from inside its
// namespace, and AF_PACKET listeners on the receiving interfaces that report
// which frames arrived (AttackLab.exchange). On bpfnet's three backends each
// attack frame must not arrive; next to it a positive control, the same frame
// without the trick, must arrive where the policy allows it, so that a deaf
// listener cannot pass; and the counter that shows the backend dropped it
// (`Counted`: a reason of `status`, or a rule of the eBPF backend's guard)
// must rise by the frames sent, so that a frame lost elsewhere cannot pass either.
//
// Every attack also runs on Docker 20.10's own rules for the same host
// (AttackLab.docker): there the frames Docker lets through must arrive and
// the others must not (`AttackLab.stops`), which measures the Docker column
// of docs/security.md.

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class AttackTests: XCTestCase {
    nonisolated(unsafe) private static var shared: AttackLab?

    /// One lab for the whole suite: building the demo host is most of the cost.
    private func lab() throws -> AttackLab {
        try requireRootForEndToEnd()
        if let lab = Self.shared { return lab }
        let lab = try AttackLab()
        Self.shared = lab
        return lab
    }

    override class func tearDown() {
        shared?.close()
        shared = nil
        super.tearDown()
    }

    private let web = Scenario.address("web")
    private let client = Scenario.address("client")
    private let lone = Scenario.address("lone")

    // MARK: 1. unknown port

    /// A veth somebody adds to docker0 by hand after the load (no container
    /// the policy names) sends to a container, bridged and routed through
    /// the bridge's MAC, also with a linked container's source address. On
    /// the eBPF backend the guard holds it until the next load, then the
    /// port program (`unknown-port`); the fallbacks' rules hold every port
    /// from the start. Control: it reaches the host.
    func testAPortAddedByHandReachesNoContainer() throws {
        let lab = try lab()
        for backend in AttackLab.backends {
            try lab.use(backend, fresh: true)
            try lab.addRoguePort()
            defer { lab.removeRoguePort() }
            for round in ["before the next load", "after a fresh load"] {
                let loaded = round == "after a fresh load"
                if loaded { try lab.use(backend, fresh: true) }
                let rogue = AttackLab.rogueAddress
                // The eBPF backend's guard holds the port until a load puts the program on it.
                let direct = Counted.by(
                    bpf: loaded ? "unknown-port" : "guard: from a port without the port program",
                    nftables: "unknown-port", iptables: "unknown-port")
                let routed = Counted.by(
                    bpf: loaded ? "unknown-port" : "guard: routed between containers, icc off",
                    nftables: "unknown-port", iptables: "unknown-port")
                try lab.check(
                    "\(backend), \(round)",
                    [
                        Shot(
                            "rogue → web 9999/udp", from: .rogue, to: "web",
                            frame: lab.udp(from: .rogue, source: rogue, to: web, port: 9999),
                            arrives: AttackLab.arrives(.unknownPort, on: backend), counted: direct),
                        Shot(
                            "rogue → web 53/udp (a port web exposes)", from: .rogue, to: "web",
                            frame: lab.udp(from: .rogue, source: rogue, to: web, port: 53),
                            arrives: AttackLab.arrives(.unknownPort, on: backend), counted: direct),
                        Shot(
                            "rogue → web 9999/udp through the bridge's MAC (routed)", from: .rogue, to: "web",
                            frame: lab.udp(
                                from: .rogue, source: rogue, to: web, port: 9999, destinationMAC: lab.bridgeMAC),
                            arrives: AttackLab.arrives(.unknownPort, on: backend), counted: routed),
                        // Control for the routed path: along the link it arrives with the
                        // fallbacks (and Docker). The eBPF backend's guard drops everything
                        // routed from the bridge back into it between containers under icc=false
                        // (docs/security.md, guarantee 6), so there it must not arrive.
                        Shot(
                            "client → web 53/udp through the bridge's MAC (control: routed along the link)",
                            from: .container("client"), to: "web",
                            frame: lab.udp(
                                from: .container("client"), source: client, to: web, port: 53,
                                destinationMAC: lab.bridgeMAC), arrives: backend != "bpf",
                            counted: Counted(byBackend: ["bpf": "guard: routed between containers, icc off"])),
                        Shot(
                            "rogue → host 9999/udp (control)", from: .rogue, to: AttackLab.hostListener,
                            frame: lab.udp(
                                from: .rogue, source: rogue, to: Scenario.bridgeAddress.address, port: 9999,
                                destinationMAC: lab.bridgeMAC), arrives: true),
                    ]
                        + [
                            Shot(
                                "rogue with client's address → web 53/udp (client's link)", from: .rogue,
                                to: "web", frame: lab.udp(from: .rogue, source: client, to: web, port: 53),
                                arrives: AttackLab.arrives(.unknownPortForgingALink, on: backend), counted: direct)
                        ])
            }
        }
    }

    // MARK: 2. source spoofing

    /// lone sends to web's linked port 53/udp with client's source address,
    /// first with its own MAC, then with client's MAC as well. Control:
    /// client's own frame on the same port arrives.
    func testAContainerCannotUseALinkedContainersAddress() throws {
        let lab = try lab()
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "lone as client (lone's MAC) → web 53/udp", from: .container("lone"), to: "web",
                        frame: lab.udp(from: .container("lone"), source: client, to: web, port: 53),
                        arrives: AttackLab.arrives(.spoofing, on: backend), counted: .everywhere("spoofed")),
                    Shot(
                        "lone as client (client's MAC) → web 53/udp", from: .container("lone"), to: "web",
                        frame: lab.udp(
                            from: .container("lone"), source: client, to: web, port: 53,
                            sourceMAC: lab.mac("client")), arrives: AttackLab.arrives(.spoofing, on: backend),
                        counted: .everywhere("spoofed")),
                    Shot(
                        "lone (its own address) → web 53/udp, no link", from: .container("lone"), to: "web",
                        frame: lab.udp(from: .container("lone"), source: lone, to: web, port: 53), arrives: false,
                        counted: .everywhere("icc")),
                    // Last: it also teaches the bridge client's MAC again, should a backend let the forged one by.
                    Shot(
                        "client → web 53/udp (control: the link)", from: .container("client"), to: "web",
                        frame: lab.udp(from: .container("client"), source: client, to: web, port: 53), arrives: true),
                ])
        }
    }

    // MARK: 3. ARP poisoning

    /// lone claims the gateway's address with its own MAC (gratuitous ARP,
    /// to web and to everyone): the ARP must not reach web, and web's
    /// neighbour entry for the gateway keeps the bridge's MAC. Control: lone's
    /// ARP for its own address arrives.
    func testARPClaimingTheGatewayDoesNotReachANeighbour() throws {
        let lab = try lab()
        let gateway = Scenario.bridgeAddress.address
        for backend in AttackLab.backends {
            try lab.use(backend)
            // web knows the gateway (as after any traffic out); a gratuitous ARP would override it.
            try lab.demo.topology.run(
                in: "web",
                ["ip", "neigh", "replace", "\(gateway)", "lladdr", lab.bridgeMAC, "dev", "eth0", "nud", "stale"])
            let loneMAC = lab.mac("lone")
            try lab.check(
                backend,
                [
                    Shot(
                        "lone: gratuitous ARP reply \(gateway) is-at lone → web", from: .container("lone"), to: "web",
                        frame: Frame.arp(
                            op: 2, destinationMAC: lab.mac("web"), sourceMAC: loneMAC, senderMAC: loneMAC,
                            senderIP: gateway, targetMAC: loneMAC, targetIP: gateway),
                        arrives: AttackLab.arrives(.arpSpoofing, on: backend), counted: .everywhere("spoofed")),
                    Shot(
                        "lone: ARP reply \(gateway) is-at lone → web (to web's address)", from: .container("lone"),
                        to: "web",
                        frame: Frame.arp(
                            op: 2, destinationMAC: lab.mac("web"), sourceMAC: loneMAC, senderMAC: loneMAC,
                            senderIP: gateway, targetMAC: lab.mac("web"), targetIP: web),
                        arrives: AttackLab.arrives(.arpSpoofing, on: backend), counted: .everywhere("spoofed")),
                    Shot(
                        "lone: gratuitous ARP request for \(gateway), broadcast", from: .container("lone"), to: "web",
                        frame: Frame.arp(
                            op: 1, destinationMAC: "ff:ff:ff:ff:ff:ff", sourceMAC: loneMAC, senderMAC: loneMAC,
                            senderIP: gateway, targetMAC: "00:00:00:00:00:00", targetIP: gateway),
                        arrives: AttackLab.arrives(.arpSpoofing, on: backend), counted: .everywhere("spoofed")),
                    Shot(
                        "lone: ARP reply \(lone) is-at lone → web (control)", from: .container("lone"), to: "web",
                        frame: Frame.arp(
                            op: 2, destinationMAC: lab.mac("web"), sourceMAC: loneMAC, senderMAC: loneMAC,
                            senderIP: lone, targetMAC: lab.mac("web"), targetIP: web), arrives: true),
                ])
            let neighbour = try lab.demo.topology.run(in: "web", ["ip", "neigh", "show", "\(gateway)", "dev", "eth0"])
                .stdout
            // Where the ARP gets through (Docker), web's entry for the gateway now names lone.
            let poisoned = AttackLab.arrives(.arpSpoofing, on: backend)
            XCTAssertEqual(
                neighbour.contains(loneMAC), poisoned, "\(backend): web's entry for the gateway: \(neighbour)")
            XCTAssertEqual(
                neighbour.contains(lab.bridgeMAC), !poisoned, "\(backend): web's entry for the gateway: \(neighbour)")
        }
    }

    /// IPv6's ARP and a rogue router: lone (IPv6 on, link-local only) sends
    /// an unsolicited neighbour advertisement claiming fd00:77::1, an address
    /// web holds a neighbour entry for (the bridge's MAC), and a router
    /// advertisement, both to all nodes with hop limit 255 and valid
    /// checksums. Where they get through (Docker's rules: nothing filters
    /// IPv6 multicast), web's entry names lone and web takes lone as its
    /// default router. bpfnet drops both as `spoofed` (the eBPF and nftables
    /// backends check the advertisement's target); the iptables backend's
    /// ebtables cannot read the target and drops the router advertisement,
    /// and the advertisement falls to ip6tables' icc rule (icc is off here).
    func testNeighbourDiscoveryCannotPoisonANeighbourOrActAsRouter() throws {
        let lab = try lab()
        let topology = lab.demo.topology
        let claimed = "fd00:77::1"
        for role in ["web", "lone"] {
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])
        }
        defer {
            for role in ["web", "lone"] {
                _ = try? topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"])
            }
        }
        try topology.run(in: "web", ["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=1"])
        try topology.ip(in: "web", ["addr replace fd00:77::2/64 dev eth0 nodad"])
        let loneLinkLocal = try XCTUnwrap(
            try topology.run(in: "lone", ["ip", "-6", "-br", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
                .firstMatch(of: #/fe80::[0-9a-f:]+/#).map { String($0.0) }, "lone has a link-local address")
        let loneMAC = lab.mac("lone")
        for backend in AttackLab.backends {
            try lab.use(backend)
            try topology.ip(
                in: "web", ["neigh replace \(claimed) lladdr \(lab.bridgeMAC) dev eth0 nud stale"])
            _ = try? topology.run(in: "web", ["ip", "-6", "route", "del", "default"])
            let before = backend == AttackLab.docker ? [:] : try lab.dropCounters()
            try topology.run(
                in: "lone",
                ["python3", "-c", Self.neighbourDiscoverySender, loneMAC, loneLinkLocal, claimed])
            Thread.sleep(forTimeInterval: 0.3)
            let entry = try topology.run(in: "web", ["ip", "-6", "neigh", "show", claimed, "dev", "eth0"]).stdout
            let routes = try topology.run(in: "web", ["ip", "-6", "route", "show", "default"]).stdout
            let held = backend != AttackLab.docker
            XCTAssertEqual(entry.contains(loneMAC), !held, "\(backend): web's entry for \(claimed): \(entry)")
            XCTAssertEqual(entry.contains(lab.bridgeMAC), held, "\(backend): web's entry for \(claimed): \(entry)")
            XCTAssertEqual(routes.contains(loneLinkLocal), !held, "\(backend): web's default routes: \(routes)")
            if backend != AttackLab.docker {
                let after = try lab.dropCounters()
                XCTAssertGreaterThanOrEqual(
                    after["spoofed", default: 0] - min(after["spoofed", default: 0], before["spoofed", default: 0]),
                    backend == "iptables" ? 1 : 2, "\(backend): the drops are counted as spoofed")
            }
        }
    }

    /// argv: lone's MAC, lone's link-local address, the claimed address.
    /// Sends an unsolicited neighbour advertisement (override) for the
    /// claimed address and a router advertisement (lifetime 1800 s), each
    /// to ff02::1 with hop limit 255, from eth0 through AF_PACKET.
    static let neighbourDiscoverySender = #"""
        import socket, struct, sys
        mac = bytes.fromhex(sys.argv[1].replace(":", ""))
        src = socket.inet_pton(socket.AF_INET6, sys.argv[2])
        claimed = socket.inet_pton(socket.AF_INET6, sys.argv[3])
        dst = socket.inet_pton(socket.AF_INET6, "ff02::1")

        def checksum(data):
            if len(data) % 2:
                data += b"\0"
            total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            return ~total & 0xFFFF

        def frame(message):
            pseudo = src + dst + struct.pack("!I3xB", len(message), 58)
            message = message[:2] + struct.pack("!H", checksum(pseudo + message)) + message[4:]
            header = struct.pack("!IHBB", 0x60000000, len(message), 58, 255) + src + dst
            return bytes.fromhex("333300000001") + mac + struct.pack("!H", 0x86DD) + header + message

        # Neighbour advertisement: override flag, target, target link-layer address option.
        advert = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + claimed + bytes([2, 1]) + mac
        # Router advertisement: hop limit 64, lifetime 1800 s, source link-layer address option.
        router = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + bytes([1, 1]) + mac
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(("eth0", 0))
        for _ in range(3):
            s.send(frame(advert))
            s.send(frame(router))
        """#

    /// What a poisoned neighbour entry would do: web sends a packet for the
    /// outside to lone's MAC. It must not reach lone. Control: the same
    /// packet to the bridge's MAC goes out and arrives at the outside host.
    func testFramesToAContainersMACWithAnOutsideAddressDoNotReachIt() throws {
        let lab = try lab()
        let outside = Scenario.otherSource
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "web → \(outside) 9999/udp to lone's MAC", from: .container("web"), to: "lone",
                        frame: lab.udp(
                            from: .container("web"), source: web, to: outside, port: 9999,
                            destinationMAC: lab.mac("lone")),
                        arrives: AttackLab.arrives(.poisonedNeighbour, on: backend), counted: .everywhere("icc")),
                    Shot(
                        "web → \(outside) 9999/udp to the bridge's MAC (control)", from: .container("web"), to: "ext",
                        frame: lab.udp(
                            from: .container("web"), source: web, to: outside, port: 9999,
                            destinationMAC: lab.bridgeMAC), arrives: true),
                ])
        }
    }

    // MARK: 4. stacked VLAN tags

    /// client sends web a datagram its link does not allow (9999/udp) in 3
    /// and in 4 priority tags (VID 0), which web's stack would peel off.
    /// Control: the untagged datagram to the linked port 53/udp arrives.
    func testStackedVLANTagsDoNotCarryAPacketPastThePolicy() throws {
        let lab = try lab()
        let from = Sender.container("client")
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "client → web 9999/udp in 3 VID-0 tags", from: from, to: "web",
                        frame: lab.udp(from: from, source: client, to: web, port: 9999, vlans: [0, 0, 0]),
                        arrives: AttackLab.arrives(.stackedVLANs, on: backend),
                        counted: .by(bpf: "icc", nftables: "icc", iptables: "encap")),
                    Shot(
                        "client → web 9999/udp in 4 VID-0 tags", from: from, to: "web",
                        frame: lab.udp(from: from, source: client, to: web, port: 9999, vlans: [0, 0, 0, 0]),
                        arrives: AttackLab.arrives(.stackedVLANs, on: backend),
                        counted: .by(bpf: "encap", nftables: "icc", iptables: "encap")),
                    Shot(
                        "client → web 9999/udp untagged", from: from, to: "web",
                        frame: lab.udp(from: from, source: client, to: web, port: 9999), arrives: false,
                        counted: .everywhere("icc")),
                    Shot(
                        "client → web 53/udp untagged (control: the link)", from: from, to: "web",
                        frame: lab.udp(from: from, source: client, to: web, port: 53), arrives: true),
                ])
        }
    }

    // MARK: 5. an interface the policy does not list

    /// A second outside network on an interface the policy does not list
    /// (ext2 ↔ outside2), routed at the containers: with forward policy drop
    /// nothing reaches a container's unpublished port. Control: the
    /// published port 5353/udp of the host is DNATed to web and arrives.
    func testAnInterfaceThePolicyDoesNotListFollowsTheForwardPolicy() throws {
        let lab = try lab()
        try lab.addSecondOutside()
        defer { lab.removeSecondOutside() }
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "outside2 → web 9999/udp", from: .outside2, to: "web",
                        frame: Frame.socketUDP(to: web, port: 9999),
                        arrives: AttackLab.arrives(.unlistedInterface, on: backend),
                        counted: .by(
                            bpf: "guard: forward policy, from an interface without the ext program",
                            nftables: "forward",
                            iptables: "forward")),
                    Shot(
                        "outside2 → web 53/udp (where host 5353/udp is published to), not DNATed", from: .outside2,
                        to: "web",
                        frame: Frame.socketUDP(to: web, port: 53),
                        arrives: AttackLab.arrives(.unlistedInterfaceToAPublishedContainerPort, on: backend),
                        counted: .by(
                            bpf: "guard: forward policy, from an interface without the ext program",
                            nftables: "forward",
                            iptables: "forward")),
                    Shot(
                        "outside2 → host 5353/udp, published as web 53/udp (control)", from: .outside2, to: "web",
                        frame: Frame.socketUDP(to: AttackLab.outside2HostAddress, port: 5353), arrives: true),
                ])
        }
    }

    // MARK: 6. another network

    /// lone (default bridge) and api (the `backend` network) send to each
    /// other's network through their gateways (the bridges' MACs): Docker's
    /// isolation, and bpfnet's `network`. Controls: both reach the outside host.
    func testAContainerCannotReachAnotherNetwork() throws {
        let lab = try lab()
        let api = Scenario.address("api")
        let outside = Scenario.otherSource
        let backendBridgeMAC = try lab.linkMAC(in: TopologySpec.hostRole, Scenario.networks[0].bridge)
        let fromLone = Sender.container("lone")
        let fromAPI = Sender.container("api")
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "lone → api 9999/udp through docker0", from: fromLone, to: "api",
                        frame: lab.udp(
                            from: fromLone, source: lone, to: api, port: 9999, destinationMAC: lab.bridgeMAC),
                        arrives: AttackLab.arrives(.otherNetwork, on: backend),
                        counted: .by(bpf: "network", nftables: "icc", iptables: "network")),
                    Shot(
                        "api → web 53/udp through br-backend", from: fromAPI, to: "web",
                        frame: lab.udp(from: fromAPI, source: api, to: web, port: 53, destinationMAC: backendBridgeMAC),
                        arrives: AttackLab.arrives(.otherNetwork, on: backend),
                        counted: .by(bpf: "network", nftables: "icc", iptables: "network")),
                    Shot(
                        "lone → \(outside) 9999/udp (control)", from: fromLone, to: "ext",
                        frame: lab.udp(
                            from: fromLone, source: lone, to: outside, port: 9999, destinationMAC: lab.bridgeMAC),
                        arrives: true),
                    Shot(
                        "api → \(outside) 9999/udp (control)", from: fromAPI, to: "ext",
                        frame: lab.udp(
                            from: fromAPI, source: api, to: outside, port: 9999, destinationMAC: backendBridgeMAC),
                        arrives: true),
                ])
        }
    }

    // MARK: 7. IPv6

    /// IPv6 from lone to web's MAC (unique local and link-local addresses)
    /// under icc=false, from lone's link-local address (a container may use
    /// one) and from a global address the policy does not give lone (bpf:
    /// `spoofed`; the default bridge here has no IPv6). Control: the same
    /// packet to the bridge's MAC reaches the host.
    func testIPv6BetweenContainersStaysBlocked() throws {
        let lab = try lab()
        let from = Sender.container("lone")
        for backend in AttackLab.backends {
            try lab.use(backend)
            try lab.check(
                backend,
                [
                    Shot(
                        "lone → web fd00::2 9999/udp", from: from, to: "web",
                        frame: lab.udp6(
                            from: from, source: "fe80::42:aff:fe58:6", to: "fd00::2", destinationMAC: lab.mac("web")),
                        arrives: AttackLab.arrives(.ipv6, on: backend), counted: .everywhere("icc")),
                    Shot(
                        "lone → web fd00::2 9999/udp from fd00::6, an address not lone's", from: from, to: "web",
                        frame: lab.udp6(from: from, source: "fd00::6", to: "fd00::2", destinationMAC: lab.mac("web")),
                        arrives: AttackLab.arrives(.ipv6, on: backend),
                        counted: .by(bpf: "spoofed", nftables: "spoofed", iptables: "icc")),
                    Shot(
                        "lone → web fe80::42:aff:fe58:2 53/udp", from: from, to: "web",
                        frame: lab.udp6(
                            from: from, source: "fe80::42:aff:fe58:6", to: "fe80::42:aff:fe58:2", port: 53,
                            destinationMAC: lab.mac("web")), arrives: AttackLab.arrives(.ipv6, on: backend),
                        counted: .everywhere("icc")),
                    // The bridge floods a multicast frame to every port; web's stack
                    // would take the unicast address in it.
                    Shot(
                        "lone → web fd00::2 9999/udp in a multicast frame (33:33:00:00:00:01)", from: from, to: "web",
                        frame: lab.udp6(
                            from: from, source: "fe80::42:aff:fe58:6", to: "fd00::2",
                            destinationMAC: "33:33:00:00:00:01"),
                        arrives: AttackLab.arrives(.ipv6, on: backend), counted: .everywhere("icc")),
                    Shot(
                        "lone → host fd00::1 9999/udp (control)", from: from, to: AttackLab.hostListener,
                        frame: lab.udp6(
                            from: from, source: "fe80::42:aff:fe58:6", to: "fd00::1", destinationMAC: lab.bridgeMAC),
                        arrives: true),
                ])
        }
    }

    /// The outside host (on ext0, which has an allow-list) connects over IPv6
    /// to the host's address on ext0 at the published ports 8080/tcp and
    /// 5353/udp, where a socket listens on [::] as docker-proxy does: only
    /// sources in the allow-list's IPv6 part (2001:db8:1::100/120) are
    /// admitted, so 2001:db8:1::2 is refused, also behind extension headers
    /// (destination options; hop-by-hop and destination options), sent raw.
    /// Controls: the same to ports nothing publishes (7001/tcp, 9998/udp),
    /// where a socket listens too, and the listed 2001:db8:1::101 to the
    /// published ports, arrive.
    func testIPv6FromOutsideToAPublishedPortObeysTheAllowList() throws {
        let lab = try lab()
        try lab.addExternalIPv6()
        defer { lab.removeExternalIPv6() }
        let host = AttackLab.hostExternalAddress6
        let hostMAC = try lab.linkMAC(in: TopologySpec.hostRole, Scenario.externalInterface)
        let outsideMAC = try lab.linkMAC(in: "ext", "eth0")
        let listed = AttackLab.listedOutsideAddress6
        // The outside host has both: its sockets name their source.
        let unlisted = AttackLab.outsideAddress6
        func raw(_ port: Int, _ headers: [Int], from source: String = unlisted) -> Frame {
            lab.udp6(
                from: .outside, source: source, to: host, port: port, destinationMAC: hostMAC,
                sourceMAC: outsideMAC, extensionHeaders: headers)
        }
        for backend in AttackLab.backends {
            try lab.use(backend)
            if backend != AttackLab.docker {
                // Every backend lists the list's IPv6 part in `status` next to its IPv4 part.
                let listed = try lab.demo.status().extInterfaces.first { $0.name == Scenario.externalInterface }
                XCTAssertEqual(
                    listed?.allowSources, ["\(Scenario.allowedSource)/32", "\(AttackLab.listedPrefix6)"], backend)
            }
            try lab.check(
                backend,
                [
                    Shot(
                        "outside → host [\(host)]:8080/tcp (published on all addresses)", from: .outside,
                        to: AttackLab.hostSocket(.tcp, 8080),
                        frame: Frame.socket6(.tcp, from: unlisted, to: host, port: 8080),
                        arrives: AttackLab.arrives(.ipv6ToPublishedPort, on: backend), counted: .everywhere("source")),
                    Shot(
                        "outside → host [\(host)]:5353/udp (published on all addresses)", from: .outside,
                        to: AttackLab.hostSocket(.udp, 5353),
                        frame: Frame.socket6(.udp, from: unlisted, to: host, port: 5353),
                        arrives: AttackLab.arrives(.ipv6ToPublishedPort, on: backend), counted: .everywhere("source")),
                    Shot(
                        "outside → host [\(host)]:5353/udp behind destination options", from: .outside,
                        to: AttackLab.hostSocket(.udp, 5353), frame: raw(5353, [60]),
                        arrives: AttackLab.arrives(.ipv6ToPublishedPort, on: backend), counted: .everywhere("source")),
                    Shot(
                        "outside → host [\(host)]:5353/udp behind hop-by-hop and destination options",
                        from: .outside, to: AttackLab.hostSocket(.udp, 5353), frame: raw(5353, [0, 60]),
                        arrives: AttackLab.arrives(.ipv6ToPublishedPort, on: backend), counted: .everywhere("source")),
                    Shot(
                        "outside → host [\(host)]:9998/udp behind hop-by-hop and destination options, "
                            + "not published (control)", from: .outside, to: AttackLab.hostSocket(.udp, 9998),
                        frame: raw(9998, [0, 60]), arrives: true),
                    Shot(
                        "outside → host [\(host)]:7001/tcp, not published (control)", from: .outside,
                        to: AttackLab.hostSocket(.tcp, 7001),
                        frame: Frame.socket6(.tcp, from: unlisted, to: host, port: 7001),
                        arrives: true),
                    Shot(
                        "outside → host [\(host)]:9998/udp, not published (control)", from: .outside,
                        to: AttackLab.hostSocket(.udp, 9998),
                        frame: Frame.socket6(.udp, from: unlisted, to: host, port: 9998),
                        arrives: true),
                    // The list's IPv6 part (2001:db8:1::100/120) admits its sources.
                    Shot(
                        "outside [\(listed)] (listed) → host [\(host)]:8080/tcp (control)", from: .outside,
                        to: AttackLab.hostSocket(.tcp, 8080),
                        frame: Frame.socket6(.tcp, from: listed, to: host, port: 8080), arrives: true),
                    Shot(
                        "outside [\(listed)] (listed) → host [\(host)]:5353/udp (control)", from: .outside,
                        to: AttackLab.hostSocket(.udp, 5353),
                        frame: Frame.socket6(.udp, from: listed, to: host, port: 5353), arrives: true),
                    Shot(
                        "outside [\(listed)] (listed) → host [\(host)]:5353/udp behind hop-by-hop and "
                            + "destination options (control)", from: .outside, to: AttackLab.hostSocket(.udp, 5353),
                        frame: raw(5353, [0, 60], from: listed), arrives: true),
                ])
        }
    }
}
