// SPDX-License-Identifier: Apache-2.0
//
// Containers on user-defined bridge networks → `Policy.networks` and one `Container` per
// (container, bridge network) endpoint.

import BPFNetCore
import Foundation
import XCTest

@testable import DockerWatcher

final class NetworkTranslationTests: XCTestCase {
    private let networks = [
        DockerBridgeNetwork(
            id: "b" + String(repeating: "0", count: 63), name: "bridge", subnet: IPv4CIDR("172.17.0.0/16")),
        DockerBridgeNetwork(
            id: "a1" + String(repeating: "1", count: 62), name: "app", bridgeName: "br-a11111111111",
            subnet: IPv4CIDR("172.18.0.0/16")),
        DockerBridgeNetwork(
            id: "a2" + String(repeating: "2", count: 62), name: "quiet", bridgeName: "br-a22222222222",
            iccEnabled: false, subnet: IPv4CIDR("172.19.0.0/16")),
        DockerBridgeNetwork(
            id: "a3" + String(repeating: "3", count: 62), name: "sealed", bridgeName: "br-sealed",
            ipMasquerade: false, subnet: IPv4CIDR("172.20.0.0/16"), internal: true),
    ]

    private func endpoint(_ network: String, _ host: UInt8) -> (String, DockerBridgeEndpoint) {
        let third: UInt8 = ["bridge": 17, "app": 18, "quiet": 19, "sealed": 20, "lan": 99][network]!
        let ip = IPv4Address(172, third, 0, host)
        let id = networks.first { $0.name == network }?.id
        return (network, DockerBridgeEndpoint(ip: ip, mac: MACAddress(dockerStyleFor: ip), networkID: id))
    }

    private func container(
        _ name: String, pid: Int32, mode: String = "default", _ endpoints: [(String, DockerBridgeEndpoint)],
        links: [String] = [], published: [PublishedPort] = []
    ) -> DockerContainer {
        DockerContainer(
            id: "id-\(name)", name: name, running: true, pid: pid, networkMode: mode,
            links: links.compactMap { DockerLinkDeclaration(parsing: $0) },
            exposedPorts: published.map { PortSpec($0.containerPort, $0.proto) }, publishedPorts: published,
            networks: Dictionary(uniqueKeysWithValues: endpoints))
    }

    private func ports(_ containers: [DockerContainer]) -> [String: [String: String]] {
        Dictionary(
            uniqueKeysWithValues: containers.map { c in
                (c.id, Dictionary(uniqueKeysWithValues: c.networks.keys.map { ($0, "v-\(c.name)-\($0)") }))
            })
    }

    func testSeveralNetworksAndAContainerOnTwo() {
        let web = container("web", pid: 10, [endpoint("bridge", 2)])
        let client = container("client", pid: 11, [endpoint("bridge", 3)], links: ["/web:/client/w"])
        let api = container(
            "api", pid: 12, mode: "app", [endpoint("app", 2), endpoint("quiet", 2)],
            published: [PublishedPort(hostPort: 8080, containerPort: 80)])
        let db = container("db", pid: 13, mode: "quiet", [endpoint("quiet", 3)])
        let vault = container("vault", pid: 14, mode: "sealed", [endpoint("sealed", 2)])
        let all = [web, client, api, db, vault]
        let snapshot = DockerPolicyTranslator.snapshot(of: all, networks: networks, endpointPorts: ports(all))

        XCTAssertEqual(
            snapshot.networks,
            [
                BridgeNetwork(name: "app", bridge: "br-a11111111111"),
                BridgeNetwork(name: "quiet", bridge: "br-a22222222222", icc: false),
                BridgeNetwork(name: "sealed", bridge: "br-sealed", internal: true, masquerade: false),
            ])
        XCTAssertEqual(
            snapshot.containers.map { "\($0.name)@\($0.network ?? "-") \($0.ip) \($0.port)" },
            [
                "api@app 172.18.0.2 v-api-app", "api@quiet 172.19.0.2 v-api-quiet",
                "client@- 172.17.0.3 v-client-bridge", "db@quiet 172.19.0.3 v-db-quiet",
                "vault@sealed 172.20.0.2 v-vault-sealed", "web@- 172.17.0.2 v-web-bridge",
            ])
        let apiEndpoints = snapshot.containers.filter { $0.name == "api" }
        XCTAssertEqual(apiEndpoints.map(\.published.count), [1, 0], "published on the network it was created on")
        XCTAssertEqual(snapshot.links, [Link(parent: "client", child: "web", alias: "w")])
        XCTAssertEqual(snapshot.skipped, [])

        let policy = snapshot.applied(to: Policy(icc: false))
        XCTAssertEqual(policy.problems(bridgeAddress: nil), [], "one name on two networks is two endpoints")
        XCTAssertEqual(policy.bridges, ["docker0", "br-a11111111111", "br-a22222222222", "br-sealed"])
        XCTAssertFalse(policy.icc, "the default bridge keeps the daemon's setting")
    }

