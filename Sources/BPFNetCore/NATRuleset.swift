// SPDX-License-Identifier: Apache-2.0
//
// bpfnet's own nftables table for NAT: DNAT for published ports and
// masquerade for the bridge subnet. NAT stays in netfilter in this version
// (docs/architecture.md); the eBPF programs decide who may talk to whom.
// bpfnet owns exactly this table and touches no other.

/// Renders the `ip bpfnet` nftables table as one `nft -f` transaction.
public struct NATRuleset: Sendable, Equatable {
    /// The table name; also what `bpfnet unload` deletes.
    public static let tableName = "bpfnet"

    public var bridge: String
    /// nil when the bridge has no IPv4 address: nothing to masquerade.
    public var bridgeSubnet: IPv4CIDR?
    public var published: [(container: IPv4Address, port: PublishedPort)]
    /// The user-defined networks' bridges: none of them is DNATed from (as
    /// the default bridge), and each masquerades its own subnet.
    public var networks: [Network] = []
    /// The peer hosts' container subnets: traffic to them keeps its
    /// container source address (the peer routes back to it), as in Docker's
    /// documented two-host setup; docs/policy.md, "Peers".
    public var peerSubnets: [IPv4CIDR] = []

    /// A user-defined network as NAT sees it.
    public struct Network: Sendable, Equatable {
        public var bridge: String
        /// nil when the bridge has no IPv4 address.
        public var subnet: IPv4CIDR?
        /// `enable_ip_masquerade` (false on internal networks).
        public var masquerade: Bool
        /// `host_ipv4`: SNAT to this address instead of masquerading.
        public var sourceAddress: IPv4Address?

        public init(bridge: String, subnet: IPv4CIDR?, masquerade: Bool, sourceAddress: IPv4Address? = nil) {
            self.bridge = bridge
            self.subnet = subnet
            self.masquerade = masquerade
            self.sourceAddress = sourceAddress
        }
    }

    public init(bridge: String, bridgeSubnet: IPv4CIDR?, policy: Policy) {
        self.init(
            bridge: bridge, bridgeSubnet: bridgeSubnet,
            published: policy.containers.flatMap { container in
                container.published.map { (container.ip, $0) }
            })
    }

    public init(bridge: String, bridgeSubnet: IPv4CIDR?, published: [(container: IPv4Address, port: PublishedPort)]) {
        self.bridge = bridge
        self.bridgeSubnet = bridgeSubnet
        self.published = published
    }

    /// The ownership comment; `bpfnet` recognises its own table by its start. nft takes at
    /// most 128 characters, so networks are counted, not named.
    public var comment: String {
        networks.isEmpty
            ? "owned by bpfnet: NAT for the bridge \(bridge); do not edit, run bpfnet unload"
            // nft keeps at most 128 characters of a comment: the bridges are not listed.
            : "owned by bpfnet: NAT for the bridge \(bridge) and \(networks.count) network"
                + (networks.count == 1 ? "" : "s") + "; do not edit, run bpfnet unload"
    }

    /// Whether `comment` (of an existing `ip bpfnet` table) says bpfnet made it.
    public static func isOwnComment(_ comment: String?) -> Bool {
        comment?.hasPrefix("owned by bpfnet") ?? false
    }

    public static func == (lhs: NATRuleset, rhs: NATRuleset) -> Bool {
        lhs.render() == rhs.render()
    }

    /// The whole table. The leading `table` + `delete table` pair makes the
    /// transaction replace an existing table atomically and also work when
    /// there is none: nft applies the file all or nothing.
    public func render() -> String {
        """
        table ip \(Self.tableName)
        delete table ip \(Self.tableName)
        table ip \(Self.tableName) {
            comment "\(comment)"
        \(renderBody())
        }

        """
    }

    /// The maps and chains inside the table (without its comment), so the
    /// nftables backend can add its filter chains to the same table and the
    /// NAT stays the same text in both backends.
    public func renderBody() -> String {
        let anyAddress = published.filter { $0.port.hostIP == nil }
            .map { "\($0.port.proto.rawValue) . \($0.port.hostPort) : \($0.container) . \($0.port.containerPort)" }
            .sorted()
        let specificAddress = published.compactMap { entry -> String? in
            guard let hostIP = entry.port.hostIP else { return nil }
            return
                "\(hostIP) . \(entry.port.proto.rawValue) . \(entry.port.hostPort) : \(entry.container) . \(entry.port.containerPort)"
        }.sorted()
        let bridge = Self.quoted(bridge)
        var masquerade = ""
        if !peerSubnets.isEmpty {
            // Before any masquerade: `return` in a base chain takes its policy (accept), no NAT.
            let subnets = Set(peerSubnets).sorted().map(\.description).joined(separator: ", ")
            masquerade = "            ip daddr { \(subnets) } return\n"
        }
        masquerade += bridgeSubnet.map { "            ip saddr \($0) oifname != \(bridge) masquerade" } ?? ""
        for network in networks where network.masquerade {
            guard let subnet = network.subnet else { continue }
            let action = network.sourceAddress.map { "snat ip to \($0)" } ?? "masquerade"
            masquerade += "\n            ip saddr \(subnet) oifname != \(Self.quoted(network.bridge)) \(action)"
        }
        // Nothing coming from a Docker bridge is DNATed (Docker's `-i br -j RETURN` per network).
        let fromBridges =
            networks.isEmpty
            ? "iifname != \(bridge)"
            : "iifname != { \(([self.bridge] + networks.map(\.bridge)).map(Self.quoted).joined(separator: ", ")) }"

        // Docker's DNAT rules: only towards local addresses (addrtype LOCAL),
        // not for packets coming from the bridge (with Docker's userland proxy
        // running, containers reach published ports through it), and for
        // host-originated traffic except to 127.0.0.0/8.
        func dnatRules(match: String) -> String {
            """
                    \(match) fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published_addr
                    \(match) fib daddr type local dnat ip to meta l4proto . th dport map @published_any
            """
        }
        return """
                map published_any {
                    type inet_proto . inet_service : ipv4_addr . inet_service
            \(Self.elements(anyAddress))
                }
                map published_addr {
                    type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
            \(Self.elements(specificAddress))
                }
                chain prerouting {
                    type nat hook prerouting priority dstnat; policy accept;
            \(dnatRules(match: fromBridges))
                }
                chain output {
                    type nat hook output priority -100; policy accept;
            \(dnatRules(match: "ip daddr != 127.0.0.0/8"))
                }
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
            \(masquerade)
                }
            """
    }

    /// `nft -f` input that removes the table (and succeeds when it is absent).
    public static func renderDelete() -> String {
        """
        table ip \(tableName)
        delete table ip \(tableName)

        """
    }

    private static func elements(_ items: [String]) -> String {
        items.isEmpty ? "" : "        elements = { \(items.joined(separator: ", ")) }"
    }

    /// Interface names go into nft's syntax quoted; names are kernel interface
    /// names (no quotes or backslashes possible), quoting keeps odd ones literal.
    private static func quoted(_ name: String) -> String { "\"\(name)\"" }
}
