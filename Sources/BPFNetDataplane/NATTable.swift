// SPDX-License-Identifier: Apache-2.0
//
// Applies and removes bpfnet's own nftables table, each in one atomic
// `nft -f` transaction (nothing else on the host is touched).

import BPFNetCore

/// The eBPF backend's guard tables (GuardRuleset).
enum GuardTable {
    static func apply(_ rendered: String) throws {
        try NFT.apply(rendered, purpose: "installing the guard tables (bridge and ip \(GuardRuleset.tableName))")
    }

    /// Nothing to do (and no need for nft) when neither table exists.
    static func remove() throws {
        let present = ["bridge", "ip"].contains {
            (try? NFT.table($0, GuardRuleset.tableName).exists) == true
        }
        guard present else { return }
        try NFT.apply(
            GuardRuleset.renderDelete(), purpose: "removing the guard tables (bridge and ip \(GuardRuleset.tableName))")
    }
}

enum NATTable {
    /// Installs a rendered `NATRuleset` in one transaction.
    static func apply(_ rendered: String) throws {
        try run(rendered, doing: "installing the NAT table")
    }

    static func remove() throws {
        try run(NATRuleset.renderDelete(), doing: "removing the NAT table")
    }

    private static func run(_ script: String, doing action: String) throws(DataplaneError) {
        try NFT.apply(script, purpose: "\(action) (table ip \(NATRuleset.tableName))")
    }
}
