// SPDX-License-Identifier: Apache-2.0
//
// Docker's own iptables as the oracle for several networks (issue 11): the
// same networks, containers and probes, first on a dockerd 20.10 that writes
// its iptables rules (with the documented DOCKER-USER allow-list), then on a
// dockerd with `--iptables=false` and `bpfnet run` beside it, on each of
// bpfnet's three backends. Every probe must give Docker's answer, except the
// deliberate differences listed in `deliberate` (docs/verdicts.md).
//
//   default bridge 10.47.0.0/24 (icc on):     d1, d2
//   quiet   10.48.0.0/24, enable_icc=false:   q1, q2
//   open    10.49.0.0/24:                     o1 (publishes 8081/tcp), o2, m2 (also on quiet)
//   sealed  10.50.0.0/24, --internal:         s1, s2
//
// The outside namespace routes back to the default bridge's subnet and to o1
// and o2 only (so q1 reaches it only through masquerade, and o1 and o2 can
// be routed at directly).
//
// Root only. Skipped otherwise, unless BPFNET_REQUIRE_ROOT_TESTS=1.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

final class DockerNetworksOracleTests: XCTestCase {
    /// Where a probe goes: a container's address on one of its networks, the
    /// docker host's external address, or the outside host (.2).
    enum Target: Hashable {
        case container(String, network: String)
        case hostExternal
        case outside
    }

    struct Check {
        var label: String
        /// A container, or "outside .2" / "outside .3" (the outside host's addresses).
        var from: String
        var to: Target
        var kind: Probe.Kind
    }

    static let outsideAllowed = "outside .2"
    static let outsideOther = "outside .3"

    static let checks: [Check] = [
        Check(
            label: "d1 → d2 (default bridge, icc on)", from: "d1", to: .container("d2", network: "bridge"),
            kind: .tcp(80)),
        Check(label: "o1 → o2 (open)", from: "o1", to: .container("o2", network: "open"), kind: .tcp(80)),
        Check(label: "q1 → q2 (quiet, icc off)", from: "q1", to: .container("q2", network: "quiet"), kind: .tcp(80)),
        Check(label: "q1 → q2 ICMP (quiet, icc off)", from: "q1", to: .container("q2", network: "quiet"), kind: .icmp),
        Check(label: "s1 → s2 (sealed, within)", from: "s1", to: .container("s2", network: "sealed"), kind: .tcp(80)),
        Check(label: "d1 → o1 (default → open)", from: "d1", to: .container("o1", network: "open"), kind: .tcp(80)),
        Check(label: "o1 → d1 (open → default)", from: "o1", to: .container("d1", network: "bridge"), kind: .tcp(80)),
        Check(label: "o1 → q1 (open → quiet)", from: "o1", to: .container("q1", network: "quiet"), kind: .tcp(80)),
        Check(label: "q1 → o1 (quiet → open)", from: "q1", to: .container("o1", network: "open"), kind: .tcp(80)),
        Check(label: "d1 → q1 ICMP (default → quiet)", from: "d1", to: .container("q1", network: "quiet"), kind: .icmp),
        Check(label: "o1 → s1 (open → sealed)", from: "o1", to: .container("s1", network: "sealed"), kind: .tcp(80)),
        Check(label: "s1 → o1 (sealed → open)", from: "s1", to: .container("o1", network: "open"), kind: .tcp(80)),
        Check(
            label: "s1 → host:8081 (internal → the host's external address)", from: "s1", to: .hostExternal,
            kind: .tcp(8081)),
        Check(label: "d1 → outside", from: "d1", to: .outside, kind: .tcp(7777)),
        Check(label: "q1 → outside (masquerade)", from: "q1", to: .outside, kind: .tcp(7777)),
        Check(label: "o1 → outside", from: "o1", to: .outside, kind: .tcp(7777)),
        Check(label: "s1 → outside host", from: "s1", to: .outside, kind: .tcp(7777)),
        Check(
            label: "d1 → host:8081 (another network's published port, through the host)", from: "d1",
            to: .hostExternal, kind: .tcp(8081)),
        Check(
            label: "q1 → host:8081 (another network's published port, through the host)", from: "q1",
            to: .hostExternal, kind: .tcp(8081)),
        Check(
            label: "o2 → host:8081 (its own network's published port)", from: "o2", to: .hostExternal, kind: .tcp(8081)),
        Check(
            label: "outside .2 → host:8081 (o1's published port)", from: outsideAllowed, to: .hostExternal,
            kind: .tcp(8081)),
        Check(
            label: "outside .3 → host:8081 (not in the allow-list)", from: outsideOther, to: .hostExternal,
            kind: .tcp(8081)),
        Check(
            label: "outside .2 → o1:80 routed directly (published)", from: outsideAllowed,
            to: .container("o1", network: "open"), kind: .tcp(80)),
        Check(
            label: "outside .2 → o2:80 routed directly (not published)", from: outsideAllowed,
            to: .container("o2", network: "open"), kind: .tcp(80)),
        Check(label: "o2 → m2 on open", from: "o2", to: .container("m2", network: "open"), kind: .tcp(80)),
        Check(label: "q2 → m2 on quiet (icc off)", from: "q2", to: .container("m2", network: "quiet"), kind: .tcp(80)),
        Check(
            label: "d1 → m2 on open (another network)", from: "d1", to: .container("m2", network: "open"),
            kind: .tcp(80)),
        Check(
            label: "m2 → q1 (from its quiet side, icc off)", from: "m2", to: .container("q1", network: "quiet"),
            kind: .tcp(80)),
    ]

