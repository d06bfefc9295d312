// SPDX-License-Identifier: Apache-2.0
//
// Choosing, finding and switching backends:
// - `AutoDataplane` (`--backend auto`): eBPF, else nftables, else iptables,
//   remembering why each earlier one was not used (kept in the kernel with
//   the fallback's rules, so `bpfnet status` can say it).
// - `LoadedBackends`: which backends have objects in this namespace (bpf
//   pins, bpfnet's nft filter table, bpfnet's iptables chains), so `status`
//   and `unload` work for whichever is loaded.
// - `NetfilterBackends.retireOthers`: after a backend's apply succeeded, the
//   other backends' objects are removed. New first, old after: while both
//   exist both enforce the same policy, so no packet ever sees none.

import BPF
import BPFNetCore
import BPFNetShared
import Foundation
import LinuxNet
import Logging
import SystemPackage

/// Shared steps of the netfilter backends.
enum NetfilterBackends {
    /// The same validation and compilation as the eBPF backend, then the
    /// interface names the rules need.
    static func compile(_ policy: Policy, backend: Backend) throws -> NetfilterPolicy {
        try compileWithBridgeMAC(policy, backend: backend).policy
    }

    /// `compile`, and the bridge's MAC (zero when it has none).
    static func compileWithBridgeMAC(_ policy: Policy, backend: Backend) throws -> (
        policy: NetfilterPolicy, bridgeMAC: MACAddress
    ) {
        let compiled = try HostSystem.compile(policy)
        try HostSystem.checkBridgePorts(policy, policy.containers, interfaces: compiled.interfaces)
        do {
            var netfilter = try NetfilterPolicy(
                state: compiled.state, bridge: policy.bridge, interfaceName: HostSystem.interfaceName,
                networks: policy.networks)
            // The way to each peer as it is now (NetfilterPeers.swift).
            let interfaces = PeerRoutes.interfaces(towards: netfilter.peers.map(\.address))
            netfilter.peers = netfilter.peers.map { peer in
                var peer = peer
                peer.interface = interfaces[peer.address]
                return peer
            }
            // With networks, the default bridge's ports no container claims are
            // told from ports that join any bridge later (nftables).
            if !policy.networks.isEmpty {
                let claimed = Set(policy.containers.map(\.port))
                netfilter.unknownPorts = compiled.interfaces.ports(ofBridge: compiled.facts.bridgeIfindex).values
                    .filter { !claimed.contains($0) && NetfilterName.problem($0) == nil }.sorted()
            }
            return (netfilter, compiled.facts.bridgeMAC)
        } catch {
            throw DataplaneError.badInput("\(backend.rawValue): \(error)")
        }
    }

    /// Fills `counters` (every known reason, plus the backend's own) and
    /// `programCounters` (non-zero values only).
    static func setCounters(
        _ status: inout DataplaneStatus,
        _ perProgram: [String: [String: DataplaneStatus.CounterValue]]
    ) {
        var totals = DataplaneStatus.zeroCounters
        var programs: [String: [String: DataplaneStatus.CounterValue]] = [:]
        for (program, reasons) in perProgram {
            for (reason, value) in reasons {
                totals[reason, default: 0] += value.packets
                if value.packets != 0 || value.bytes != 0 { programs[program, default: [:]][reason] = value }
            }
        }
        status.counters = totals
        status.programCounters = programs
    }

    /// Removes what backends other than `keeping` left in the kernel.
    /// - bpf: attachments and pins, but not the `ip bpfnet` table (the
    ///   nftables backend has just replaced it with its own).
    /// - nftables: the bridge and ip6 tables; the ip table too unless the eBPF
    ///   backend now owns it (it has just rewritten it as its NAT table).
    /// - iptables: every bpfnet rule and chain (iptables and ip6tables), with either variant.
    static func retireOthers(except keeping: Backend, pinPath: FilePath, logger: Logger) throws {
        var problems: [String] = []
        if keeping != .bpf {
            problems += BPFRetirement.tearDown(pinPath: pinPath, removingNATTable: false, logger: logger)
                .map { "removing the eBPF dataplane at \(pinPath): \($0)" }
        }
        if keeping != .nftables, NetfilterCommand.isInstalled(NFT.program) {
            do {
                let tables = try NFTablesDataplane.tables()
                if tables.hasOwnBridgeTable || tables.hasOwnIP6Table {
                    let script =
                        keeping == .bpf ? NFTablesRuleset.renderDeleteFilterTables() : NFTablesRuleset.renderDelete()
                    try NFT.apply(script, purpose: "removing the nftables backend's tables")
                } else if keeping == .iptables, tables.ip.exists, NATRuleset.isOwnComment(tables.ip.comment) {
                    // The eBPF backend's NAT table (iptables does its own NAT).
                    try NFT.apply(NATRuleset.renderDelete(), purpose: "removing the eBPF backend's NAT table")
                }
            } catch {
                problems.append("\(error)")
            }
        }
        if keeping != .iptables {
            for variant in IPTablesVariant.distinct where variant.mayHoldRules() || variant.mayHoldRules6() {
                do {
                    if IPTablesDataplane.isLoaded(variant: variant) {
                        try IPTablesDataplane(variant: variant, pinPath: pinPath, logger: logger).unload()
                    }
                } catch {
                    problems.append("\(error)")
                }
            }
        }
        guard problems.isEmpty else {
            throw RetirementError(keeping: keeping, problems: problems)
        }
    }
}