    func testANetworkWithoutContainersIsInThePolicy() {
        let snapshot = DockerPolicyTranslator.snapshot(of: [], networks: networks, endpointPorts: [:])
        XCTAssertEqual(snapshot.networks.map(\.name), ["app", "quiet", "sealed"])
        XCTAssertEqual(snapshot.containers, [])
    }

    func testEndpointsOnOtherDriversAndUnknownNetworksAreLeftOutSilently() {
        let lan = container("lan", pid: 20, mode: "lan", [endpoint("lan", 2)])
        let mixed = container("mixed", pid: 21, [endpoint("bridge", 4), endpoint("lan", 3)])
        let snapshot = DockerPolicyTranslator.snapshot(
            of: [lan, mixed], networks: networks, endpointPorts: ports([lan, mixed]))
        XCTAssertEqual(snapshot.containers.map(\.name), ["mixed"])
        XCTAssertNil(snapshot.containers.first?.network)
        XCTAssertEqual(snapshot.skipped, [])
        // The default-bridge form of the translation knows no user networks.
        let api = container("api", pid: 22, mode: "app", [endpoint("app", 2)])
        XCTAssertEqual(DockerPolicyTranslator.snapshot(of: [api], ports: [api.id: "v"]).containers, [])
    }

    func testEndpointsThatCannotBeEnforcedAreSkippedOneByOne() {
        var api = container("api", pid: 12, mode: "app", [endpoint("app", 2), endpoint("quiet", 2)])
        api.networks["quiet"]?.networkID = "ffffffffffff0000"
        let db = container("db", pid: 13, mode: "app", [endpoint("app", 3)])
        var endpointPorts = ports([api, db])
        endpointPorts[db.id] = [:]
        let snapshot = DockerPolicyTranslator.snapshot(of: [api, db], networks: networks, endpointPorts: endpointPorts)
        XCTAssertEqual(snapshot.containers.map { "\($0.name)@\($0.network ?? "-")" }, ["api@app"])
        XCTAssertEqual(snapshot.skipped.map(\.name), ["api", "db"])
        XCTAssertTrue(snapshot.skipped[0].reason.hasPrefix("on network quiet: its endpoint is on network ffffffffffff"))
        XCTAssertEqual(snapshot.skipped[1].reason, "on network app: host-side port unknown")
    }

    func testPortsAreFoundByMAC() async {
        let api = container("api", pid: 12, mode: "app", [endpoint("app", 2), endpoint("quiet", 2)])
        let web = container("web", pid: 10, [endpoint("bridge", 2)])
        let quietMAC = api.networks["quiet"]!.mac!
        let snapshot = await DockerPolicyTranslator.snapshot(
            of: [api, web], networks: networks,
            resolvePorts: { pid, macs in
                // pid 12's quiet interface vanished; pid 10 has one interface.
                Dictionary(
                    uniqueKeysWithValues: macs.filter { pid != 12 || $0 != quietMAC }.map {
                        ($0, "veth\(pid)-\($0.bytes.3)")
                    })
            })
        XCTAssertEqual(
            snapshot.containers.map { "\($0.name)@\($0.network ?? "-") \($0.port)" },
            ["api@app veth12-18", "web@- veth10-17"])
        XCTAssertEqual(
            snapshot.skipped.map(\.reason), ["on network quiet: no interface with its MAC in the container's namespace"]
        )
    }

