// SPDX-License-Identifier: Apache-2.0
//
// A full resync of N containers with links through the `bpfnet run` agent.
//
// Docker is simulated in memory but answers in Docker's JSON (each inspect is
// decoded by the real client's decoder), so what is measured is the agent's
// own work: inspect decoding, port lookups, building and validating the
// policy, compiling it and reconciling the maps. Two dataplanes:
//   memory  the in-memory maps (no root);
//   bpf     the real pinned eBPF dataplane (root, --bpf): a network namespace
//           of its own with a bridge and N veth ports, a private bpffs pin path;
//           the port program is attached to every port on the first resync.
//
// Usage: swift run -c release AgentResyncBenchmark [--containers N] [--rounds R] [--bpf] [--json]
// See README.md next to this file.

import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import DockerWatcher
import Foundation
import LinuxNet
import Logging
import NetLab
import SystemPackage

// MARK: Options

struct Options {
    var containers = 1000
    var rounds = 5
    var bpf = false
    var json = false
    /// Internal: already inside the benchmark's namespace.
    var insideNamespace: String?
    var pinPath: String?

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--containers": options.containers = Int(iterator.next() ?? "") ?? options.containers
            case "--rounds": options.rounds = Int(iterator.next() ?? "") ?? options.rounds
            case "--bpf": options.bpf = true
            case "--json": options.json = true
            case "--inside": options.insideNamespace = iterator.next()
            case "--pin-path": options.pinPath = iterator.next()
            default:
                FileHandle.standardError.write(
                    Data("usage: AgentResyncBenchmark [--containers N] [--rounds R] [--bpf] [--json]\n".utf8))
                exit(2)
            }
        }
        options.containers = max(2, options.containers - options.containers % 2)
        return options
    }
}

// MARK: A daemon in memory that answers in JSON

/// N/2 parent–child pairs: each child exposes 80/tcp, 443/tcp and 53/udp (every
/// tenth also publishes a host port), each parent links its child.
final class SimulatedDocker: DockerSource, @unchecked Sendable {
    let hostDescription = "unix:///simulated/docker.sock"
    private let lock = NSLock()
    private var inspectJSON: [String: Data] = [:]
    private var running: [String: (name: String, ip: IPv4Address)] = [:]
    private var stream: AsyncThrowingStream<DockerEventItem, any Error>.Continuation?
    private var nextPid: Int32 = 100_000
    private(set) var portOfPid: [Int32: String] = [:]
    private var ports: [String]
    private var freePorts: [String]

    init(count: Int, ports: [String]) {
        self.ports = ports
        freePorts = []
        for index in 0..<count {
            let pair = index / 2
            let isChild = index % 2 == 0
            let name = isChild ? "child\(pair)" : "parent\(pair)"
            let id = String(format: "%064x", index + 1)
            let ip = Self.address(index)
            start(id: id, name: name, ip: ip, port: ports[index], isChild: isChild, pair: pair)
        }
        freePorts = Array(ports.dropFirst(count))
    }

    static func address(_ index: Int) -> IPv4Address {
        IPv4Address(UInt32(172) << 24 | UInt32(17) << 16 | UInt32(index + 2))
    }

