// SPDX-License-Identifier: Apache-2.0
//
// What the agent tells about itself: counters, start-to-rules latencies, the
// containers left out, a log line per applied change, and the state it
// publishes after every round (`bpfnet run` writes it to its state file;
// `bpfnet status --json` shows it as `agent`, docs/agent.md).

import BPFNetCore
import BPFNetMetrics
import DockerWatcher
import Foundation
import Logging

extension DockerAgent {
    public struct Statistics: Hashable, Sendable {
        public var sessions = 0
        public var reconnects = 0
        public var resyncs = 0
        /// Events that concerned the policy (start, die, … on the default bridge).
        public var eventsHandled = 0
        public var eventsIgnored = 0
        public var malformedEvents = 0
        public var inspects = 0
        /// Inspects answered with 404 (the container was removed meanwhile).
        public var inspectsNotFound = 0
        public var applies = 0
        public var failedApplies = 0
        /// Applies that attached the port program to ports that joined the bridge.
        public var portApplies = 0
    }

    /// One measured start: Docker's `start` event to the container's rules in the maps.
    public struct StartLatency: Hashable, Sendable {
        public var container: String
        /// From the event's own time (`timeNano`, the daemon's clock); nil when
        /// the event carried none.
        public var sinceEvent: Duration?
        /// From the moment the event reached the agent.
        public var sinceReceived: Duration

        /// What is reported: the event's own time when known.
        public var reported: Duration { sinceEvent ?? sinceReceived }
    }

    /// Milliseconds to three decimals, as the state file shows them.
    public static func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return (Double(seconds) * 1e3 + Double(attoseconds) / 1e15).rounded(toPlaces: 3)
    }

    /// "41.2 ms", "1.25 s": for log lines.
    static func format(_ duration: Duration) -> String {
        let ms = milliseconds(duration)
        return ms >= 1000 ? String(format: "%.2f s", ms / 1000) : String(format: "%.1f ms", ms)
    }
}

/// The agent's counters and measurements, and the reports built from them.
/// A value owned by the agent's actor; the session state it does not own
/// (connected, the daemon, the last error) is passed in when publishing.
struct AgentReporter {
    /// At most this many start latencies are kept, the oldest dropped first.
    static let keptLatencies = 1000

    var statistics = DockerAgent.Statistics()
    private(set) var startLatencies: [DockerAgent.StartLatency] = []
    /// Running bridge containers left out of the last built policy.
    private(set) var skipped: [DockerSkippedContainer] = []
    /// External interfaces of the settings that did not exist at the last build.
    private(set) var missingExtInterfaces: [String] = []
    private var lastSync: (at: Date, latency: DockerAgent.StartLatency)?
    private var lastResync: (at: Date, duration: Duration, containers: Int)?

    private let dockerHost: String
    private let logger: Logger
    private let report: (@Sendable (DataplaneStatus.Agent) -> Void)?
    /// The histograms of `bpfnet run --metrics-address`; nil without it.
    private let metrics: AgentMetrics?

    init(
        dockerHost: String, logger: Logger, report: (@Sendable (DataplaneStatus.Agent) -> Void)?,
        metrics: AgentMetrics? = nil
    ) {
        self.dockerHost = dockerHost
        self.logger = logger
        self.report = report
        self.metrics = metrics
    }

    // MARK: Recording

    /// Measures the starts whose containers `policy` now enforces, oldest event first.
    /// - Parameters:
    ///   - name: the tracked container's name for an ID.
    ///   - now: when the policy was in force; `wallNanos`: the same moment on the daemon's clock.
    mutating func recordStarts(
        _ starts: [String: PendingChanges.StartMark], enforcedBy policy: Policy,
        now: ContinuousClock.Instant = .now, wallNanos: Int64 = AgentReporter.wallNanos(),
        name: (String) -> String?
    ) {
        guard !starts.isEmpty else { return }
        let enforced = Set(policy.containers.map(\.name))
        var measured: [(PendingChanges.StartMark, DockerAgent.StartLatency)] = []
        for (id, mark) in starts {
            guard let name = name(id), enforced.contains(name) else { continue }
            var sinceEvent: Duration?
            if let eventTime = mark.eventTimeNano {
                let delta = wallNanos - eventTime
                // The daemon's clock is this host's; a negative or absurd value is not a measurement.
                if delta >= 0, delta < 3_600_000_000_000 { sinceEvent = .nanoseconds(delta) }
            }
            let latency = DockerAgent.StartLatency(
                container: name, sinceEvent: sinceEvent,
                sinceReceived: now - mark.received)
            measured.append((mark, latency))
            let received =
                sinceEvent != nil
                ? " (\(DockerAgent.format(latency.sinceReceived)) after the event reached bpfnet)" : ""
            let took = DockerAgent.format(latency.reported)
            logger.info("container \(name): start event → rules in the maps in \(took)\(received)")
        }
        for (_, latency) in measured.sorted(by: { $0.0.received < $1.0.received }) {
            metrics?.observeStartToRules(latency.reported)
            startLatencies.append(latency)
            lastSync = (Date(), latency)
        }
        if startLatencies.count > Self.keptLatencies {
            startLatencies.removeFirst(startLatencies.count - Self.keptLatencies)
        }
    }

    mutating func recordResync(duration: Duration, containers: Int) {
        lastResync = (Date(), duration, containers)
    }

