// SPDX-License-Identifier: Apache-2.0
//
// `Dataplane.apply` blocks: it makes bpf() and netlink calls and runs `ip`
// and `nft`. Run on Swift's cooperative pool (two threads on a 2-core host)
// it would stall every other task, the event reader included. The executor
// runs the dataplane on a serial dispatch queue of its own, so calls never
// overlap and the agent's actor only awaits them.

import BPFNetCore
import BPFNetDataplane
import Dispatch

/// Serialises every call into one `Dataplane` on a queue of its own.
public final class DataplaneExecutor: @unchecked Sendable {
    // Touched only on `queue`.
    private let dataplane: any Dataplane
    private let queue = DispatchQueue(label: "bpfnet.agent.dataplane")

    public init(_ dataplane: any Dataplane) {
        self.dataplane = dataplane
    }

    public func apply(_ policy: Policy) async throws {
        try await run { try $0.apply(policy) }
    }

    /// Applies with nothing taken from the dataplane's caches (a full resync).
    public func applyRepairing(_ policy: Policy) async throws {
        try await run { dataplane in
            dataplane.forgetCachedState()
            try dataplane.apply(policy)
        }
    }

    public func status() async throws -> DataplaneStatus {
        try await run { try $0.status() }
    }

    public func statusForMetrics() async throws -> DataplaneStatus {
        try await run { try $0.statusForMetrics() }
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (any Dataplane) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body(self.dataplane) })
            }
        }
    }
}
