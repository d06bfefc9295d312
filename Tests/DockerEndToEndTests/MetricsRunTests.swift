// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run --metrics-address` next to a private dockerd, scraped by a real
// Prometheus (Debian's `prometheus`), both inside the docker host's namespace
// on its own loopback: the icc drop counter Prometheus stored rises by
// exactly the number of blocked probes (read back through Prometheus's HTTP
// API with `promtool query instant`), the agent's metrics are there, and
// `promtool check metrics` accepts the endpoint's output.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

final class MetricsRunTests: XCTestCase {
    static let endpoint = "127.0.0.1:9469"
    static let prometheusAddress = "127.0.0.1:9090"
    static let iccDrops = #"bpfnet_packets_total{program="port-tc",reason="icc"}"#

    func testPrometheusScrapesTheAgentAndCountsEveryBlockedProbe() throws {
        guard try RealDockerHost.canRun(tools: ["prometheus", "promtool", "busybox"]) else { return }
        let host = try RealDockerHost(name: "metrics")
        defer { host.close() }
        let (dockerd, lab, bpfnet, probe, work) = (host.dockerd, host.lab, host.bpfnet, host.probe, host.work)
        try host.startDockerd(["--iptables=false"])
        let image = try dockerd.importBusybox()
        let config = work + "/run-policy.yaml"
        try "icc: false\n".write(toFile: config, atomically: true, encoding: .utf8)
        host.adopt(
            try bpfnet.startAgent(
                dockerHost: dockerd.host, config: config, extra: ["--metrics-address", Self.endpoint]))
        try bpfnet.waitForStatus("the agent connected") { $0.agent?.connected == true }

        for name in ["web", "lone"] {
            try dockerd.docker(["run", "-d", "--stop-timeout", "1", "--name", name, image, "sleep", "86400"])
        }
        try bpfnet.waitForStatus("web and lone") { Set($0.containers.map(\.name)) == ["web", "lone"] }
        let web = LabContainer(name: "web", tcp: [], udp: [9999])
        try web.refresh(dockerd, probe: probe)
        let lone = LabContainer(name: "lone", tcp: [], udp: [9998])
        try lone.refresh(dockerd, probe: probe)
        host.atClose {
            web.stopServer()
            lone.stopServer()
        }

        // The endpoint itself: the agent's metrics beside the dataplane's, and promtool's lint.
        let scraped = try sh(
            lab.docker.nsenter(["busybox", "wget", "-q", "-O", "-", "http://\(Self.endpoint)/metrics"]))
        let check = try ProcessRunner.run(Command(["promtool", "check", "metrics"], input: scraped + "\n"))
        XCTAssertTrue(check.succeeded, "promtool check metrics: \(check.stdout)\(check.stderr)")
        for expected in [
            "bpfnet_docker_connected 1", "bpfnet_containers 2", #"bpfnet_backend_info{backend="bpf"} 1"#,
            "# TYPE bpfnet_apply_duration_seconds histogram", "# TYPE bpfnet_start_to_rules_seconds histogram",
            #"bpfnet_build_info{version=""#, "bpfnet_docker_reconnects_total 0",
        ] {
            XCTAssertTrue(scraped.contains(expected), "the endpoint lacks \(expected):\n\(scraped)")
        }
        XCTAssertFalse(scraped.contains("bpfnet_start_to_rules_seconds_count 0"), "no start measured")
        XCTAssertFalse(scraped.contains("bpfnet_apply_duration_seconds_count 0"), "no apply measured")

        // Prometheus scrapes the endpoint every second.
        let prometheusConfig = work + "/prometheus.yml"
        try """
        global:
          scrape_interval: 1s
        scrape_configs:
          - job_name: bpfnet
            static_configs:
              - targets: ['\(Self.endpoint)']

        """.write(toFile: prometheusConfig, atomically: true, encoding: .utf8)
        let prometheus = try BackgroundProcess(
            Command(
                lab.docker.nsenter([
                    "prometheus", "--config.file", prometheusConfig, "--storage.tsdb.path", work + "/tsdb",
                    "--web.listen-address", Self.prometheusAddress, "--log.level", "warn",
                ])), captureOutput: true)
        host.adopt(prometheus)
        func stored() throws -> Double? {
            let result = try ProcessRunner.run(
                Command(
                    lab.docker.nsenter([
                        "promtool", "query", "instant", "-o", "json", "http://\(Self.prometheusAddress)", Self.iccDrops,
                    ]), timeout: .seconds(10)))
            guard result.succeeded,
                let list = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]],
                let pair = list.first?["value"] as? [Any], let text = pair.last as? String
            else { return nil }
            return Double(text)
        }
        func waitForStored(_ what: String, _ condition: (Double) -> Bool) throws -> Double {
            let deadline = ContinuousClock.now + .seconds(30)
            var last: Double?
            while ContinuousClock.now < deadline {
                last = try stored()
                if let last, condition(last) { return last }
                usleep(250_000)
            }
            let lastText = last.map { "\($0)" } ?? "none"
            let log = prometheus.logContents(maxBytes: 3000)
            throw LabFailure("Prometheus never stored \(what) (last \(lastText)): \(log)")
        }
        let before = try waitForStored("the icc drop counter") { _ in true }

        let blocked = 10
        let probes = (0..<blocked).map { index in
            Probe(
                from: lone.namespace, to: web.ip, .udp(9999), sourcePort: UInt16(43000 + index),
                timeout: .milliseconds(600), label: "lone → web")
        }
        for result in probe.run(probes) {
            XCTAssertFalse(result.isAllowed, "icc=false let lone reach web: \(result)")
        }
        let after = try waitForStored("the blocked probes") { $0 >= before + Double(blocked) }
        XCTAssertEqual(
            after - before, Double(blocked), "Prometheus: the icc drop counter must rise by exactly the probes")
        // Another scrape later it still says so: nothing else was counted as icc.
        usleep(2_500_000)
        XCTAssertEqual(try stored(), after)
    }
}
