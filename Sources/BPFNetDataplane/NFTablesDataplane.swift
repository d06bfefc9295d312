// SPDX-License-Identifier: Apache-2.0
//
// The nftables fallback: the same compiled policy as the eBPF backend,
// enforced by three tables bpfnet owns (`bridge bpfnet` for rows 1-7,
// `ip bpfnet` = the NAT table plus rows 8-11, `ip6 bpfnet` = the ext
// program's IPv6 rule), all replaced in one atomic `nft -f` transaction per
// change. See NFTablesRuleset and docs/fallback.md.

import BPFNetCore
import Foundation
import Logging
import SystemPackage

public final class NFTablesDataplane: Dataplane {
    public let backend = Backend.nftables
    /// Where an eBPF dataplane would be pinned (removed when this backend takes over).
    public let pinPath: FilePath
    /// Backend → why `--backend auto` did not use it; kept with the rules.
    public var unusedBackends: [String: String] = [:]
    private let logger: Logger
    private let peerRouteKeeper = PeerRouteKeeper()

    public init(pinPath: FilePath = BPFDataplane.defaultPinPath, logger: Logger = Logger(label: "bpfnet.nftables")) {
        self.pinPath = pinPath
        self.logger = logger
    }

    static let bridgeTable = "bridge \(NFTablesRuleset.tableName)"
    static let ipTable = "ip \(NFTablesRuleset.tableName)"
    static let ip6Table = "ip6 \(NFTablesRuleset.tableName)"

    // MARK: apply

    public func forgetCachedState() { peerRouteKeeper.forget() }

    public func apply(_ policy: Policy) throws {
        let (compiled, bridgeMAC) = try NetfilterBackends.compileWithBridgeMAC(policy, backend: backend)
        let peerRoutes = try peerRouteKeeper.plan(policy.peers)
        let tables = try Self.tables()
        try checkOwnership(tables)
        let counters = (try? currentCounters(tables)) ?? [:]

        if policy.ipForward {
            try HostSystem.setSysctl("net/ipv4/ip_forward", "1")
        }
        var netfilterPolicy = compiled
        netfilterPolicy.unusedBackends = unusedBackends
        try NFT.apply(
            NFTablesRuleset(policy: netfilterPolicy, counters: counters, bridgeMAC: bridgeMAC).render(),
            purpose: "installing tables bridge/ip/ip6 \(NFTablesRuleset.tableName) (the previous rules stay in force)")
        logger.info("nftables tables installed")
        try peerRouteKeeper.reconcile(peerRoutes, logger: logger)
        // The new rules are in force; now the other backends' objects go
        // (both enforce the same policy meanwhile, so no packet sees none).
        try NetfilterBackends.retireOthers(except: backend, pinPath: pinPath, logger: logger)
    }

    /// The three tables: whether each exists, with its comment.
    struct Tables {
        var bridge: (exists: Bool, comment: String)
        var ip: (exists: Bool, comment: String)
        var ip6: (exists: Bool, comment: String)

        /// The bridge table is ours.
        var hasOwnBridgeTable: Bool { bridge.exists && bridge.comment.hasPrefix(NFTablesRuleset.ownerComment) }
        /// The ip6 table is ours.
        var hasOwnIP6Table: Bool { ip6.exists && ip6.comment.hasPrefix(NFTablesRuleset.ownerComment) }
    }

    static func tables() throws(DataplaneError) -> Tables {
        Tables(
            bridge: try NFT.table("bridge", NFTablesRuleset.tableName),
            ip: try NFT.table("ip", NFTablesRuleset.tableName),
            ip6: try NFT.table("ip6", NFTablesRuleset.tableName))
    }

    /// A table of ours carries our comment; anything else of that name is
    /// someone else's and is not replaced.
    private func checkOwnership(_ tables: Tables) throws {
        if tables.bridge.exists && !tables.hasOwnBridgeTable {
            throw DataplaneError.busy(
                "nftables: table \(Self.bridgeTable) exists and is not bpfnet's (comment: \(Self.describe(tables.bridge.comment))) "
                    + "— remove it (nft delete table \(Self.bridgeTable)) or use another --backend; nothing was changed"
            )
        }
        if tables.ip.exists && !NATRuleset.isOwnComment(tables.ip.comment) {
            throw DataplaneError.busy(
                "nftables: table \(Self.ipTable) exists and is not bpfnet's (comment: \(Self.describe(tables.ip.comment))) "
                    + "— remove it (nft delete table \(Self.ipTable)) or use another --backend; nothing was changed")
        }
        if tables.ip6.exists && !tables.hasOwnIP6Table {
            throw DataplaneError.busy(
                "nftables: table \(Self.ip6Table) exists and is not bpfnet's (comment: \(Self.describe(tables.ip6.comment))) "
                    + "— remove it (nft delete table \(Self.ip6Table)) or use another --backend; nothing was changed")
        }
    }