    private func start(id: String, name: String, ip: IPv4Address, port: String, isChild: Bool, pair: Int) {
        nextPid += 1
        let pid = nextPid
        portOfPid[pid] = port
        let mac = MACAddress(dockerStyleFor: ip)
        var exposed = #"null"#
        var bindings = #"{}"#
        var links = #"null"#
        if isChild {
            exposed = #"{"80/tcp":{},"443/tcp":{},"53/udp":{}}"#
            if pair % 10 == 0 {
                bindings =
                    #"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"\#(10000 + pair)"}],"443/tcp":null,"53/udp":null}"#
            } else {
                bindings = #"{"80/tcp":null,"443/tcp":null,"53/udp":null}"#
            }
        } else {
            links = #"["/child\#(pair):/\#(name)/db"]"#
        }
        let json = #"""
            {"Id":"\#(id)","Name":"/\#(name)","State":{"Status":"running","Running":true,"Pid":\#(pid),"StartedAt":"2026-01-01T00:00:00Z"},
             "HostConfig":{"NetworkMode":"default","Links":\#(links),"PortBindings":{},"PublishAllPorts":false},
             "Config":{"Hostname":"\#(id.prefix(12))","Image":"bb:local","ExposedPorts":\#(exposed),"Env":null},
             "NetworkSettings":{"Bridge":"","SandboxKey":"/var/run/docker/netns/\#(id.prefix(12))","Ports":\#(bindings),
              "Networks":{"bridge":{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"net0","EndpointID":"ep\#(pid)",
               "Gateway":"172.17.0.1","IPAddress":"\#(ip)","IPPrefixLen":16,"MacAddress":"\#(mac)"}}}}
            """#
        lock.withLock {
            inspectJSON[id] = Data(json.utf8)
            running[id] = (name, ip)
        }
    }

    /// Restarts a child with a new pid and a new address, as Docker does: its
    /// container, MAC and name entries and every link rule of its pair change.
    /// (It keeps its port: a Linux bridge takes at most 1,023 ports.)
    func restartChild(pair: Int) {
        let index = pair * 2
        let id = String(format: "%064x", index + 1)
        start(
            id: id, name: "child\(pair)", ip: IPv4Address(UInt32(172) << 24 | UInt32(18) << 16 | UInt32(index + 2)),
            port: ports[index], isChild: true, pair: pair)
    }

    /// A new container and its start event.
    func startNew(index: Int) -> String {
        let id = String(format: "%064x", index + 1)
        let port = lock.withLock { freePorts.removeFirst() }
        start(id: id, name: "extra\(index)", ip: Self.address(index), port: port, isChild: false, pair: -1)
        let event = DockerEvent(
            type: .container, action: .start, actorID: id, attributes: ["name": "extra\(index)"],
            timeNano: Int64((Date().timeIntervalSince1970 * 1e9).rounded()))
        lock.withLock { _ = stream?.yield(.event(event)) }
        return id
    }

    func connect() async throws -> DockerDaemonIdentity {
        DockerDaemonIdentity(version: "simulated", apiVersion: DockerAPIVersion(1, 41))
    }

    func info() async throws -> DockerDaemonInfo { DockerDaemonInfo(ipv4Forwarding: true, bridgeNfIptables: false) }

    func bridgeNetwork() async throws -> DockerBridgeNetwork {
        DockerBridgeNetwork(id: "net0", name: "bridge", subnet: IPv4CIDR("172.17.0.0/16"))
    }

    func runningBridgeContainers() async throws -> [DockerContainerSummary] {
        lock.withLock {
            running.map {
                DockerContainerSummary(
                    id: $0.key, name: $0.value.name, names: [$0.value.name], state: "running",
                    networkMode: "default", bridgeIP: $0.value.ip)
            }
        }
    }

    func inspectContainer(_ idOrName: String) async throws -> DockerContainer {
        guard let data = lock.withLock({ inspectJSON[idOrName] }) else {
            throw DockerError.httpStatus(
                request: "GET /containers/\(idOrName)/json", status: 404, message: "No such container")
        }
        return try DockerContainer(inspectJSON: data)
    }

    func eventItems(since: Date) async throws -> AsyncThrowingStream<DockerEventItem, any Error> {
        let (stream, continuation) = AsyncThrowingStream<DockerEventItem, any Error>.makeStream()
        lock.withLock { self.stream = continuation }
        return stream
    }

    func port(of pid: Int32) -> String? { lock.withLock { portOfPid[pid] } }
}

/// Every interface exists (memory), or the namespace's own (bpf).
struct BenchHost: AgentHost {
    var real: Bool
    func existingInterfaces(among names: [String]) -> Set<String> {
        real ? SystemAgentHost().existingInterfaces(among: names) : Set(names)
    }
    func ipv4Address(of interface: String) -> IPv4InterfaceAddress? {
        real ? SystemAgentHost().ipv4Address(of: interface) : IPv4InterfaceAddress("172.17.0.1/16")
    }
    func dockerFirewallTraces() -> [String] { [] }
    func bridgePortEvents() -> AsyncStream<BridgePortEvent>? { real ? SystemAgentHost().bridgePortEvents() : nil }
}

final class Reports: @unchecked Sendable {
    private let lock = NSLock()
    private var last: DataplaneStatus.Agent?
    func set(_ agent: DataplaneStatus.Agent) { lock.withLock { last = agent } }
    var value: DataplaneStatus.Agent? { lock.withLock { last } }
}

// MARK: Measuring

struct Measurement: Codable {
    var dataplane: String
    var containers: Int
    var links: Int
    var linkRules: Int
    /// First resync: every container new to the dataplane (bpf: every port attached).
    var coldResyncMs: Double
    /// Full resyncs with nothing changed: list, N inspects, port lookups, build, apply (no writes).
    var warmResyncMs: [Double]
    /// Full resync after 10 % of the children restarted on new ports.
    var churnResyncMs: Double
    /// One container started with N running: start event → rules in the maps.
    var startLatencyMs: [Double]
    /// bpf only: a veth joined to the bridge by hand (no container, no Docker
    /// event) → the port program attached to it, which the link monitor makes
    /// the agent do.
    var portAttachMs: [Double] = []
    /// One `GET /metrics` worth of work (agent counts, the dataplane's status
    /// read back from the maps, both rendered), CPU time of the whole process
    /// per scrape, with the agent stopped so that nothing else runs.
    var scrapeCPUMs: [Double] = []
    var scrapeBytes: Int = 0
}

/// CPU time the process has used (user + system, every thread), in ms.
func processCPUMilliseconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return Double(now.tv_sec) * 1000 + Double(now.tv_nsec) / 1e6
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func waitUntil(_ timeout: Duration = .seconds(600), _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        guard ContinuousClock.now < deadline else { throw CancellationError() }
        try await Task.sleep(for: .milliseconds(2))
    }
}

func measure(_ options: Options, dataplane: any Dataplane, name: String, ports: [String]) async throws -> Measurement {
    let docker = SimulatedDocker(count: options.containers, ports: ports)
    let reports = Reports()
    var logger = Logger(label: "bench.agent")
    logger.logLevel =
        ProcessInfo.processInfo.environment["BENCH_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    let executor = DataplaneExecutor(dataplane)
    let metrics = AgentMetrics()
    let agent = DockerAgent(
        docker: docker, dataplane: executor, settings: AgentSettings(policy: Policy(icc: false)),
        resolvePort: { pid in
            guard let port = docker.port(of: pid) else { throw DataplaneError.runtime("no port for pid \(pid)") }
            return port
        },
        host: BenchHost(real: name == "bpf"),
        configuration: .init(
            resyncInterval: .seconds(86_400), tickInterval: .milliseconds(5), maxConcurrentInspects: 8),
        logger: logger, report: { reports.set($0) }, metrics: metrics)
    let task = Task { try await agent.run() }
    defer { task.cancel() }

    try await waitUntil { reports.value?.lastResyncContainers == options.containers }
    let cold = reports.value?.lastResyncMs ?? .nan
    var warm: [Double] = []
    // A resync is reported when it has finished: its time stamp changes.
    func resync(_ reason: String) async throws -> Double {
        let before = reports.value?.lastResyncAt
        await agent.resyncNow(reason: reason)
        try await waitUntil { reports.value?.lastResyncAt != before }
        return reports.value?.lastResyncMs ?? .nan
    }
    for _ in 0..<options.rounds {
        warm.append(try await resync("benchmark"))
    }
    for pair in stride(from: 0, to: options.containers / 2, by: 10) { docker.restartChild(pair: pair) }
    let churn = try await resync("benchmark churn")

    // Watch the reports, not the actor: polling it would compete with the agent.
    var latencies: [Double] = []
    for round in 0..<options.rounds {
        let index = options.containers + round
        _ = docker.startNew(index: index)
        try await waitUntil { reports.value?.lastSyncContainer == "extra\(index)" }
        if let latency = reports.value?.lastSyncLatencyMs { latencies.append(latency) }
        try await Task.sleep(for: .milliseconds(50))
    }
    var portAttach: [Double] = []
    if name == "bpf" {
        for round in 0..<options.rounds {
            let port = "vj\(round)"
            try ProcessRunner.runChecked(
                Command(["ip", "link", "add", port, "type", "veth", "peer", "name", "vjp\(round)"]))
            let index = try RouteNetlink().link(named: port)?.index ?? 0
            try ProcessRunner.runChecked(Command(["ip", "link", "set", port, "master", "docker0", "up"]))
            let joined = ContinuousClock.now
            try await waitUntil(.seconds(10)) {
                ((try? RouteNetlink().filters(index: index, hook: .ingress)) ?? []).contains { $0.kind == "bpf" }
            }
            let (seconds, attoseconds) = (ContinuousClock.now - joined).components
            portAttach.append(Double(seconds) * 1000 + Double(attoseconds) / 1e15)
            try await Task.sleep(for: .milliseconds(50))
        }
    }
    let snapshot = await agent.snapshot()
    task.cancel()
    _ = try? await task.value

    // Scrapes, one after another, with the agent stopped: the CPU the process uses is theirs.
    let scrape = MetricsScrape(
        agent: agent, dataplane: executor, metrics: metrics, pinPath: FilePath(options.pinPath ?? "/nonexistent"),
        logger: logger)
    var scrapeCPU: [Double] = []
    var scrapeBytes = 0
    for _ in 0..<max(options.rounds, 1) {
        let scrapes = 20
        let before = processCPUMilliseconds()
        for _ in 0..<scrapes { scrapeBytes = await scrape.render().count }
        scrapeCPU.append((processCPUMilliseconds() - before) / Double(scrapes))
    }
    let status = try dataplane.status()
    return Measurement(
        dataplane: name, containers: options.containers, links: snapshot.lastApplied?.links.count ?? 0,
        linkRules: status.links.reduce(0) { $0 + $1.ports.count * 2 },
        coldResyncMs: cold, warmResyncMs: warm, churnResyncMs: churn, startLatencyMs: latencies,
        portAttachMs: portAttach, scrapeCPUMs: scrapeCPU, scrapeBytes: scrapeBytes)
}

func describe(_ m: Measurement) -> String {
    func ms(_ value: Double) -> String { String(format: "%.1f ms", value) }
    let portAttach =
        m.portAttachMs.isEmpty
        ? ""
        : "\n  new port → program attached, median: \(ms(median(m.portAttachMs)))  ["
            + m.portAttachMs.map { String(format: "%.1f", $0) }.joined(separator: ", ") + "]"
    let scrape =
        "\n  metrics scrape, CPU per scrape, median: \(ms(median(m.scrapeCPUMs)))  ["
        + m.scrapeCPUMs.map { String(format: "%.2f", $0) }.joined(separator: ", ") + "], \(m.scrapeBytes) bytes"
    return """
        dataplane \(m.dataplane): \(m.containers) containers, \(m.links) links (\(m.linkRules) port rules each way counted)
          cold resync (all new):           \(ms(m.coldResyncMs))
          warm resync (no change), median: \(ms(median(m.warmResyncMs)))  [\(m.warmResyncMs.map { String(format: "%.0f", $0) }.joined(separator: ", "))]
          resync after 10% restarted:      \(ms(m.churnResyncMs))
          one start → rules, median:       \(ms(median(m.startLatencyMs)))  [\(m.startLatencyMs.map { String(format: "%.1f", $0) }.joined(separator: ", "))]\(portAttach)\(scrape)
        """
}

// MARK: The real dataplane's namespace

/// A namespace with docker0 (172.17.0.1/16) and `count` veth ports on it.
struct BenchNamespace {
    let name = "bpfnet-bench-\(getpid())"
    var path: String { "/run/netns/\(name)" }

    func create(ports: Int) throws {
        try ProcessRunner.runChecked(Command(["ip", "netns", "add", name]))
        var lines = [
            "link add docker0 type bridge", "addr add 172.17.0.1/16 dev docker0", "link set docker0 up",
            "link set lo up",
        ]
        for index in 0..<ports {
            lines.append("link add vb\(index) type veth peer name vc\(index)")
            lines.append("link set vb\(index) master docker0")
            lines.append("link set vb\(index) up")
        }
        try ProcessRunner.runChecked(
            Command(
                ["ip", "-n", name, "-batch", "-"], input: lines.joined(separator: "\n") + "\n",
                timeout: .seconds(600)))
    }

    func destroy() {
        _ = try? ProcessRunner.run(Command(["ip", "netns", "del", name]))
    }
}

// MARK: Main

let options = Options.parse(CommandLine.arguments)
var results: [Measurement] = []
// One port per container and per container started in the latency rounds.
let total = options.containers + max(options.rounds, 1)

if let namespace = options.insideNamespace, let pinPath = options.pinPath {
    // Inside the namespace: only the bpf measurement; print it as JSON for the parent.
    _ = namespace
    var dataplaneLogger = Logger(label: "bench.bpf")
    dataplaneLogger.logLevel =
        ProcessInfo.processInfo.environment["BENCH_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    let dataplane = BPFDataplane(pinPath: FilePath(pinPath), logger: dataplaneLogger)
    defer { try? dataplane.unload() }
    let ports = (0..<total).map { "vb\($0)" }
    let result = try await measure(options, dataplane: dataplane, name: "bpf", ports: ports)
    print(String(decoding: try JSONEncoder().encode(result), as: UTF8.self))
    exit(0)
}

results.append(
    try await measure(
        options, dataplane: InMemoryDataplane(), name: "memory",
        ports: (0..<total).map { "veth\($0)" }))

if options.bpf {
    guard geteuid() == 0 else {
        FileHandle.standardError.write(Data("--bpf needs root (namespaces, bpffs, eBPF)\n".utf8))
        exit(1)
    }
    let namespace = BenchNamespace()
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bpfnet-bench-\(getpid())").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer {
        _ = try? ProcessRunner.run(Command(["umount", "-l", directory + "/pins"]))
        namespace.destroy()
        try? FileManager.default.removeItem(atPath: directory)
    }
    guard total <= 1023 else {
        FileHandle.standardError.write(
            Data("--bpf: a Linux bridge takes at most 1,023 ports; use fewer containers or rounds\n".utf8))
        exit(2)
    }
    do {
        let clock = ContinuousClock()
        let setupStart = clock.now
        try namespace.create(ports: total)
        FileHandle.standardError.write(
            Data("namespace with \(total) veth ports ready in \(clock.now - setupStart)\n".utf8))
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let arguments = [
            "nsenter", "--net=\(namespace.path)", "--", me, "--containers", "\(options.containers)",
            "--rounds", "\(options.rounds)", "--inside", namespace.name, "--pin-path", directory + "/pins",
        ]
        let child = try ProcessRunner.runChecked(
            Command(
                arguments, timeout: .seconds(1800),
                environment: ProcessInfo.processInfo.environment))
        if ProcessInfo.processInfo.environment["BENCH_LOG"] != nil {
            FileHandle.standardError.write(Data(child.stderr.utf8))
        }
        let line = child.stdout.split(separator: "\n").last.map(String.init) ?? ""
        results.append(try JSONDecoder().decode(Measurement.self, from: Data(line.utf8)))
    } catch {
        FileHandle.standardError.write(Data("--bpf: \(error)\n".utf8))
    }
}

if options.json {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(results), as: UTF8.self))
} else {
    for result in results { print(describe(result)) }
}
