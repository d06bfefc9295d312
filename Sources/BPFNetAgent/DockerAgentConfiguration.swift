// SPDX-License-Identifier: Apache-2.0
//
// The agent's knobs and the view of its state that tests and the state file
// read (docs/agent.md).

import BPFNetCore
import DockerWatcher

extension DockerAgent {
    public struct Configuration: Sendable {
        /// Full resync from scratch this often (besides after every reconnect).
        public var resyncInterval: Duration
        /// Resyncs asked for by trouble (an undecodable event, a failed apply)
        /// come at most this often.
        public var requestedResyncSpacing: Duration
        /// Reconnect backoff: starts here, doubles per failed attempt, capped.
        public var initialBackoff: Duration
        public var maximumBackoff: Duration
        /// How often due resyncs are looked for.
        public var tickInterval: Duration
        /// Inspects (and bridge-port lookups) in flight at once.
        public var maxConcurrentInspects: Int

        public init(
            resyncInterval: Duration = .seconds(60), requestedResyncSpacing: Duration = .seconds(5),
            initialBackoff: Duration = .milliseconds(250), maximumBackoff: Duration = .seconds(30),
            tickInterval: Duration = .seconds(1), maxConcurrentInspects: Int = 8
        ) {
            self.resyncInterval = resyncInterval
            self.requestedResyncSpacing = requestedResyncSpacing
            self.initialBackoff = initialBackoff
            self.maximumBackoff = maximumBackoff
            self.tickInterval = tickInterval
            self.maxConcurrentInspects = max(1, maxConcurrentInspects)
        }
    }

    /// What the agent holds, for tests and the state file.
    public struct Snapshot: Sendable {
        public var connected: Bool
        public var daemon: DockerDaemonIdentity?
        /// Container name → what the agent follows.
        public var tracked: [String: TrackedContainer]
        public var lastApplied: Policy?
        public var skipped: [DockerSkippedContainer]
        public var statistics: Statistics
        public var startLatencies: [StartLatency]
        public var lastError: String?
    }
}
