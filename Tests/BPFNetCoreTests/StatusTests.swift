import BPFNetShared
import Foundation
import XCTest

@testable import BPFNetCore

final class StatusTests: XCTestCase {
    static let names: [UInt32: String] = Dictionary(uniqueKeysWithValues: Sample.interfaces.map { ($0.value, $0.key) })

    func status(_ policy: Policy = Sample.policy) -> DataplaneStatus {
        DataplaneStatus(backend: "bpf", state: Sample.state(policy)) { Self.names[$0] }
    }

    func testPolicyPartFromMaps() {
        var policy = Sample.policy
        policy.containers.append(Sample.db)
        policy.links.append(Link(parent: "web", child: "db"))
        let status = status(policy)
        XCTAssertEqual(status.backend, "bpf")
        XCTAssertEqual(status.bridge, "docker0")
        XCTAssertEqual(status.bridgeAddress, "172.17.0.1/16")
        XCTAssertFalse(status.icc)
        XCTAssertEqual(status.forwardPolicy, "drop")
        XCTAssertTrue(status.ipForward)
        XCTAssertTrue(status.loaded)
        XCTAssertEqual(
            status.extInterfaces,
            [.init(name: "eth0", ifindex: 2, allowSources: ["198.51.100.2/32", "203.0.113.0/24"])])
        XCTAssertEqual(
            status.containers,
            [
                .init(name: "web", ip: "172.17.0.2", mac: "02:42:ac:11:00:02", port: "vethweb", portIfindex: 10),
                .init(name: "client", ip: "172.17.0.3", mac: "02:42:ac:11:00:03", port: "vethclient", portIfindex: 11),
                .init(name: "db", ip: "172.17.0.4", mac: "02:42:ac:11:00:04", port: "vethdb", portIfindex: 12),
            ])
        XCTAssertEqual(
            status.links,
            [
                .init(parent: "web", child: "db", parentIP: "172.17.0.2", childIP: "172.17.0.4", ports: ["5432/tcp"]),
                .init(
                    parent: "client", child: "web", parentIP: "172.17.0.3", childIP: "172.17.0.2",
                    ports: ["80/tcp", "53/udp"]),
            ])
        XCTAssertEqual(
            status.published,
            [
                .init(
                    hostIP: nil, hostPort: 8080, proto: "tcp", container: "web",
                    containerIP: "172.17.0.2", containerPort: 80)
            ])
    }