    private static func describe(_ comment: String) -> String { comment.isEmpty ? "none" : "\"\(comment)\"" }

    private func currentCounters(_ tables: Tables) throws -> [String: [String: NFTablesRuleset.CounterValue]] {
        var result: [String: [String: NFTablesRuleset.CounterValue]] = [:]
        if tables.hasOwnBridgeTable {
            result[NFTablesRuleset.portProgram] = try NFTablesReadback.counters(
                NFT.countersJSON("bridge", NFTablesRuleset.tableName))
            if tables.ip.exists {
                result[NFTablesRuleset.extProgram] = try NFTablesReadback.counters(
                    NFT.countersJSON("ip", NFTablesRuleset.tableName))
            }
        }
        if tables.hasOwnIP6Table {
            result[NFTablesRuleset.ext6Program] = try NFTablesReadback.counters(
                NFT.countersJSON("ip6", NFTablesRuleset.tableName))
        }
        return result
    }

    // MARK: status

    /// Whether bpfnet's nftables filter tables are in this namespace (false
    /// when nft is missing).
    public static func isLoaded() -> Bool {
        guard NetfilterCommand.isInstalled(NFT.program), let tables = try? tables() else { return false }
        return tables.hasOwnBridgeTable
    }

    public func status() throws -> DataplaneStatus {
        let tables = try Self.tables()
        guard tables.hasOwnBridgeTable else {
            throw DataplaneError.notFound(
                "nftables: nothing is loaded (no table \(Self.bridgeTable)) "
                    + "— run `bpfnet load --backend nftables --config FILE` first")
        }
        let bridgeJSON = try NFT.listJSON("bridge", NFTablesRuleset.tableName)
        let ipJSON = tables.ip.exists ? try NFT.listJSON("ip", NFTablesRuleset.tableName) : nil
        let ip6JSON = tables.hasOwnIP6Table ? try NFT.listJSON("ip6", NFTablesRuleset.tableName) : nil
        guard let policy = try NFTablesReadback.policy(bridgeTable: bridgeJSON, ipTable: ipJSON, ip6Table: ip6JSON)
        else {
            throw DataplaneError.runtime(
                "nftables: table \(Self.bridgeTable) has no readable settings set; "
                    + "it was not written by this bpfnet — run `bpfnet unload` and load again")
        }
        var status = policy.status(backend: backend.rawValue, interfaceIndex: HostSystem.interfaceIndex)
        status.nat = NATMode.netfilter.rawValue  // eBPF NAT needs the eBPF backend
        var perProgram: [String: [String: NFTablesRuleset.CounterValue]] = [
            NFTablesRuleset.portProgram: try NFTablesReadback.counters(bridgeJSON)
        ]
        if let ipJSON { perProgram[NFTablesRuleset.extProgram] = try NFTablesReadback.counters(ipJSON) }
        // The ip6 table's drops are the ext program's (its IPv6 branch).
        if tables.hasOwnIP6Table {
            let ip6 = try NFTablesReadback.counters(NFT.countersJSON("ip6", NFTablesRuleset.tableName))
            for (reason, value) in ip6 {
                let sum = perProgram[NFTablesRuleset.extProgram, default: [:]][
                    reason, default: NFTablesRuleset.CounterValue(packets: 0, bytes: 0)]
                perProgram[NFTablesRuleset.extProgram, default: [:]][reason] = NFTablesRuleset.CounterValue(
                    packets: sum.packets + value.packets, bytes: sum.bytes + value.bytes)
            }
        }
        NetfilterBackends.setCounters(
            &status,
            perProgram.mapValues {
                $0.mapValues {
                    DataplaneStatus.CounterValue(packets: $0.packets, bytes: $0.bytes)
                }
            })
        status.addAgentState(from: AgentFiles(pinPath: pinPath))
        PeerRoutes.addInstalledRoutes(to: &status, name: HostSystem.interfaceName)
        return status
    }

    // MARK: unload

    public func unload() throws {
        guard NetfilterCommand.isInstalled(NFT.program) else { return }
        // The ip table alone is the eBPF backend's NAT table, and a bridge
        // table without our comment is someone else's: neither is ours to remove.
        // Our ip6 table alone (left by an interrupted switch) goes.
        let tables = try Self.tables()
        guard tables.hasOwnBridgeTable else {
            if tables.hasOwnIP6Table {
                try NFT.apply(
                    "table ip6 \(NFTablesRuleset.tableName)\ndelete table ip6 \(NFTablesRuleset.tableName)\n",
                    purpose: "removing table \(Self.ip6Table)")
            }
            return
        }
        try checkOwnership(tables)
        try NFT.apply(
            NFTablesRuleset.renderDelete(), purpose: "removing tables bridge/ip/ip6 \(NFTablesRuleset.tableName)")
    }
}