    /// Probes where bpfnet's backends answer differently from Docker 20.10 on
    /// purpose: label → (the backends that differ, their answer, why).
    static let deliberate: [String: (backends: Set<String>, bpfnet: Reachability, why: String)] = [
        "outside .2 → o1:80 routed directly (published)": (
            ["bpf", "nftables", "iptables"], .blocked,
            "routed straight to a container address, forward policy drop (as Docker 28+); 20.10's DOCKER chain "
                + "accepts a published container port by address and port"
        )
    ]

    /// One phase's containers: name → (network → address), and their namespaces.
    final class Containers {
        var addresses: [String: [String: IPv4Address]] = [:]
        var namespaces: [String: NetworkNamespace] = [:]
        var servers: [BackgroundProcess] = []

        func stopServers() {
            for server in servers { server.stop() }
            servers = []
        }
    }

    /// Creates the networks and containers on `dockerd` and starts a probe server in each container.
    func build(_ host: RealDockerHost, image: String) throws -> Containers {
        let dockerd = host.dockerd
        try dockerd.docker([
            "network", "create", "--subnet", "10.48.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false",
            "quiet",
        ])
        try dockerd.docker(["network", "create", "--subnet", "10.49.0.0/24", "open"])
        try dockerd.docker(["network", "create", "--internal", "--subnet", "10.50.0.0/24", "sealed"])
        let containers = Containers()
        host.atClose { containers.stopServers() }
        for (name, network, extra) in [
            ("d1", "bridge", []), ("d2", "bridge", []), ("q1", "quiet", []), ("q2", "quiet", []),
            ("o1", "open", ["-p", "8081:80"]), ("o2", "open", []), ("m2", "open", []), ("s1", "sealed", []),
            ("s2", "sealed", []),
        ] {
            try dockerd.docker(
                ["run", "-d", "--stop-timeout", "1", "--name", name, "--network", network] + extra + [
                    image, "sleep", "86400",
                ])
        }
        try dockerd.docker(["network", "connect", "quiet", "m2"])
        for name in ["d1", "d2", "q1", "q2", "o1", "o2", "m2", "s1", "s2"] {
            let fields = try dockerd.docker([
                "inspect", "-f",
                "{{.State.Pid}}{{range $name, $endpoint := .NetworkSettings.Networks}} {{$name}}={{$endpoint.IPAddress}}{{end}}",
                name,
            ]).split(separator: " ")
            guard let pid = fields.first.flatMap({ Int32($0) }), pid > 0 else {
                throw LabFailure("docker inspect \(name): \(fields)")
            }
            for field in fields.dropFirst() {
                let parts = field.split(separator: "=")
                guard parts.count == 2, let address = IPv4Address(String(parts[1])) else {
                    throw LabFailure("docker inspect \(name): \(field)")
                }
                containers.addresses[name, default: [:]][String(parts[0])] = address
            }
            let namespace = NetworkNamespace(unopenedPath: "/proc/\(pid)/ns/net", name: name)
            containers.namespaces[name] = namespace
            let server = try BackgroundProcess(
                Command(namespace.nsenter(host.probe.serveArguments(tcp: [80], udp: [], name: name))))
            _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
            containers.servers.append(server)
        }
        // The outside host can route at o1 and o2 directly, nowhere else on open.
        for name in ["o1", "o2"] {
            let address = try XCTUnwrap(containers.addresses[name]?["open"])
            try sh(host.lab.outside.nsenter(["ip", "route", "add", "\(address)/32", "via", "\(LabAddresses.host)"]))
        }
        return containers
    }