/// The new backend enforces the policy, but another backend's objects could
/// not all be removed. Not a reason to fall back further.
public struct RetirementError: Error, CustomStringConvertible {
    public var keeping: Backend
    public var problems: [String]

    public var description: String {
        "the \(keeping.rawValue) backend is loaded, but removing the previous backend's objects failed: "
            + problems.joined(separator: "; ") + " — run `bpfnet unload` and load again"
    }
}

/// Takes an eBPF dataplane apart: `bpfnet unload`, and switching to a
/// netfilter backend (which keeps the `ip bpfnet` table: it has just replaced
/// it with its own).
enum BPFRetirement {
    static func isLoaded(pinPath: FilePath) -> Bool {
        FileManager.default.fileExists(atPath: pinPath.appending(MapKind.config.mapName).string)
    }

    /// Detaches every recorded program, gives the containers their GRO and
    /// checksum settings back, removes the NAT table and bpfnet's routes to
    /// peers (both with `removingNATTable`: an unload) and, when all that
    /// worked, the pins. Returns what could not be done.
    static func tearDown(pinPath: FilePath, removingNATTable: Bool, logger: Logger) -> [String] {
        var problems: [String] = []
        if isLoaded(pinPath: pinPath) {
            // An upgrade that stopped half-way: some interfaces run the new
            // programs, recorded only in the staging directory's bn_attach.
            let staging = pinPath.appending(MapUpgrade.stagingName)
            if FileManager.default.fileExists(atPath: staging.appending(MapKind.name(of: BPFNET_MAP_ID_ATTACH)).string)
            {
                do {
                    try AttachmentRecords(pinnedAt: staging).detachAll(logger: logger)
                    try MapUpgrade.removeStaging(pinPath: pinPath)
                } catch {
                    problems.append("detaching the programs of an unfinished upgrade: \(error)")
                }
            }
            do {
                try AttachmentRecords(pinnedAt: pinPath).detachAll(logger: logger)
            } catch {
                problems.append("detaching: \(error)")
            }
            // After detaching (no program redirects any more).
            if FileManager.default.fileExists(atPath: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_FP_IFS)).string)
            {
                do {
                    try FastPathInterfaces(pinnedAt: pinPath, targets: [], logger: logger).releaseAll()
                } catch {
                    problems.append("fast path: \(error)")
                }
            }
        }
        // The guard belongs to the programs: it goes with them, whatever replaces them.
        do {
            try GuardTable.remove()
        } catch {
            problems.append("removing the nftables guard tables \(GuardRuleset.tableName): \(error)")
        }
        if removingNATTable {
            do {
                try NATTable.remove()
            } catch {
                problems.append("removing the nftables table \(NATRuleset.tableName): \(error)")
            }
        }
        // Routes to peers' subnets go on unload; a backend taking over keeps
        // them (and reconciles them with its own first apply).
        if removingNATTable {
            do {
                try PeerRoutes.removeAll()
            } catch {
                problems.append("removing the routes to peers (proto \(PeerRoutes.routeProtocol)): \(error)")
            }
        }
        // Pins go last: they are how a later attempt finds what to undo.
        guard problems.isEmpty else { return problems }
        do {
            try Pins.remove(at: pinPath)
        } catch {
            // Every pin is gone and only the (empty) bpffs mount is left,
            // e.g. one the operator mounted, or no CAP_SYS_ADMIN to unmount:
            // nothing of the eBPF dataplane remains.
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: pinPath.string)) ?? [])
                .filter { !Pins.preloaded.contains($0) }
            if left.isEmpty {
                logger.info("pins removed; leaving the bpffs at \(pinPath) mounted: \(error)")
            } else {
                problems.append("removing pins under \(pinPath): \(error)")
            }
        }
        return problems
    }
}

/// Which backends have objects in this network namespace.
public enum LoadedBackends {
    public static func detect(pinPath: FilePath) -> [Backend] {
        var result: [Backend] = []
        if BPFRetirement.isLoaded(pinPath: pinPath) { result.append(.bpf) }
        if NFTablesDataplane.isLoaded() { result.append(.nftables) }
        if IPTablesVariant.distinct.contains(where: { IPTablesDataplane.isLoaded(variant: $0) }) {
            result.append(.iptables)
        }
        return result
    }