    func testNetworksFromMaps() throws {
        var policy = FallbackSample.networksPolicy
        policy.networks.append(BridgeNetwork(name: "bare", bridge: "br-bare", masquerade: false))
        var facts = FallbackSample.networkFacts
        facts.networks["bare"] = BridgeFacts(ifindex: 50, address: nil, mac: .zero, ports: [])
        let names = FallbackSample.networkInterfaces.merging(["br-bare": 50]) { a, _ in a }
        let byIndex = Dictionary(uniqueKeysWithValues: names.map { ($0.value, $0.key) })
        let status = DataplaneStatus(
            backend: "bpf", state: try PolicyCompiler.compile(policy, facts: facts)
        ) { byIndex[$0] }
        XCTAssertEqual(
            status.networks,
            [
                .init(
                    name: "bridge", bridge: "docker0", subnet: "172.17.0.0/16", icc: false, internal: false,
                    masquerade: true, containers: 2),
                .init(
                    name: "back", bridge: "br-back", subnet: "10.20.0.0/24", icc: false, internal: false,
                    masquerade: true, containers: 1),
                .init(
                    name: "br-bare", bridge: "br-bare", subnet: nil, icc: true, internal: false, masquerade: false,
                    containers: 0),
                .init(
                    name: "front", bridge: "br-front", subnet: "10.10.0.0/24", icc: true, internal: false,
                    masquerade: true, containers: 2),
                .init(
                    name: "vault", bridge: "br-vault", subnet: "10.30.0.0/24", icc: true, internal: true,
                    masquerade: false, containers: 1),
            ],
            "a bridge without an address has no subnet, no masquerade and goes by its bridge's name")
        XCTAssertEqual(
            Set(status.containers.map(\.name)), ["web", "client", "f1", "f2", "b1", "v1"],
            "the networks' names sit under their gateways, not in place of a container's")

        // The keys docs/cli.md lists; `ports` only where the backend counts them.
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(status)) as! [String: Any]
        let rows = try XCTUnwrap(json["networks"] as? [[String: Any]])
        XCTAssertEqual(
            Set(rows[1].keys), ["name", "bridge", "subnet", "icc", "internal", "masquerade", "containers"])
        var counted = status
        counted.networks?[0].ports = 3
        let countedJSON = try JSONSerialization.jsonObject(with: JSONEncoder().encode(counted)) as! [String: Any]
        XCTAssertEqual((countedJSON["networks"] as? [[String: Any]])?[0]["ports"] as? Int, 3)
    }

    func testUnknownNamesFallBack() {
        var state = Sample.state()
        state.names[Sample.client.ip] = nil
        let status = DataplaneStatus(backend: "bpf", state: state, bridge: "docker0") { _ in nil }
        XCTAssertEqual(status.bridge, "docker0")
        XCTAssertEqual(status.containers[1].name, "172.17.0.3")
        XCTAssertEqual(status.containers[1].port, "if11")
        XCTAssertEqual(status.links[0].parent, "172.17.0.3")
        XCTAssertEqual(status.extInterfaces[0].name, "if2")
        XCTAssertEqual(DataplaneStatus(backend: "bpf", state: .empty) { _ in nil }.loaded, false)
    }

    func testCounters() {
        var slots = [bpfnet_counter](repeating: bpfnet_counter(), count: ProgramKind.counterSlots)
        slots[ProgramKind.portTC.counterIndex(.icc)] = bpfnet_counter(packets: 5, bytes: 300)
        slots[ProgramKind.portXDP.counterIndex(.icc)] = bpfnet_counter(packets: 2, bytes: 120)
        slots[ProgramKind.extXDP.counterIndex(.published)] = bpfnet_counter(packets: 7, bytes: 700)
        slots[ProgramKind.portTC.counterIndex(Reason(rawValue: 45))] = bpfnet_counter(packets: 1, bytes: 60)
        var status = status()
        status.setCounters(slots: slots)
        XCTAssertEqual(status.counters["icc"], 7)
        XCTAssertEqual(status.counters["published"], 7)
        XCTAssertEqual(status.counters["link"], 0, "every known reason is listed")
        XCTAssertEqual(status.counters["reason-45"], 1)
        XCTAssertEqual(status.programCounters["port-tc"]?["icc"], .init(packets: 5, bytes: 300))
        XCTAssertEqual(status.programCounters["ext-xdp"]?["published"], .init(packets: 7, bytes: 700))
        XCTAssertNil(status.programCounters["port-tc"]?["link"], "detail lists non-zero counters only")

        let perCPU = [
            [bpfnet_counter(packets: 1, bytes: 10), bpfnet_counter(packets: 2, bytes: 20)],
            [bpfnet_counter(packets: 3, bytes: 30), bpfnet_counter(packets: 4, bytes: 40)],
        ]
        let summed = DataplaneStatus.sumPerCPU(perCPU)
        XCTAssertEqual(summed.map(\.packets), [4, 6])
        XCTAssertEqual(summed.map(\.bytes), [40, 60])
    }

    func testJSONShape() throws {
        var status = status()
        status.setCounters(slots: [])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(status)
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for key in [
            "backend", "bridge", "icc", "forwardPolicy", "ipForward", "extInterfaces", "containers", "links",
            "counters",
        ] {
            XCTAssertNotNil(object[key], key)
        }
        let containers = object["containers"] as! [[String: Any]]
        XCTAssertEqual(containers[0]["name"] as? String, "web")
        XCTAssertEqual(containers[0]["ip"] as? String, "172.17.0.2")
        XCTAssertEqual(containers[0]["mac"] as? String, "02:42:ac:11:00:02")
        XCTAssertEqual(containers[0]["port"] as? String, "vethweb")
        let links = object["links"] as! [[String: Any]]
        XCTAssertEqual(links[0]["ports"] as? [String], ["80/tcp", "53/udp"])
        XCTAssertEqual(
            (object["extInterfaces"] as! [[String: Any]])[0]["allowSources"] as? [String],
            ["198.51.100.2/32", "203.0.113.0/24"])
        XCTAssertEqual(object["forwardPolicy"] as? String, "drop")
        XCTAssertEqual((object["counters"] as! [String: Any])["malformed"] as? Int, 0)
        XCTAssertEqual(try JSONDecoder().decode(DataplaneStatus.self, from: data), status)
    }
}
