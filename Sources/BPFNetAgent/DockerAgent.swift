// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run`: follow a Docker daemon and keep the dataplane in step with
// its bridge networks, containers and links (docs/agent.md).
//
// One session per connection to the daemon:
//   1. negotiate the API version, read the default bridge (`/networks/bridge`)
//      and every bridge network (`/networks`, DockerAgent+Networks.swift);
//   2. open the event stream FIRST, so nothing that happens from here on is lost;
//   3. resync from scratch: list, inspect, find every bridge port, apply;
//   4. apply events as they come, several at a time when they come together.
// When the stream ends or the daemon cannot be reached the session ends, the
// dataplane keeps enforcing what was applied last, and the next session starts
// after a capped exponential backoff — with a resync from scratch, since events
// are lost while disconnected. A periodic resync catches whatever was missed.
//
// The actor keeps the sessions, the resync schedule and the applying; its
// parts do the rest: PendingChanges folds events per container until the
// worker takes them, ContainerTracker inspects and finds bridge ports,
// AgentReporter counts, measures and publishes, DaemonChecks says what in the
// daemon's settings works against bpfnet.
//
// Apart from the sessions, for the agent's whole life: the host's link
// notifications. A port that joins one of the bridges gets the port program at once,
// as an unknown port, before Docker's start event names its container.

import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import DockerWatcher
import Foundation
import Logging

