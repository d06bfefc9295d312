// SPDX-License-Identifier: Apache-2.0
//
// How `bpfnet run` is stopped and poked: SIGTERM and SIGINT end the agent and
// leave the dataplane loaded and enforcing; a second one exits at once (the
// agent may be stuck in the kernel or on the daemon); SIGHUP reads the
// settings file again (when there is one) and asks for a full resync with
// Docker (docs/agent.md).

import Dispatch
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The pipe's write end for the C handler (-1 while no `AgentSignals` is
/// installed). One instance at a time, as one process has one disposition
/// per signal.
nonisolated(unsafe) private var signalPipeWriteEnd: Int32 = -1

/// SIGTERM and SIGINT end the agent (once: a second one exits at once);
/// SIGHUP asks for a full resync with Docker.
///
/// A real handler writes the signal's number into a pipe (write(2) is
/// async-signal-safe) and a dispatch source reads it there, so the callbacks
/// may log and start tasks. Not a dispatch signal source: on Linux that one
/// reads a signalfd, which only sees a signal every thread blocks, and a
/// signal ignored by the main thread is discarded before anybody sees it
/// (it made `SIGHUP` arrive or not depending on which thread had asked first).
public final class AgentSignals: @unchecked Sendable {
    private static let handled = [SIGHUP, SIGTERM, SIGINT]
    private var source: DispatchSourceRead?
    private var pipeEnds: (read: Int32, write: Int32) = (-1, -1)
    private let lock = NSLock()
    private var received = false

    public init(logger: Logger, onStop: @escaping @Sendable () -> Void, onHangup: @escaping @Sendable () -> Void) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            logger.error("cannot create the signal pipe: \(String(cString: strerror(errno))); signals end the process")
            return
        }
        for end in ends {
            // Never block in the handler; never leak into children.
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        pipeEnds = (ends[0], ends[1])
        signalPipeWriteEnd = ends[1]
        let readEnd = ends[0]
        let source = DispatchSource.makeReadSource(fileDescriptor: readEnd, queue: .global())
        source.setEventHandler { [self] in
            var numbers = [UInt8](repeating: 0, count: 16)
            let count = read(readEnd, &numbers, numbers.count)
            for number in numbers.prefix(max(count, 0)).map(Int32.init) {
                if number == SIGHUP {
                    logger.notice("SIGHUP: reloading the settings and resynchronising with Docker")
                    onHangup()
                    continue
                }
                let name = number == SIGTERM ? "SIGTERM" : "SIGINT"
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
        }
        source.resume()
        self.source = source
        let handler: @convention(c) (Int32) -> Void = { number in
            var byte = UInt8(truncatingIfNeeded: number)
            _ = write(signalPipeWriteEnd, &byte, 1)
        }
        for number in Self.handled { signal(number, handler) }
    }

    /// Stops handling the signals (they stay ignored).
    public func stop() {
        for number in Self.handled { signal(number, SIG_IGN) }
        signalPipeWriteEnd = -1
        source?.cancel()
        source = nil
        if pipeEnds.read >= 0 {
            close(pipeEnds.read)
            close(pipeEnds.write)
            pipeEnds = (-1, -1)
        }
    }
}

extension DockerAgent {
    /// Runs the agent as `bpfnet run` does: until SIGTERM or SIGINT (then it
    /// returns normally, the dataplane left as it is), with `hangup` on SIGHUP.
    /// - Parameter loadSettings: reads the settings again (`--config` and the
    ///   command line's overrides); nil when there is no settings file.
    /// - Throws: what `run()` throws.
    public nonisolated func runHandlingSignals(
        logger: Logger, loadSettings: (@Sendable () throws -> AgentSettings)? = nil
    ) async throws {
        let task = Task { try await self.run() }
        let signals = AgentSignals(
            logger: logger, onStop: { task.cancel() },
            onHangup: { Task { await self.hangup(loadSettings: loadSettings, logger: logger) } })
        defer { signals.stop() }
        try await task.value
    }

    /// SIGHUP: the settings read again and, when they read and fit the daemon,
    /// taken; then a full resync. Settings that do not are logged as an error
    /// and the old ones stay in force: a typo in the file never costs what is
    /// enforced.
    public func hangup(loadSettings: (@Sendable () throws -> AgentSettings)?, logger: Logger) async {
        if let loadSettings {
            do {
                try reloadSettings(try loadSettings())
            } catch {
                logger.error("SIGHUP: the settings were not reloaded: \(error) — keeping the previous settings")
            }
        }
        resyncNow(reason: "SIGHUP")
    }
}