    /// The iptables variant holding bpfnet's chains (the configured one first).
    public static func iptablesVariant(preferred: IPTablesVariant = .fromEnvironment) -> IPTablesVariant {
        ([preferred] + IPTablesVariant.distinct).first { IPTablesDataplane.isLoaded(variant: $0) } ?? preferred
    }
}

/// `--backend auto`: the eBPF backend when it can be used, else nftables, else iptables.
public final class AutoDataplane: Dataplane {
    public private(set) var backend = Backend.bpf
    public let pinPath: FilePath
    /// Why each backend before the chosen one was not used (after `apply`).
    public private(set) var unusedBackends: [String: String] = [:]
    private var chosen: Dataplane?
    /// eBPF enforced a policy in this process: a later failure is a moment's
    /// (a veth that vanished during an attach), never a reason to switch.
    private var bpfWorked = false
    /// Applies whose eBPF attempt failed and were retried (status, logs).
    public private(set) var bpfRetries = 0
    /// One instance per backend, made on first use and kept: an agent applies
    /// once per Docker event, and a fresh eBPF dataplane would load and verify
    /// its programs again, re-attach every port and rewrite the NAT table each
    /// time (~100 ms per container start instead of a few ms).
    private var bpfInstance: Dataplane?
    private var nftablesInstance: NFTablesDataplane?
    private var iptablesInstance: IPTablesDataplane?
    private let logger: Logger
    private let makeBPF: () -> Dataplane

    public init(
        pinPath: FilePath = BPFDataplane.defaultPinPath, logger: Logger = Logger(label: "bpfnet.auto"),
        makeBPF: (() -> Dataplane)? = nil
    ) {
        self.pinPath = pinPath
        self.logger = logger
        self.makeBPF = makeBPF ?? { BPFDataplane(pinPath: pinPath) }
    }

    public func apply(_ policy: Policy) throws {
        unusedBackends = [:]
        let bpf = bpfInstance ?? makeBPF()
        bpfInstance = bpf
        do {
            try applyRetrying(bpf, policy)
            bpfWorked = true
            select(bpf)
            return
        } catch let error as RetirementError {
            select(bpf)
            throw error
        } catch let error as DataplaneError where error.isBadInput {
            // The policy is wrong; every backend would say so.
            throw error
        } catch {
            if bpfWorked {
                // It enforced before and still enforces the last policy it
                // took: say so and let the caller retry; no switch.
                throw DataplaneError.runtime(
                    "bpf: apply failed twice (\(Self.reason(error, prefix: "bpf"))); the eBPF dataplane keeps "
                        + "enforcing the last policy it took — `--backend auto` does not leave a backend that "
                        + "worked over a failed apply; the next apply tries again")
            }
            unusedBackends[Backend.bpf.rawValue] = Self.reason(error, prefix: "bpf")
            logger.warning("eBPF cannot be used, falling back to netfilter: \(error)")
            // Whatever a failed eBPF load left behind is removed by the
            // fallback's apply once the fallback enforces the policy.
        }

        let nftables = nftablesInstance ?? NFTablesDataplane(pinPath: pinPath, logger: logger)
        nftablesInstance = nftables
        nftables.unusedBackends = unusedBackends
        do {
            try nftables.apply(policy)
            select(nftables)
            return
        } catch let error as RetirementError {
            select(nftables)
            throw error
        } catch let error as DataplaneError where error.isBadInput {
            throw error
        } catch {
            unusedBackends[Backend.nftables.rawValue] = Self.reason(error, prefix: "nftables")
            logger.warning("nftables cannot be used, falling back to iptables: \(error)")
        }

        let iptables = iptablesInstance ?? IPTablesDataplane(pinPath: pinPath, logger: logger)
        iptablesInstance = iptables
        iptables.unusedBackends = unusedBackends
        do {
            try iptables.apply(policy)
            select(iptables)
        } catch let error as RetirementError {
            select(iptables)
            throw error
        } catch {
            let tried = unusedBackends.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            throw DataplaneError.runtime(
                "no backend could enforce the policy: "
                    + (tried + ["iptables: \(error)"])
                    .joined(separator: "; "))
        }
    }

    /// `apply`, and once more from scratch when it failed for a reason that
    /// may be gone a moment later (an interface that vanished, a busy
    /// device), or on a backend that worked before in this process.
    private func applyRetrying(_ dataplane: Dataplane, _ policy: Policy) throws {
        do {
            try dataplane.apply(policy)
        } catch let error as DataplaneError where error.isBadInput {
            throw error
        } catch let error as RetirementError {
            throw error
        } catch {
            guard bpfWorked || Self.isTransient(error) else { throw error }
            bpfRetries += 1
            logger.warning("eBPF apply failed (\(error)); retrying once before anything else")
            dataplane.forgetCachedState()
            try dataplane.apply(policy)
        }
    }

