// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet monitor`: a packet the policy drops shows up as an event naming
// the program, the reason and the flow.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class DropMonitorTests: XCTestCase {
    func testBlockedProbeAppearsAsAnEvent() throws {
        try requireRoot("bpfnet monitor reads the pinned ring buffer of a loaded dataplane")
        let lab = try DemoLab()
        defer { lab.close() }
        try lab.load(PolicySettings(icc: false))
        // Events wait in the ring until read, so the order of these two does not matter.
        let monitor = try lab.topology.startProcess(
            in: TopologySpec.hostRole,
            [lab.bpfnet, "monitor", "--json", "--count", "1", "--seconds", "30", "--pin-path", lab.pinPath],
            captureOutput: true)
        defer { monitor.stop() }
        let probe = try lab.topology.probe(from: "lone", to: "web", .tcp(9090), sourcePort: 41000)
        XCTAssertEqual(try ProbeRunner().run(probe).reachability, .blocked)

        let line = try monitor.waitForLine(prefix: "{", timeout: .seconds(20))
        let event = try JSONDecoder().decode(DropEvent.self, from: Data(line.utf8))
        XCTAssertEqual(event.program, "port-tc")
        XCTAssertEqual(event.reason, "icc")
        XCTAssertEqual(event.proto, "tcp")
        XCTAssertEqual(event.source, Scenario.address("lone").description)
        XCTAssertEqual(event.destination, Scenario.address("web").description)
        XCTAssertEqual(event.sourcePort, 41000)
        XCTAssertEqual(event.destinationPort, 9090)
        XCTAssertFalse(event.fragment)
        XCTAssertGreaterThan(event.length, 0)
    }
}
