// SPDX-License-Identifier: Apache-2.0
//
// The nftables fallback's rule set: two tables owned by bpfnet, written in one
// `nft -f` transaction.
//
// - `table bridge bpfnet` does what the port program does (rows 1-7 of
//   docs/policy.md, docs/verdicts.md "Port program"): a chain on the bridge's prerouting
//   hook sees every frame a container sends, before the bridge decides to
//   forward it or hand it to the host, exactly where tc ingress on the port
//   sees it. Bridge-family rules need no br_netfilter and no conntrack: like
//   the eBPF program they are stateless, and they see fragments as sent.
// - `table ip bpfnet` is the eBPF backend's NAT table (NATRuleset, the same
//   text) plus a filter chain at priority mangle on prerouting: after
//   conntrack (so `ct direction reply` works and fragments are reassembled)
//   and before DNAT (so a published port is matched on the host address and
//   host port, as the ext program does on XDP). Rows 8-11.
// - `table ip6 bpfnet` holds the ext program's IPv6 rule: on an external
//   interface with an allow-list (IPv4 prefixes only, so no IPv6 source is
//   ever admitted), IPv6 TCP/UDP to a port published on all addresses
//   (docker-proxy listens on [::]:HOSTPORT for those) is dropped.
//
// Every lookup is a set or map keyed on the full tuple, so the cost per
// packet does not grow with links, published ports or allowed sources.
// docs/fallback.md has the reasoning and an example.

public struct NFTablesRuleset: Sendable, Equatable {
    /// The bridge-family table (and the nat table's name, NATRuleset.tableName).
    public static let tableName = NATRuleset.tableName
    /// Start of the bridge table's comment; marks it as bpfnet's.
    public static let ownerComment = "owned by bpfnet (nftables backend)"

    /// Counters of the bridge table (the port program's reasons).
    public static let portReasons: [Reason] = [
        .nonIP, .host, .iccAllowed, .link, .linkReverse, .linkFragment, .outside, .ipv6, .icc, .malformed,
        .spoofed, .unknownPort,
    ]
    /// Counters of the ip table's filter chains (the ext program's reasons).
    public static let extReasons: [Reason] = [.published, .forwardAccept, .reply, .local, .source, .forward]

    /// Counters of the ip6 table (counted as the ext program's reasons in `status`).
    public static let ext6Reasons: [Reason] = [.source]

    /// Program names in `programCounters`.
    public static let portProgram = "nft-port"
    public static let extProgram = "nft-ext"
    /// The ip6 table's counters, for carrying them over; `status` adds them to `extProgram`'s.
    public static let ext6Program = "nft-ext6"

    public struct CounterValue: Sendable, Equatable, Hashable {
        public var packets: UInt64
        public var bytes: UInt64
        public init(packets: UInt64, bytes: UInt64) {
            self.packets = packets
            self.bytes = bytes
        }
    }

    public var policy: NetfilterPolicy
    /// Counter values to start from (program name → reason name → value), so
    /// replacing the tables does not reset what `status` shows.
    public var counters: [String: [String: CounterValue]]
    /// The bridge's MAC (zero when unknown): a frame from an unknown port
    /// addressed to it and routed at a container is told apart by it, since
    /// the bridge-family hook sees the ports of every bridge of the host.
    public var bridgeMAC: MACAddress

    public init(
        policy: NetfilterPolicy, counters: [String: [String: CounterValue]] = [:], bridgeMAC: MACAddress = .zero
    ) {
        self.policy = policy
        self.counters = counters
        self.bridgeMAC = bridgeMAC
    }

    /// The whole transaction: the three tables replaced at once. Each table
    /// is declared, deleted and declared again, which works whether or not it
    /// exists; nft commits the file all or nothing.
    public func render() -> String {
        let name = Self.tableName
        return """
            table bridge \(name)
            delete table bridge \(name)
            table ip \(name)
            delete table ip \(name)
            table ip6 \(name)
            delete table ip6 \(name)
            \(renderBridgeTable())
            \(renderIPTable())
            \(renderIP6Table())
            """
    }

