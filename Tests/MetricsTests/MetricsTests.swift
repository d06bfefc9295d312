import BPFNetCore
import Foundation
import LinuxNet
import NIOHTTP1
import XCTest

@testable import BPFNetMetrics

/// A made-up status: two containers, one link, counters on two programs.
enum FakeStatus {
    static var status: DataplaneStatus {
        var status = DataplaneStatus(
            backend: "bpf", bridge: "docker0", bridgeAddress: "172.17.0.1/16", icc: false, forwardPolicy: "drop",
            ipForward: true, generation: 7,
            extInterfaces: [.init(name: "eth0", ifindex: 2, allowSources: [])],
            containers: [
                .init(name: "web", ip: "172.17.0.2", mac: "02:42:ac:11:00:02", port: "vethweb", portIfindex: 10),
                .init(name: "db", ip: "172.17.0.3", mac: "02:42:ac:11:00:03", port: "vethdb", portIfindex: 11),
            ],
            links: [
                .init(parent: "web", child: "db", parentIP: "172.17.0.2", childIP: "172.17.0.3", ports: ["5432/tcp"])
            ],
            counters: [:],
            programCounters: [
                "port-tc": [
                    "icc": .init(packets: 5, bytes: 370),
                    "icc-allowed": .init(packets: 12, bytes: 1_000),
                    "reason-99": .init(packets: 1, bytes: 60),
                ],
                "ext-xdp": ["forward": .init(packets: 3, bytes: 180)],
            ])
        status.fastPathEnabled = true
        status.fastPath = ["port-tc": ["hit": 40, "mac": 2]]
        status.bridgePorts = [
            .init(name: "vethdb", ifindex: 11, container: "db", hook: "tc"),
            .init(name: "vethnew", ifindex: 12, container: nil, hook: nil),
            .init(name: "vethweb", ifindex: 10, container: "web", hook: "tc"),
        ]
        status.unusedBackends = ["xdp-native": "not supported by veth"]
        status.nat = "ebpf"
        return status
    }
}

/// The samples of one exposition, by name and labels ("name{a=\"b\"}" → value).
func samples(_ text: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
            continue
        }
        result[String(line[..<space])] = value
    }
    return result
}

