// SPDX-License-Identifier: Apache-2.0
//
// The demo host with real traffic, for the eBPF backend: every probe of the
// scenario (TCP with fixed source ports, UDP incl. fragmented datagrams, ICMP,
// published ports through bpfnet's NAT, direct routing, replies) must get the
// verdict the policy table predicts, for each policy and both port hooks. The
// policy is switched by loading over the running dataplane, as an operator does.

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
        try runMatrix(portHook: .tc)
    }

    func testMatrixWithXDPPortHook() throws {
        try runMatrix(portHook: .xdp)
    }

    private func runMatrix(portHook: PortHook) throws {
        try requireRoot("the end-to-end matrix loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        for setting in Self.settings {
            try lab.load(setting, portHook: portHook)
            let entries = try lab.measure(setting)
            XCTAssertEqual(entries.count, Scenario.probes.count)
            for entry in entries where !entry.matches {
                XCTFail("\(portHook) \(setting): \(entry.source) → \(entry.destination) (row \(entry.rows)): "
                    + "expected \(entry.expected), observed \(entry.observed) — \(entry.detail)")
            }
            let status = try lab.status()
            XCTAssertEqual(status.backend, "bpf")
            XCTAssertEqual(status.icc, setting.icc)
            XCTAssertEqual(status.forwardPolicy, setting.forwardPolicy.rawValue)
            XCTAssertEqual(status.containers.count, Scenario.members.count)
            XCTAssertEqual(Set(status.links.map { "\($0.parent)->\($0.child)" }), ["client->web", "app->db"])
            XCTAssertEqual(status.extInterfaces.map(\.allowSources),
                           [setting.allowList ? ["\(Scenario.allowedSource)/32"] : []])
            // Traffic went through the programs of the chosen hook.
            let portProgram = portHook == .tc ? "port-tc" : "port-xdp"
            XCTAssertGreaterThan(status.programCounters[portProgram]?.values.map(\.packets).reduce(0, +) ?? 0, 0,
                                 "no packet counted by \(portProgram)")
            XCTAssertGreaterThan(status.programCounters["ext-xdp"]?["published"]?.packets ?? 0, 0)
            if !setting.icc {
                XCTAssertGreaterThan(status.counters["icc"] ?? 0, 0, "icc=false dropped nothing")
                XCTAssertGreaterThan(status.counters["link-reverse"] ?? 0, 0, "the stateless reverse rule never matched")
            }
        }
    }
}
