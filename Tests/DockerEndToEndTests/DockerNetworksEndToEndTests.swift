// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run --backend bpf` next to a real dockerd (`--iptables=false`) with user-defined
// bridge networks, probed with real TCP and ICMP:
//
//   default bridge 10.47.0.0/24 (icc on):          d1, d2
//   quiet   10.48.0.0/24, enable_icc=false:        q1, q2   (created before the agent)
//   open    10.49.0.0/24:                          o1, o2   (created before the agent)
//   sealed  10.50.0.0/24, --internal:              s1, s2   (created while it runs)
//   late    10.51.0.0/24:                          l1       (created while it runs; timed)
//
// The outside namespace routes back to the default bridge's subnet only (LabNamespaces), so
// a user network's container reaches it through masquerade or not at all.
//
// And a docker-compose (v1) project against a daemon of its own: networks front
// (10.52.0.0/24) and back (10.53.0.0/24, enable_icc "false"), services web on front, api and
// db on back.
//
// Root only. Skipped otherwise, unless BPFNET_REQUIRE_ROOT_TESTS=1.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A container on one network with a probe server on 80/tcp in its namespace.
private final class NetworkContainer {
    let name: String
    let network: String
    let pid: Int32
    let ip: IPv4Address
    private var server: BackgroundProcess?

    convenience init(_ name: String, on network: String, dockerd: PrivateDockerd, image: String, probe: ProbeRunner)
        throws
    {
        var run = ["run", "-d", "--stop-timeout", "1", "--name", name]
        if network != "bridge" { run += ["--network", network] }
        try dockerd.docker(run + [image, "sleep", "86400"])
        try self.init(running: name, on: network, dockerd: dockerd, probe: probe)
    }

    /// A container that runs already (one docker-compose started).
    init(running name: String, on network: String, dockerd: PrivateDockerd, probe: ProbeRunner) throws {
        self.name = name
        self.network = network
        let fields = try dockerd.docker([
            "inspect", "-f", "{{.State.Pid}} {{(index .NetworkSettings.Networks \"\(network)\").IPAddress}}", name,
        ]).split(separator: " ")
        guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, let ip = IPv4Address(fields[1]) else {
            throw LabFailure("docker inspect \(name): unexpected '\(fields.joined(separator: " "))'")
        }
        self.pid = pid
        self.ip = ip
        let server = try BackgroundProcess(
            Command(namespace.nsenter(probe.serveArguments(tcp: [80], udp: [], name: name))))
        _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
        self.server = server
    }

    var namespace: NetworkNamespace { NetworkNamespace(unopenedPath: "/proc/\(pid)/ns/net", name: name) }

    func stopServer() {
        server?.stop()
        server = nil
    }
}