    /// `nft -f` input that removes the three tables (and succeeds when they are absent).
    public static func renderDelete() -> String {
        renderDeleteFilterTables() + """
            table ip \(tableName)
            delete table ip \(tableName)

            """
    }

    /// `nft -f` input that removes the bridge and ip6 tables: what the eBPF
    /// backend must remove when it takes over (its NAT table replaces the ip
    /// table, and its ext program does what the ip6 table did).
    public static func renderDeleteFilterTables() -> String {
        """
        table bridge \(tableName)
        delete table bridge \(tableName)
        table ip6 \(tableName)
        delete table ip6 \(tableName)

        """
    }

    // MARK: bridge table (rows 1-7)

    func renderBridgeTable() -> String {
        let p = policy
        var lines: [String] = []
        func add(_ text: String) { lines.append(text) }

        add("table bridge \(Self.tableName) {")
        add("    comment \"\(Self.ownerComment): container policy on \(p.bridge); do not edit, run bpfnet unload\"")
        for reason in Self.portReasons { add(counterDeclaration(Self.portProgram, reason)) }
        add("")
        add(settingsSet())
        // Container ports (the bridge ports the port program would run on),
        // with the container's name as the element comment for `status`.
        add(
            declaration(
                "map", "ports", type: "ifname : ipv4_addr",
                elements: p.containers.map {
                    "\(quoted($0.port)) comment \(quoted($0.name)) : \($0.ip)"
                }))
        add(
            declaration(
                "map", "macs", type: "ether_addr : ipv4_addr", elements: p.containers.map { "\($0.mac) : \($0.ip)" }))
        // Who each known port's container is (the port program's bn_ports):
        // its MAC and its address, checked on every frame from the port.
        add(
            declaration(
                "set", "port_macs", type: "ifname . ether_addr",
                elements: p.containers.map { "\(quoted($0.port)) . \($0.mac)" }))
        add(
            declaration(
                "set", "port_addrs", type: "ifname . ipv4_addr",
                elements: p.containers.map { "\(quoted($0.port)) . \($0.ip)" }))
        // "Inside the bridge" (docs/verdicts.md): a container, the bridge
        // subnet, multicast, limited broadcast.
        var inside = p.containersOutsideSubnet.map(\.description)
        if let subnet = p.bridgeSubnet { inside.insert(subnet.description, at: 0) }
        inside += ["224.0.0.0/4", "255.255.255.255"]
        add(declaration("set", "inside", type: "ipv4_addr", flags: "interval", autoMerge: true, elements: inside))
        let tuple = "ipv4_addr . ipv4_addr . inet_proto . inet_service"
        add(declaration("set", "link_forward", type: tuple, elements: linkElements(.forward)))
        add(declaration("set", "link_reverse", type: tuple, elements: linkElements(.reverse)))
        add(declaration("set", "link_pairs", type: "ipv4_addr . ipv4_addr . inet_proto", elements: linkElements(.pair)))

        add("    chain port {")
        add("        type filter hook prerouting priority filter; policy accept;")
        // A port no container of the policy owns (a veth added by hand, a
        // container started since): under icc=false it reaches the host and
        // the outside, no container.
        add("        iifname != @ports " + (p.icc ? "return" : "goto port_unknown"))
        // A known port's frames must be its container's, icc or not.
        add("        iifname . ether saddr != @port_macs \(count(.spoofed)) drop")
        add("        meta protocol ip iifname . ip saddr != @port_addrs \(count(.spoofed)) drop")
        add("        meta protocol arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 jump port_arp")
        add("        meta protocol ip goto port_ipv4")
        add("        meta protocol ip6 goto port_ipv6")
        // A frame that still carries a VLAN tag after the kernel took the
        // outer one (QinQ) hides its network header from nft; between
        // containers with icc off it is dropped rather than waved through.
        if !p.icc {
            add("        meta protocol { 8021q, 8021ad } ether daddr @macs \(count(.icc)) drop")
        }
        add("        \(count(.nonIP)) accept")
        add("    }")

        add("    chain port_arp {")
        add("        iifname . arp saddr ether != @port_macs \(count(.spoofed)) drop")
        // 0.0.0.0: an RFC 5227 probe.
        add("        arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @port_addrs \(count(.spoofed)) drop")
        add("    }")

        if !p.icc {
            add("    chain port_unknown {")
            add("        meta protocol { ip, ip6, 8021q, 8021ad } ether daddr @macs \(count(.unknownPort)) drop")
            if bridgeMAC != .zero {
                let host = p.bridgeAddress.map { "ip daddr != \($0.address) " } ?? ""
                add(
                    "        ether daddr \(bridgeMAC) meta protocol ip \(host)ip daddr @inside \(count(.unknownPort)) drop"
                )
            }
            add("    }")
        }

        add("    chain port_ipv6 {")
        // Multicast frames carry neighbour discovery; a unicast destination
        // address in one is flooded to every port and accepted there, so it
        // is judged between containers (as the port program does).
        add("        ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 ip6 daddr ff00::/8 \(count(.ipv6)) accept")
        add(
            "        ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 "
                + (p.icc ? "\(count(.iccAllowed)) accept" : "\(count(.icc)) drop"))
        add("        ether daddr @macs " + (p.icc ? "\(count(.iccAllowed)) accept" : "\(count(.icc)) drop"))
        add("        \(count(.ipv6)) accept")
        add("    }")

        add("    chain port_ipv4 {")
        add("        ip version != 4 \(count(.malformed)) drop")
        add("        ip hdrlength < 5 \(count(.malformed)) drop")
        if let address = p.bridgeAddress?.address {
            add("        ether daddr != @macs ip daddr \(address) \(count(.host)) accept")
        }
        // A frame to a container's MAC goes to that container whatever its
        // IP header says (a poisoned neighbour entry): judged between containers.
        add("        ether daddr != @macs ip daddr != @inside \(count(.outside)) accept")
        if p.icc {
            add("        \(count(.iccAllowed)) accept")
        } else {
            add("        ip frag-off & 0x1fff != 0 goto port_fragment")
            add("        ip saddr . ip daddr . meta l4proto . th dport @link_forward \(count(.link)) accept")
            add("        ip saddr . ip daddr . meta l4proto . th sport @link_reverse \(count(.linkReverse)) accept")
            add("        \(count(.icc)) drop")
        }
        add("    }")

        if !p.icc {
            // A non-first fragment has no ports: the pair decides (the first
            // fragment, which has them, decided whether the datagram can be
            // reassembled at all).
            add("    chain port_fragment {")
            add("        ip saddr . ip daddr . ip protocol @link_pairs \(count(.linkFragment)) accept")
            add("        \(count(.icc)) drop")
            add("    }")
        }
        add("}")
        return lines.joined(separator: "\n") + "\n"
    }

