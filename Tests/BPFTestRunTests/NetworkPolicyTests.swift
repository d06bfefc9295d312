// SPDX-License-Identifier: Apache-2.0
//
// Several Docker networks (docs/verdicts.md, "Networks") through the real
// programs: docker0 (icc off, with links), `front` (icc on) and `back`
// (internal, icc off), each frame sent from a port of a given network. The
// expectations are the contract's, written out here; the reference model
// must agree as everywhere else.

import BPFNetCore
import BPFNetTestSupport
import XCTest

final class NetworkPolicyTests: TestRunTestCase {
    let f1 = Endpoint(Fixture.onNetwork(Fixture.container("f1", IPv4Address(10, 90, 0, 2)), "front"))
    let f2 = Endpoint(mac: MACAddress(dockerStyleFor: IPv4Address(10, 90, 0, 3)), ip: IPv4Address(10, 90, 0, 3))
    let b1 = Endpoint(mac: MACAddress(dockerStyleFor: IPv4Address(10, 91, 0, 2)), ip: IPv4Address(10, 91, 0, 2))
    let b2 = Endpoint(mac: MACAddress(dockerStyleFor: IPv4Address(10, 91, 0, 3)), ip: IPv4Address(10, 91, 0, 3))
    let frontMAC = Fixture.networkFacts["front"]!.mac
    let backMAC = Fixture.networkFacts["back"]!.mac
    let internet = IPv4Address(192, 0, 2, 99)

    /// Writes the three-network policy; returns the senders by name.
    @discardableResult
    func applyNetworks(iccDefault: Bool = false, forward: ForwardPolicy = .accept) throws -> [String: PortSender] {
        let state = try rig.write(
            Fixture.compile(
                Fixture.withNetworks(Fixture.policy(icc: iccDefault, forward: forward)), namespace: rig.namespace))
        var senders: [String: PortSender] = [:]
        for record in state.ports.values where record.known {
            let name = state.names[record.address] ?? "\(record.address)"
            senders[name + "@" + "\(record.network)"] = .container(record)
        }
        // The unknown port of `back` (1950), and its slot.
        let back = state.ports[1950]!
        XCTAssertFalse(back.known)
        senders["unknown@back"] = .container(back)
        senders["f1"] = senders.first { $0.key.hasPrefix("f1@") }!.value
        senders["b1"] = senders.first { $0.key.hasPrefix("b1@") }!.value
        senders["app"] = senders["app@0"]
        return senders
    }

    func via(_ mac: MACAddress, _ address: IPv4Address) -> Endpoint { endpoint(address, mac: mac) }

    func testWithinANetworkItsOwnICCDecides() throws {
        let senders = try applyNetworks()
        expectPort(tcp(f1, f2, 40000, 5432), .pass(.iccAllowed), "front has icc on", sender: senders["f1"])
        expectPort(tcp(b1, b2, 40000, 6379), .drop(.icc), "back has icc off", sender: senders["b1"])
        expectPort(tcp(app, db, 40000, 5432), .pass(.link), "docker0 keeps its links", sender: senders["app"])
        expectPort(tcp(app, other, 40000, 80), .drop(.icc), "docker0 keeps its icc off", sender: senders["app"])
    }

    func testBetweenNetworksEverythingIsDroppedButTheGateways() throws {
        let senders = try applyNetworks(iccDefault: true)
        let f1Sender = senders["f1"]!
        expectPort(
            tcp(f1, via(frontMAC, Fixture.db.ip), 40000, 5432), .drop(.network), "front → a docker0 container",
            sender: f1Sender)
        expectPort(
            tcp(f1, via(frontMAC, Fixture.web.ip), 40000, 80), .drop(.network),
            "front → docker0 container's published container port, addressed directly", sender: f1Sender)
        expectPort(
            udp(f1, via(frontMAC, IPv4Address(10, 88, 0, 99)), 40000, 53), .drop(.network),
            "front → an unused docker0 address", sender: f1Sender)
        expectPort(
            tcp(f1, via(frontMAC, Fixture.stray.ip), 40000, 80), .drop(.network),
            "front → a docker0 container outside docker0's subnet", sender: f1Sender)
        expectPort(tcp(f1, via(frontMAC, b1.ip), 40000, 6379), .drop(.network), "front → back", sender: f1Sender)
        expectPort(
            tcp(app, via(Fixture.bridgeMAC, f1.ip), 40000, 80), .drop(.network), "docker0 → front",
            sender: senders["app"])
        expectPort(
            tcp(b1, via(backMAC, f1.ip), 40000, 80), .drop(.network), "back → front", sender: senders["b1"])
        // Every network's gateway is a host address: reachable, as through Docker's INPUT.
        expectPort(
            tcp(f1, via(frontMAC, Fixture.bridge.address), 40000, 8080), .pass(.host),
            "front → docker0's gateway (a host address, where docker-proxy listens)", sender: f1Sender)
        expectPort(
            tcp(f1, via(frontMAC, IPv4Address(10, 90, 0, 1)), 40000, 53), .pass(.host), "front → its own gateway",
            sender: f1Sender)
        expectPort(
            tcp(f1, via(frontMAC, internet), 40000, 443), .pass(.outside), "front → the outside", sender: f1Sender)
    }

