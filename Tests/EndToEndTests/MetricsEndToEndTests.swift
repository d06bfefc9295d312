// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet status --prometheus` on the demo host with real traffic: the drop
// counter of reason icc rises by exactly the number of blocked probes, the
// inventory gauges say what is loaded, and promtool accepts the output.

import BPFNetCore
import BPFNetDataplane
import DemoHost
import Foundation
import LinuxNet
import NetLab
import SystemPackage
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
        XCTAssertEqual(
            try after.value(#"bpfnet_nat_info{mode="ebpf"}"#), 1, "nat auto: the tc hook and the fast path are on")
        XCTAssertTrue(text.contains("# TYPE bpfnet_packets_total counter"))

        guard ProcessRunner.locate("promtool") != nil else {
            XCTFail("promtool is missing (scripts/setup.sh installs Debian's prometheus)")
            return
        }
        let check = try ProcessRunner.run(Command(["promtool", "check", "metrics"], input: text))
        XCTAssertTrue(check.succeeded, "promtool check metrics: \(check.stdout)\(check.stderr)")
    }

    /// A scrape (`statusForMetrics`, as `run --metrics-address` reads it)
    /// reuses the interfaces and the policy maps it read last, and must see
    /// at once what changes them: a port joining the bridge (a link
    /// notification), another process's apply (a new config generation).
    func testAScrapeSeesANewPortAndAnotherApplyAtOnce() throws {
        try requireRoot("loads eBPF programs in network namespaces")
        let lab = try DemoLab()
        defer { lab.close() }
        try lab.load(PolicySettings(icc: false), portHook: .tc)
        let members = Scenario.defaultBridgeMembers.count
        // One thread in the host's namespace: the cache's notification socket belongs to it.
        try lab.topology.host.run {
            let dataplane = BPFDataplane(pinPath: FilePath(lab.pinPath))
            let first = try dataplane.statusForMetrics()
            XCTAssertEqual(first.bridgePorts?.count, members)
            XCTAssertEqual(first.bridgePorts?.filter { $0.hook == "tc" }.count, members)
            XCTAssertEqual(try dataplane.statusForMetrics().bridgePorts, first.bridgePorts, "nothing changed")

            try lab.topology.ip(
                in: "host", ["link add vethrogue type veth peer name rogue0", "link set vethrogue master docker0 up"])
            let joined = try dataplane.statusForMetrics()
            XCTAssertEqual(joined.bridgePorts?.count, members + 1, "the new port is counted at the next scrape")
            let rogue = try XCTUnwrap(joined.bridgePorts?.first { $0.name == "vethrogue" })
            XCTAssertNil(rogue.hook, "no program until the next apply")
            XCTAssertFalse(joined.icc)

            // Another process applies: icc on, and the rogue port gets the program.
            try lab.load(PolicySettings(icc: true), portHook: .tc)
            let applied = try dataplane.statusForMetrics()
            XCTAssertTrue(applied.icc, "the policy maps are read again after another apply")
            XCTAssertEqual(applied.generation, try dataplane.status().generation)
            XCTAssertEqual(applied.bridgePorts?.first { $0.name == "vethrogue" }?.hook, "tc")

            try lab.topology.ip(in: "host", ["link del vethrogue"])
            XCTAssertEqual(try dataplane.statusForMetrics().bridgePorts?.count, members, "a port that goes is gone")
        }
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
