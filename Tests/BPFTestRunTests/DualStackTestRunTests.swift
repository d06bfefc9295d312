// SPDX-License-Identifier: Apache-2.0
//
// Dual stack (docs/verdicts.md, "Port program" and "Ext program", IPv6)
// through the real programs: docker0 (fd00:88::/64, icc off, with links),
// `front` (fd00:90::/64, icc on) and `back` (fd00:91::/64, internal, icc
// off), every container with an IPv6 address of its network (Fixture.
// dualStack). Each expectation is the contract's, written out here, and is
// also put to the reference model.

import BPFNetCore
import BPFNetTestSupport
import XCTest

private func v6(_ text: String) -> IPv6Address { IPv6Address(text)! }

final class DualStackTestRunTests: TestRunTestCase {
    /// A container's (or anyone's) MAC and IPv6 address.
    struct Host6 {
        var mac: MACAddress
        var address: IPv6Address
    }

    let app = Host6(mac: Fixture.app.mac, address: v6("fd00:88::4"))
    let db = Host6(mac: Fixture.db.mac, address: v6("fd00:88::3"))
    let f1 = Host6(mac: MACAddress(dockerStyleFor: IPv4Address(10, 90, 0, 2)), address: v6("fd00:90::2"))
    let f2 = Host6(mac: MACAddress(dockerStyleFor: IPv4Address(10, 90, 0, 3)), address: v6("fd00:90::3"))
    let b1 = Host6(mac: MACAddress(dockerStyleFor: IPv4Address(10, 91, 0, 2)), address: v6("fd00:91::2"))
    let b2 = Host6(mac: MACAddress(dockerStyleFor: IPv4Address(10, 91, 0, 3)), address: v6("fd00:91::3"))
    let frontMAC = Fixture.networkFacts["front"]!.mac
    let backMAC = Fixture.networkFacts["back"]!.mac
    let outside = v6("2001:db8::5")
    /// In ext0's IPv6 allow-list (Fixture.allowListIPv6).
    let listed = v6("2001:db8:77::9")

    /// Writes the dual-stack policy; returns the port entries by container name ("f1", "app", ...).
    @discardableResult
    func apply(iccDefault: Bool = false, forward: ForwardPolicy = .accept) throws -> [String: PortSender] {
        let policy = Fixture.dualStack(Fixture.withNetworks(Fixture.policy(icc: iccDefault, forward: forward)))
        let state = try rig.write(Fixture.compile(policy, namespace: rig.namespace))
        XCTAssertTrue(state.config.flags.contains(.ipv6))
        XCTAssertEqual(state.subnets6.count, 3)
        var senders: [String: PortSender] = [:]
        for record in state.ports.values where record.known {
            let name = state.names[record.address] ?? "\(record.address)"
            if senders[name] == nil || record.network == 0 { senders[name] = .container(record) }
        }
        senders["unknown@back"] = .container(state.ports[1950]!)
        return senders
    }

    /// TCP from `source` (its MAC and address) to `address` at L2 destination `mac`.
    func tcp6(
        _ source: Host6, to address: IPv6Address, mac: MACAddress, sourceMAC: MACAddress? = nil,
        from sourceAddress: IPv6Address? = nil, port: UInt16 = 80
    ) -> [UInt8] {
        PacketBuilder.ipv6TransportFrame(
            EthernetHeader(destination: mac, source: sourceMAC ?? source.mac),
            source: (sourceAddress ?? source.address).bytes, destination: address.bytes, proto: IPProtocol.tcp,
            destinationPort: port)
    }

    func testWithinANetworkItsICCDecidesAndLinksAreIPv4Only() throws {
        let senders = try apply()
        expectPort(tcp6(f1, to: f2.address, mac: f2.mac), .pass(.iccAllowed), "front has icc on", sender: senders["f1"])
        expectPort(
            tcp6(b1, to: b2.address, mac: b2.mac, port: 6379), .drop(.icc), "back has icc off",
            sender: senders["b1"])
        expectPort(
            tcp6(app, to: db.address, mac: db.mac, port: 5432), .drop(.icc),
            "docker0 icc off: app's link to db is an IPv4 rule (Docker's links are)", sender: senders["app"])
        expectPort(
            tcp6(app, to: db.address, mac: Fixture.bridgeMAC, port: 5432), .drop(.icc),
            "an address of its own subnet through the bridge's MAC is still between containers",
            sender: senders["app"])
        expectPort(
            tcp6(b1, to: b2.address, mac: b2.mac, port: 6379), .drop(.unknownPort),
            "a port whose container is unknown reaches no container", sender: senders["unknown@back"])
    }

