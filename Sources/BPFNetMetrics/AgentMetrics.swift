// SPDX-License-Identifier: Apache-2.0
//
// The agent's own metrics (`bpfnet run --metrics-address`): the histograms
// are observed as applies and starts happen; the counters and gauges are
// copied from the agent's statistics when a scrape comes (the agent counts
// them anyway, for `status --json`), so the two never disagree.

import Prometheus

/// The agent's counts at one moment, as `DockerAgent.Statistics` and its
/// session state hold them.
public struct AgentCounts: Hashable, Sendable {
    public var connected: Bool
    public var applies: Int
    public var failedApplies: Int
    public var portApplies: Int
    public var reconnects: Int
    public var resyncs: Int
    public var eventsHandled: Int
    public var eventsIgnored: Int
    public var malformedEvents: Int
    public var skippedContainers: Int
    public var missingExtInterfaces: Int

    public init(
        connected: Bool = false, applies: Int = 0, failedApplies: Int = 0, portApplies: Int = 0,
        reconnects: Int = 0, resyncs: Int = 0, eventsHandled: Int = 0, eventsIgnored: Int = 0,
        malformedEvents: Int = 0, skippedContainers: Int = 0, missingExtInterfaces: Int = 0
    ) {
        self.connected = connected
        self.applies = applies
        self.failedApplies = failedApplies
        self.portApplies = portApplies
        self.reconnects = reconnects
        self.resyncs = resyncs
        self.eventsHandled = eventsHandled
        self.eventsIgnored = eventsIgnored
        self.malformedEvents = malformedEvents
        self.skippedContainers = skippedContainers
        self.missingExtInterfaces = missingExtInterfaces
    }
}

/// bpfnet's version, as `bpfnet_build_info` shows it.
public enum BuildInfo {
    public static let version = "0.1.0"

    /// The compiler that built this binary ("6.3").
    public static var swiftVersion: String {
        #if compiler(>=7.0)
        return ">=7.0"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }
}

/// The agent's metrics in a registry that lives as long as the agent.
public final class AgentMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// From the dataplane call to its return, for every apply that succeeded.
    public static let applyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10),
    ]
    /// From Docker's start event to the container's rules in the maps.
    public static let startBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30),
    ]

    private let applyDuration: DurationHistogram
    private let startToRules: DurationHistogram
    private let connected: Gauge
    private let skipped: Gauge
    private let missingExt: Gauge
    private let dataplaneReadErrors: Counter
    private let counters: [(@Sendable (AgentCounts) -> Int, Counter)]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        applyDuration = registry.durationHistogram(
            "bpfnet_apply_duration_seconds", buckets: Self.applyBuckets,
            help: "Time the dataplane took to apply a changed policy (successful applies).")
        startToRules = registry.durationHistogram(
            "bpfnet_start_to_rules_seconds", buckets: Self.startBuckets,
            help: "Time from Docker's start event of a container to its rules in the maps.")
        connected = registry.gauge(
            "bpfnet_docker_connected", help: "1 while the agent's event stream from Docker is open, else 0.")
        skipped = registry.gauge(
            "bpfnet_skipped_containers",
            help: "Running bridge containers left out of the policy (bpfnet status --json: agent.skippedContainers).")
        missingExt = registry.gauge(
            "bpfnet_missing_external_interfaces",
            help: "External interfaces of the settings that do not exist (yet).")
        dataplaneReadErrors = registry.counter(
            "bpfnet_dataplane_read_errors_total", help: "Scrapes that could not read the dataplane's status.")
        func counter(_ name: String, _ help: String, _ value: @escaping @Sendable (AgentCounts) -> Int) -> (
            @Sendable (AgentCounts) -> Int, Counter
        ) {
            (value, registry.counter(name, help: help))
        }
        counters = [
            counter("bpfnet_applies_total", "Policies applied to the dataplane.", { $0.applies }),
            counter(
                "bpfnet_apply_errors_total", "Applies that failed (retried; the last policy stays).",
                { $0.failedApplies }),
            counter(
                "bpfnet_port_applies_total", "Applies that attached the port program to ports that joined the bridge.",
                { $0.portApplies }),
            counter("bpfnet_docker_reconnects_total", "Connections to Docker after the first.", { $0.reconnects }),
            counter("bpfnet_docker_resyncs_total", "Full resynchronisations with Docker.", { $0.resyncs }),
            counter("bpfnet_docker_events_total", "Docker events that concerned the policy.", { $0.eventsHandled }),
            counter(
                "bpfnet_docker_events_ignored_total", "Docker events that did not concern it.", { $0.eventsIgnored }),
            counter(
                "bpfnet_docker_malformed_events_total", "Docker events that could not be decoded.",
                { $0.malformedEvents }),
        ]
        registry.gauge(
            "bpfnet_build_info",
            labels: [("version", BuildInfo.version), ("swift", BuildInfo.swiftVersion)],
            help: "bpfnet's version and the Swift compiler that built it; always 1."
        ).set(to: 1)
    }

    public func observeApply(_ duration: Duration) { applyDuration.record(duration) }

    public func observeStartToRules(_ duration: Duration) { startToRules.record(duration) }

    public func recordDataplaneReadError() { dataplaneReadErrors.increment() }

    /// Copies the agent's counts into the counters and gauges (a scrape does
    /// this first). The agent's counts only grow, so the counters do too.
    public func update(_ counts: AgentCounts) {
        connected.set(counts.connected)
        skipped.set(counts.skippedContainers)
        missingExt.set(counts.missingExtInterfaces)
        for (value, counter) in counters {
            counter.reset()
            counter.increment(by: Int64(value(counts)))
        }
    }
}
