// SPDX-License-Identifier: Apache-2.0
//
// One scrape of `bpfnet run --metrics-address`: copy the agent's counts, read
// the dataplane's status (on the agent's dataplane queue, so never in the
// middle of an apply), render both. `bpfnet status --prometheus` renders the
// dataplane's part the same way, without an agent.

import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import Logging
import SystemPackage

public struct MetricsScrape: Sendable {
    public let agent: DockerAgent
    public let dataplane: DataplaneExecutor
    public let metrics: AgentMetrics
    public let pinPath: FilePath
    public let logger: Logger

    public init(
        agent: DockerAgent, dataplane: DataplaneExecutor, metrics: AgentMetrics, pinPath: FilePath, logger: Logger
    ) {
        self.agent = agent
        self.dataplane = dataplane
        self.metrics = metrics
        self.pinPath = pinPath
        self.logger = logger
    }

    /// The exposition: the dataplane's metrics, then the agent's.
    public func render() async -> [UInt8] {
        metrics.update(await agent.metricCounts())
        var status: DataplaneStatus?
        var dropEvents: DropEventCounts?
        do {
            status = try await dataplane.statusForMetrics()
            if let status { dropEvents = try Self.dropEvents(status, pinPath: pinPath) }
        } catch DataplaneError.notFound {
            // Nothing applied yet: bpfnet_dataplane_loaded 0.
        } catch {
            metrics.recordDataplaneReadError()
            logger.warning("metrics: reading the dataplane failed: \(error)")
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        DataplaneMetrics.emit(status: status, dropEvents: dropEvents, into: &buffer)
        metrics.registry.emit(into: &buffer)
        return buffer
    }

    /// The drop-event sampler's counters of an eBPF dataplane; nil for the others.
    public static func dropEvents(_ status: DataplaneStatus, pinPath: FilePath) throws -> DropEventCounts? {
        guard status.backend == "bpf", let missed = try DropMonitor.missed(pinPath: pinPath) else { return nil }
        return DropEventCounts(suppressed: missed.suppressed, lost: missed.lost)
    }
}