    func measure(_ host: RealDockerHost, _ containers: Containers) throws -> [Reachability] {
        let probes = try Self.checks.map { check -> Probe in
            let to: IPv4Address
            switch check.to {
            case .hostExternal: to = LabAddresses.host
            case .outside: to = LabAddresses.allowed
            case .container(let name, let network):
                to = try XCTUnwrap(containers.addresses[name]?[network], "\(name) on \(network)")
            }
            switch check.from {
            case Self.outsideAllowed, Self.outsideOther:
                return Probe(
                    from: host.lab.outside, to: to, check.kind,
                    sourceAddress: check.from == Self.outsideAllowed ? LabAddresses.allowed : LabAddresses.other,
                    timeout: .milliseconds(1000), label: check.label)
            default:
                let namespace = try XCTUnwrap(containers.namespaces[check.from], check.from)
                return Probe(from: namespace, to: to, check.kind, timeout: .milliseconds(1000), label: check.label)
            }
        }
        return host.probe.run(probes).map(\.reachability)
    }

    func testBPFNetGivesDockersReachabilityOnEveryNetwork() throws {
        guard try RealDockerHost.canRun(tools: ["nft", "iptables-save"]) else { return }

        // The oracle: dockerd's own iptables rules, and the documented allow-list in DOCKER-USER.
        let docker: [Reachability]
        do {
            let host = try RealDockerHost(name: "nworacle")
            defer { host.close() }
            try host.startDockerd(["--iptables=true"])
            for rule in [
                ["-I", "DOCKER-USER", "-i", "ext0", "!", "-s", "\(LabAddresses.allowed)", "-j", "DROP"],
                ["-I", "DOCKER-USER", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ] {
                try sh(host.lab.docker.nsenter(["iptables", "-w"] + rule))
            }
            let containers = try build(host, image: try host.dockerd.importBusybox())
            docker = try measure(host, containers)
        }

        // bpfnet run beside a dockerd without iptables, each backend in turn.
        let host = try RealDockerHost(name: "nwbpfnet")
        defer { host.close() }
        try host.startDockerd(["--iptables=false"])
        let containers = try build(host, image: try host.dockerd.importBusybox())
        let config = host.work + "/run-policy.yaml"
        try """
        icc: true
        extInterfaces:
          - name: ext0
            allowSources: [\(LabAddresses.allowed)/32]

        """.write(toFile: config, atomically: true, encoding: .utf8)
        var table = ["probe | Docker 20.10 (iptables) | bpf | nftables | iptables"]
        var rows = Self.checks.map { _ in [String]() }
        for backend in ["bpf", "nftables", "iptables"] {
            let agent = host.adopt(
                try host.bpfnet.startAgent(
                    dockerHost: host.dockerd.host, config: config, extra: ["--backend", backend]))
            try host.bpfnet.waitForStatus("\(backend): every container policed") { status in
                status.backend == backend && status.agent?.connected == true
                    && Set(status.containers.map(\.name)) == Set(containers.namespaces.keys)
            }
            let measured = try measure(host, containers)
            for (index, (check, (oracle, observed))) in zip(Self.checks, zip(docker, measured)).enumerated() {
                let difference = Self.deliberate[check.label].flatMap { $0.backends.contains(backend) ? $0 : nil }
                XCTAssertEqual(
                    observed, difference?.bpfnet ?? oracle,
                    "\(backend): \(check.label): Docker \(oracle)"
                        + (difference.map { ", bpfnet deliberately \($0.bpfnet) (\($0.why))" } ?? ""))
                rows[index].append(observed.rawValue)
            }
            XCTAssertEqual(agent.stop(grace: .seconds(20)), .exited(0), agent.logContents(maxBytes: 8000))
        }
        for (index, check) in Self.checks.enumerated() {
            table.append("\(check.label) | \(docker[index].rawValue) | " + rows[index].joined(separator: " | "))
        }
        print("several networks, Docker's iptables against bpfnet:\n  " + table.joined(separator: "\n  "))
    }
}
