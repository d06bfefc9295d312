// SPDX-License-Identifier: Apache-2.0
//
// What bpfnet changes in the containers' namespaces for the XDP fast paths
// (GRO at every container's eth0; with the XDP port hook also tx checksum
// offload off there), and that it gives exactly that back when the fast path
// is switched off, the hook goes back to tc, or the dataplane is unloaded.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class FastPathArrangementTests: XCTestCase {
    func testContainerSettingsAreArrangedAndGivenBack() throws {
        try requireRoot("loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        let containers = Scenario.members.map(\.name)
        func features(_ name: String) throws -> (gro: Bool, txChecksum: Bool) {
            let text = try lab.topology.run(in: name, ["ethtool", "-k", "eth0"]).stdout
            return (text.contains("generic-receive-offload: on"), text.contains("tx-checksumming: on"))
        }
        let original = try Dictionary(uniqueKeysWithValues: containers.map { ($0, try features($0)) })
        XCTAssertTrue(
            original.values.allSatisfy { !$0.gro && $0.txChecksum }, "a fresh veth: GRO off, checksums offloaded")

        let settings = PolicySettings(icc: true)
        try lab.load(settings, portHook: .xdp, extraArguments: ["--fast-path", "on"])
        for name in containers {
            let now = try features(name)
            XCTAssertTrue(now.gro, "\(name): GRO (NAPI) for XDP frames redirected to it")
            XCTAssertFalse(now.txChecksum, "\(name): complete checksums for the frames it sends")
        }

        try lab.load(settings, portHook: .tc, extraArguments: ["--fast-path", "on"])
        for name in containers {
            let now = try features(name)
            XCTAssertTrue(now.gro, "\(name): the ext program still redirects to it")
            XCTAssertTrue(now.txChecksum, "\(name): tc needs no checksum change; offload given back")
        }

        try lab.load(settings, portHook: .tc, extraArguments: ["--fast-path", "off"])
        for name in containers {
            let now = try features(name)
            XCTAssertEqual(now.gro, original[name]!.gro, "\(name): GRO given back")
            XCTAssertEqual(now.txChecksum, original[name]!.txChecksum, name)
        }

        // A container whose GRO was on before bpfnet keeps it after unload.
        try lab.topology.run(in: "web", ["ethtool", "-K", "eth0", "gro", "on"])
        try lab.load(settings, portHook: .xdp, extraArguments: ["--fast-path", "on"])
        try lab.unload()
        for name in containers {
            let now = try features(name)
            XCTAssertEqual(now.gro, name == "web", "\(name): GRO as before the load")
            XCTAssertTrue(now.txChecksum, "\(name): offload given back on unload")
        }
    }
}
