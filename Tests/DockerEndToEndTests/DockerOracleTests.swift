// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run` against a real dockerd (Debian's docker.io 20.10), compared
// probe by probe with dockerd's own iptables rules on the same scenario in the
// same run:
//
//   oracle: dockerd --iptables=true --icc=false, then --icc=true, with the
//           documented DOCKER-USER source-allow rule (and the
//           RELATED,ESTABLISHED accept above it);
//   bpfnet: dockerd --iptables=false and `bpfnet run` (icc=false from the
//           file, then icc=true from the command line).
//
// Every probe must agree, except where bpfnet deliberately differs (direct
// routing to container addresses; the link lifecycle), which is asserted on
// its own. bpfnet also goes through: a second agent refused, dockerd
// restarting under it, SIGTERM leaving the dataplane enforcing, unload.
//
// Root only. Skipped otherwise, unless BPFNET_REQUIRE_ROOT_TESTS=1 (CI),
// where it fails instead.

import BPFNetCore
import BPFNetTestSupport
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class DockerOracleTests: XCTestCase {
    // MARK: Scenario

    enum Place: Hashable {
        case container(String)
        /// The outside namespace, sending from this address.
        case outside(IPv4Address)
        /// The docker host's external address (published ports).
        case hostExternal
    }

    struct Check {
        var label: String
        var from: Place
        var to: Place
        var kind: Probe.Kind
        var sourcePort: UInt16?
        /// What Docker's rules give (docs/docker.md, "What the rules give"), by icc.
        var docker: @Sendable (Bool) -> Reachability
        /// What bpfnet gives where it deliberately differs; nil: the same as Docker.
        var bpfnet: (@Sendable (Bool) -> Reachability)? = nil
        var why: String = ""
        /// The reason bpfnet counts the probe's drop under where it blocks it (docs/reasons.md).
        var counted: String? = nil
    }

    static func iccOnly(_ icc: Bool) -> Reachability { icc ? .allowed : .blocked }

    /// The base matrix (containers web, client, lone).
    static let checks: [Check] = [
        Check(
            label: "client → web 80/tcp (linked, exposed)", from: .container("client"), to: .container("web"),
            kind: .tcp(80), docker: { _ in .allowed }),
        Check(
            label: "client → web 53/udp (linked, exposed udp)", from: .container("client"), to: .container("web"),
            kind: .udp(53), docker: { _ in .allowed }),
        Check(
            label: "client → web 9090/tcp (not exposed)", from: .container("client"), to: .container("web"),
            kind: .tcp(9090), docker: iccOnly, counted: "icc"),
        Check(
            label: "client → web icmp", from: .container("client"), to: .container("web"), kind: .icmp, docker: iccOnly,
            counted: "icc"),
        Check(
            label: "web → client 9090/tcp from sport 80 (stateless reverse rule)", from: .container("web"),
            to: .container("client"), kind: .tcp(9090), sourcePort: 80, docker: { _ in .allowed }),
        Check(
            label: "web → client 9091/udp from sport 53 (stateless reverse rule)", from: .container("web"),
            to: .container("client"), kind: .udp(9091), sourcePort: 53, docker: { _ in .allowed }),
        Check(
            label: "web → client 9090/tcp from sport 40001", from: .container("web"), to: .container("client"),
            kind: .tcp(9090), sourcePort: 40001, docker: iccOnly, counted: "icc"),
        Check(
            label: "lone → web 80/tcp (no link)", from: .container("lone"), to: .container("web"), kind: .tcp(80),
            docker: iccOnly, counted: "icc"),
        Check(
            label: "client → lone 80/tcp (no link)", from: .container("client"), to: .container("lone"), kind: .tcp(80),
            docker: iccOnly, counted: "icc"),
        Check(
            label: "outside .2 → host:8080 (published, allowed source)", from: .outside(LabAddresses.allowed),
            to: .hostExternal, kind: .tcp(8080), docker: { _ in .allowed }),
        Check(
            label: "outside .3 → host:8080 (published, other source)", from: .outside(LabAddresses.other),
            to: .hostExternal, kind: .tcp(8080), docker: { _ in .blocked }, counted: "source"),
        Check(
            label: "web → outside .2:7777/tcp (outbound, replies)", from: .container("web"),
            to: .outside(LabAddresses.allowed), kind: .tcp(LabAddresses.externalPort), docker: { _ in .allowed }),
        Check(
            label: "lone → outside .3:7777/udp (replies from a non-allowed source)", from: .container("lone"),
            to: .outside(LabAddresses.other), kind: .udp(LabAddresses.externalPort), docker: { _ in .allowed }),
        Check(
            label: "outside .2 → web:80 routed directly (published port)", from: .outside(LabAddresses.allowed),
            to: .container("web"), kind: .tcp(80), docker: { _ in .allowed }, bpfnet: { _ in .blocked },
            why:
                "direct routing to container addresses is dropped (forward policy drop), as Docker 28+ does; 20.10 lets published ports through",
            counted: "forward"),
        Check(
            label: "outside .2 → web:9090 routed directly (not published)", from: .outside(LabAddresses.allowed),
            to: .container("web"), kind: .tcp(9090), docker: { _ in .blocked }, counted: "forward"),
    ]

    /// Compares `iptables-save` of a live dockerd running the scenario with
    /// `Docker2010Rules` for the same containers: every chain with the same
    /// rules, in the same order except in DOCKER, whose order follows the
    /// containers' start (all its rules accept, so order does not change a verdict).
    func assertRenderedRulesMatch(
        live: String, icc: Bool, containers: LabContainers, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        func ip(_ name: String) throws -> IPv4Address {
            try XCTUnwrap(containers[name]?.ip, "no container \(name)")
        }
        let web = try ip("web")
        let policy = Policy(
            icc: icc, forwardPolicy: .drop,
            extInterfaces: [
                ExternalInterface(
                    name: "ext0", allowSources: [IPv4CIDR(address: LabAddresses.allowed, prefixLength: 32)!])
            ],
            containers: [
                Container(
                    name: "web", ip: web, mac: MACAddress(dockerStyleFor: web), port: "",
                    exposed: [PortSpec(80), PortSpec(53, .udp)],
                    published: [PublishedPort(hostPort: 8080, containerPort: 80)]),
                Container(
                    name: "client", ip: try ip("client"), mac: MACAddress(dockerStyleFor: try ip("client")), port: ""),
                Container(name: "lone", ip: try ip("lone"), mac: MACAddress(dockerStyleFor: try ip("lone")), port: ""),
            ],
            links: [Link(parent: "client", child: "web", alias: "w")])
        let rendered = Docker2010Rules.render(
            policy, subnets: ["docker0": try XCTUnwrap(IPv4CIDR(LabAddresses.bridgeSubnet))])
        /// Table and chain → its rules (chain declarations as ":NAME POLICY").
        func chains(_ text: String) -> [String: [String]] {
            var table = ""
            var result: [String: [String]] = [:]
            for raw in text.split(separator: "\n") {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("*") {
                    table = String(line.dropFirst())
                } else if line.hasPrefix(":") {
                    let fields = line.dropFirst().split(separator: " ")
                    result["\(table) declared", default: []].append("\(fields[0]) \(fields[1])")
                } else if line.hasPrefix("-A ") {
                    let chain = line.split(separator: " ")[1]
                    result["\(table) \(chain)", default: []].append(line)
                }
            }
            for key in result.keys where key.hasSuffix(" DOCKER") || key.hasSuffix(" declared") {
                result[key]?.sort()
            }
            return result
        }
        let want = chains(rendered)
        let got = chains(live)
        for key in Set(want.keys).union(got.keys).sorted() {
            XCTAssertEqual(
                got[key] ?? [], want[key] ?? [],
                "icc=\(icc), \(key): dockerd's rules (first) and Docker2010Rules differ",
                file: file, line: line)
        }
    }

    /// One measured probe.
    struct Outcome {
        var label: String
        var observed: Reachability
        var detail: String
    }

    // MARK: The test

    func testBPFNetRunAgreesWithDockersOwnRules() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
                return XCTFail("BPFNET_REQUIRE_ROOT_TESTS=1 but not root: the real-Docker suite needs root")
            }
            throw XCTSkip("needs root: starts dockerd and bpfnet in network namespaces of its own")
        }
        if let missing = PrivateDockerd.missingRequirements(tools: ["iptables", "nft"]) {
            return XCTFail("cannot run the real-Docker suite: \(missing) — \(PrivateDockerd.installHint)")
        }
        let clock = ContinuousClock()
        let began = clock.now
        var timings: [String] = []
        var lap = clock.now
        func mark(_ what: String) {
            timings.append("\(what) \(Self.seconds(clock.now - lap))")
            lap = clock.now
        }

        let probe = try ProbeRunner(maxConcurrent: 6)
        let tag = "\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("bpfnet-dke-\(tag)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let dockerd = try PrivateDockerd(base: work + "/docker", tag: tag)
        var namespaces: LabNamespaces?
        var agents: [BackgroundProcess] = []
        var cli: BPFNetCLI?
        let containers = LabContainers()
        defer {
            for agent in agents { agent.stop(grace: .seconds(5)) }
            for container in containers.all { container.stopServer() }
            cli?.cleanUp()
            dockerd.destroy()
            namespaces?.destroy()
            unmountEverything(under: work)
            try? FileManager.default.removeItem(atPath: work)
        }

        // Runs the scenario's containers and their probe servers.
        func runScenario(image: String) throws {
            containers.removeAll()
            let base = ["run", "-d", "--stop-timeout", "1"]
            try dockerd.docker(
                base + [
                    "--name", "web", "--expose", "80", "--expose", "53/udp", "-p", "8080:80", image, "sleep", "86400",
                ])
            try dockerd.docker(base + ["--name", "client", "--link", "web:w", image, "sleep", "86400"])
            try dockerd.docker(base + ["--name", "lone", image, "sleep", "86400"])
            for (name, tcp, udp) in [
                ("web", [UInt16(80), 9090], [UInt16(53)]), ("client", [9090], [9091]), ("lone", [80], []),
            ] {
                let container = LabContainer(name: name, tcp: tcp, udp: udp)
                try container.refresh(dockerd, probe: probe)
                containers[name] = container
            }
        }

        func address(_ place: Place) throws -> IPv4Address {
            switch place {
            case .container(let name):
                guard let container = containers[name] else { throw LabFailure("no container \(name)") }
                return container.ip
            case .outside(let address): return address
            case .hostExternal: return LabAddresses.host
            }
        }

        func measure(_ checks: [Check]) throws -> [Outcome] {
            guard let namespaces else { throw LabFailure("no namespaces") }
            let probes = try checks.map { check -> Probe in
                let from: NetworkNamespace
                var sourceAddress: IPv4Address?
                switch check.from {
                case .container(let name):
                    guard let container = containers[name] else { throw LabFailure("no container \(name)") }
                    from = container.namespace
                case .outside(let address):
                    from = namespaces.outside
                    sourceAddress = address
                case .hostExternal:
                    from = namespaces.docker
                }
                return Probe(
                    from: from, to: try address(check.to), check.kind, sourcePort: check.sourcePort,
                    sourceAddress: sourceAddress, timeout: .milliseconds(1000), label: check.label)
            }
            return zip(checks, probe.run(probes)).map { check, result in
                Outcome(label: check.label, observed: result.reachability, detail: result.detail)
            }
        }

        // MARK: Oracle: dockerd's own iptables rules

        var oracle: [Bool: [Outcome]] = [:]
        var oracleLifecycle: [Outcome] = []
        var image = ""
        for icc in [false, true] {
            let lab = try LabNamespaces(tag: "\(tag)-o\(icc ? 1 : 0)", probe: probe)
            namespaces = lab
            try dockerd.start(
                in: lab.docker, flags: ["--bip", LabAddresses.bridge, "--iptables=true", "--icc=\(icc)"],
                wipeNetwork: true)
            image = try dockerd.importBusybox()
            // The documented source allow-list, with the accept for replies above it.
            for rule in [
                ["-I", "DOCKER-USER", "-i", "ext0", "!", "-s", "\(LabAddresses.allowed)", "-j", "DROP"],
                ["-I", "DOCKER-USER", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
            ] {
                try sh(lab.docker.nsenter(["iptables", "-w"] + rule))
            }
            try runScenario(image: image)
            mark("oracle icc=\(icc): dockerd, image, containers")
            // The rules the attack table and the netfilter oracle load in
            // dockerd's place (Docker2010Rules) are dockerd's own, rule for rule.
            try assertRenderedRulesMatch(
                live: sh(lab.docker.nsenter(["iptables-save", "-t", "filter"]))
                    + "\n" + sh(lab.docker.nsenter(["iptables-save", "-t", "nat"])),
                icc: icc, containers: containers)
            oracle[icc] = try measure(Self.checks)
            mark("oracle icc=\(icc): probes")
            if !icc {
                oracleLifecycle = try lifecycle(
                    dockerd: dockerd, image: image, probe: probe, containers: containers,
                    measure: measure, waitForAgent: { _ in })
                mark("oracle icc=false: lifecycle")
            }
            for container in containers.all { container.stopServer() }
            try dockerd.docker(["rm", "-f"] + containers.names)
            dockerd.stop()
            lab.destroy()
            namespaces = nil
        }

        // MARK: bpfnet run

        let lab = try LabNamespaces(tag: "\(tag)-b", probe: probe)
        namespaces = lab
        try dockerd.start(
            in: lab.docker, flags: ["--bip", LabAddresses.bridge, "--iptables=false", "--live-restore"],
            wipeNetwork: true)
        let bpfnet = try BPFNetCLI(namespace: lab.docker, workDirectory: work)
        cli = bpfnet
        let config = work + "/run-policy.yaml"
        try """
        # bpfnet run: host settings only; containers and links come from Docker.
        # Published ports through the eBPF NAT (nat auto, the default, with the tc hook):
        # every probe must still match Docker's own rules.
        icc: false
        extInterfaces:
          - name: ext0
            allowSources: [\(LabAddresses.allowed)/32]

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let agent = try bpfnet.startAgent(dockerHost: dockerd.host, config: config)
        agents.append(agent)
        func agentLog(maxBytes: Int = 8000) -> String {
            agents.map { $0.logContents(maxBytes: maxBytes) }.joined(separator: "\n---\n")
        }
        try bpfnet.waitForStatus("the agent connected") { $0.agent?.connected == true }
        mark("bpfnet: dockerd, agent")

        try runScenario(image: image)
        let settled = try bpfnet.waitForStatus("web, client, lone and the link") { status in
            Set(status.containers.map(\.name)) == ["web", "client", "lone"] && status.links.count == 1
        }
        XCTAssertEqual(settled.links.first?.ports, ["80/tcp", "53/udp"])
        XCTAssertEqual(settled.links.first.map { "\($0.parent)→\($0.child)" }, "client→web")
        XCTAssertEqual(settled.containers.first { $0.name == "web" }?.ip, containers["web"]?.ip.description)
        XCTAssertEqual(
            settled.published.map { "\($0.hostPort)/\($0.proto)→\($0.container):\($0.containerPort)" },
            ["8080/tcp→web:80"])
        XCTAssertFalse(settled.icc)
        mark("bpfnet: containers")

        // dockerd runs its userland proxy (the default): after a resync
        // (SIGHUP) the agent's status names the docker-proxy that forwards
        // web's published port (issue 15, guard rails).
        kill(agent.pid, SIGHUP)
        let warned = try bpfnet.waitForStatus("the userland proxy warning") { status in
            status.agent?.warnings?.contains { $0.contains("docker-proxy") } == true
        }
        let proxyWarning = warned.agent?.warnings?.first { $0.contains("docker-proxy") } ?? ""
        XCTAssertTrue(
            proxyWarning.contains(":8080→\(containers["web"]?.ip.description ?? "?"):80/tcp"), proxyWarning)
        mark("bpfnet: userland proxy warning")

        var measured: [Bool: [Outcome]] = [:]
        let counters = try bpfnet.status().counters
        measured[false] = try measure(Self.checks)
        // A blocked probe that timed out proves no drop: each reason counted at least one packet per probe.
        var blocked: [String: [String]] = [:]
        for check in Self.checks where (check.bpfnet ?? check.docker)(false) == .blocked {
            blocked[check.counted ?? "(no reason named)", default: []].append(check.label)
        }
        assertDropsCountedByReason(blocked, before: counters, after: try bpfnet.status().counters, "bpfnet icc=false")
        mark("bpfnet icc=false: probes")

        // Start event → rules: a container of its own, timed from the outside too.
        let runStarted = clock.now
        try dockerd.docker([
            "run", "-d", "--stop-timeout", "1", "--name", "timed", "--expose", "80", image, "sleep", "86400",
        ])
        let dockerRunTook = clock.now - runStarted
        let timed = try bpfnet.waitForStatus("timed's start measured") { $0.agent?.lastSyncContainer == "timed" }
        let timedLatency = try XCTUnwrap(timed.lastSyncLatencyMs)
        XCTAssertGreaterThanOrEqual(timedLatency, 0)
        XCTAssertLessThan(timedLatency, 5000, "start event → rules took \(timedLatency) ms")
        XCTAssertEqual(timed.agent?.lastSyncLatencyMs, timedLatency)
        try dockerd.docker(["rm", "-f", "timed"])
        try bpfnet.waitForStatus("timed gone") { !$0.containers.contains { $0.name == "timed" } }

        // A second agent on the same pin path is refused; so is unload while one runs.
        let second = try bpfnet.run(["run", "--docker-host", dockerd.host, "--config", config], timeout: .seconds(30))
        XCTAssertEqual(second.status, .exited(1), "a second bpfnet run must refuse: \(second.stderr)")
        XCTAssertTrue(
            second.stderr.contains("already keeps the dataplane") && second.stderr.contains("pid \(agent.pid)"),
            second.stderr)
        // A bridge Docker does not use is refused before anything is applied.
        let otherBridge = try ProcessRunner.run(
            Command(
                lab.docker.nsenter([
                    bpfnet.binary, "run", "--docker-host", dockerd.host, "--bridge", "br-other",
                    "--pin-path", work + "/pins-other",
                ]),
                timeout: .seconds(30), environment: bpfnet.environment))
        XCTAssertEqual(otherBridge.status, .exited(2), otherBridge.stderr)
        XCTAssertTrue(
            otherBridge.stderr.contains("bridge br-other was given")
                && otherBridge.stderr.contains("Docker's default bridge network is docker0"), otherBridge.stderr)
        let earlyUnload = try bpfnet.run(["unload"])
        XCTAssertEqual(earlyUnload.status, .exited(1))
        XCTAssertTrue(earlyUnload.stderr.contains("stop it first"), earlyUnload.stderr)
        mark("bpfnet: latency, second agent, other bridge, unload refused")

        // The link lifecycle, done right.
        let bpfnetLifecycle = try lifecycle(
            dockerd: dockerd, image: image, probe: probe, containers: containers,
            measure: measure,
            waitForAgent: { step in
                try bpfnet.waitForStatus(step.description) { step.holds($0, containers) }
            })
        mark("bpfnet: lifecycle")

        // dockerd restarts under the running agent (--live-restore: the containers keep running).
        for container in containers.all { container.stopServer() }
        try dockerd.docker(["rm", "-f", "squat"])
        containers["squat"] = nil
        for name in ["web", "client", "lone"] { try containers[name]?.refresh(dockerd, probe: probe) }
        dockerd.stop(keepContainers: true)
        let whileAway = try bpfnet.waitForStatus("the agent noticing dockerd went away") {
            $0.agent?.connected == false
        }
        XCTAssertTrue(whileAway.agent?.running == true)
        XCTAssertNotNil(whileAway.agent?.lastError)
        XCTAssertEqual(
            Set(whileAway.containers.map(\.name)), ["web", "client", "lone"],
            "the last good state stays in force while Docker is away")
        let away = try measure([Self.checks[0], Self.checks[2], Self.checks[7]])
        XCTAssertEqual(
            away.map(\.observed), [.allowed, .blocked, .blocked], "enforcing while dockerd is away: \(away)")
        try dockerd.start(
            in: lab.docker, flags: ["--bip", LabAddresses.bridge, "--iptables=false", "--live-restore"],
            wipeNetwork: false)
        let reconnected = try bpfnet.waitForStatus("the agent reconnected") { status in
            status.agent?.connected == true && (status.agent?.reconnects ?? 0) >= 1
                && Set(status.containers.map(\.name)) == ["web", "client", "lone"]
        }
        XCTAssertNil(reconnected.agent?.lastError)
        // A child restart right after: the agent follows the new daemon's events.
        containers["web"]?.stopServer()
        try dockerd.docker(["restart", "-t", "1", "web"])
        try containers["web"]?.refresh(dockerd, probe: probe)
        try bpfnet.waitForStatus("the link to web after its restart") { status in
            status.containers.allSatisfy { container in containers[container.name]?.ip.description == container.ip }
                && status.links.map { "\($0.parentIP)→\($0.childIP)" }
                    == ["\(containers["client"]!.ip)→\(containers["web"]!.ip)"]
        }
        let afterRestart = try measure(Self.checks)
        for (check, outcome) in zip(Self.checks, afterRestart) {
            let expected = check.bpfnet?(false) ?? check.docker(false)
            XCTAssertEqual(outcome.observed, expected, "after dockerd restarted: \(check.label): \(outcome.detail)")
        }
        mark("bpfnet: dockerd restart")

        // SIGTERM: the agent ends, the dataplane stays and keeps enforcing.
        XCTAssertEqual(agent.stop(grace: .seconds(20)), .exited(0), agentLog())
        let orphaned = try bpfnet.status()
        XCTAssertEqual(orphaned.agent?.running, false)
        XCTAssertEqual(Set(orphaned.containers.map(\.name)), ["web", "client", "lone"])
        let withoutAgent = try measure([Self.checks[0], Self.checks[7]])
        XCTAssertEqual(
            withoutAgent.map(\.observed), [.allowed, .blocked], "enforcing without the agent: \(withoutAgent)")
        XCTAssertTrue(agentLog().contains("the dataplane stays loaded"), agentLog())
        XCTAssertGreaterThan(
            orphaned.fastPath?["port-tc"]?["hit"] ?? 0, 0,
            "allowed container traffic took the fast path (on by default)")
        mark("bpfnet: SIGTERM")

        // The fast path changes delivery, never verdicts: the same probes with it off.
        let slowAgent = try bpfnet.startAgent(dockerHost: dockerd.host, config: config, extra: ["--fast-path", "off"])
        agents.append(slowAgent)
        try bpfnet.waitForStatus("fast path off and the agent connected") { status in
            status.fastPathEnabled == false && !status.icc && status.agent?.connected == true && status.links.count == 1
        }
        let withoutFastPath = try measure(Self.checks)
        for (check, (outcome, before)) in zip(Self.checks, zip(withoutFastPath, afterRestart)) {
            XCTAssertEqual(outcome.observed, before.observed, "fast path off: \(check.label): \(outcome.detail)")
        }
        XCTAssertEqual(slowAgent.stop(grace: .seconds(20)), .exited(0))
        mark("bpfnet: fast path off")

        // The netfilter fallbacks behind the same agent: the same reachability.
        for backend in ["nftables", "iptables"] {
            let fallbackAgent = try bpfnet.startAgent(
                dockerHost: dockerd.host, config: config, extra: ["--backend", backend])
            agents.append(fallbackAgent)
            try bpfnet.waitForStatus("backend \(backend) and the agent connected") { status in
                status.backend == backend && !status.icc && status.agent?.connected == true && status.links.count == 1
            }
            let viaFallback = try measure(Self.checks)
            for (check, (outcome, before)) in zip(Self.checks, zip(viaFallback, afterRestart)) {
                XCTAssertEqual(
                    outcome.observed, before.observed, "backend \(backend): \(check.label): \(outcome.detail)")
            }
            XCTAssertEqual(fallbackAgent.stop(grace: .seconds(20)), .exited(0), agentLog())
            mark("bpfnet: backend \(backend)")
        }

        // icc=true from the command line, on the dataplane the first agent left.
        let iccAgent = try bpfnet.startAgent(dockerHost: dockerd.host, config: config, extra: ["--icc", "true"])
        agents.append(iccAgent)
        try bpfnet.waitForStatus("icc on and the agent connected") {
            $0.icc && $0.agent?.connected == true && $0.links.count == 1
        }
        // web's neighbour entry resolved first, so the published port's
        // connection is the eBPF NAT's (the first one otherwise takes the stack).
        if let web = containers["web"] {
            try sh(lab.docker.nsenter(["busybox", "ping", "-c", "1", "-W", "1", web.ip.description]))
        }
        measured[true] = try measure(Self.checks)
        let natStatus = try bpfnet.status()
        XCTAssertEqual(natStatus.nat, "ebpf")
        XCTAssertGreaterThan(
            natStatus.fastPath?["ext-xdp"]?["hit"] ?? 0, 0,
            "the published port's probe took the eBPF NAT: \(natStatus.fastPath ?? [:])")
        mark("bpfnet icc=true: probes")
        XCTAssertEqual(iccAgent.stop(grace: .seconds(20)), .exited(0))
        let unload = try bpfnet.run(["unload"])
        XCTAssertTrue(unload.succeeded, unload.stderr)
        let gone = try bpfnet.run(["status", "--json"])
        XCTAssertFalse(gone.succeeded, "nothing is loaded after unload")

        // MARK: Compare

        var table =
            "| probe | Docker iptables icc=false | bpfnet icc=false | Docker iptables icc=true | bpfnet icc=true |\n|---|---|---|---|---|\n"
        for (index, check) in Self.checks.enumerated() {
            var cells: [String] = []
            for icc in [false, true] {
                let docker = oracle[icc]![index]
                let ours = measured[icc]![index]
                cells += [
                    docker.observed.rawValue, ours.observed.rawValue + (check.bpfnet != nil ? " (deliberate)" : ""),
                ]
                XCTAssertEqual(
                    docker.observed, check.docker(icc),
                    "the Docker oracle (icc=\(icc)) did not behave as documented: \(check.label): \(docker.detail)")
                if let deliberate = check.bpfnet {
                    XCTAssertEqual(
                        ours.observed, deliberate(icc),
                        "bpfnet icc=\(icc): \(check.label) (\(check.why)): \(ours.detail)")
                } else {
                    XCTAssertEqual(
                        ours.observed, docker.observed,
                        "bpfnet differs from Docker's rules (icc=\(icc)): \(check.label): bpfnet \(ours.detail), docker \(docker.detail)"
                    )
                }
            }
            table += "| \(check.label) | " + cells.joined(separator: " | ") + " |\n"
        }
        table += "\nLink lifecycle (icc=false):\n\n| step | Docker iptables | bpfnet |\n|---|---|---|\n"
        for (index, step) in Self.lifecycleSteps.enumerated() {
            let docker = oracleLifecycle[index]
            let ours = bpfnetLifecycle[index]
            table += "| \(step.label) | \(docker.observed.rawValue) | \(ours.observed.rawValue) |\n"
            XCTAssertEqual(ours.observed, step.bpfnet, "bpfnet lifecycle: \(step.label): \(ours.detail)")
            // Docker's side documents the bug bpfnet fixes; a daemon that behaves otherwise is noted, not failed.
            if docker.observed != step.docker {
                print(
                    "note: dockerd differs from docs/docker.md (\"Links\") at '\(step.label)': \(docker.observed) (documented \(step.docker))"
                )
            }
        }
        let latencies = Self.startLatencies(in: agentLog(maxBytes: 8 << 20))
        table +=
            "\nstart event → rules in the maps: timed \(String(format: "%.1f", timedLatency)) ms "
            + "(docker run itself took \(Self.seconds(dockerRunTook))); all starts seen by the agent (ms): "
            + latencies.map { String(format: "%.1f", $0) }.joined(separator: ", ") + "\n"
        print("\nDockerOracleTests reachability (measured):\n\n" + table)
        print(
            "DockerOracleTests timings: " + timings.joined(separator: ", ")
                + "; total \(Self.seconds(clock.now - began))")
        if testRun?.failureCount ?? 0 > 0 { print("bpfnet run logs (the end of each):\n" + agentLog()) }
    }

    // MARK: Lifecycle

    struct LifecycleStep {
        var label: String
        var check: Check
        /// Docker 20.10's documented result (docs/docker.md, "Links"); recorded, not asserted.
        var docker: Reachability
        var bpfnet: Reachability
    }

    static let lifecycleSteps: [LifecycleStep] = [
        LifecycleStep(
            label: "child web stopped, squat took its address: client → squat 80/tcp",
            check: Check(
                label: "client → squat 80/tcp", from: .container("client"), to: .container("squat"),
                kind: .tcp(80), docker: { _ in .allowed }),
            docker: .allowed, bpfnet: .blocked),
        LifecycleStep(
            label: "child web restarted at a new address: client → web 80/tcp",
            check: Check(
                label: "client → web 80/tcp", from: .container("client"), to: .container("web"),
                kind: .tcp(80), docker: { _ in .blocked }),
            docker: .blocked, bpfnet: .allowed),
        LifecycleStep(
            label: "child web restarted: web → client 9090/tcp from sport 80",
            check: Check(
                label: "web → client 9090/tcp sport 80", from: .container("web"), to: .container("client"),
                kind: .tcp(9090), sourcePort: 80, docker: { _ in .blocked }),
            docker: .blocked, bpfnet: .allowed),
        LifecycleStep(
            label: "parent client restarted: client → web 80/tcp",
            check: Check(
                label: "client → web 80/tcp", from: .container("client"), to: .container("web"),
                kind: .tcp(80), docker: { _ in .allowed }),
            docker: .allowed, bpfnet: .allowed),
        // 20.10 gives the restarted parent its old address back (lowest free) and
        // never deletes the stale rule to the child's old address.
        LifecycleStep(
            label: "parent client restarted: client → squat 80/tcp",
            check: Check(
                label: "client → squat 80/tcp", from: .container("client"), to: .container("squat"),
                kind: .tcp(80), docker: { _ in .allowed }),
            docker: .allowed, bpfnet: .blocked),
    ]

    /// What bpfnet's status must show before a lifecycle step is probed.
    enum AgentWait: CustomStringConvertible {
        case childGone, squatIn, childBack, parentBack

        var description: String {
            switch self {
            case .childGone: "web and its link gone"
            case .squatIn: "squat enforced"
            case .childBack: "the link to web's new address"
            case .parentBack: "the link from client's new address"
            }
        }

        func holds(_ status: DataplaneStatus, _ containers: LabContainers) -> Bool {
            let names = Set(status.containers.map(\.name))
            let links = status.links.map { "\($0.parentIP)→\($0.childIP)" }
            let expectedLink = containers["client"].flatMap { client in
                containers["web"].map { "\(client.ip)→\($0.ip)" }
            }
            switch self {
            case .childGone: return !names.contains("web") && status.links.isEmpty
            case .squatIn: return names.contains("squat") && status.links.isEmpty
            case .childBack, .parentBack:
                return status.containers.first { $0.name == "web" }?.ip == containers["web"]?.ip.description
                    && status.containers.first { $0.name == "client" }?.ip == containers["client"]?.ip.description
                    && links == [expectedLink].compactMap { $0 }
            }
        }
    }

    /// Child stop (squat takes its address), child restart, parent restart; a
    /// probe or two after each. `waitForAgent` lets bpfnet catch up (no-op for Docker).
    func lifecycle(
        dockerd: PrivateDockerd, image: String, probe: ProbeRunner, containers: LabContainers,
        measure: ([Check]) throws -> [Outcome], waitForAgent: (AgentWait) throws -> Void
    ) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        let oldWebIP = containers["web"]!.ip
        containers["web"]!.stopServer()
        try dockerd.docker(["stop", "web"])
        try waitForAgent(.childGone)
        try dockerd.docker([
            "run", "-d", "--stop-timeout", "1", "--name", "squat", "--expose", "80", image, "sleep", "86400",
        ])
        let squat = LabContainer(name: "squat", tcp: [80], udp: [])
        try squat.refresh(dockerd, probe: probe)
        containers["squat"] = squat
        XCTAssertEqual(squat.ip, oldWebIP, "squat should get the stopped child's address (lowest free)")
        try waitForAgent(.squatIn)
        outcomes += try measure([Self.lifecycleSteps[0].check])

        try dockerd.docker(["start", "web"])
        try containers["web"]!.refresh(dockerd, probe: probe)
        XCTAssertNotEqual(containers["web"]!.ip, oldWebIP)
        try waitForAgent(.childBack)
        outcomes += try measure([Self.lifecycleSteps[1].check, Self.lifecycleSteps[2].check])

        containers["client"]!.stopServer()
        try dockerd.docker(["stop", "client"])
        try dockerd.docker(["start", "client"])
        try containers["client"]!.refresh(dockerd, probe: probe)
        try waitForAgent(.parentBack)
        outcomes += try measure([Self.lifecycleSteps[3].check, Self.lifecycleSteps[4].check])
        return outcomes
    }

    // MARK: Helpers

    static func seconds(_ duration: Duration) -> String {
        let (whole, attoseconds) = duration.components
        return String(format: "%.1f s", Double(whole) + Double(attoseconds) / 1e18)
    }

    /// The agent's "start event → rules in the maps in X ms" log lines.
    static func startLatencies(in log: String) -> [Double] {
        log.split(separator: "\n").compactMap { line -> Double? in
            guard let range = line.range(of: "start event → rules in the maps in ") else { return nil }
            let rest = line[range.upperBound...].split(separator: " ")
            guard rest.count >= 2, let value = Double(rest[0]) else { return nil }
            return rest[1].hasPrefix("s") ? value * 1000 : value
        }
    }
}