    func testBetweenNetworksEverythingIsDroppedButTheGateways() throws {
        let senders = try apply(iccDefault: true)
        let f1Sender = senders["f1"]
        expectPort(
            tcp6(f1, to: db.address, mac: frontMAC, port: 5432), .drop(.network), "front → a docker0 container",
            sender: f1Sender)
        expectPort(
            tcp6(f1, to: v6("fd00:88::99"), mac: frontMAC), .drop(.network), "front → an unused docker0 address",
            sender: f1Sender)
        expectPort(tcp6(f1, to: b1.address, mac: frontMAC), .drop(.network), "front → back", sender: f1Sender)
        expectPort(
            tcp6(app, to: f1.address, mac: f1.mac), .drop(.network),
            "docker0 → front at front's container MAC (a poisoned neighbour entry)", sender: senders["app"])
        expectPort(
            tcp6(f1, to: v6("fd00:88::1"), mac: frontMAC, port: 8080), .pass(.host),
            "front → docker0's IPv6 gateway (a host address)", sender: f1Sender)
        expectPort(
            tcp6(f1, to: v6("fd00:90::1"), mac: frontMAC, port: 53), .pass(.host), "front → its own gateway",
            sender: f1Sender)
    }

    func testOutsideInternalAndNeighbourDiscovery() throws {
        let senders = try apply()
        expectPort(
            tcp6(f1, to: outside, mac: frontMAC, port: 443), .pass(.ipv6), "front → the outside, routed without NAT",
            sender: senders["f1"])
        expectPort(
            tcp6(b1, to: outside, mac: backMAC, port: 443), .drop(.internal), "back is internal: no way out",
            sender: senders["b1"])
        expectPort(
            tcp6(b1, to: v6("fe80::1"), mac: backMAC, port: 53), .pass(.ipv6),
            "back → the bridge's link-local address (the host's, never routed)", sender: senders["b1"])
        let allNodes = MACAddress(0x33, 0x33, 0, 0, 0, 1)
        expectPort(
            tcp6(b1, to: v6("ff02::1"), mac: allNodes), .pass(.ipv6), "multicast (neighbour discovery, MLD)",
            sender: senders["b1"])
        expectPort(
            tcp6(b1, to: b2.address, mac: allNodes, port: 6379), .drop(.icc),
            "a unicast address in a multicast frame is flooded to every port: between containers",
            sender: senders["b1"])
    }

    func testAContainerSendsOnlyFromItsOwnAddressesOrLinkLocal() throws {
        let senders = try apply(iccDefault: true)
        expectPort(
            tcp6(f1, to: f2.address, mac: f2.mac, from: f2.address), .drop(.spoofed),
            "f1 claims f2's IPv6 address", sender: senders["f1"])
        expectPort(
            tcp6(f1, to: outside, mac: frontMAC, from: v6("2001:db8::66")), .drop(.spoofed),
            "f1 claims an outside address", sender: senders["f1"])
        expectPort(
            tcp6(f1, to: f2.address, mac: f2.mac, from: db.address), .drop(.spoofed),
            "f1 claims a docker0 container's address", sender: senders["f1"])
        expectPort(
            tcp6(f1, to: f2.address, mac: f2.mac, from: v6("fe80::42:aff:fe5a:2")), .pass(.iccAllowed),
            "a link-local source is anyone's", sender: senders["f1"])
        expectPort(
            tcp6(f1, to: v6("ff02::1:ff00:2"), mac: MACAddress(0x33, 0x33, 0xff, 0, 0, 2), from: v6("::")),
            .pass(.ipv6), "duplicate address detection from ::", sender: senders["f1"])
        expectPort(
            tcp6(app, to: db.address, mac: db.mac, port: 5432), .pass(.iccAllowed),
            "app's own IPv6 address on docker0 (icc on)", sender: senders["app"])
    }