    func testAnInternalNetworkReachesOnlyItsSubnetAndTheHost() throws {
        let senders = try applyNetworks(iccDefault: true)
        let b1Sender = senders["b1"]!
        expectPort(
            tcp(b1, via(backMAC, internet), 40000, 443), .drop(.internal), "back → the outside", sender: b1Sender)
        expectPort(
            udp(b1, via(backMAC, Fixture.hostAddress), 40000, 53), .drop(.internal),
            "back → another host address (no route in Docker; the program cannot tell it from the outside)",
            sender: b1Sender)
        expectPort(
            tcp(b1, via(backMAC, IPv4Address(10, 91, 0, 1)), 40000, 53), .pass(.host), "back → its gateway",
            sender: b1Sender)
        expectPort(
            tcp(b1, via(backMAC, IPv4Address(10, 90, 0, 1)), 40000, 53), .pass(.host), "back → front's gateway",
            sender: b1Sender)
        expectPort(
            udp(
                b1, endpoint(IPv4Address(255, 255, 255, 255), mac: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), 68,
                67), .drop(.icc),
            "back's broadcast is between its containers (icc off)", sender: b1Sender)
    }

    func testUnknownPortsAreJudgedOnTheirOwnNetwork() throws {
        let senders = try applyNetworks(iccDefault: true)
        let unknownBack = senders["unknown@back"]!
        let stranger = Endpoint(mac: MACAddress(0x02, 0xaa, 0, 0, 0, 9), ip: IPv4Address(10, 91, 0, 77))
        expectPort(
            tcp(stranger, b2, 40000, 80), .drop(.unknownPort), "unknown port of back → back", sender: unknownBack)
        expectPort(
            tcp(stranger, via(backMAC, internet), 40000, 80), .drop(.internal), "unknown port of back → outside",
            sender: unknownBack)
        expectPort(
            tcp(stranger, via(backMAC, Fixture.db.ip), 40000, 80), .drop(.network),
            "unknown port of back → docker0", sender: unknownBack)
        // No entry at all: a port of docker0 (icc on here), isolated from the others.
        expectPort(
            tcp(stranger, via(Fixture.bridgeMAC, f1.ip), 40000, 80), .drop(.network),
            "port without an entry → front", sender: .unknown)
        expectPort(
            tcp(stranger, db, 40000, 80), .pass(.iccAllowed), "port without an entry → docker0 (icc on)",
            sender: .unknown)
    }

    func testFromTheOutside() throws {
        try applyNetworks(forward: .accept)
        let outsider = endpoint(IPv4Address(192, 0, 2, 50))
        expectExt(
            [ext1], tcp(outsider, endpoint(f1.ip, mac: Fixture.hostMAC), 40000, 80), .pass(.forwardAccept),
            "routed to a front container, forward accept")
        expectExt(
            [ext1], tcp(outsider, endpoint(b1.ip, mac: Fixture.hostMAC), 40000, 6379), .drop(.internal),
            "routed to an internal network's container")
        expectExt(
            [ext1], tcp(outsider, endpoint(IPv4Address(10, 90, 0, 1), mac: Fixture.hostMAC), 40000, 22),
            .pass(.local), "front's gateway is a host address")
        expectExt(
            [ext1], tcp(outsider, host, 40000, 7070), .pass(.published), "front's published port, no allow-list")
        expectExt(
            [ext0], tcp(refused, host, 40000, 7070), .drop(.source), "front's published port, source not listed")
        expectExt(
            [ext0], tcp(admitted, host, 40000, 7070), .pass(.published), "front's published port, source listed")
        expectExt(
            [ext1], tcp(outsider, host, 40000, 7171), .pass(.local),
            "an internal network publishes nothing: the host's business")
        try applyNetworks(forward: .drop)
        expectExt(
            [ext1], tcp(outsider, endpoint(f1.ip, mac: Fixture.hostMAC), 40000, 80), .drop(.forward),
            "routed to a front container, forward drop")
    }
}