    /// Takes the containers the last build left out, warning about each new one.
    /// Warns once per interface when it goes missing; says when it is back.
    mutating func recordMissingExtInterfaces(_ names: [String]) {
        for name in names where !missingExtInterfaces.contains(name) {
            let message =
                "external interface \(name) does not exist: left out of the policy (the forward policy still holds "
                + "for traffic routed in through any interface); it is attached when it appears"
            logger.warning("\(message)")
        }
        for name in missingExtInterfaces where !names.contains(name) {
            logger.notice("external interface \(name) is enforced again")
        }
        missingExtInterfaces = names
    }

    mutating func recordSkipped(_ skipped: [DockerSkippedContainer]) {
        let before = Set(self.skipped)
        for item in skipped where !before.contains(item) {
            logger.warning("container \(item) — left out of the policy until the next event or resync")
        }
        self.skipped = skipped
    }

    /// One line per apply: what changed between `old` and `new`. A resync that
    /// changed nothing is worth a debug line only.
    func logApplied(from old: Policy?, to new: Policy, reason: String, took: Duration) {
        metrics?.observeApply(took)
        // One entry per endpoint: "name" on the default bridge, "name@network" elsewhere.
        func byName(_ containers: [Container]) -> [String: Container] {
            Dictionary(
                containers.map { container in
                    (container.network.map { "\(container.name)@\($0)" } ?? container.name, container)
                },
                uniquingKeysWith: { first, _ in first })
        }
        let oldContainers = byName(old?.containers ?? [])
        let newContainers = byName(new.containers)
        var parts: [String] = []
        let oldNetworks = Set((old?.networks ?? []).map(\.name))
        let newNetworks = Set(new.networks.map(\.name))
        parts += newNetworks.subtracting(oldNetworks).sorted().map { "+network \($0)" }
        parts += oldNetworks.subtracting(newNetworks).sorted().map { "-network \($0)" }
        for (name, container) in newContainers.sorted(by: { $0.key < $1.key }) where oldContainers[name] != container {
            parts.append("+\(name) \(container.ip) \(container.port)")
        }
        for name in oldContainers.keys.sorted() where newContainers[name] == nil {
            parts.append("-\(name)")
        }
        func key(_ link: Link, _ containers: [String: Container]) -> String {
            let ip = { (name: String) in containers[name]?.ip.description ?? "?" }
            return "\(link.parent)(\(ip(link.parent)))→\(link.child)(\(ip(link.child)))"
        }
        let oldLinks = Set((old?.links ?? []).map { key($0, oldContainers) })
        let newLinks = Set(new.links.map { key($0, newContainers) })
        parts += newLinks.subtracting(oldLinks).sorted().map { "+link \($0)" }
        parts += oldLinks.subtracting(newLinks).sorted().map { "-link \($0)" }
        let summary =
            "\(new.containers.count) containers, \(new.links.count) links"
            + (new.networks.isEmpty ? "" : ", \(new.networks.count) user-defined networks")
        let details = parts.isEmpty ? "" : "; " + parts.joined(separator: ", ")
        logger.log(
            level: parts.isEmpty && old != nil ? .debug : .info,
            "applied (\(reason)) in \(DockerAgent.format(took)): \(summary)\(details)")
    }

    // MARK: Publishing

    /// The state as `status --json` shows it under `agent`.
    func status(
        connected: Bool, daemon: DockerDaemonIdentity?, lastError: String?, warnings: [String] = []
    ) -> DataplaneStatus.Agent {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var agent = DataplaneStatus.Agent(
            running: true, pid: getpid(), dockerHost: dockerHost, connected: connected,
            dockerServer: daemon?.version, apiVersion: daemon?.apiVersion.description,
            lastSyncAt: lastSync.map { formatter.string(from: $0.at) },
            lastSyncLatencyMs: lastSync.map { DockerAgent.milliseconds($0.latency.reported) },
            lastSyncContainer: lastSync?.latency.container,
            lastResyncAt: lastResync.map { formatter.string(from: $0.at) },
            lastResyncMs: lastResync.map { DockerAgent.milliseconds($0.duration) },
            lastResyncContainers: lastResync?.containers,
            resyncs: statistics.resyncs, reconnects: statistics.reconnects,
            eventsHandled: statistics.eventsHandled, malformedEvents: statistics.malformedEvents,
            skippedContainers: skipped.map(\.description), lastError: lastError)
        agent.missingExtInterfaces = missingExtInterfaces.isEmpty ? nil : missingExtInterfaces
        agent.warnings = warnings.isEmpty ? nil : warnings
        return agent
    }

    /// The counts the metrics endpoint copies at each scrape.
    func counts(connected: Bool) -> AgentCounts {
        AgentCounts(
            connected: connected, applies: statistics.applies, failedApplies: statistics.failedApplies,
            portApplies: statistics.portApplies, reconnects: statistics.reconnects, resyncs: statistics.resyncs,
            eventsHandled: statistics.eventsHandled, eventsIgnored: statistics.eventsIgnored,
            malformedEvents: statistics.malformedEvents, skippedContainers: skipped.count,
            missingExtInterfaces: missingExtInterfaces.count)
    }

    /// Hands the state to whoever asked for reports (the CLI's state writer).
    func publish(connected: Bool, daemon: DockerDaemonIdentity?, lastError: String?, warnings: [String] = []) {
        guard let report else { return }
        report(status(connected: connected, daemon: daemon, lastError: lastError, warnings: warnings))
    }

    /// Now on the wall clock, as Docker's `timeNano` counts.
    static func wallNanos() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1e9).rounded())
    }
}

extension Double {
    fileprivate func rounded(toPlaces places: Int) -> Double {
        let factor = Foundation.pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
