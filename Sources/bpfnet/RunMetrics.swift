// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run --metrics-address`: the endpoint next to the agent; each
// request renders a `MetricsScrape` (BPFNetAgent).

import BPFNetAgent
import BPFNetDataplane
import BPFNetMetrics
import Logging

extension Run {
    /// Binds the endpoint when asked (a taken port fails here, before the
    /// agent starts) and serves it until the returned task is cancelled.
    func metricsEndpoint(_ scrape: MetricsScrape?, logger: Logger) async throws -> Task<Void, Never>? {
        guard let metricsAddress, let scrape else { return nil }
        let address = try MetricsAddress(parsing: metricsAddress)
        let server: MetricsServer
        do {
            server = try await MetricsServer.bind(address) { await scrape.render() }
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