    /// Errors that say "not now" rather than "not here": the object is gone
    /// or busy, or the call was interrupted.
    static func isTransient(_ error: Error) -> Bool {
        let transient: Set<Int32> = [ENODEV, ENXIO, ENOENT, EBUSY, EAGAIN, EINTR]
        switch error {
        case let error as BPFError: return transient.contains(error.errno.rawValue)
        case let error as LinuxNetError: return transient.contains(error.errno)
        case let error as DataplaneError:
            switch error {
            case .notFound, .busy: return true
            case .system(_, let code): return transient.contains(code)
            default: return false
            }
        default: return false
        }
    }

    private func select(_ dataplane: Dataplane) {
        // A switch of backend: the kept instances remember having retired
        // the others, which no longer holds once another one took over.
        if let chosen, chosen.backend != dataplane.backend { forgetCachedState() }
        chosen = dataplane
        backend = dataplane.backend
    }

    /// The error without its backend prefix ("bpf: BPF_PROG_LOAD: ..." → "BPF_PROG_LOAD: ...").
    static func reason(_ error: Error, prefix: String) -> String {
        let text = String(describing: error)
        return text.hasPrefix(prefix + ": ") ? String(text.dropFirst(prefix.count + 2)) : text
    }

    /// A full resync: every backend made so far starts from the system again.
    public func forgetCachedState() {
        bpfInstance?.forgetCachedState()
        nftablesInstance?.forgetCachedState()
        iptablesInstance?.forgetCachedState()
    }

    public func status() throws -> DataplaneStatus {
        if let chosen { return try chosen.status() }
        return try LoadedDataplaneFinder.loaded(pinPath: pinPath).status()
    }

    public func statusForMetrics() throws -> DataplaneStatus {
        if let chosen { return try chosen.statusForMetrics() }
        return try LoadedDataplaneFinder.loaded(pinPath: pinPath).statusForMetrics()
    }

    public func unload() throws {
        try LoadedDataplaneFinder.unloadAll(pinPath: pinPath)
    }
}

/// The dataplane(s) found in the kernel, for `status` and `unload` without `--backend`.
public enum LoadedDataplaneFinder {
    /// The loaded backend's dataplane (bpf before nftables before iptables
    /// when, after a failed switch, more than one is there).
    public static func loaded(pinPath: FilePath) throws -> Dataplane {
        switch LoadedBackends.detect(pinPath: pinPath).first {
        case .bpf: return BPFDataplane(pinPath: pinPath)
        case .nftables: return NFTablesDataplane(pinPath: pinPath)
        case .iptables: return IPTablesDataplane(variant: LoadedBackends.iptablesVariant(), pinPath: pinPath)
        case nil:
            throw DataplaneError.notFound(
                "nothing is loaded: no eBPF pins at \(pinPath), no nftables table "
                    + "bridge \(NFTablesRuleset.tableName), no iptables chain \(IPTablesRuleset.stateChain) "
                    + "— run `bpfnet load --config FILE` first")
        }
    }

    /// Removes bpfnet's routes to peers (route protocol 191), whichever
    /// backend installed them: the end of every `unload`.
    public static func removePeerRoutes() throws {
        try PeerRoutes.removeAll()
    }

    /// Unloads every backend found (each one's unload succeeds when it has nothing).
    public static func unloadAll(pinPath: FilePath) throws {
        var problems: [String] = []
        let found = LoadedBackends.detect(pinPath: pinPath)
        // iptables and nftables first: the eBPF unload removes the ip table too.
        if found.contains(.iptables) {
            for variant in IPTablesVariant.distinct where IPTablesDataplane.isLoaded(variant: variant) {
                do { try IPTablesDataplane(variant: variant, pinPath: pinPath).unload() } catch {
                    problems.append("\(error)")
                }
            }
        }
        do { try NFTablesDataplane(pinPath: pinPath).unload() } catch { problems.append("\(error)") }
        // The eBPF unload also deletes a leftover `ip bpfnet` NAT table (with nft).
        if found.contains(.bpf) || NetfilterCommand.isInstalled(NFT.program) {
            do { try BPFDataplane(pinPath: pinPath).unload() } catch { problems.append("\(error)") }
        }
        // Whichever backend installed them (the eBPF unload removes them too);
        // not when an unload was refused (an agent runs): its policy stays, so do its routes.
        if problems.isEmpty {
            do { try removePeerRoutes() } catch { problems.append("\(error)") }
        }
        guard problems.isEmpty else {
            throw DataplaneError.runtime("unload incomplete: " + problems.joined(separator: "; "))
        }
    }
}