public actor DockerAgent {
    // MARK: Dependencies

    let docker: any DockerSource
    let dataplane: DataplaneExecutor
    /// Replaced by `reloadSettings` (SIGHUP re-reads `--config`).
    private(set) var settings: AgentSettings
    let host: any AgentHost
    private let configuration: Configuration
    let logger: Logger

    // MARK: Parts

    let tracker: ContainerTracker
    private var pending = PendingChanges()
    var reporter: AgentReporter

    // MARK: State

    /// The settings for Docker's bridge, once known.
    var effectiveSettings: Policy?
    /// Docker's default bridge network as the session read it: new settings are checked against it.
    private var defaultBridgeNetwork: DockerBridgeNetwork?
    /// Docker's bridge networks (the default one among them), read at every session's
    /// start, every resync, and after a network create or destroy.
    var dockerNetworks: [DockerBridgeNetwork] = []
    /// A bridge network was created or removed: read the list again.
    var networksChanged = false
    var lastApplied: Policy?
    /// The bridges of the policy being applied now: a port that joins one meanwhile is
    /// attached by the next round (the apply in flight may have read the ports before).
    var applyingBridges: Set<String> = []
    var wake: AsyncStream<Void>.Continuation?
    private var nextPeriodicResync: ContinuousClock.Instant?
    private var requestedResync: (reason: String, notBefore: ContinuousClock.Instant)?
    private var lastResyncStarted: ContinuousClock.Instant?
    /// The last apply failed: the dataplane holds an older policy than the agent wants.
    var needsApply = false
    /// A port joined the bridge since the last apply (or link notifications
    /// were lost): the next round attaches the port program to it.
    var portsJoined = false
    private var everSynced = false
    private var sessionSynced = false
    private var connected = false
    private var daemon: DockerDaemonIdentity?
    /// Daemon warnings already logged (each once per process).
    private var warned: Set<String> = []
    /// The warnings the last daemon and host checks found (`status` shows them).
    private var daemonWarnings: [String] = []
    private var hostWarnings: [String] = []
    private var lastError: String?
    let clock = ContinuousClock()

    /// For a daemon whose containers sit on the default bridge alone: ports are found
    /// from each container's eth0.
    public init(
        docker: any DockerSource, dataplane: DataplaneExecutor, settings: AgentSettings,
        resolvePort: @escaping BridgePortResolver, host: any AgentHost = SystemAgentHost(),
        configuration: Configuration = .init(), logger: Logger = Logger(label: "bpfnet.agent"),
        report: (@Sendable (DataplaneStatus.Agent) -> Void)? = nil, metrics: AgentMetrics? = nil
    ) {
        self.init(
            docker: docker, dataplane: dataplane, settings: settings, resolvePorts: endpointPortResolver(resolvePort),
            host: host, configuration: configuration, logger: logger, report: report, metrics: metrics)
    }

    /// `resolvePorts` finds each endpoint's port by its MAC (`LinuxBridgePortLookup.endpointResolver`).
    public init(
        docker: any DockerSource, dataplane: DataplaneExecutor, settings: AgentSettings,
        resolvePorts: @escaping EndpointPortResolver, host: any AgentHost = SystemAgentHost(),
        configuration: Configuration = .init(), logger: Logger = Logger(label: "bpfnet.agent"),
        report: (@Sendable (DataplaneStatus.Agent) -> Void)? = nil, metrics: AgentMetrics? = nil
    ) {
        self.docker = docker
        self.dataplane = dataplane
        self.settings = settings
        self.host = host
        self.configuration = configuration
        self.logger = logger
        tracker = ContainerTracker(
            docker: docker, resolvePorts: resolvePorts,
            concurrency: configuration.maxConcurrentInspects, logger: logger)
        reporter = AgentReporter(
            dockerHost: docker.hostDescription, logger: logger, report: report, metrics: metrics)
    }

    public func snapshot() -> Snapshot {
        Snapshot(
            connected: connected, daemon: daemon, tracked: tracker.byName,
            lastApplied: lastApplied, skipped: reporter.skipped, statistics: reporter.statistics,
            startLatencies: reporter.startLatencies, lastError: lastError)
    }

    /// What `bpfnet run --metrics-address` copies into its counters at each scrape.
    public func metricCounts() -> AgentCounts { reporter.counts(connected: connected) }

    // MARK: Main loop

    /// Follows the daemon until the task is cancelled (SIGTERM in the CLI),
    /// reconnecting as often as needed. Returns normally when cancelled; the
    /// dataplane is left as it is.
    /// - Throws: `AgentConfigurationError` when the settings cannot work with
    ///   the daemon before anything was applied (a later one is logged and retried).
    public func run() async throws {
        // For the agent's whole life, connected to Docker or not.
        let portFollower = Task { await self.followBridgePorts() }
        defer { portFollower.cancel() }
        var failures = 0
        while !Task.isCancelled {
            reporter.statistics.sessions += 1
            if reporter.statistics.sessions > 1 { reporter.statistics.reconnects += 1 }
            sessionSynced = false
            let failure: any Error
            do {
                try await runSession()
                failure = DockerError.eventStreamEnded(host: docker.hostDescription, reason: "the stream finished")
            } catch {
                failure = error
            }
            endSession()
            if Task.isCancelled || failure is CancellationError { break }
            if let configurationError = failure as? AgentConfigurationError, !everSynced {
                lastError = configurationError.description
                publish()
                throw configurationError
            }
            if sessionSynced { failures = 0 }
            let delay = min(configuration.initialBackoff * (1 << min(failures, 20)), configuration.maximumBackoff)
            failures += 1
            lastError = "\(failure)"
            logger.error(
                "\(lastError!) — the dataplane keeps enforcing the last applied policy; reconnecting in \(Self.format(delay))"
            )
            publish()
            do {
                try await Task.sleep(for: delay)
            } catch {
                break
            }
        }
        endSession()
        publish()
    }

    private func endSession() {
        connected = false
        wake?.finish()
        wake = nil
    }

    private func runSession() async throws {
        // What was queued before the stream broke is stale: the resync below replaces it.
        pending.removeAll()
        let identity = try await docker.connect()
        daemon = identity
        let network = try await docker.bridgeNetwork()
        let settings = try self.settings.settings(for: network)
        if let previous = effectiveSettings, previous.bridge != settings.bridge {
            logger.warning("Docker's default bridge is now \(settings.bridge) (was \(previous.bridge)); following it")
        }
        effectiveSettings = settings
        defaultBridgeNetwork = network
        try await readNetworks()
        await checkDaemon(network: network, settings: settings)

        // Follow first, then list: whatever changes from now on arrives as an event.
        let events = try await docker.eventItems(since: Date())
        connected = true
        lastError = nil
        let following =
            "following docker \(identity.version) (API \(identity.apiVersion)) at \(docker.hostDescription); "
            + "bridge \(settings.bridge), icc \(settings.icc), forward policy \(settings.forwardPolicy.rawValue)"
            + (dockerNetworks.count > 1
                ? ", networks "
                    + dockerNetworks.filter { !$0.isDefaultBridge }.map { "\($0.name) (\($0.bridgeName))" }
                    .joined(separator: ", ")
                : "")
        logger.info("\(following)")
        // From scratch after every (re)connect: a veth found before may be another one now.
        tracker.forgetPorts()
        let (wakeups, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        wake = continuation
        let firstSession = reporter.statistics.sessions == 1

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.readEvents(events) }
            group.addTask { try await self.tickLoop() }
            group.addTask { try await self.workLoop(wakeups, reason: firstSession ? "start" : "reconnect") }
            defer { group.cancelAll() }
            // The first to end ends the session: the stream (it always ends
            // by throwing), the worker (an error), or cancellation.
            _ = try await group.next()
        }
    }

    private func readEvents(_ events: AsyncThrowingStream<DockerEventItem, any Error>) async throws {
        for try await item in events {
            receive(item)
        }
        try Task.checkCancellation()
        throw DockerError.eventStreamEnded(host: docker.hostDescription, reason: "the daemon closed the stream")
    }

    private func tickLoop() async throws {
        while true {
            try await Task.sleep(for: configuration.tickInterval)
            if resyncDue() != nil { wake?.yield() }
        }
    }

    private func workLoop(_ wakeups: AsyncStream<Void>, reason: String) async throws {
        try await fullResync(reason: reason)
        sessionSynced = true
        everSynced = true
        publish()
        for await _ in wakeups {
            try Task.checkCancellation()
            try await work()
        }
    }

    /// One round: a due resync, else the pending events, else a retry of a
    /// failed apply; then the status is published, once per round.
    private func work() async throws {
        // First: a port without the program is the one gap in enforcement.
        if portsJoined { await attachJoinedPorts() }
        if let reason = resyncDue() {
            try await fullResync(reason: reason)
            publish()
        } else if networksChanged {
            // Before the containers of the same batch: a container's endpoint counts only
            // on a network the policy knows.
            try await readNetworks()
            if !pending.isEmpty {
                try await processPending()
            } else {
                try await applyDesired(reason: "networks", starts: [:])
            }
            publish()
        } else if !pending.isEmpty {
            try await processPending()
            publish()
        } else if needsApply {
            try await applyDesired(reason: "retry", starts: [:])
            publish()
        }
        if !pending.isEmpty || resyncDue() != nil || portsJoined || networksChanged { wake?.yield() }
    }

    // MARK: Events

    /// Takes one item off the stream: records what it means for its container
    /// and wakes the worker. Runs while the worker waits for Docker or the
    /// dataplane, so events that come together are handled together.
    func receive(_ item: DockerEventItem) {
        switch item {
        case .malformed(let bad):
            reporter.statistics.malformedEvents += 1
            logger.warning("\(bad) — ignored; a resync will pick up whatever it was about")
            requestResync("an undecodable event")
        case .event(let event):
            if event.type == .network, event.action == .create || event.action == .destroy {
                guard event.isBridgeNetworkEvent else {
                    reporter.statistics.eventsIgnored += 1
                    logger.trace("ignoring docker event \(event)")
                    return
                }
                reporter.statistics.eventsHandled += 1
                logger.debug("docker event \(event)")
                networksChanged = true
                wake?.yield()
                return
            }
            guard pending.record(event, receivedAt: clock.now) else {
                reporter.statistics.eventsIgnored += 1
                logger.trace("ignoring docker event \(event)")
                return
            }
            if event.type == .network, event.action == .connect, !isKnownNetwork(event) {
                // A network whose `create` the agent did not see (or not yet read): read the
                // networks before the container, or its endpoint waits for the next resync.
                let network = event.networkName ?? String(event.actorID.prefix(12))
                logger.info(
                    "a container joined network \(network), which bpfnet has not read: reading the networks now")
                networksChanged = true
            }
            reporter.statistics.eventsHandled += 1
            logger.debug("docker event \(event)")
            wake?.yield()
        }
    }

    private func processPending() async throws {
        let batch = pending.takeBatch()
        for removal in batch.removals {
            tracker.remove(removal.id, destroyed: removal.destroyed)
        }
        let started = clock.now
        if !batch.refreshes.isEmpty {
            let inspected = try await inspect(batch.refreshes)
            if await tracker.take(inspected) { requestResync("a failed inspect") }
            // A parent that names a child the agent does not follow: ask for the child too.
            let missingChildren = tracker.untrackedChildren(of: batch.refreshes)
            if !missingChildren.isEmpty {
                let children = try await inspect(missingChildren)
                if await tracker.take(children, quietNotFound: true) { requestResync("a failed inspect") }
            }
        }
        let looked = clock.now - started
        try await applyDesired(reason: "events", starts: batch.starts)
        let total = clock.now - started
        let timing =
            "\(batch.count) container(s) from events: inspected and ports found in \(Self.format(looked)), "
            + "applied after \(Self.format(total))"
        logger.debug("\(timing)")
    }

    /// Inspects through the tracker, counting.
    private func inspect(_ ids: [String]) async throws -> [String: ContainerTracker.Inspection] {
        reporter.statistics.inspects += ids.count
        let answers = try await tracker.inspect(ids)
        reporter.statistics.inspectsNotFound += answers.values.filter(\.isNotFound).count
        return answers
    }

    // MARK: Settings

    /// Takes new settings (SIGHUP: the settings file read again) and asks for
    /// a full resync, which applies them. Settings that cannot work with the
    /// daemon (another pinned bridge) are refused and the agent keeps the old
    /// ones: nothing of what it follows or enforces is lost either way.
    /// - Throws: `AgentConfigurationError`, the old settings still in force.
    public func reloadSettings(_ new: AgentSettings) throws(AgentConfigurationError) {
        guard new != settings else {
            logger.notice("settings reloaded: unchanged")
            return
        }
        if let defaultBridgeNetwork {
            effectiveSettings = try new.settings(for: defaultBridgeNetwork)
        }
        settings = new
        let summary =
            "settings reloaded: icc \(new.policy.icc), forward policy \(new.policy.forwardPolicy.rawValue), "
            + "external interfaces [\(new.policy.extInterfaces.map(\.name).joined(separator: ", "))]; applying"
        logger.notice("\(summary)")
        resyncNow(reason: "settings reloaded")
    }

    // MARK: Resync

    /// Asks for a full resync now (SIGHUP in the CLI; benchmarks).
    public func resyncNow(reason: String = "requested") {
        requestedResync = (reason, clock.now)
        wake?.yield()
    }

    private func requestResync(_ reason: String) {
        guard requestedResync == nil else { return }
        let spacing = configuration.requestedResyncSpacing
        let notBefore = lastResyncStarted.map { $0 + spacing } ?? clock.now
        requestedResync = (reason, notBefore)
    }

    private func resyncDue() -> String? {
        let now = clock.now
        if let requestedResync, now >= requestedResync.notBefore { return requestedResync.reason }
        if let nextPeriodicResync, now >= nextPeriodicResync { return "periodic" }
        return nil
    }

    /// Lists and inspects every running bridge container, finds every bridge
    /// port and applies: the agent's view is replaced, not patched.
    private func fullResync(reason: String) async throws {
        let started = clock.now
        lastResyncStarted = started
        requestedResync = nil
        nextPeriodicResync = started + configuration.resyncInterval
        reporter.statistics.resyncs += 1

        try await readNetworks()
        let ids = try await docker.runningBridgeContainers().map(\.id)
        let dropped = await tracker.replace(listed: ids, inspected: try await inspect(ids))
        let inspectedIn = clock.now - started
        // Forced: the dataplane diffs against what the kernel holds, so a resync
        // also repairs drift (a map entry or an attachment someone removed).
        try await applyDesired(reason: "resync (\(reason))", starts: [:], force: true)
        let duration = clock.now - started
        checkHost()
        let count = tracker.containers.count
        reporter.recordResync(duration: duration, containers: count)
        let level: Logger.Level = reason == "periodic" && dropped.isEmpty ? .debug : .info
        let summary =
            "resync (\(reason)): \(count) containers on \(effectiveSettings?.bridge ?? "?")"
            + " and \(lastApplied?.networks.count ?? 0) user-defined networks, "
            + "\(lastApplied?.links.count ?? 0) links, in \(Self.format(duration)) "
            + "(list+inspect+ports \(Self.format(inspectedIn)))"
            + (dropped.isEmpty ? "" : "; no longer running: \(dropped.sorted().joined(separator: ", "))")
        logger.log(level: level, "\(summary)")
    }

    // MARK: Applying

    /// Builds the policy from what the agent follows and applies it; the
    /// dataplane writes only the difference. A failure is logged, leaves the
    /// last applied policy in force and is retried; it does not end the session.
    func applyDesired(
        reason: String, starts: [String: PendingChanges.StartMark],
        force: Bool = false
    ) async throws {
        guard let settings = effectiveSettings else { return }
        let building = clock.now
        var desired = build(settings)
        let built = clock.now - building
        if built > .milliseconds(20) { logger.debug("policy built in \(Self.format(built))") }
        if desired.policy != lastApplied || needsApply || force {
            let started = clock.now
            applyingBridges = Set(desired.policy.bridges)
            defer { applyingBridges = [] }
            do {
                do {
                    if force {
                        try await dataplane.applyRepairing(desired.policy)
                    } else {
                        try await dataplane.apply(desired.policy)
                    }
                } catch let error as DataplaneError where error.isBadInput {
                    // Most often a veth vanished between the check and the apply
                    // (a container stopping): look again and retry once.
                    logger.debug("apply refused the policy (\(error)); rebuilding it and retrying once")
                    desired = build(settings)
                    try await dataplane.apply(desired.policy)
                }
            } catch {
                reporter.statistics.failedApplies += 1
                needsApply = true
                lastError = "applying the policy failed: \(error)"
                logger.error("\(lastError!) — the dataplane keeps enforcing the last applied policy; will retry")
                requestResync("a failed apply")
                return
            }
            reporter.statistics.applies += 1
            needsApply = false
            lastError = nil
            reporter.logApplied(from: lastApplied, to: desired.policy, reason: reason, took: clock.now - started)
            lastApplied = desired.policy
        }
        reporter.recordSkipped(desired.skipped)
        reporter.recordMissingExtInterfaces(desired.missingExtInterfaces)
        reporter.recordStarts(starts, enforcedBy: desired.policy) { tracker.containers[$0]?.container.name }
    }

    // MARK: Daemon checks and status

    private func checkDaemon(network: DockerBridgeNetwork, settings: Policy) async {
        let info = try? await docker.info()
        let warnings = DaemonChecks.warnings(
            network: network, settings: settings, info: info,
            firewallTraces: host.dockerFirewallTraces(),
            bridgeAddress: host.ipv4Address(of: settings.bridge))
        daemonWarnings = warnings
        logNewWarnings(warnings)
    }

    /// What the host says next to the daemon: Docker's userland proxy
    /// forwarding to containers bpfnet polices (processes appear as
    /// containers with published ports start, so this runs after every full
    /// resync), and a kernel without BTF.
    private func checkHost() {
        let policed = Set(lastApplied?.containers.map(\.ip.description) ?? [])
        let proxies = host.dockerProxies().filter { policed.contains($0.containerIP) }
        hostWarnings = [DaemonChecks.proxyWarning(proxies), DaemonChecks.btfWarning(hasKernelBTF: host.hasKernelBTF)]
            .compactMap { $0 }
        logNewWarnings(hostWarnings)
    }

    /// Logs each warning once per process; `status` shows the current ones.
    private func logNewWarnings(_ warnings: [String]) {
        for warning in warnings where warned.insert(warning).inserted {
            logger.warning("\(warning)")
        }
    }

    private func publish() {
        reporter.publish(
            connected: connected, daemon: daemon, lastError: lastError, warnings: daemonWarnings + hostWarnings)
    }
}
