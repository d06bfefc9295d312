// SPDX-License-Identifier: Apache-2.0
//
// The agent follows every Docker bridge network: the networks that exist when it starts,
// one created or removed while it runs (policed before its first container), containers
// on user networks and on two at once, and ports joining any of the bridges.

import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import Foundation
import XCTest

@testable import DockerWatcher

final class AgentNetworkTests: XCTestCase {
    /// "name@network ip port" of every endpoint in force.
    private func endpoints(_ harness: AgentHarness) -> [String] {
        (harness.dataplane.currentPolicy?.containers ?? []).map {
            "\($0.name)@\($0.network ?? "-") \($0.ip) \($0.port)"
        }.sorted()
    }

    private func networks(_ harness: AgentHarness) -> [BridgeNetwork] {
        harness.dataplane.currentPolicy?.networks ?? []
    }

    func testNetworksThatExistAtStartAndAContainerOnTwo() async throws {
        let harness = AgentHarness()
        let docker = harness.docker
        docker.createNetwork("app", silently: true)
        docker.createNetwork("quiet", icc: false, silently: true)
        docker.createNetwork("sealed", internal: true, silently: true)
        docker.run("web", silently: true)
        docker.run("api", network: "app", silently: true)
        docker.connect("api", to: "quiet", silently: true)
        docker.run("vault", network: "sealed", silently: true)
        harness.start()
        try await eventually("every endpoint") { self.endpoints(harness).count == 4 }
        let pids = ["web", "api", "vault"].map { docker.container(named: $0)!.pid! }
        XCTAssertEqual(
            endpoints(harness),
            [
                "api@app 172.18.0.2 veth\(pids[1])n18", "api@quiet 172.19.0.2 veth\(pids[1])n19",
                "vault@sealed 172.20.0.2 veth\(pids[2])n20", "web@- 172.17.0.2 veth\(pids[0])",
            ])
        XCTAssertEqual(
            networks(harness),
            [
                BridgeNetwork(name: "app", bridge: docker.bridgeName(of: "app")),
                BridgeNetwork(name: "quiet", bridge: docker.bridgeName(of: "quiet"), icc: false),
                BridgeNetwork(name: "sealed", bridge: docker.bridgeName(of: "sealed"), internal: true),
            ])
        XCTAssertFalse(harness.dataplane.currentPolicy?.icc ?? true, "the default bridge keeps the agent's icc")
        let skipped = await harness.agent.snapshot().skipped
        XCTAssertEqual(skipped, [])

        // Leaving one network keeps the other endpoint; leaving the last one removes it.
        docker.disconnect("api", from: "quiet")
        try await eventually("api left quiet") { !self.endpoints(harness).contains { $0.hasPrefix("api@quiet") } }
        XCTAssertTrue(endpoints(harness).contains { $0.hasPrefix("api@app") })
        docker.disconnect("api", from: "app")
        try await eventually("api on no network") { !self.endpoints(harness).contains { $0.hasPrefix("api@") } }
        try await harness.stop()
    }

    func testANetworkCreatedWhileRunningIsPolicedBeforeItsFirstContainer() async throws {
        let harness = AgentHarness()
        let docker = harness.docker
        docker.run("web", silently: true)
        harness.start()
        try await eventually("initial sync") { self.endpoints(harness).count == 1 }
        XCTAssertEqual(networks(harness), [])
        func portApplies() async -> Int { await harness.agent.snapshot().statistics.portApplies }

        docker.createNetwork("late", icc: false)
        let bridge = docker.bridgeName(of: "late")
        try await eventually("the network alone") {
            self.networks(harness) == [BridgeNetwork(name: "late", bridge: bridge, icc: false)]
        }
        XCTAssertEqual(endpoints(harness).count, 1)
        // Its bridge's ports get the program as they join, before any start event.
        harness.host.join("vethfirst", bridge: bridge)
        try await eventually("attached to the new bridge's port") { await portApplies() == 1 }

        docker.run("lately", network: "late")
        try await eventually("its container") { self.endpoints(harness).contains { $0.hasPrefix("lately@late ") } }
        // The latency is recorded once the apply returns, a moment after the dataplane has it.
        try await eventually("a start on a user network is measured too") {
            await !harness.agent.snapshot().startLatencies.isEmpty
        }

        docker.stop("lately")
        docker.removeNetwork("late")
        try await eventually("the network is gone") { self.networks(harness).isEmpty }
        XCTAssertEqual(endpoints(harness).count, 1)
        try await harness.stop()
    }

