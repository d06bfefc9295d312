// SPDX-License-Identifier: Apache-2.0
//
// The demo host with real traffic, for the eBPF backend: every probe of the
// scenario (TCP with fixed source ports, UDP incl. fragmented datagrams, ICMP,
// published ports through bpfnet's NAT (eBPF where the default puts it,
// netfilter otherwise), direct routing, replies) must get the
// verdict the policy table predicts, for each policy, both port hooks, and
// with the fast path on and off (the fast path changes delivery, never a
// verdict). The policy is switched by loading over the running dataplane, as
// an operator does.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class BPFEndToEndTests: XCTestCase {
    static let settings: [PolicySettings] = [
        PolicySettings(icc: true, allowList: true, forwardPolicy: .drop),
        PolicySettings(icc: false, allowList: true, forwardPolicy: .drop),
        PolicySettings(icc: false, allowList: false, forwardPolicy: .accept),
        PolicySettings(icc: true, allowList: false, forwardPolicy: .accept),
        PolicySettings(icc: false, allowList: true, forwardPolicy: .accept),
    ]

    func testMatrixWithTCPortHook() throws {
        try runMatrix(portHook: .tc, fastPath: true)
    }

    func testMatrixWithXDPPortHook() throws {
        try runMatrix(portHook: .xdp, fastPath: true)
    }

    func testMatrixWithTCPortHookFastPathOff() throws {
        try runMatrix(portHook: .tc, fastPath: false)
    }

    func testMatrixWithXDPPortHookFastPathOff() throws {
        try runMatrix(portHook: .xdp, fastPath: false)
    }

    /// The default (nat auto) is the eBPF NAT with the tc hook and the fast
    /// path on: this is the other translator with the same hook, netfilter's.
    func testMatrixWithNetfilterNAT() throws {
        try runMatrix(portHook: .tc, fastPath: true, nat: .netfilter)
    }

    /// `nat` auto (the default) is in force as ebpf with the tc hook and the
    /// fast path on: the published-port probes are then translated by the ext
    /// and port programs (the lab's outside sends complete checksums, as a wire
    /// does), with every verdict the same.
    private func runMatrix(portHook: PortHook, fastPath: Bool, nat: NATMode = .auto) throws {
        try requireRoot("the end-to-end matrix loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        let natInForce = Policy(portHook: portHook, fastPath: fastPath, nat: nat).natInForce
        let portProgram = portHook == .tc ? "port-tc" : "port-xdp"
        defer {
            // Across the matrix (a connection that finds the container's
            // neighbour entry unresolved takes the stack, so not in each one).
            if natInForce == .ebpf, let status = try? lab.status() {
                XCTAssertGreaterThan(
                    status.fastPath?["ext-xdp"]?["hit"] ?? 0, 0,
                    "no published-port packet was translated by the ext program (\(status.fastPath ?? [:]))")
            }
        }
        for setting in Self.settings {
            let before = try? lab.status()
            try lab.load(
                setting, portHook: portHook,
                extraArguments: ["--fast-path", fastPath ? "on" : "off", "--nat", nat.rawValue])
            let counted = try lab.status().counters
            let entries = try lab.measure(setting)
            let status = try lab.status()
            assertDropsCounted(
                entries, backend: "bpf", before: counted, after: status.counters, "\(portHook) \(setting)")
            XCTAssertEqual(entries.count, Scenario.probes.count)
            for entry in entries where !entry.matches {
                XCTFail(
                    "\(portHook) fast path \(fastPath ? "on" : "off") \(setting): \(entry.source) → "
                        + "\(entry.destination) (row \(entry.rows)): expected \(entry.expected), observed \(entry.observed) — "
                        + "\(entry.detail)")
            }
            XCTAssertEqual(status.backend, "bpf")
            XCTAssertEqual(status.icc, setting.icc)
            XCTAssertEqual(status.forwardPolicy, setting.forwardPolicy.rawValue)
            XCTAssertEqual(status.fastPathEnabled, fastPath)
            XCTAssertEqual(status.containers.count, Scenario.members.count)
            XCTAssertEqual(Set(status.links.map { "\($0.parent)->\($0.child)" }), ["client->web", "app->db"])
            XCTAssertEqual(
                status.extInterfaces.map(\.allowSources),
                [setting.allowList ? ["\(Scenario.allowedSource)/32"] : []])
            // Traffic went through the programs of the chosen hook.
            // Counters outlive a reload: what this setting's probes added.
            func rose(_ reason: String) -> UInt64 {
                status.counters[reason, default: 0]
                    - min(status.counters[reason, default: 0], counted[reason, default: 0])
            }
            let portPackets = status.programCounters[portProgram]?.values.map(\.packets).reduce(0, +) ?? 0
            let portPacketsBefore = before?.programCounters[portProgram]?.values.map(\.packets).reduce(0, +) ?? 0
            XCTAssertGreaterThan(portPackets, portPacketsBefore, "no packet counted by \(portProgram)")
            XCTAssertGreaterThan(rose("published"), 0)
            if !setting.icc {
                XCTAssertGreaterThan(rose("icc"), 0, "icc=false dropped nothing")
                XCTAssertGreaterThan(rose("link-reverse"), 0, "the stateless reverse rule never matched")
            }
            XCTAssertEqual(status.nat, natInForce.rawValue)
            // Delivery: container traffic went around the bridge exactly when the fast path is on.
            let hits = Self.delta(before, status, program: portProgram, event: "hit")
            if fastPath {
                XCTAssertGreaterThan(
                    hits, 0, "\(portProgram): no packet took the fast path (\(status.fastPath ?? [:]))")
                XCTAssertEqual(Self.delta(before, status, program: portProgram, event: "disabled"), 0)
            } else {
                XCTAssertEqual(hits, 0, "\(portProgram): fast path off, yet packets took it")
                XCTAssertGreaterThan(Self.delta(before, status, program: portProgram, event: "disabled"), 0)
            }
        }
    }

    static func delta(_ before: DataplaneStatus?, _ after: DataplaneStatus, program: String, event: String) -> UInt64 {
        let now = after.fastPath?[program]?[event] ?? 0
        let then = before?.fastPath?[program]?[event] ?? 0
        return now >= then ? now - then : now
    }

    // MARK: the bridge is really skipped

    func testFastPathSkipsTheBridgeWithTC() throws {
        try assertBridgeSkipped(portHook: .tc)
    }

    func testFastPathSkipsTheBridgeWithXDP() throws {
        try assertBridgeSkipped(portHook: .xdp)
    }

    /// client → web UDP echoes with icc on. A counter in the bridge's own
    /// forward hook (an nftables bridge-family chain of the test's, in the
    /// lab's host namespace) counts every IPv4 frame from client to web the
    /// bridge forwards: with the fast path off it sees each datagram, with it
    /// on it sees none while web still answers every one, and the fast-path
    /// hit counter rises by as many.
    private func assertBridgeSkipped(portHook: PortHook) throws {
        try requireRoot("loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        let client = Scenario.address("client")
        let web = Scenario.address("web")
        try lab.topology.run(
            in: "host", ["nft", "-f", "-"],
            input: """
                table bridge bpfnet_test_count {
                    chain forward {
                        type filter hook forward priority 0; policy accept;
                        ip saddr \(client) ip daddr \(web) counter
                    }
                }

                """)
        let runner = try ProbeRunner()
        let count = 20
        let portProgram = portHook == .tc ? "port-tc" : "port-xdp"

        for fastPath in [false, true] {
            try lab.load(
                PolicySettings(icc: true), portHook: portHook,
                extraArguments: ["--fast-path", fastPath ? "on" : "off"])
            let bridgedBefore = try bridgedPackets(lab)
            let statusBefore = try lab.status()
            for index in 0..<count {
                let result = runner.run(
                    try lab.topology.probe(
                        from: "client", to: web, .udp(9999),
                        sourcePort: UInt16(41000 + index), label: "client → web"))
                XCTAssertTrue(result.isAllowed, "fast path \(fastPath): \(result)")
            }
            let bridged = try bridgedPackets(lab) - bridgedBefore
            let hits = Self.delta(statusBefore, try lab.status(), program: portProgram, event: "hit")
            if fastPath {
                XCTAssertEqual(bridged, 0, "\(portHook): \(bridged) datagrams still crossed the bridge")
                // Each datagram and each echo (web → client) goes around the bridge.
                XCTAssertGreaterThanOrEqual(hits, UInt64(2 * count), "\(portHook): fast-path hits")
            } else {
                XCTAssertGreaterThanOrEqual(bridged, UInt64(count), "\(portHook): the bridge did not forward them")
                XCTAssertEqual(hits, 0)
            }
        }
    }

    /// Frames client → web the bridge has forwarded (the test's nftables counter).
    private func bridgedPackets(_ lab: DemoLab) throws -> UInt64 {
        let text = try lab.topology.run(in: "host", ["nft", "list", "table", "bridge", "bpfnet_test_count"]).stdout
        guard let range = text.range(of: #"counter packets \d+"#, options: .regularExpression),
            let packets = UInt64(text[range].split(separator: " ")[2])
        else {
            throw NSError(
                domain: "BPFEndToEndTests", code: 1,
                userInfo: [NSLocalizedDescriptionKey: "no counter in `nft list table`: \(text)"])
        }
        return packets
    }
}
