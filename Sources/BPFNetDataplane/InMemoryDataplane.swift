// SPDX-License-Identifier: Apache-2.0
//
// The in-memory backend (swift-nio's EmbeddedChannel idea): the same compile
// and reconcile steps as the eBPF backend, into `InMemoryMaps` instead of the
// kernel. Tests of anything that drives a `Dataplane` (the Docker agent, the
// CLI's policy handling) use it to see exactly which policies were applied and
// which map writes they caused, without root.

import BPFNetCore
import Foundation

/// A `Dataplane` that keeps its maps in memory and records every applied policy.
/// Interfaces need not exist: every name gets a made-up ifindex on first use
/// (unless `interfaceIndex` says otherwise). Thread-safe.
public final class InMemoryDataplane: Dataplane, @unchecked Sendable {
    /// It compiles and reconciles exactly as the eBPF backend does.
    public let backend = Backend.bpf
    /// What `status()` reports as `backend`.
    public static let backendName = "memory"

    /// One successful `apply`.
    public struct Application: Sendable {
        public var policy: Policy
        /// The map writes it took (empty when nothing differed).
        public var changes: [MapChange]
    }

    private let lock = NSLock()
    private var maps = InMemoryMaps()
    private var applicationsStore: [Application] = []
    private var failuresStore = 0
    private var nextIfindex: UInt32 = 100
    private var ifindexes: [String: UInt32] = [:]
    private var failNext: [any Error] = []
    private var interfaceFilter: (@Sendable (String) -> Bool)?
    private let bridgeIfindex: UInt32 = 2
    private var loaded = false
    /// The bridge's address, as the kernel would report it (nil: none).
    public let bridgeAddress: IPv4InterfaceAddress?

    public init(bridgeAddress: IPv4InterfaceAddress? = IPv4InterfaceAddress("172.17.0.1/16")) {
        self.bridgeAddress = bridgeAddress
    }

    // MARK: Test hooks

    /// Every successful apply, oldest first.
    public var applications: [Application] { lock.withLock { applicationsStore } }
    /// The policies of `applications`.
    public var appliedPolicies: [Policy] { applications.map(\.policy) }
    /// The last policy in force (nil before the first successful apply or after `unload`).
    public var currentPolicy: Policy? { lock.withLock { loaded ? applicationsStore.last?.policy : nil } }
    /// The maps as they are now.
    public var state: MapState { lock.withLock { maps.state } }
    /// Applies that threw.
    public var failedApplies: Int { lock.withLock { failuresStore } }

    /// The next apply throws `error` (after validating, before any write), as a
    /// kernel failure would; the maps keep what they held.
    public func failNextApply(with error: any Error = DataplaneError.runtime("in-memory dataplane: injected failure")) {
        lock.withLock { failNext.append(error) }
    }

    /// Decides which interface names exist (default: all). A container whose
    /// port does not exist makes `apply` fail with `badInput`, as on a host.
    public func setInterfaceFilter(_ exists: (@Sendable (String) -> Bool)?) {
        lock.withLock { interfaceFilter = exists }
    }

    // MARK: Dataplane

    public func apply(_ policy: Policy) throws {
        try lock.withLock {
            let filter = interfaceFilter
            // Allocate ifindexes up front so the compiler's lookups stay pure.
            var known = ifindexes
            let names = policy.containers.map(\.port) + policy.extInterfaces.map(\.name) + policy.networks.map(\.bridge)
            for name in names where known[name] == nil {
                if filter?(name) ?? true {
                    known[name] = nextIfindex
                    nextIfindex += 1
                }
            }
            var facts = HostFacts(
                bridgeIfindex: bridgeIfindex, bridgeAddress: bridgeAddress,
                interfaces: known.filter { filter?($0.key) ?? true })
            // A user-defined network's bridge exists like any interface; without an address.
            for network in policy.networks {
                guard let index = facts.interfaceIndex(network.bridge) else { continue }
                facts.networks[network.name] = BridgeFacts(ifindex: index, address: nil)
            }
            let desired: MapState
            do {
                desired = try PolicyCompiler.compile(policy, facts: facts)
            } catch {
                failuresStore += 1
                throw DataplaneError.badInput("\(error)")
            }
            if !failNext.isEmpty {
                failuresStore += 1
                throw failNext.removeFirst()
            }
            ifindexes = known
            let changes = maps.state.changes(to: desired)
            var writer = maps
            try writer.apply(changes)
            loaded = true
            applicationsStore.append(Application(policy: policy, changes: changes))
        }
    }

    public func status() throws -> DataplaneStatus {
        try lock.withLock {
            guard loaded else {
                throw DataplaneError.notFound("memory: nothing is loaded")
            }
            let names = Dictionary(ifindexes.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
            let bridge = applicationsStore.last?.policy.bridge
            return DataplaneStatus(backend: Self.backendName, state: maps.state, bridge: bridge) { names[$0] }
        }
    }

    public func unload() throws {
        lock.withLock {
            maps = InMemoryMaps()
            loaded = false
        }
    }
}
