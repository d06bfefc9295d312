// SPDX-License-Identifier: Apache-2.0
//
// Traffic across every change (issue 13, item 2): steady UDP flows on the demo
// host run while the policy changes under them. Each flow is classed by what
// every policy of the run says about it:
// - allowed by all of them: the eBPF backend must lose none of its datagrams;
// - forbidden by all of them: not one datagram may arrive, whatever the
//   change (a new policy, a port hook switch, a killed `load --watch`, a
//   switch to another backend and back);
// - changing (icc): counted; some must arrive, which shows the changes took
//   effect while the flows ran.
// Across a backend switch a flow every policy allows can lose datagrams while
// the other backend's rules take over; the test prints that window and
// docs/testing.md records it.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class PolicyTransitionTests: XCTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try requireRootForEndToEnd()
    }

    /// icc both ways, the allow-list both ways, the port hook both ways, a
    /// `load --watch` killed with SIGKILL and a new `load` after it, a link
    /// and a container gone and back, an allow-list entry added and removed,
    /// a network added and removed, on the eBPF backend.
    func testPolicyChangesLoseNothingAllowedAndPassNothingForbidden() throws {
        let lab = try DemoLab()
        defer { lab.close() }
        let start = PolicySettings(icc: false, allowList: true, forwardPolicy: .drop)
        try lab.load(start, portHook: .tc)
        let changes: [(String, () throws -> Void)] = [
            ("icc on", { try lab.load(PolicySettings(icc: true), portHook: .tc) }),
            ("icc off", { try lab.load(start, portHook: .tc) }),
            ("allow-list off", { try lab.load(PolicySettings(icc: false, allowList: false), portHook: .tc) }),
            ("allow-list on", { try lab.load(start, portHook: .tc) }),
            ("port hook xdp", { try lab.load(start, portHook: .xdp) }),
            ("icc on with xdp", { try lab.load(PolicySettings(icc: true), portHook: .xdp) }),
            ("port hook tc, icc off", { try lab.load(start, portHook: .tc) }),
            ("load --watch killed", { try self.killWatcher(lab) }),
            ("load after the kill", { try lab.load(start, portHook: .tc) }),
            (
                "link client → web gone",
                { try lab.load(Self.policy(start) { $0.links.removeAll { $0.parent == "client" } }) }
            ),
            (
                "container app gone with its link",
                {
                    try lab.load(
                        Self.policy(start) { policy in
                            policy.containers.removeAll { $0.name == "app" }
                            policy.links.removeAll { $0.parent == "app" }
                        })
                }
            ),
            ("both back", { try lab.load(start, portHook: .tc) }),
            (
                "allow-list entry added",
                {
                    try lab.load(
                        Self.policy(start) { $0.extInterfaces[0].allowSources.append(IPv4CIDR("198.51.100.3/32")!) })
                }
            ),
            ("allow-list entry removed", { try lab.load(start, portHook: .tc) }),
            (
                "network added",
                {
                    // As `docker network create`: the bridge first, then the policy names it.
                    try lab.topology.ip(
                        in: TopologySpec.hostRole,
                        ["link add br-extra type bridge", "addr add 10.95.0.1/24 dev br-extra", "link set br-extra up"])
                    try lab.load(
                        Self.policy(start) { $0.networks.append(BridgeNetwork(name: "extra", bridge: "br-extra")) })
                }
            ),
            (
                "network removed",
                {
                    try lab.load(start, portHook: .tc)
                    try lab.topology.ip(in: TopologySpec.hostRole, ["link del br-extra"])
                }
            ),
        ]
        let counts = try runFlows(lab, changes: changes)
        for flow in counts where flow.flow.verdict == .allowed {
            XCTAssertEqual(flow.received, flow.sent, "\(flow): datagrams lost across the changes")
        }
        for flow in counts where flow.flow.verdict == .forbidden {
            XCTAssertEqual(flow.received, 0, "\(flow): forbidden datagrams delivered across the changes")
        }
        for flow in counts where flow.flow.verdict == .changing {
            XCTAssertGreaterThan(flow.received, 0, "\(flow): icc on never took effect while the flow ran")
            XCTAssertLessThan(flow.received, flow.sent, "\(flow): icc off never took effect while the flow ran")
        }
        XCTAssertEqual(try lab.status().backend, "bpf")
        let wrong = try lab.measure(start).filter { !$0.matches }
        XCTAssert(wrong.isEmpty, "cells differ after the changes: \(wrong)")
    }

    /// eBPF → nftables → iptables → nftables → eBPF with the same policy:
    /// nothing forbidden gets through at any switch.
    func testBackendSwitchesPassNothingForbidden() throws {
        let lab = try DemoLab()
        defer { lab.close() }
        let settings = PolicySettings(icc: false, allowList: true, forwardPolicy: .drop)
        try lab.load(settings, portHook: .tc)
        let changes: [(String, () throws -> Void)] = ["nftables", "iptables", "nftables", "bpf"].map { backend in
            ("backend \(backend)", { try lab.load(settings, portHook: .tc, extraArguments: ["--backend", backend]) })
        }
        let counts = try runFlows(lab, changes: changes, iccDuringRun: false)
        for flow in counts where flow.flow.verdict == .forbidden {
            XCTAssertEqual(flow.received, 0, "\(flow): forbidden datagrams delivered across the backend switches")
        }
        for flow in counts where flow.flow.verdict == .allowed {
            XCTAssertGreaterThan(flow.received, 0, "\(flow)")
            let lost = flow.sent - flow.received
            print(
                "backend switches (\(changes.count)): \(flow.flow.name) lost \(lost) of \(flow.sent) datagrams "
                    + "(\(String(format: "%.1f", Double(lost) * 1000 / Double(rate))) ms of traffic at \(rate)/s)")
        }
        XCTAssertEqual(try lab.status().backend, "bpf")
        let wrong = try lab.measure(settings).filter { !$0.matches }
        XCTAssert(wrong.isEmpty, "cells differ after the switches: \(wrong)")
    }

    // MARK: -

    /// The scenario's policy for `settings` (tc hook), changed by `change`.
    private static func policy(_ settings: PolicySettings, _ change: (inout Policy) -> Void) -> Policy {
        var policy = Scenario.policy(settings, portHook: .tc)
        change(&policy)
        return policy
    }

    private let rate = 2000  // datagrams per second and flow

    struct Flow: CustomStringConvertible {
        enum Verdict { case allowed, forbidden, changing }
        var name: String
        var from: String
        var to: IPv4Address
        var receiver: String
        var port: Int
        var verdict: Verdict

        var description: String { name }
    }

    struct FlowCount: CustomStringConvertible {
        var flow: Flow
        var sent: Int
        var received: Int

        var description: String { "\(flow.name): \(received) of \(sent) received" }
    }

    /// The flows and what the policies of a run say about them. Every policy
    /// keeps the forward policy at drop; `iccDuringRun` says whether icc is
    /// switched on at some point (otherwise client → lone is forbidden too).
    private func flows(_ lab: DemoLab, iccDuringRun: Bool) throws -> [Flow] {
        [
            Flow(
                name: "client → the outside", from: "client", to: try lab.topology.address(of: "ext"),
                receiver: "ext", port: 40001, verdict: .allowed),
            Flow(
                name: "client → api (another network)", from: "client", to: Scenario.address("api"),
                receiver: "api", port: 40002, verdict: .forbidden),
            Flow(
                name: "the outside → lone (routed, forward policy drop)", from: "ext", to: Scenario.address("lone"),
                receiver: "lone", port: 40004, verdict: .forbidden),
            Flow(
                name: "client → lone (icc)", from: "client", to: Scenario.address("lone"), receiver: "lone",
                port: 40003, verdict: iccDuringRun ? .changing : .forbidden),
        ]
    }

    /// Runs every flow while the changes are made one after another.
    private func runFlows(
        _ lab: DemoLab, changes: [(String, () throws -> Void)], iccDuringRun: Bool = true
    ) throws -> [FlowCount] {
        let flows = try flows(lab, iccDuringRun: iccDuringRun)
        let specs = flows.map { flow in
            UDPFlow.Spec(
                from: lab.topology.namespace(flow.from), to: flow.to, receiver: lab.topology.namespace(flow.receiver),
                port: flow.port)
        }
        let counts = try UDPFlow.run(specs, rate: rate) {
            for (name, change) in changes {
                let started = ContinuousClock.now
                try change()
                print("change \(name): \(ContinuousClock.now - started)")
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
        return try zip(flows, counts).map { flow, count in
            FlowCount(
                flow: flow, sent: try XCTUnwrap(count.sent, "\(flow): the sender's count"),
                received: try XCTUnwrap(count.received, "\(flow): the receiver's count"))
        }
    }

    /// Starts `bpfnet load --watch` with the policy in force, waits until it
    /// watches, and kills it with SIGKILL: what it loaded stays in force.
    private func killWatcher(_ lab: DemoLab) throws {
        let watcher = try lab.topology.startProcess(
            in: TopologySpec.hostRole,
            [lab.bpfnet, "load", "--watch", "--config", lab.policyFile, "--pin-path", lab.pinPath],
            captureOutput: true)
        defer { _ = watcher.stop() }
        _ = try watcher.waitForLine(prefix: "bpfnet: watching", timeout: .seconds(60))
        kill(watcher.pid, SIGKILL)
    }
}
