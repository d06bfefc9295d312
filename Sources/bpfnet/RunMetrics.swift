// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run --metrics-address`: the endpoint next to the agent. Each scrape
// copies the agent's counts, reads the dataplane's status (on the agent's
// dataplane queue, so never in the middle of an apply) and renders both.

import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import Logging
import SystemPackage

/// One scrape of `bpfnet run`: the dataplane's metrics, then the agent's.
struct RunScrape: Sendable {
    let agent: DockerAgent
    let dataplane: DataplaneExecutor
    let pinPath: FilePath

    func render(_ metrics: AgentMetrics, logger: Logger) async -> [UInt8] {
        metrics.update(await agent.metricCounts())
        var status: DataplaneStatus?
        var dropEvents: DropEventCounts?
        do {
            status = try await dataplane.status()
            if let status { dropEvents = try StatusPrinter.dropEvents(status, pinPath: pinPath.string) }
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
}

extension Run {
    /// Binds the endpoint when asked (a taken port fails here, before the
    /// agent starts) and serves it until the returned task is cancelled.
    func metricsEndpoint(_ metrics: AgentMetrics?, scrape: RunScrape, logger: Logger) async throws -> Task<
        Void, Never
    >? {
        guard let metricsAddress, let metrics else { return nil }
        let address = try MetricsAddress(parsing: metricsAddress)
        let server: MetricsServer
        do {
            server = try await MetricsServer.bind(address) { await scrape.render(metrics, logger: logger) }
        } catch {
            throw DataplaneError.runtime("--metrics-address \(address): cannot listen: \(error)")
        }
        if !address.isLoopback {
            logger.warning(
                "metrics on \(address), not a loopback address: whoever reaches it reads the container inventory")
        }
        logger.info("metrics: http://\(address)/metrics")
        return Task {
            do {
                try await server.run()
            } catch {
                if !Task.isCancelled { logger.error("metrics endpoint stopped: \(error)") }
            }
        }
    }
}