    /// Neighbour discovery (hop limit 255, to all nodes): the IPv6 form of
    /// ARP spoofing and of a rogue router, each held like ARP's.
    func testNeighbourDiscoveryClaimsOnlyTheContainersOwnAddresses() throws {
        let senders = try apply(iccDefault: true)
        let sender = senders["f1"]
        let allNodes = v6("ff02::1").bytes
        let linkLocal = v6("fe80::42:aff:fe5a:2")
        func linkLayer(_ type: UInt8, _ address: MACAddress) -> [UInt8] {
            let mac = address.bytes
            return [type, 1, mac.0, mac.1, mac.2, mac.3, mac.4, mac.5]
        }
        let nonce: [UInt8] = [14, 1, 1, 2, 3, 4, 5, 6]
        /// A router solicitation (133) has 8 bytes before its options, the
        /// others 24 (the target); the options default to f1's own MAC.
        func nd(
            type: UInt8, target: IPv6Address = v6("::"), hopLimit: UInt8 = 255, from source: IPv6Address? = nil,
            extensions: [UInt8] = [], cut: Int? = nil, options: [UInt8]? = nil, vlans: [VLANTag] = []
        ) -> [UInt8] {
            var message: [UInt8] = [type, 0, 0, 0, 0x60, 0, 0, 0] + (type == 133 ? [] : target.bytes)
            message += options ?? linkLayer(type == 136 ? 2 : 1, f1.mac)
            if let cut { message = Array(message.prefix(cut)) }
            // Destination-options headers (8 bytes each) in front of the ICMPv6 message.
            var next = IPProtocol.icmpv6
            for _ in extensions {
                message = [next] + PacketBuilder.ipv6Options() + message
                next = 60
            }
            return PacketBuilder.ipv6Frame(
                EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: f1.mac, vlans: vlans),
                source: (source ?? linkLocal).bytes, destination: allNodes, nextHeader: next, hopLimit: hopLimit,
                payload: message)
        }
        expectPort(nd(type: 136, target: f1.address), .pass(.ipv6), "advertises its own address", sender: sender)
        expectPort(
            nd(type: 136, target: f1.address, from: f1.address), .pass(.ipv6), "from its own global address",
            sender: sender)
        expectPort(nd(type: 136, target: linkLocal), .pass(.ipv6), "a link-local target", sender: sender)
        expectPort(nd(type: 136, target: f2.address), .drop(.spoofed), "claims f2's address", sender: sender)
        expectPort(
            nd(type: 136, target: v6("fd00:90::1")), .drop(.spoofed), "claims its gateway's address", sender: sender)
        expectPort(
            nd(type: 136, target: db.address), .drop(.spoofed), "claims a docker0 container's address",
            sender: sender)
        expectPort(
            nd(type: 136, target: f2.address, hopLimit: 64), .pass(.ipv6),
            "hop limit 64: no receiver takes it as neighbour discovery", sender: sender)
        expectPort(
            nd(type: 136, target: f2.address, extensions: [60]), .drop(.spoofed),
            "behind a destination-options header", sender: sender)
        expectPort(
            nd(type: 128, extensions: [60, 60, 60, 60, 60]), .drop(.spoofed),
            "hop limit 255 behind more extension headers than the walk follows", sender: sender)
        expectPort(
            nd(type: 136, target: f2.address, cut: 20), .drop(.spoofed), "an advertisement cut short", sender: sender)
        expectPort(nd(type: 134), .drop(.spoofed), "a router advertisement (RA guard)", sender: sender)
        expectPort(nd(type: 137, target: f2.address), .drop(.spoofed), "a redirect", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address), .pass(.ipv6), "a solicitation claims only its source",
            sender: sender)
        // The link-layer addresses it sends, as ARP's sender MAC: its own only.
        expectPort(
            nd(type: 136, target: f1.address, options: linkLayer(2, f2.mac)), .drop(.spoofed),
            "its own address at f2's MAC", sender: sender)
        expectPort(
            nd(type: 136, target: linkLocal, options: linkLayer(2, f2.mac)), .drop(.spoofed),
            "a link-local target at f2's MAC", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: linkLayer(1, f2.mac)), .drop(.spoofed),
            "a solicitation with f2's MAC as its source", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: nonce + linkLayer(1, f2.mac)), .drop(.spoofed),
            "the same behind a nonce option", sender: sender)
        expectPort(
            nd(type: 133, options: linkLayer(1, f2.mac)), .drop(.spoofed), "a router solicitation with f2's MAC",
            sender: sender)
        expectPort(nd(type: 133), .pass(.ipv6), "a router solicitation with its own MAC", sender: sender)
        // Behind a VLAN tag (the programs read two) the same claims are the same.
        let tag = [VLANTag(vid: 7)]
        expectPort(
            nd(type: 136, target: f2.address, vlans: tag), .drop(.spoofed), "tagged: f2's address", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: linkLayer(1, f2.mac), vlans: tag), .drop(.spoofed),
            "tagged: f2's MAC as its source", sender: sender)
        expectPort(
            nd(type: 134, vlans: tag + tag), .drop(.spoofed), "behind two tags: a router advertisement", sender: sender)
        expectPort(nd(type: 136, target: f1.address, vlans: tag), .pass(.ipv6), "tagged: its own", sender: sender)
        expectPort(
            nd(type: 135, target: f1.address, from: v6("::"), options: nonce), .pass(.ipv6),
            "duplicate address detection: from ::, a nonce, no link-layer address", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: nonce + nonce + nonce + linkLayer(1, f1.mac)), .pass(.ipv6),
            "four options, its own MAC last", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: nonce + nonce + nonce + nonce + linkLayer(1, f2.mac)),
            .drop(.spoofed), "a fifth option is not read: dropped unread", sender: sender)
        expectPort(
            nd(type: 136, target: f1.address, options: [2, 0, 0, 0, 0, 0, 0, 0]), .drop(.spoofed),
            "an option of length 0 (receivers discard the message)", sender: sender)
        expectPort(
            nd(type: 135, target: f2.address, options: Array(linkLayer(1, f1.mac).prefix(5))), .drop(.spoofed),
            "a link-layer option cut short", sender: sender)
        let fragment = PacketBuilder.ipv6Frame(
            EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: f1.mac), source: linkLocal.bytes,
            destination: allNodes, nextHeader: 44, hopLimit: 255,
            payload: [IPProtocol.icmpv6] + PacketBuilder.ipv6Fragment(offset: 64) + Array(repeating: 0, count: 16))
        expectPort(fragment, .pass(.ipv6), "a non-first fragment carries no ND header", sender: sender)
        func firstFragment(_ message: [UInt8]) -> [UInt8] {
            PacketBuilder.ipv6Frame(
                EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: f1.mac),
                source: linkLocal.bytes, destination: allNodes, nextHeader: 44, hopLimit: 255,
                payload: [IPProtocol.icmpv6] + PacketBuilder.ipv6Fragment(offset: 0) + message)
        }
        // Its own address in the first fragment, the claim that counts could follow in the next.
        expectPort(
            firstFragment([136, 0, 0, 0, 0x60, 0, 0, 0] + f1.address.bytes), .drop(.spoofed),
            "the first fragment of an advertisement (ND is never fragmented, RFC 6980)", sender: sender)
        expectPort(
            firstFragment([135, 0, 0, 0, 0, 0, 0, 0] + f2.address.bytes), .drop(.spoofed),
            "the first fragment of a solicitation", sender: sender)
        expectPort(
            firstFragment([128, 0, 0, 0, 0, 1, 0, 1] + Array(repeating: 7, count: 16)), .pass(.ipv6),
            "the first fragment of an echo request with hop limit 255", sender: sender)
        expectPort(
            PacketBuilder.ipv6Frame(
                EthernetHeader(destination: MACAddress(0x33, 0x33, 0, 0, 0, 1), source: f1.mac),
                source: linkLocal.bytes, destination: allNodes, nextHeader: IPProtocol.udp, hopLimit: 255,
                payload: [0x12, 0x34]), .pass(.ipv6), "hop limit 255, a UDP header cut short: not ND",
            sender: sender)
    }

    func testFromTheOutsideTheForwardPolicyTheListAndInternalDecide() throws {
        try apply(forward: .accept)
        expectExt(
            [ext0, ext1], tcp6(Host6(mac: Fixture.routerMAC, address: listed), to: f1.address, mac: Fixture.hostMAC),
            .pass(.forwardAccept), "a listed source (ext0) or no list (ext1), routed to a front container")
        expectExt(
            [ext0], tcp6(Host6(mac: Fixture.routerMAC, address: outside), to: f1.address, mac: Fixture.hostMAC),
            .drop(.source), "ext0's list has no 2001:db8::/64")
        expectExt(
            [ext1], tcp6(Host6(mac: Fixture.routerMAC, address: outside), to: b1.address, mac: Fixture.hostMAC),
            .drop(.internal), "into an internal network")
        expectExt(
            [ext1, ext2, loopback],
            tcp6(Host6(mac: Fixture.routerMAC, address: outside), to: v6("fd00:90::1"), mac: Fixture.hostMAC),
            .pass(.ipv6), "to front's gateway: a host address")
        var fragment = PacketBuilder.ipv6TransportFrame(
            EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC), source: outside.bytes,
            destination: f1.address.bytes, proto: IPProtocol.tcp, destinationPort: 80,
            extensions: [(44, PacketBuilder.ipv6Fragment(offset: 64))])
        expectExt([ext0], fragment, .pass(.fragment), "a non-first fragment is judged by its first")

        try apply(forward: .drop)
        expectExt(
            [ext0, ext1], tcp6(Host6(mac: Fixture.routerMAC, address: listed), to: f1.address, mac: Fixture.hostMAC),
            .drop(.forward), "forward policy drop: no routing straight to a container")
        fragment = PacketBuilder.ipv6TransportFrame(
            EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC), source: outside.bytes,
            destination: db.address.bytes, proto: IPProtocol.udp, destinationPort: 53,
            extensions: [
                (0, PacketBuilder.ipv6Options()), (0, PacketBuilder.ipv6Options()),
                (0, PacketBuilder.ipv6Options()), (0, PacketBuilder.ipv6Options()), (0, PacketBuilder.ipv6Options()),
            ])
        expectExt([ext1], fragment, .drop(.forward), "five extension headers: the walk gives up, the policy holds")
    }

    /// Row 10 for IPv6 in the model (test runs have an empty conntrack table;
    /// DualStackEndToEndTests shows the kernel's side with real connections).
    func testTheModelTakesRepliesAndErrorsAboutTrackedConnections() throws {
        let state = try rig.write(
            Fixture.compile(
                Fixture.dualStack(Fixture.withNetworks(Fixture.policy(icc: false, forward: .drop))),
                namespace: rig.namespace))
        let model = ReferenceDataplane(state: state)
        let reply = tcp6(Host6(mac: Fixture.routerMAC, address: outside), to: f1.address, mac: Fixture.hostMAC)
        let tracked = FlowTuple6(
            source: outside, destination: f1.address, sourcePort: 40000, destinationPort: 80, proto: IPProtocol.tcp)
        XCTAssertEqual(model.extVerdict(frame: reply, ingressIfindex: ext1), .drop(.forward))
        XCTAssertEqual(
            model.extVerdict(frame: reply, ingressIfindex: ext1, isConntrackReply6: { $0 == tracked }),
            .pass(.reply))
        let tooBig = PacketBuilder.icmpv6Error(
            EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC), type: 2,
            source: v6("2001:db8::1").bytes, destination: f1.address.bytes, quotedSource: f1.address.bytes,
            quotedDestination: outside.bytes, quotedSourcePort: 80, quotedDestinationPort: 40000)
        XCTAssertEqual(model.extVerdict(frame: tooBig, ingressIfindex: ext1), .drop(.forward))
        XCTAssertEqual(
            model.extVerdict(frame: tooBig, ingressIfindex: ext1, isConntrackReply6: { $0 == tracked }),
            .pass(.related), "packet too big about f1's datagram of the tracked connection")
        expectExt([ext1], tooBig, .drop(.forward), "the same error without a tracked connection")
    }
}