    /// A container that joins a network whose `create` the agent never saw (a lost event, a
    /// network made while the stream was being opened) is policed at once: the `connect`
    /// of an unknown network ID makes the agent read the networks before the container,
    /// not at the next resync (an hour away here).
    func testAConnectToANetworkNeverSeenReadsTheNetworksAtOnce() async throws {
        let harness = AgentHarness()
        let docker = harness.docker
        docker.run("web", silently: true)
        harness.start()
        try await eventually("initial sync") { self.endpoints(harness).count == 1 }
        let resyncs = await harness.agent.snapshot().statistics.resyncs

        docker.createNetwork("unseen", icc: false, silently: true)
        docker.run("hidden", network: "unseen")
        try await eventually("its container, on its network") {
            self.endpoints(harness).contains { $0.hasPrefix("hidden@unseen ") }
                && self.networks(harness).map(\.name) == ["unseen"]
        }
        let after = await harness.agent.snapshot().statistics.resyncs
        XCTAssertEqual(after, resyncs, "no resync: the connect event did it")
        try await harness.stop()
    }

    func testEventsOfOtherDriversChangeNothing() async throws {
        let harness = AgentHarness()
        harness.docker.run("web", silently: true)
        harness.start()
        try await eventually("initial sync") { self.endpoints(harness).count == 1 }
        let applies = harness.dataplane.applications.count
        let reads = harness.docker.requests.filter { $0 == "networks" }.count
        harness.docker.emit(harness.docker.networkEvent(.create, "lan", type: "macvlan"))
        harness.docker.emit(
            harness.docker.network(.connect, harness.docker.id(of: "web"), network: "lan", type: "macvlan"))
        try await stays("nothing applied") { harness.dataplane.applications.count == applies }
        XCTAssertEqual(harness.docker.requests.filter { $0 == "networks" }.count, reads, "no network list read")
        try await harness.stop()
    }

    /// A network the validator refuses is left out with its endpoints; the rest is enforced.
    func testARefusedNetworkIsLeftOutAlone() {
        let twin = [
            DockerBridgeNetwork(id: "n1", name: "app", bridgeName: "br-app"),
            DockerBridgeNetwork(id: "n2", name: "copy", bridgeName: "br-app"),
            DockerBridgeNetwork(id: "n3", name: "gone", bridgeName: "br-gone"),
        ]
        func endpoint(_ third: UInt8, _ network: String) -> (String, DockerBridgeEndpoint) {
            let ip = IPv4Address(172, third, 0, 2)
            return (network, DockerBridgeEndpoint(ip: ip, mac: MACAddress(dockerStyleFor: ip)))
        }
        let api = DockerContainer(
            id: "id-api", name: "api", running: true, pid: 7, networkMode: "app",
            networks: Dictionary(uniqueKeysWithValues: [
                endpoint(18, "app"), endpoint(19, "copy"), endpoint(20, "gone"),
            ]))
        let built = DesiredPolicy.build(
            settings: Policy(), networks: twin,
            containers: [TrackedContainer(container: api, ports: ["app": "va", "copy": "vc", "gone": "vg"])],
            bridgeAddress: nil, portExists: { $0 != "br-gone" })
        XCTAssertEqual(built.policy.networks.map(\.name), ["app"])
        XCTAssertEqual(built.policy.containers.map { "\($0.name)@\($0.network ?? "-")" }, ["api@app"])
        XCTAssertEqual(built.skipped.count, 1)
        XCTAssertTrue(
            built.skipped[0].reason.hasPrefix("on network copy: the network is left out"), built.skipped[0].reason)
    }
}
