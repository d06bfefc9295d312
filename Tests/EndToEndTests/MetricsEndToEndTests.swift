// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet status --prometheus` on the demo host with real traffic: the drop
// counter of reason icc rises by exactly the number of blocked probes, the
// inventory gauges say what is loaded, and promtool accepts the output.

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class MetricsEndToEndTests: XCTestCase {
    /// lone has no links: with icc=false each UDP datagram it sends to web is
    /// one packet the port program drops with reason icc.
    func testIccDropCounterRisesByTheBlockedProbes() throws {
        try requireRoot("loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        try lab.load(PolicySettings(icc: false), portHook: .tc)
        let iccDrops = #"bpfnet_packets_total{program="port-tc",reason="icc",action="drop"}"#

        let before = try Exposition(lab.bpfnet(["status", "--prometheus"]))
        let runner = try ProbeRunner()
        let blocked = 12
        let probes = try (0..<blocked).map { index in
            try lab.topology.probe(
                from: "lone", to: Scenario.address("web"), .udp(9999), sourcePort: UInt16(42000 + index),
                timeout: .milliseconds(600), label: "lone → web")
        }
        for result in runner.run(probes) {
            XCTAssertFalse(result.isAllowed, "icc=false let lone reach web: \(result)")
        }
        let text = try lab.bpfnet(["status", "--prometheus"])
        let after = try Exposition(text)

        XCTAssertEqual(
            try after.value(iccDrops) - before.value(iccDrops), Double(blocked),
            "the icc drop counter must rise by exactly the blocked probes")
        XCTAssertGreaterThan(try after.value(#"bpfnet_bytes_total{program="port-tc",reason="icc",action="drop"}"#), 0)
        XCTAssertEqual(try after.value(#"bpfnet_backend_info{backend="bpf"}"#), 1)
        XCTAssertEqual(try after.value("bpfnet_dataplane_loaded"), 1)
        XCTAssertEqual(try after.value("bpfnet_containers"), Double(Scenario.members.count))
        XCTAssertEqual(try after.value("bpfnet_links"), Double(Scenario.links.count))
        XCTAssertEqual(
            try after.value(#"bpfnet_bridge_ports{state="attached"}"#), Double(Scenario.defaultBridgeMembers.count),
            "the default bridge's ports")
        XCTAssertEqual(try after.value(#"bpfnet_bridge_ports{state="unattached"}"#), 0)
        XCTAssertEqual(try after.value("bpfnet_drop_events_lost_total"), 0)
        XCTAssertEqual(try after.value("bpfnet_icc"), 0)
        XCTAssertTrue(text.contains("# TYPE bpfnet_packets_total counter"))

        guard ProcessRunner.locate("promtool") != nil else {
            XCTFail("promtool is missing (scripts/setup.sh installs Debian's prometheus)")
            return
        }
        let check = try ProcessRunner.run(Command(["promtool", "check", "metrics"], input: text))
        XCTAssertTrue(check.succeeded, "promtool check metrics: \(check.stdout)\(check.stderr)")
    }

    func testNothingLoadedIsAGaugeNotAnError() throws {
        try requireRoot("builds network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        let exposition = try Exposition(lab.bpfnet(["status", "--prometheus"]))
        XCTAssertEqual(exposition.samples, ["bpfnet_dataplane_loaded": 0])
    }
}

/// The samples of a Prometheus text exposition ("name{labels}" → value).
struct Exposition {
    var samples: [String: Double] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw ExpositionError(description: "not a sample: \(line)")
            }
            samples[String(line[..<space])] = value
        }
    }

    func value(_ series: String) throws -> Double {
        guard let value = samples[series] else {
            throw ExpositionError(description: "no series \(series) among \(samples.keys.sorted())")
        }
        return value
    }
}

struct ExpositionError: Error, CustomStringConvertible {
    var description: String
}