    func testRecordedContainerOnTwoNetworks() throws {
        let networks = try DockerBridgeNetwork.list(fromJSON: Fixture.data("networks_bridge_20.10.json"))
        let c1 = try DockerContainer(inspectJSON: Fixture.data("inspect_two_networks_20.10.json"))
        let snapshot = DockerPolicyTranslator.snapshot(
            of: [c1], networks: networks, endpointPorts: [c1.id: ["appnet": "vethA", "quiet": "vethQ"]])
        XCTAssertEqual(snapshot.networks.map(\.name), ["appnet", "dual", "quiet", "sealed"])
        XCTAssertEqual(
            snapshot.containers,
            [
                Container(
                    name: "c1", ip: IPv4Address("172.18.0.2")!, mac: MACAddress("02:42:ac:12:00:02")!, port: "vethA",
                    network: "appnet"),
                Container(
                    name: "c1", ip: IPv4Address("10.77.0.2")!, mac: MACAddress("02:42:0a:4d:00:02")!, port: "vethQ",
                    network: "quiet"),
            ])
        XCTAssertEqual(snapshot.applied(to: Policy()).problems(bridgeAddress: nil), [])
    }

    /// Recorded from dockerd 20.10 with `--ipv6 --fixed-cidr-v6 fd00:17::/64` and a network
    /// made with `--ipv6 --subnet 10.30.0.0/24 --subnet fd00:30::/64`: the IPAM entries have no
    /// IPv6 gateway (the bridges carry ::1), the endpoints a bare `GlobalIPv6Address`.
    func testRecordedDualStack2010() throws {
        let networks = try DockerBridgeNetwork.list(fromJSON: Fixture.data("networks_ipv6_20.10.json"))
        XCTAssertEqual(networks.map(\.name), ["v4net", "bridge", "v6net"])
        XCTAssertEqual(
            networks.map(\.ipv6Gateway),
            [nil, IPv6InterfaceAddress("fd00:17::1/64"), IPv6InterfaceAddress("fd00:30::1/64")])
        let a = try DockerContainer(inspectJSON: Fixture.data("inspect_a_ipv6_20.10.json"))
        let c = try DockerContainer(inspectJSON: Fixture.data("inspect_c_ipv6_20.10.json"))
        let d = try DockerContainer(inspectJSON: Fixture.data("inspect_d_ipv6_20.10.json"))
        XCTAssertEqual(c.networks["v6net"]?.ipv6, IPv6Address("fd00:30::3"))
        XCTAssertNil(c.networks["v4net"]?.ipv6, "an empty GlobalIPv6Address on an IPv4-only network")
        let snapshot = DockerPolicyTranslator.snapshot(
            of: [a, c, d], networks: networks,
            endpointPorts: [
                a.id: ["bridge": "vethA"], c.id: ["v4net": "vethC4", "v6net": "vethC6"], d.id: ["v6net": "vethD"],
            ])
        XCTAssertEqual(snapshot.bridgeIPv6, IPv6InterfaceAddress("fd00:17::1/64"))
        XCTAssertEqual(snapshot.networks.map(\.ipv6), [nil, IPv6InterfaceAddress("fd00:30::1/64")])
        XCTAssertEqual(
            snapshot.containers.map {
                "\($0.name)@\($0.network ?? "bridge") \($0.ip) \($0.ipv6.map(\.description) ?? "-")"
            },
            [
                "box-a@bridge 172.17.0.2 fd00:17::242:ac11:2", "box-c@v4net 10.31.0.2 -",
                "box-c@v6net 10.30.0.3 fd00:30::3",
                "box-d@v6net 10.30.0.4 fd00:30::42",
            ])
        XCTAssertEqual(snapshot.skipped, [])
        let policy = snapshot.applied(to: Policy())
        XCTAssertEqual(policy.bridgeIPv6, IPv6InterfaceAddress("fd00:17::1/64"))
        XCTAssertEqual(policy.problems(bridgeAddress: nil), [])

        // An address outside its network's subnet is left out (the container stays, by IPv4 and MAC).
        var moved = c
        moved.networks["v6net"]?.ipv6 = IPv6Address("fd00:99::3")
        let odd = DockerPolicyTranslator.snapshot(
            of: [moved], networks: networks, endpointPorts: [c.id: ["v4net": "vethC4", "v6net": "vethC6"]])
        XCTAssertEqual(odd.containers.map(\.ipv6), [nil, nil])
        XCTAssertEqual(
            odd.skipped.map(\.reason),
            ["its IPv6 address fd00:99::3 is not a container address of fd00:30::/64; policed without it"])
    }
}
