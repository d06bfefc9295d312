// SPDX-License-Identifier: Apache-2.0
//
// Docker events, folded per container until the agent's worker takes them as
// one batch. Events never decide on their own what a container looks like:
// start, restart, and a `connect` to or `disconnect` from any bridge network
// ask for a fresh inspect; die, stop and destroy remove the container. (A network's own create and
// destroy are the agent's: it reads the networks again.) Within a batch
// only the last event per container counts, so the order of die/disconnect/stop
// (20.10: die, disconnect, stop; 29: disconnect, stop, die) does not matter, and
// a restart (die … start) ends with a fresh inspect. A destroyed ID never comes
// back, so a destroy sticks.

import DockerWatcher

/// What the events received since the last batch ask for, one change per container.
struct PendingChanges {
    enum Kind: Hashable, Sendable {
        /// Inspect again and take Docker's answer.
        case refresh
        /// Forget the container (it stopped or left the bridge).
        case remove
        /// Forget the container and its bridge port: the ID is gone for good.
        case destroy
    }

    /// When a `start` event happened and reached the agent, for the
    /// start-to-rules latency (docs/agent.md, `lastSyncLatencyMs`).
    struct StartMark: Hashable, Sendable {
        /// The event's own time (`timeNano`, the daemon's clock), when it carried one.
        var eventTimeNano: Int64?
        var received: ContinuousClock.Instant
    }

    struct Change: Hashable, Sendable {
        var kind: Kind
        /// Set by a `start` event; cleared by a later removing one.
        var start: StartMark?
    }

    /// The changes taken at once, in container ID order.
    struct Batch {
        /// Containers to forget; `destroyed` also forgets their bridge port.
        var removals: [(id: String, destroyed: Bool)] = []
        /// Containers to inspect again.
        var refreshes: [String] = []
        /// The starts among the refreshes, to measure once their rules are in force.
        var starts: [String: StartMark] = [:]

        var count: Int { removals.count + refreshes.count }
    }

    /// Container ID → its pending change.
    private(set) var changes: [String: Change] = [:]

    var isEmpty: Bool { changes.isEmpty }

    /// Folds `event` into the container's pending change.
    /// - Returns: false when the event does not concern the policy (nothing recorded).
    mutating func record(_ event: DockerEvent, receivedAt received: ContinuousClock.Instant) -> Bool {
        guard let (id, kind) = Self.classify(event) else { return false }
        var change = changes[id] ?? Change(kind: kind)
        if change.kind != .destroy { change.kind = kind }
        switch kind {
        case .refresh where event.action == .start:
            change.start = StartMark(eventTimeNano: event.timeNano, received: received)
        case .remove, .destroy:
            change.start = nil
        case .refresh:
            break
        }
        changes[id] = change
        return true
    }

    /// Which container an event is about and what to do with it; nil for
    /// events that do not concern the policy.
    static func classify(_ event: DockerEvent) -> (String, Kind)? {
        guard let id = event.containerID, !id.isEmpty else { return nil }
        switch (event.type, event.action) {
        case (.container, .start), (.container, .restart):
            return (id, .refresh)
        case (.container, .die), (.container, .stop):
            return (id, .remove)
        case (.container, .destroy):
            return (id, .destroy)
        case (.network, .connect) where event.isBridgeNetworkEvent,
            (.network, .disconnect) where event.isBridgeNetworkEvent:
            // A disconnect is mostly a container stopping (its die or stop follows and
            // wins), but a container may leave one network and stay on others: ask.
            return (id, .refresh)
        default:
            return nil
        }
    }

    /// Drops everything pending: after a broken stream a resync replaces it
    /// (a `die` kept from then would remove a container restarted since).
    mutating func removeAll() {
        changes.removeAll()
    }

    /// Takes every pending change, leaving none.
    mutating func takeBatch() -> Batch {
        var batch = Batch()
        for (id, change) in changes.sorted(by: { $0.key < $1.key }) {
            switch change.kind {
            case .remove, .destroy:
                batch.removals.append((id, change.kind == .destroy))
            case .refresh:
                batch.refreshes.append(id)
                if let start = change.start { batch.starts[id] = start }
            }
        }
        changes.removeAll()
        return batch
    }
}
