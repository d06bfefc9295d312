// SPDX-License-Identifier: Apache-2.0
//
// The guard: two small nftables tables the eBPF backend keeps next to its
// programs, for what no program can see (docs/security.md, "The guard").
//
// - `bridge bpfnet_guard`: a bridge port with no port program (a container
//   started since the last apply, before `bpfnet run` attached to it, or ever
//   with a plain `load`) reaches no policed port: under icc=false its frames
//   towards a port that has the program are dropped in the bridge's forward
//   hook. The kernel here has no bridge-name match (nft_meta_bridge), so the
//   set of policed ports is what scopes the rule to the bridge.
// - `ip bpfnet_guard` and `ip6 bpfnet_guard` (the same rules, for dual-stack
//   networks): the forward policy for packets routed towards the bridge from
//   an interface without the ext program (one the policy does not list, or one
//   that appeared since), and for packets routed from the bridge back into it,
//   as Docker's FORWARD rules hold them on every interface. Their `ct state`
//   rule also makes the kernel track IPv6 connections, which the ext program
//   asks conntrack about (row 10).
//
// Traffic the programs deliver on their fast paths never reaches either hook.

/// Renders both guard tables as one `nft -f` transaction.
public struct GuardRuleset: Sendable, Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.render() == rhs.render() }

    /// The name of the tables (families `bridge`, `ip` and `ip6`).
    public static let tableName = "bpfnet_guard"

    public var bridge: String
    /// The bridge's own MAC: what tells a packet routed back into the bridge
    /// from a bridged one that br_netfilter (loaded by dockerd) hands to the
    /// same hook. `.zero` when unknown: routed packets are then not held.
    public var bridgeMAC: MACAddress
    public var icc: Bool
    public var forwardAccept: Bool
    /// Bridge ports the port program is attached to.
    public var policedPorts: [UInt32]
    /// Interfaces the ext program is attached to: it judged their packets.
    public var extInterfaces: [UInt32]
    /// The user-defined networks' bridges, with their icc and MAC. Packets
    /// routed from one Docker bridge to another are dropped (Docker's
    /// isolation); the port programs drop them at the source, this holds a
    /// port without one. Packets routed from a bridge back into it follow
    /// that bridge's icc.
    public var networks: [(bridge: String, icc: Bool, mac: MACAddress)]

    public init(
        bridge: String, bridgeMAC: MACAddress, icc: Bool, forwardAccept: Bool, policedPorts: [UInt32],
        extInterfaces: [UInt32], networks: [(bridge: String, icc: Bool, mac: MACAddress)] = []
    ) {
        self.networks = networks
        self.bridge = bridge
        self.bridgeMAC = bridgeMAC
        self.icc = icc
        self.forwardAccept = forwardAccept
        self.policedPorts = policedPorts.sorted()
        self.extInterfaces = extInterfaces.sorted()
    }

    public var comment: String {
        "owned by bpfnet: guard for the bridge \(bridge) next to its eBPF programs; do not edit, run bpfnet unload"
    }

    /// Both tables. Each leading `table` + `delete table` pair makes the
    /// transaction replace the table atomically, and work when it is absent.
    public func render() -> String {
        let bridge = "\"\(bridge)\""
        // From a bridge back into it (what is left once other destinations are
        // accepted and the isolation has dropped the other bridges): bridged
        // frames (br_netfilter) are the port program's and the bridge table's;
        // routed ones (to the bridge's own MAC) between containers follow that
        // bridge's icc, as Docker's `-i br -o br -j ACCEPT` or `DROP` does.
        func fromBridge(_ name: String, icc: Bool, mac: MACAddress) -> String {
            let name = "\"\(name)\""
            return icc || mac == .zero
                ? "        iifname \(name) accept"
                : """
                        iifname \(name) ether daddr != \(mac) accept
                        iifname \(name) ct status dnat accept
                        iifname \(name) counter drop comment "routed between containers, icc off"
                """
        }
        let fromBridges =
            ([fromBridge(self.bridge, icc: icc, mac: bridgeMAC)]
            + networks.map { fromBridge($0.bridge, icc: $0.icc, mac: $0.mac) }).joined(separator: "\n")
        // A port without the program is held back from policed ports when
        // any network keeps its containers apart.
        let holdUnpoliced = !icc || networks.contains { !$0.icc }
        let bridges = ([self.bridge] + networks.map(\.bridge))
        let toAnyBridge =
            networks.isEmpty
            ? "oifname != \(bridge)" : "oifname != { \(bridges.map { "\"\($0)\"" }.joined(separator: ", ")) }"
        let pairs = bridges.flatMap { from in bridges.filter { $0 != from }.map { "\"\(from)\" . \"\($0)\"" } }
        let isolation =
            networks.isEmpty
            ? ""
            : """
                    set isolated {
                        type ifname . ifname
                        elements = { \(pairs.joined(separator: ", ")) }
                    }

            """
        let isolationRule =
            networks.isEmpty
            ? "" : "        iifname . oifname @isolated counter drop comment \"between two Docker networks\"\n"
        return Self.renderDelete()
            + """
            table bridge \(Self.tableName) {
                comment "\(comment)"
                set policed {
                    type iface_index
            \(Self.elements(policedPorts))
                }
                chain forward {
                    type filter hook forward priority -200; policy accept;
            \(holdUnpoliced ? "        oif @policed iif != @policed counter drop comment \"from a port without the port program\"" : "")
                }
            }
            \(["ip", "ip6"].map { family in
                """
                table \(family) \(Self.tableName) {
                    comment "\(comment)"
                    set ext {
                        type iface_index
                \(Self.elements(extInterfaces))
                    }
                \(isolation)        chain forward {
                        type filter hook forward priority filter - 1; policy accept;
                \(isolationRule)        \(toAnyBridge) accept
                        ct state established,related accept
                \(fromBridges)
                        iif @ext accept
                        ct status dnat accept
                        \(forwardAccept ? "accept" : "counter drop comment \"forward policy, from an interface without the ext program\"")
                    }
                }

                """
            }.joined())
            """
    }

    /// Removes both tables (and succeeds when they are absent).
    public static func renderDelete() -> String {
        """
        table bridge \(tableName)
        delete table bridge \(tableName)
        table ip \(tableName)
        delete table ip \(tableName)
        table ip6 \(tableName)
        delete table ip6 \(tableName)

        """
    }

    private static func elements(_ items: [UInt32]) -> String {
        items.isEmpty ? "" : "        elements = { \(items.map(String.init).joined(separator: ", ")) }"
    }
}