final class DockerNetworksEndToEndTests: XCTestCase {
    func testBPFNetRunPolicesUserDefinedNetworks() throws {
        guard try RealDockerHost.canRun(tools: ["nft"]) else { return }
        let host = try RealDockerHost(name: "networks")
        defer { host.close() }
        let (dockerd, bpfnet, probe, work) = (host.dockerd, host.bpfnet, host.probe, host.work)
        var containers: [String: NetworkContainer] = [:]
        host.atClose { for container in containers.values { container.stopServer() } }
        try host.startDockerd(["--iptables=false"])
        let image = try dockerd.importBusybox()
        try dockerd.docker([
            "network", "create", "--subnet", "10.48.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
            "quiet",
        ])
        try dockerd.docker(["network", "create", "--subnet", "10.49.0.0/24", "open"])

        let config = work + "/run-policy.yaml"
        try """
        icc: true
        extInterfaces:
          - name: ext0
            allowSources: [\(LabAddresses.allowed)/32]

        """.write(toFile: config, atomically: true, encoding: .utf8)
        // No periodic resync during the test: whatever is policed was policed by the events.
        let agent = host.adopt(
            try bpfnet.startAgent(
                dockerHost: dockerd.host, config: config, extra: ["--backend", "bpf", "--resync-interval", "3600"]))
        func agentLog() -> String { agent.logContents(maxBytes: 12000) }
        do {
            try bpfnet.waitForStatus("the agent connected") { $0.agent?.connected == true }
        } catch {
            XCTFail("\(error)\n\(agentLog())")
            throw error
        }

        // Created while the agent runs: policed before their first container.
        try dockerd.docker(["network", "create", "--internal", "--subnet", "10.50.0.0/24", "sealed"])
        for (name, network) in [
            ("d1", "bridge"), ("d2", "bridge"), ("q1", "quiet"), ("q2", "quiet"), ("o1", "open"), ("o2", "open"),
            ("s1", "sealed"), ("s2", "sealed"),
        ] {
            containers[name] = try NetworkContainer(name, on: network, dockerd: dockerd, image: image, probe: probe)
        }
        let all = Set(containers.keys)
        do {
            try bpfnet.waitForStatus("every container") { Set($0.containers.map(\.name)) == all }
        } catch {
            XCTFail("\(error)\n\(agentLog())")
            throw error
        }

        let outside = IPv4Address(198, 51, 100, 2)
        struct Expectation {
            var label: String
            var from: String
            var to: IPv4Address
            var kind: Probe.Kind
            var expected: Reachability
            /// The reason a blocked probe's drop is counted under (docs/reasons.md).
            var counted: String? = nil
        }
        func c(_ name: String) -> IPv4Address { containers[name]!.ip }
        func check(_ expectations: [Expectation]) {
            let probes = expectations.map {
                Probe(
                    from: containers[$0.from]!.namespace, to: $0.to, $0.kind, timeout: .milliseconds(1000),
                    label: $0.label)
            }
            let before = try? bpfnet.status().counters
            let results = probe.run(probes)
            assertDropsCounted(
                expectations.map { ($0.expected, $0.counted, $0.label) }, before: before, bpfnet: bpfnet)
            var table: [String] = []
            for (expectation, result) in zip(expectations, results) {
                table.append("\(expectation.label): \(result.reachability) (expected \(expectation.expected))")
                XCTAssertEqual(
                    result.reachability, expectation.expected, "\(expectation.label): \(result.detail)")
            }
            print("user networks, bpfnet run --backend bpf:\n  " + table.joined(separator: "\n  "))
        }
        check([
            Expectation(
                label: "d1 → d2 (default bridge, icc on)", from: "d1", to: c("d2"), kind: .tcp(80), expected: .allowed),
            Expectation(
                label: "d1 → o1 (default → user network)", from: "d1", to: c("o1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "o1 → d1 (user network → default)", from: "o1", to: c("d1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "o1 → q1 (between user networks)", from: "o1", to: c("q1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "q1 → o1 (between user networks)", from: "q1", to: c("o1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(label: "o1 → o2 (open, icc on)", from: "o1", to: c("o2"), kind: .tcp(80), expected: .allowed),
            Expectation(label: "o1 → o2 ICMP", from: "o1", to: c("o2"), kind: .icmp, expected: .allowed),
            Expectation(
                label: "q1 → q2 (quiet, icc off)", from: "q1", to: c("q2"), kind: .tcp(80), expected: .blocked,
                counted: "icc"),
            Expectation(
                label: "q1 → q2 ICMP (icc off)", from: "q1", to: c("q2"), kind: .icmp, expected: .blocked,
                counted: "icc"),
            Expectation(
                label: "s1 → s2 (internal, within)", from: "s1", to: c("s2"), kind: .tcp(80), expected: .allowed),
            Expectation(
                label: "s1 → outside (internal)", from: "s1", to: outside, kind: .tcp(7777), expected: .blocked,
                counted: "internal"),
            Expectation(
                label: "o1 → outside (masquerade)", from: "o1", to: outside, kind: .tcp(7777), expected: .allowed),
            Expectation(
                label: "q1 → outside (masquerade)", from: "q1", to: outside, kind: .tcp(7777), expected: .allowed),
            Expectation(label: "d1 → outside", from: "d1", to: outside, kind: .tcp(7777), expected: .allowed),
        ])

        // A network created while bpfnet runs, a container started on it at once (as compose
        // does), and how long until the container is policed: by the agent's own measure (start
        // event → rules) and by the test's (`docker run` begun → status shows l1 on late with
        // its port holding the program), the latter an upper bound that includes docker run.
        let networkCreated = ContinuousClock.now
        try dockerd.docker(["network", "create", "--subnet", "10.51.0.0/24", "late"])
        let runBegun = ContinuousClock.now
        containers["l1"] = try NetworkContainer("l1", on: "late", dockerd: dockerd, image: image, probe: probe)
        let policed = try bpfnet.waitForStatus("l1 policed on late", timeout: .seconds(30)) { status in
            status.containers.contains { $0.name == "l1" }
                && status.networks?.contains { $0.name == "late" && $0.containers == 1 && $0.ports == 1 } == true
                && status.agent?.lastSyncContainer == "l1"
        }
        let policedAt = ContinuousClock.now
        func ms(_ duration: Duration) -> Double {
            Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000
        }
        let latency = try XCTUnwrap(policed.lastSyncLatencyMs)
        XCTAssertLessThan(latency, 5000, "start event → rules on a user network took \(latency) ms")
        XCTAssertLessThan(
            ms(policedAt - runBegun), 10_000, "a container on a network made while bpfnet runs waited for a resync")
        print(
            "network created while bpfnet runs (late), l1 started on it: start event → rules \(latency) ms (agent); "
                + String(
                    format: "docker run begun → policed in status %.0f ms; network create → policed %.0f ms (test)",
                    ms(policedAt - runBegun), ms(policedAt - networkCreated)))
        check([
            Expectation(
                label: "l1 → d1 (late → default)", from: "l1", to: c("d1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "d1 → l1 (default → late)", from: "d1", to: c("l1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "l1 → o1 (late → open)", from: "l1", to: c("o1"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
            Expectation(
                label: "l1 → outside (masquerade)", from: "l1", to: outside, kind: .tcp(7777), expected: .allowed),
        ])
        // A container on two networks: d2 joins open and is one endpoint on each, its second
        // port found by the MAC of its eth1.
        try dockerd.docker(["network", "connect", "open", "d2"])
        let d2Open = try XCTUnwrap(
            IPv4Address(
                try dockerd.docker([
                    "inspect", "-f", "{{(index .NetworkSettings.Networks \"open\").IPAddress}}", "d2",
                ])))
        let twice = try bpfnet.waitForStatus("d2 on two networks") { status in
            status.containers.filter { $0.name == "d2" }.count == 2
        }
        XCTAssertEqual(
            Set(twice.containers.filter { $0.name == "d2" }.map(\.ip)), [c("d2").description, d2Open.description])
        XCTAssertEqual(Set(twice.containers.filter { $0.name == "d2" }.map(\.port)).count, 2, "a port per network")
        check([
            Expectation(label: "o1 → d2 on open", from: "o1", to: d2Open, kind: .tcp(80), expected: .allowed),
            Expectation(label: "d2 → o1 (now on open)", from: "d2", to: c("o1"), kind: .tcp(80), expected: .allowed),
            Expectation(
                label: "d2 → d1 (still on the default bridge)", from: "d2", to: c("d1"), kind: .tcp(80),
                expected: .allowed),
            Expectation(
                label: "o1 → d2 on the default bridge", from: "o1", to: c("d2"), kind: .tcp(80), expected: .blocked,
                counted: "network"),
        ])
        try dockerd.docker(["network", "disconnect", "open", "d2"])
        try bpfnet.waitForStatus("d2 back on one network") { status in
            status.containers.filter { $0.name == "d2" }.count == 1
        }

        let latencies = DockerOracleTests.startLatencies(in: agentLog())
        print("agent start → rules latencies logged (ms): \(latencies.map { String(format: "%.1f", $0) })")
        if testRun?.hasSucceeded == false { print(agentLog()) }
    }

    /// Dual stack with a real dockerd 20.10 (`--ipv6 --fixed-cidr-v6 fd00:47::/64
    /// --ip6tables=false`): `v6quiet` (`--ipv6`, enable_icc=false) and `v6open` (`--ipv6`),
    /// containers on them and on the default bridge. The agent reads every network's IPv6
    /// subnet and every container's `GlobalIPv6Address` (status shows them), and IPv6 between
    /// the containers gets the IPv4 decisions: icc within a network, isolation between
    /// networks; a container's IPv6 source must be its own. Probed with UDP echo over IPv6 from
    /// the containers' namespaces.
    func testBPFNetRunPolicesDualStackNetworks() throws {
        guard try RealDockerHost.canRun(tools: ["nft", "python3"]) else { return }
        let host = try RealDockerHost(name: "dualstack")
        defer { host.close() }
        let (dockerd, bpfnet, probe, work) = (host.dockerd, host.bpfnet, host.probe, host.work)
        var containers: [String: NetworkContainer] = [:]
        var servers: [BackgroundProcess] = []
        host.atClose {
            for server in servers { server.stop() }
            for container in containers.values { container.stopServer() }
        }
        try host.startDockerd(["--iptables=false", "--ip6tables=false", "--ipv6", "--fixed-cidr-v6", "fd00:47::/64"])
        let image = try dockerd.importBusybox()
        try dockerd.docker([
            "network", "create", "--ipv6", "--subnet", "10.54.0.0/24", "--subnet", "fd00:54::/64",
            "-o", "com.docker.network.bridge.enable_icc=false", "v6quiet",
        ])
        try dockerd.docker([
            "network", "create", "--ipv6", "--subnet", "10.55.0.0/24", "--subnet", "fd00:55::/64", "v6open",
        ])
        let config = work + "/run-policy.yaml"
        try "icc: true\nextInterfaces: [ext0]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let agent = host.adopt(
            try bpfnet.startAgent(
                dockerHost: dockerd.host, config: config, extra: ["--backend", "bpf", "--resync-interval", "3600"]))
        func agentLog() -> String { agent.logContents(maxBytes: 12000) }
        for (name, network) in [
            ("d1", "bridge"), ("q1", "v6quiet"), ("q2", "v6quiet"), ("o1", "v6open"), ("o2", "v6open"),
        ] {
            containers[name] = try NetworkContainer(name, on: network, dockerd: dockerd, image: image, probe: probe)
        }
        var ipv6: [String: String] = [:]
        for (name, container) in containers {
            ipv6[name] = try dockerd.docker([
                "inspect", "-f", "{{(index .NetworkSettings.Networks \"\(container.network)\").GlobalIPv6Address}}",
                name,
            ]).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let status: DataplaneStatus
        do {
            status = try bpfnet.waitForStatus("every container with its IPv6 address") { status in
                Set(status.containers.compactMap(\.ipv6)) == Set(ipv6.values)
            }
        } catch {
            XCTFail("\(error)\nIPv6 addresses from docker inspect: \(ipv6)\n\(agentLog())")
            throw error
        }
        XCTAssertEqual(
            status.networks?.map { "\($0.name) \($0.subnet6 ?? "-")" }.sorted(),
            ["bridge fd00:47::/64", "v6open fd00:55::/64", "v6quiet fd00:54::/64"])

        // A UDP echo on [::]:9999 in each container's namespace, and a client beside it.
        let server = """
            import socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind(("::", 9999))
            print("ready", flush=True)
            while True:
                data, peer = s.recvfrom(100)
                s.sendto(data, peer)
            """
        for container in containers.values {
            let process = try BackgroundProcess(
                Command(container.namespace.nsenter(["python3", "-c", server])))
            servers.append(process)
            _ = try process.waitForLine(prefix: "ready", timeout: .seconds(10))
            // Docker's addresses pass duplicate address detection first.
            for _ in 0..<50 {
                let tentative = try ProcessRunner.run(
                    Command(container.namespace.nsenter(["ip", "-6", "addr", "show", "tentative"]))
                ).stdout
                if tentative.isEmpty { break }
                usleep(100_000)
            }
        }
        let client = """
            import socket, sys
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            if len(sys.argv) > 2:
                s.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_TRANSPARENT", 75), 1)
                s.bind((sys.argv[2], 0))
            s.settimeout(1.5)
            s.sendto(b"bpfnet", (sys.argv[1], 9999))
            try:
                print("allowed" if s.recv(100) == b"bpfnet" else "garbled")
            except OSError:
                print("blocked")
            """
        func probe6(_ from: String, _ to: String, source: String? = nil) throws -> String {
            let arguments = ["python3", "-c", client, ipv6[to]!] + (source.map { [$0] } ?? [])
            return try ProcessRunner.run(Command(containers[from]!.namespace.nsenter(arguments))).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let before = try bpfnet.status().counters
        let cells: [(from: String, to: String, expected: String, why: String)] = [
            ("o1", "o2", "allowed", "v6open, icc on"),
            ("q1", "q2", "blocked", "v6quiet, icc off"),
            ("o1", "q1", "blocked", "between networks"),
            ("q1", "o1", "blocked", "between networks"),
            ("d1", "o1", "blocked", "default bridge → v6open"),
            ("o1", "d1", "blocked", "v6open → default bridge"),
        ]
        var table: [String] = []
        for cell in cells {
            let observed = try probe6(cell.from, cell.to)
            table.append("\(cell.from) → \(cell.to) [\(ipv6[cell.to]!)]: \(observed) (expected \(cell.expected))")
            XCTAssertEqual(observed, cell.expected, "\(cell.from) → \(cell.to) over IPv6: \(cell.why)")
        }
        // o1 sending as o2 (IPV6_TRANSPARENT lets it bind an address it does not have).
        let forged = try probe6("o1", "o2", source: "fd00:55::99")
        XCTAssertEqual(forged, "blocked", "o1 → o2 from fd00:55::99, an address that is not o1's")
        let after = try bpfnet.status().counters
        for reason in ["icc", "network", "spoofed"] {
            XCTAssertGreaterThan(after[reason, default: 0], before[reason, default: 0], "counter \(reason)")
        }
        print("dual stack, bpfnet run --backend bpf, dockerd --ipv6:\n  " + table.joined(separator: "\n  "))
        if testRun?.hasSucceeded == false { print(agentLog()) }
    }

    /// `docker-compose up -d` of a project with two networks, one with icc off, while `bpfnet
    /// run` follows the daemon: the project's networks and containers are policed (isolation
    /// between the networks, icc off within back) without a resync, and `down` takes them away.
    func testDockerComposeProjectIsPoliced() throws {
        guard try RealDockerHost.canRun(tools: ["nft", "docker-compose"]) else { return }
        let host = try RealDockerHost(name: "compose")
        defer { host.close() }
        let (dockerd, bpfnet, probe, work) = (host.dockerd, host.bpfnet, host.probe, host.work)
        let composeFile = work + "/docker-compose.yml"
        var containers: [String: NetworkContainer] = [:]
        var composed = false
        host.atClose {
            for container in containers.values { container.stopServer() }
            if composed { _ = try? dockerd.compose(["down", "-t", "1"], file: composeFile, project: "shop") }
        }
        try host.startDockerd(["--iptables=false"])
        let image = try dockerd.importBusybox()
        let config = work + "/run-policy.yaml"
        try "icc: true\nextInterfaces: [ext0]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let agent = host.adopt(
            try bpfnet.startAgent(
                dockerHost: dockerd.host, config: config, extra: ["--backend", "bpf", "--resync-interval", "3600"]))
        func agentLog() -> String { agent.logContents(maxBytes: 12000) }
        do {
            try bpfnet.waitForStatus("the agent connected") { $0.agent?.connected == true }
        } catch {
            XCTFail("\(error)\n\(agentLog())")
            throw error
        }

        // Written by the test: what a compose user writes for two tiers.
        try """
        version: "2.4"
        services:
          web:
            image: \(image)
            command: ["sleep", "86400"]
            container_name: shop-web
            stop_grace_period: 1s
            networks: [front]
          api:
            image: \(image)
            command: ["sleep", "86400"]
            container_name: shop-api
            stop_grace_period: 1s
            networks: [back]
          db:
            image: \(image)
            command: ["sleep", "86400"]
            container_name: shop-db
            stop_grace_period: 1s
            networks: [back]
        networks:
          front:
            ipam:
              config:
                - subnet: 10.52.0.0/24
          back:
            driver_opts:
              com.docker.network.bridge.enable_icc: "false"
            enable_ipv6: true
            ipam:
              config:
                - subnet: 10.53.0.0/24
                - subnet: fd00:53::/64

        """.write(toFile: composeFile, atomically: true, encoding: .utf8)
        let upBegun = ContinuousClock.now
        composed = true
        try dockerd.compose(["up", "-d"], file: composeFile, project: "shop")
        for (service, network) in [("web", "shop_front"), ("api", "shop_back"), ("db", "shop_back")] {
            containers[service] = try NetworkContainer(
                running: "shop-\(service)", on: network, dockerd: dockerd, probe: probe)
        }
        let status: DataplaneStatus
        do {
            status = try bpfnet.waitForStatus("the compose project", timeout: .seconds(30)) { status in
                Set(status.containers.map(\.name)).isSuperset(of: ["shop-web", "shop-api", "shop-db"])
                    && Set(status.networks?.map(\.name) ?? []).isSuperset(of: ["shop_front", "shop_back"])
            }
        } catch {
            XCTFail("\(error)\n\(agentLog())")
            throw error
        }
        let upMs =
            Double((ContinuousClock.now - upBegun).components.attoseconds) / 1e15
            + Double((ContinuousClock.now - upBegun).components.seconds) * 1000
        print(String(format: "docker-compose up -d begun → project policed (status): %.0f ms", upMs))
        let back = try XCTUnwrap(status.networks?.first { $0.name == "shop_back" })
        XCTAssertFalse(back.icc, "enable_icc \"false\" from the compose file")
        XCTAssertEqual(back.containers, 2)
        XCTAssertEqual(back.subnet, "10.53.0.0/24")
        XCTAssertEqual(status.networks?.first { $0.name == "shop_front" }?.icc, true)
        // `back` is dual stack (compose's enable_ipv6): its subnet and its containers' addresses.
        XCTAssertEqual(back.subnet6, "fd00:53::/64")
        let dualStack = try bpfnet.waitForStatus("api and db with their IPv6 addresses") { status in
            status.containers.filter { $0.name.hasPrefix("shop-") && $0.ipv6 != nil }.count == 2
        }
        let dbIPv6 = try XCTUnwrap(dualStack.containers.first { $0.name == "shop-db" }?.ipv6)
        XCTAssertTrue(dbIPv6.hasPrefix("fd00:53::"), dbIPv6)

        let outside = IPv4Address(198, 51, 100, 2)
        func c(_ name: String) -> IPv4Address { containers[name]!.ip }
        let cells:
            [(label: String, from: String, to: IPv4Address, kind: Probe.Kind, expected: Reachability, counted: String?)] =
                [
                    ("web → api (front → back)", "web", c("api"), .tcp(80), .blocked, "network"),
                    ("api → web (back → front)", "api", c("web"), .tcp(80), .blocked, "network"),
                    ("web → db ICMP (front → back)", "web", c("db"), .icmp, .blocked, "network"),
                    ("api → db (back, icc off)", "api", c("db"), .tcp(80), .blocked, "icc"),
                    ("db → api ICMP (back, icc off)", "db", c("api"), .icmp, .blocked, "icc"),
                    ("web → outside (masquerade)", "web", outside, .tcp(7777), .allowed, nil),
                    ("api → outside (masquerade)", "api", outside, .tcp(7777), .allowed, nil),
                ]
        let before = try? bpfnet.status().counters
        let results = probe.run(
            cells.map {
                Probe(
                    from: containers[$0.from]!.namespace, to: $0.to, $0.kind, timeout: .milliseconds(1000),
                    label: $0.label)
            })
        var table: [String] = []
        for (cell, result) in zip(cells, results) {
            table.append("\(cell.label): \(result.reachability) (expected \(cell.expected))")
            XCTAssertEqual(result.reachability, cell.expected, "\(cell.label): \(result.detail)")
        }
        print("docker-compose project, bpfnet run --backend bpf:\n  " + table.joined(separator: "\n  "))
        assertDropsCounted(cells.map { ($0.expected, $0.counted, $0.label) }, before: before, bpfnet: bpfnet)

        // Over IPv6 too: api → db within back (icc off) is judged and dropped as `icc`.
        let iccBefore = try bpfnet.status().counters["icc", default: 0]
        let sent = try ProcessRunner.run(
            Command(
                containers["api"]!.namespace.nsenter([
                    "python3", "-c",
                    "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
                        + "[s.sendto(b'x', ('\(dbIPv6)', 9999)) for _ in range(3)]",
                ])))
        XCTAssertTrue(sent.succeeded, sent.stderr)
        let iccAfter = try bpfnet.waitForStatus("api → db over IPv6 counted as icc") { status in
            status.counters["icc", default: 0] >= iccBefore + 3
        }.counters["icc", default: 0]
        XCTAssertGreaterThanOrEqual(iccAfter, iccBefore + 3, "api → db [\(dbIPv6)] over IPv6")

        for container in containers.values { container.stopServer() }
        containers = [:]
        try dockerd.compose(["down", "-t", "1"], file: composeFile, project: "shop")
        composed = false
        try bpfnet.waitForStatus("the project gone") { status in
            !status.containers.contains { $0.name.hasPrefix("shop-") }
                && !(status.networks ?? []).contains { $0.name.hasPrefix("shop_") }
        }
        if testRun?.hasSucceeded == false { print(agentLog()) }
    }
}