    private func settingsSet() -> String {
        let notes = policy.unusedBackends.sorted { $0.key < $1.key }.enumerated().map { index, entry in
            "\(index + 1) comment \(quoted(NetfilterName.commentText("\(entry.key): \(entry.value)", limit: 127)))"
        }
        var lines = [
            "    set settings {", "        type inet_service",
            "        comment \(quoted(NetfilterName.commentText(policy.settingsText, limit: 127)))",
        ]
        if !notes.isEmpty { lines.append("        elements = { \(notes.joined(separator: ", ")) }") }
        lines.append("    }")
        return lines.joined(separator: "\n")
    }

    private func linkElements(_ direction: LinkDirection) -> [String] {
        policy.links.filter { $0.direction == direction }.map { rule in
            let proto = TransportProtocol(number: rule.proto)?.rawValue ?? String(rule.proto)
            return direction == .pair
                ? "\(rule.source) . \(rule.destination) . \(proto)"
                : "\(rule.source) . \(rule.destination) . \(proto) . \(rule.port)"
        }
    }

    // MARK: ip table (NAT + rows 8-11)

    func renderIPTable() -> String {
        let p = policy
        let nat = p.natRuleset
        var lines: [String] = []
        func add(_ text: String) { lines.append(text) }

        add("table ip \(Self.tableName) {")
        add("    comment \"\(nat.comment)\"")
        add(nat.renderBody())
        for reason in Self.extReasons { add(counterDeclaration(Self.extProgram, reason)) }
        add(declaration("set", "ext_ifs", type: "ifname", elements: p.extInterfaces.map { quoted($0.name) }))
        add(
            declaration(
                "set", "allowlisted", type: "ifname",
                elements: p.extInterfaces.filter(\.hasAllowList).map { quoted($0.name) }))
        add(
            declaration(
                "set", "allow_src", type: "ifname . ipv4_addr", flags: "interval", autoMerge: false,
                elements: p.extInterfaces.flatMap { ext in
                    Self.withoutCovered(ext.allowSources).map { "\(quoted(ext.name)) . \($0)" }
                }))
        var direct = p.containersOutsideSubnet.map(\.description)
        if let subnet = p.bridgeSubnet { direct.insert(subnet.description, at: 0) }
        add(declaration("set", "containers", type: "ipv4_addr", flags: "interval", autoMerge: true, elements: direct))

        // Before DNAT (dstnat is -100), after conntrack (-200): the ext
        // program's view plus conntrack.
        add("    chain ext {")
        add("        type filter hook prerouting priority mangle; policy accept;")
        add("        iifname != @ext_ifs return")
        let notBridge = p.bridgeAddress.map { "ip daddr != \($0.address) " } ?? ""
        add("        \(notBridge)ip daddr @containers goto ext_direct")
        add(
            "        meta l4proto { tcp, udp, sctp } ip daddr . meta l4proto . th dport @published_addr goto ext_published"
        )
        add("        meta l4proto { tcp, udp, sctp } meta l4proto . th dport @published_any goto ext_published")
        add("        \(count(.local, program: Self.extProgram)) accept")
        add("    }")

        // Row 9: routed straight at a container address.
        // Every other interface, also ones that appear later: Docker's
        // FORWARD rules for what is routed to the bridge (the eBPF backend's
        // guard, GuardRuleset). Tracked connections, DNATed packets, what came
        // from the bridge (judged by the bridge table) and what came in on a
        // listed interface (judged by `ext`) pass; the rest follows the
        // forward policy.
        if !p.forwardAccept {
            add("    chain forward {")
            add("        type filter hook forward priority filter - 1; policy accept;")
            add("        oifname != \(quoted(p.bridge)) accept")
            add("        iifname \(quoted(p.bridge)) accept")
            add("        iifname @ext_ifs accept")
            add("        ct state established,related accept")
            add("        ct status dnat accept")
            add("        \(count(.forward, program: Self.extProgram)) drop")
            add("    }")
        }

        add("    chain ext_direct {")
        if p.forwardAccept {
            add("        iifname @allowlisted iifname . ip saddr != @allow_src goto ext_not_admitted")
            add("        \(count(.forwardAccept, program: Self.extProgram)) accept")
        } else {
            add(
                "        meta l4proto { tcp, udp } ct direction reply \(count(.reply, program: Self.extProgram)) accept"
            )
            add("        \(count(.forward, program: Self.extProgram)) drop")
        }
        add("    }")

        // Row 8: a published host port; the allow-list of the ingress interface decides.
        add("    chain ext_published {")
        add("        iifname @allowlisted iifname . ip saddr != @allow_src goto ext_not_admitted")
        add("        \(count(.published, program: Self.extProgram)) accept")
        add("    }")

        // Row 10: what rows 8/9 would drop passes when conntrack knows it as
        // the reply of a connection opened from this side (TCP/UDP, as the
        // ext program's bpf_xdp_ct_lookup).
        add("    chain ext_not_admitted {")
        add("        meta l4proto { tcp, udp } ct direction reply \(count(.reply, program: Self.extProgram)) accept")
        add("        \(count(.source, program: Self.extProgram)) drop")
        add("    }")
        add("}")
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: ip6 table (the ext program's IPv6 rule)

    /// The ext program's IPv6 branch (docs/verdicts.md, "Ext program"): the
    /// default bridge is IPv4-only, so IPv6 never reaches a container, but
    /// docker-proxy listens on `[::]:HOSTPORT` for every port published on all
    /// addresses. An allow-list holds IPv4 prefixes only: on an interface with
    /// one, no IPv6 source is admitted to such a port. The packet is delivered
    /// locally, so the rule sits on prerouting (no DNAT in IPv6 to come
    /// before). `meta l4proto` and `th dport` are found behind any extension
    /// headers (the kernel's ipv6_find_hdr); a non-first fragment has no
    /// transport header for `th dport` and passes, as in the ext program (the
    /// first one, which carries the port, is dropped, so the datagram is never
    /// reassembled). Ports published on one IPv4 address are not reachable
    /// over IPv6 and are not in the set.
    func renderIP6Table() -> String {
        let p = policy
        var lines: [String] = []
        func add(_ text: String) { lines.append(text) }
        add("table ip6 \(Self.tableName) {")
        add(
            "    comment \"\(Self.ownerComment): IPv6 to ports published on all addresses (bridge \(p.bridge)); "
                + "do not edit, run bpfnet unload\"")
        for reason in Self.ext6Reasons { add(counterDeclaration(Self.ext6Program, reason)) }
        add(
            declaration(
                "set", "allowlisted", type: "ifname",
                elements: p.extInterfaces.filter(\.hasAllowList).map { quoted($0.name) }))
        let published = p.published.filter { $0.key.hostAddress == .any && [.tcp, .udp].contains($0.proto) }.map {
            "\($0.proto.rawValue) . \($0.key.hostPort)"
        }
        add(declaration("set", "published_any", type: "inet_proto . inet_service", elements: published))
        add("    chain ext {")
        add("        type filter hook prerouting priority mangle; policy accept;")
        add(
            "        iifname @allowlisted meta l4proto { tcp, udp } meta l4proto . th dport @published_any "
                + "\(count(.source, program: Self.ext6Program)) drop")
        add("    }")
        add("}")
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: helpers

    /// The prefixes not inside another one of the list: a concatenated
    /// interval set cannot hold overlapping elements (and the longest-prefix
    /// match of the eBPF map gives the same answer either way).
    static func withoutCovered(_ prefixes: [IPv4CIDR]) -> [IPv4CIDR] {
        let unique = Array(Set(prefixes))
        return unique.filter { prefix in
            !unique.contains { other in
                other != prefix && other.prefixLength <= prefix.prefixLength && other.contains(prefix.address)
            }
        }.sorted { ($0.address, $0.prefixLength) < ($1.address, $1.prefixLength) }
    }

    private func count(_ reason: Reason, program: String = NFTablesRuleset.portProgram) -> String {
        "counter name \(quoted(reason.name))"
    }

    private func counterDeclaration(_ program: String, _ reason: Reason) -> String {
        let value = counters[program]?[reason.name] ?? CounterValue(packets: 0, bytes: 0)
        return "    counter \(reason.name) { packets \(value.packets) bytes \(value.bytes) }"
    }

    private func declaration(
        _ kind: String, _ name: String, type: String, flags: String? = nil, autoMerge: Bool = false,
        elements: [String]
    ) -> String {
        var lines = ["    \(kind) \(name) {", "        type \(type)"]
        if let flags { lines.append("        flags \(flags)") }
        if autoMerge { lines.append("        auto-merge") }
        if !elements.isEmpty {
            lines.append("        elements = {")
            // Several per line keeps large sets readable and the file small.
            var index = 0
            while index < elements.count {
                let chunk = elements[index..<min(index + 4, elements.count)]
                index += chunk.count
                lines.append("            " + chunk.joined(separator: ", ") + (index < elements.count ? "," : ""))
            }
            lines.append("        }")
        }
        lines.append("    }")
        return lines.joined(separator: "\n")
    }

    private func quoted(_ text: String) -> String { "\"\(text)\"" }
}