final class DataplaneMetricsTests: XCTestCase {
    func testCountersByProgramAndReason() {
        let text = DataplaneMetrics.text(status: FakeStatus.status, dropEvents: .init(suppressed: 4, lost: 2))
        let values = samples(text)
        XCTAssertEqual(values[#"bpfnet_packets_total{program="port-tc",reason="icc",action="drop"}"#], 5)
        XCTAssertEqual(values[#"bpfnet_bytes_total{program="port-tc",reason="icc",action="drop"}"#], 370)
        XCTAssertEqual(values[#"bpfnet_packets_total{program="port-tc",reason="icc-allowed",action="pass"}"#], 12)
        XCTAssertEqual(values[#"bpfnet_packets_total{program="ext-xdp",reason="forward",action="drop"}"#], 3)
        // Zero series exist for every known pair, so increase() sees the first packet.
        XCTAssertEqual(values[#"bpfnet_packets_total{program="port-xdp",reason="icc",action="drop"}"#], 0)
        // A reason this build does not know is still exported.
        XCTAssertEqual(values[#"bpfnet_packets_total{program="port-tc",reason="reason-99",action="drop"}"#], 1)
        let perProgram = ProgramKind.all.count * Reason.allKnown.count
        XCTAssertEqual(values.keys.count { $0.hasPrefix("bpfnet_packets_total{") }, perProgram + 1)
        XCTAssertEqual(values[#"bpfnet_fast_path_total{program="port-tc",event="hit"}"#], 40)
        XCTAssertEqual(values[#"bpfnet_fast_path_total{program="port-tc",event="mac"}"#], 2)
        XCTAssertEqual(values[#"bpfnet_fast_path_total{program="ext-xdp",event="hit"}"#], 0)
        XCTAssertEqual(values["bpfnet_drop_events_lost_total"], 2)
        XCTAssertEqual(values["bpfnet_drop_events_suppressed_total"], 4)
        XCTAssertTrue(text.contains("# TYPE bpfnet_packets_total counter\n"))
        XCTAssertTrue(text.contains("# TYPE bpfnet_fast_path_total counter\n"))
        XCTAssertTrue(text.contains("# TYPE bpfnet_drop_events_lost_total counter\n"))
        XCTAssertEqual(text.components(separatedBy: "# TYPE bpfnet_packets_total").count, 2, "one TYPE line per name")
    }

    func testInventoryGauges() {
        let text = DataplaneMetrics.text(status: FakeStatus.status, dropEvents: nil)
        let values = samples(text)
        XCTAssertEqual(values["bpfnet_dataplane_loaded"], 1)
        XCTAssertEqual(values[#"bpfnet_backend_info{backend="bpf"}"#], 1)
        XCTAssertEqual(values[#"bpfnet_backend_unused_info{backend="xdp-native",reason="not supported by veth"}"#], 1)
        XCTAssertEqual(values["bpfnet_containers"], 2)
        XCTAssertEqual(values["bpfnet_links"], 1)
        XCTAssertEqual(values["bpfnet_published_ports"], 0)
        XCTAssertEqual(values["bpfnet_external_interfaces"], 1)
        XCTAssertEqual(values[#"bpfnet_bridge_ports{state="attached"}"#], 2)
        XCTAssertEqual(values[#"bpfnet_bridge_ports{state="unattached"}"#], 1)
        XCTAssertEqual(values["bpfnet_bridge_ports_unknown"], 1)
        XCTAssertEqual(values["bpfnet_policy_generation"], 7)
        XCTAssertEqual(values["bpfnet_fast_path_enabled"], 1)
        XCTAssertEqual(values["bpfnet_icc"], 0)
        XCTAssertEqual(values[#"bpfnet_nat_info{mode="ebpf"}"#], 1)
        XCTAssertTrue(text.contains("# TYPE bpfnet_containers gauge\n"))
        XCTAssertNil(values["bpfnet_drop_events_lost_total"], "netfilter backends have no drop-event ring")
    }

    func testNothingLoaded() {
        let values = samples(DataplaneMetrics.text(status: nil, dropEvents: nil))
        XCTAssertEqual(values, ["bpfnet_dataplane_loaded": 0])
    }

    func testNetfilterStatusHasNoFastPathOrPorts() {
        var status = FakeStatus.status
        status.backend = "nftables"
        status.fastPath = nil
        status.bridgePorts = nil
        let values = samples(DataplaneMetrics.text(status: status, dropEvents: nil))
        XCTAssertEqual(values[#"bpfnet_backend_info{backend="nftables"}"#], 1)
        XCTAssertFalse(values.keys.contains { $0.hasPrefix("bpfnet_fast_path") || $0.hasPrefix("bpfnet_bridge_ports") })
    }

    /// promtool (Debian's `prometheus`, installed by scripts/setup.sh) lints names, types, HELP and units.
    func testPromtoolAcceptsTheExposition() throws {
        let agent = AgentMetrics()
        agent.observeApply(.milliseconds(3))
        agent.observeStartToRules(.milliseconds(40))
        agent.update(AgentCounts(connected: true, applies: 3, reconnects: 1))
        let text =
            DataplaneMetrics.text(status: FakeStatus.status, dropEvents: .init(suppressed: 0, lost: 0))
            + agent.registry.emitToString()
        try promtoolCheck(text)
        try promtoolCheck(DataplaneMetrics.text(status: nil, dropEvents: nil))
    }
}

func promtoolCheck(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
    guard ProcessRunner.locate("promtool") != nil else {
        if ProcessInfo.processInfo.environment["CI"] != nil
            || ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1"
        {
            XCTFail("promtool is missing (scripts/setup.sh installs Debian's prometheus)", file: file, line: line)
            return
        }
        throw XCTSkip("promtool is not installed (apt-get install prometheus)")
    }
    let result = try ProcessRunner.run(Command(["promtool", "check", "metrics"], input: text))
    XCTAssertTrue(result.succeeded, "promtool check metrics: \(result.stdout)\(result.stderr)", file: file, line: line)
}

final class AgentMetricsTests: XCTestCase {
    func testHistogramsCountersAndBuildInfo() {
        let metrics = AgentMetrics()
        metrics.observeApply(.milliseconds(3))
        metrics.observeApply(.milliseconds(30))
        metrics.observeStartToRules(.milliseconds(70))
        metrics.update(AgentCounts(connected: true, applies: 2, failedApplies: 1, reconnects: 4, eventsHandled: 9))
        var values = samples(metrics.registry.emitToString())
        XCTAssertEqual(values[#"bpfnet_apply_duration_seconds_bucket{le="0.005"}"#], 1)
        XCTAssertEqual(values[#"bpfnet_apply_duration_seconds_bucket{le="0.05"}"#], 2)
        XCTAssertEqual(values[#"bpfnet_apply_duration_seconds_bucket{le="+Inf"}"#], 2)
        XCTAssertEqual(values["bpfnet_apply_duration_seconds_count"], 2)
        XCTAssertEqual(values["bpfnet_apply_duration_seconds_sum"]!, 0.033, accuracy: 1e-9)
        XCTAssertEqual(values[#"bpfnet_start_to_rules_seconds_bucket{le="0.05"}"#], 0)
        XCTAssertEqual(values[#"bpfnet_start_to_rules_seconds_bucket{le="0.1"}"#], 1)
        XCTAssertEqual(values["bpfnet_applies_total"], 2)
        XCTAssertEqual(values["bpfnet_apply_errors_total"], 1)
        XCTAssertEqual(values["bpfnet_docker_reconnects_total"], 4)
        XCTAssertEqual(values["bpfnet_docker_events_total"], 9)
        XCTAssertEqual(values["bpfnet_docker_connected"], 1)
        XCTAssertEqual(
            values[#"bpfnet_build_info{version="\#(BuildInfo.version)",swift="\#(BuildInfo.swiftVersion)"}"#], 1)

        // The next scrape copies the counts again: the counters follow, not add up.
        metrics.update(AgentCounts(connected: false, applies: 5, failedApplies: 1, reconnects: 5, eventsHandled: 9))
        values = samples(metrics.registry.emitToString())
        XCTAssertEqual(values["bpfnet_applies_total"], 5)
        XCTAssertEqual(values["bpfnet_docker_reconnects_total"], 5)
        XCTAssertEqual(values["bpfnet_docker_connected"], 0)
    }
}

final class MetricsServerTests: XCTestCase {
    func testAddresses() throws {
        XCTAssertEqual(try MetricsAddress(parsing: "127.0.0.1:9469"), MetricsAddress(host: "127.0.0.1", port: 9469))
        XCTAssertEqual(try MetricsAddress(parsing: ":9469"), MetricsAddress(host: "127.0.0.1", port: 9469))
        XCTAssertEqual(try MetricsAddress(parsing: "[::1]:9469"), MetricsAddress(host: "::1", port: 9469))
        XCTAssertEqual(try MetricsAddress(parsing: "0.0.0.0:80").isLoopback, false)
        XCTAssertEqual(try MetricsAddress(parsing: "[::1]:1").description, "[::1]:1")
        XCTAssertTrue(try MetricsAddress(parsing: "127.0.0.2:9469").isLoopback)
        for bad in ["9469", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "::1:9469", "[::1]9469", "host:port"] {
            XCTAssertThrowsError(try MetricsAddress(parsing: bad), bad)
        }
    }

    func testRouting() async {
        let render: MetricsServer.Render = { Array("bpfnet_up 1\n".utf8) }
        let ok = await MetricsServer.respond(method: .GET, uri: "/metrics", render: render)
        XCTAssertEqual(ok.status, .ok)
        XCTAssertEqual(ok.contentType, "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(String(decoding: ok.body, as: UTF8.self), "bpfnet_up 1\n")
        let query = await MetricsServer.respond(method: .GET, uri: "/metrics?name[]=x", render: render)
        XCTAssertEqual(query.status, .ok)
        let elsewhere = await MetricsServer.respond(method: .GET, uri: "/", render: render)
        XCTAssertEqual(elsewhere.status, .notFound)
        let post = await MetricsServer.respond(method: .POST, uri: "/metrics", render: render)
        XCTAssertEqual(post.status, .methodNotAllowed)
    }
}
