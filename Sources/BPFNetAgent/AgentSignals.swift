// SPDX-License-Identifier: Apache-2.0
//
// How `bpfnet run` is stopped and poked: SIGTERM and SIGINT end the agent and
// leave the dataplane loaded and enforcing; a second one exits at once (the
// agent may be stuck in the kernel or on the daemon); SIGHUP asks for a full
// resync with Docker (docs/agent.md).

import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT end the agent (once: a second one exits at once);
/// SIGHUP asks for a full resync with Docker. Handled on dispatch sources, so
/// the handlers may log and start tasks (a plain signal handler may not).
public final class AgentSignals: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received = false

    public init(logger: Logger, onStop: @escaping @Sendable () -> Void, onHangup: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            logger.notice("SIGHUP: resynchronising with Docker")
            onHangup()
        }
        hangup.resume()
        sources.append(hangup)
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let name = number == SIGTERM ? "SIGTERM" : "SIGINT"
            source.setEventHandler { [self] in
                let first = lock.withLock { () -> Bool in
                    defer { received = true }
                    return !received
                }
                if first {
                    logger.notice("\(name): stopping the agent; the dataplane stays loaded")
                    onStop()
                } else {
                    logger.warning("\(name) again: exiting now; the dataplane stays loaded")
                    exit(1)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Stops handling the signals (they stay ignored).
    public func stop() {
        for source in sources { source.cancel() }
        sources = []
    }
}

extension DockerAgent {
    /// Runs the agent as `bpfnet run` does: until SIGTERM or SIGINT (then it
    /// returns normally, the dataplane left as it is), with a full resync on SIGHUP.
    /// - Throws: what `run()` throws.
    public nonisolated func runHandlingSignals(logger: Logger) async throws {
        let task = Task { try await self.run() }
        let signals = AgentSignals(
            logger: logger, onStop: { task.cancel() },
            onHangup: { Task { await self.resyncNow(reason: "SIGHUP") } })
        defer { signals.stop() }
        try await task.value
    }
}
