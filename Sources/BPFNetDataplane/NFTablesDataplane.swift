// SPDX-License-Identifier: Apache-2.0
//
// The nftables fallback: the same compiled policy as the eBPF backend,
// enforced by two tables bpfnet owns (`bridge bpfnet` for rows 1-7,
// `ip bpfnet` = the NAT table plus rows 8-11), both replaced in one atomic
// `nft -f` transaction per change. See NFTablesRuleset and docs/fallback.md.

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

    public init(pinPath: FilePath = BPFDataplane.defaultPinPath, logger: Logger = Logger(label: "bpfnet.nftables")) {
        self.pinPath = pinPath
        self.logger = logger
    }

    static let bridgeTable = "bridge \(NFTablesRuleset.tableName)"
    static let ipTable = "ip \(NFTablesRuleset.tableName)"

    // MARK: apply

    public func apply(_ policy: Policy) throws {
        let compiled = try NetfilterBackends.compile(policy, backend: backend)
        let tables = try NFT.tables()
        try checkOwnership(tables)
        let counters = (try? currentCounters(tables)) ?? [:]

        if policy.ipForward {
            try HostSystem.setSysctl("net/ipv4/ip_forward", "1")
        }
        var netfilterPolicy = compiled
        netfilterPolicy.unusedBackends = unusedBackends
        try NFT.apply(NFTablesRuleset(policy: netfilterPolicy, counters: counters).render(),
                      purpose: "installing tables bridge/ip \(NFTablesRuleset.tableName) (the previous rules stay in force)")
        logger.info("nftables tables installed")
        // The new rules are in force; now the other backends' objects go
        // (both enforce the same policy meanwhile, so no packet sees none).
        try NetfilterBackends.retireOthers(except: backend, pinPath: pinPath, logger: logger)
    }

    /// A table of ours carries our comment; anything else of that name is
    /// someone else's and is not replaced.
    private func checkOwnership(_ tables: Set<String>) throws {
        if tables.contains(Self.bridgeTable) {
            let comment = try NFT.comment("bridge", NFTablesRuleset.tableName)
            guard comment?.hasPrefix(NFTablesRuleset.ownerComment) ?? false else {
                throw DataplaneError.runtime(
                    "nftables: table \(Self.bridgeTable) exists and is not bpfnet's (comment: \(comment.map { "\"\($0)\"" } ?? "none")) "
                        + "— remove it (nft delete table \(Self.bridgeTable)) or use another --backend; nothing was changed")
            }
        }
        if tables.contains(Self.ipTable) {
            let comment = try NFT.comment("ip", NFTablesRuleset.tableName)
            guard NATRuleset.isOwnComment(comment) else {
                throw DataplaneError.runtime(
                    "nftables: table \(Self.ipTable) exists and is not bpfnet's (comment: \(comment.map { "\"\($0)\"" } ?? "none")) "
                        + "— remove it (nft delete table \(Self.ipTable)) or use another --backend; nothing was changed")
            }
        }
    }

    private func currentCounters(_ tables: Set<String>) throws -> [String: [String: NFTablesRuleset.CounterValue]] {
        var result: [String: [String: NFTablesRuleset.CounterValue]] = [:]
        if tables.contains(Self.bridgeTable) {
            result[NFTablesRuleset.portProgram] = try NFTablesReadback.counters(NFT.listJSON("bridge", NFTablesRuleset.tableName))
            if tables.contains(Self.ipTable) {
                result[NFTablesRuleset.extProgram] = try NFTablesReadback.counters(NFT.listJSON("ip", NFTablesRuleset.tableName))
            }
        }
        return result
    }

    // MARK: status

    /// Whether bpfnet's nftables filter tables are in this namespace (false
    /// when nft is missing).
    public static func isLoaded() -> Bool {
        guard NetfilterCommand.isInstalled(NFT.program), let tables = try? NFT.tables(),
              tables.contains(bridgeTable) else { return false }
        let comment = try? NFT.comment("bridge", NFTablesRuleset.tableName)
        return comment?.hasPrefix(NFTablesRuleset.ownerComment) ?? false
    }

    public func status() throws -> DataplaneStatus {
        let tables = try NFT.tables()
        guard tables.contains(Self.bridgeTable) else {
            throw DataplaneError.runtime("nftables: nothing is loaded (no table \(Self.bridgeTable)) "
                + "— run `bpfnet load --backend nftables --config FILE` first")
        }
        let bridgeJSON = try NFT.listJSON("bridge", NFTablesRuleset.tableName)
        let ipJSON = tables.contains(Self.ipTable) ? try NFT.listJSON("ip", NFTablesRuleset.tableName) : nil
        guard let policy = try NFTablesReadback.policy(bridgeTable: bridgeJSON, ipTable: ipJSON) else {
            throw DataplaneError.runtime("nftables: table \(Self.bridgeTable) has no readable settings set; "
                + "it was not written by this bpfnet — run `bpfnet unload` and load again")
        }
        var status = policy.status(backend: backend.rawValue, interfaceIndex: HostSystem.interfaceIndex)
        var perProgram: [String: [String: NFTablesRuleset.CounterValue]] = [
            NFTablesRuleset.portProgram: try NFTablesReadback.counters(bridgeJSON),
        ]
        if let ipJSON { perProgram[NFTablesRuleset.extProgram] = try NFTablesReadback.counters(ipJSON) }
        NetfilterBackends.setCounters(&status, perProgram.mapValues { $0.mapValues {
            DataplaneStatus.CounterValue(packets: $0.packets, bytes: $0.bytes)
        } })
        return status
    }

    // MARK: unload

    public func unload() throws {
        guard NetfilterCommand.isInstalled(NFT.program) else { return }
        // The ip table alone is the eBPF backend's NAT table, and a bridge
        // table without our comment is someone else's: neither is ours to remove.
        guard Self.isLoaded() else { return }
        try checkOwnership(try NFT.tables())
        try NFT.apply(NFTablesRuleset.renderDelete(), purpose: "removing tables bridge/ip \(NFTablesRuleset.tableName)")
    }
}
