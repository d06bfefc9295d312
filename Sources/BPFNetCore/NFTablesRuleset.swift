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
//   host port, as the ext program does on XDP). Rows 8-11. With
//   user-defined networks, its forward chain isolates the Docker bridges
//   (one `iifname . oifname` lookup) and keeps internal ones to themselves;
//   the bridge table polices every bridge's ports, each by its network's icc.
// - `table ip6 bpfnet` holds the ext program's IPv6 rule: on an external
//   interface with an allow-list, IPv6 TCP/UDP to a port published on all
//   addresses (docker-proxy listens on [::]:HOSTPORT for those) is dropped
//   unless its source is in the list's IPv6 prefixes (`allow_src6`).
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

        let networks = !p.networks.isEmpty
        // Known ports whose network has icc on, when some network has it off.
        let mixedICC = p.anyICCOff && (p.icc || p.networks.contains(where: \.icc))
        let internalPorts = p.containers.filter { p.network(onBridge: $0.bridge)?.internal ?? false }.map(\.port)
        add("table bridge \(Self.tableName) {")
        add(
            "    comment \"\(Self.ownerComment): container policy on \(p.bridge)"
                + (networks ? " and \(p.networks.count) network\(p.networks.count == 1 ? "" : "s")" : "")
                + "; do not edit, run bpfnet unload\"")
        let internalUnknown = p.networks.filter { $0.internal && !$0.unknownPorts.isEmpty }
        for reason in Self.portReasons + (internalPorts.isEmpty && internalUnknown.isEmpty ? [] : [.internal])
            + (p.hasIPv6 ? [.network] : [])
        {
            add(counterDeclaration(Self.portProgram, reason))
        }
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
        // Its IPv6 address (dual stack); any other global IPv6 source is not its own.
        add(
            declaration(
                "set", "port_addrs6", type: "ifname . ipv6_addr",
                elements: p.containers.compactMap { container in
                    container.ipv6.map { "\(quoted(container.port)) . \($0)" }
                }))
        // The same pairs for a neighbour advertisement's target (the 128 bits
        // at offset 8 of the ICMPv6 header; nft names no such field).
        add(
            declaration(
                "set", "port_nd_targets", typeof: "iifname . @th,64,128",
                elements: p.containers.compactMap { container in
                    container.ipv6.map { "\(quoted(container.port)) . \(Self.rawHex($0))" }
                }))
        if p.hasIPv6 {
            // Dual stack: the networks' IPv6 gateways (host addresses) and
            // subnets, and each known port's own subnet.
            add(declaration("set", "gateways6", type: "ipv6_addr", elements: p.ipv6Networks.map(\.address.description)))
            add(
                declaration(
                    "set", "subnets6", type: "ipv6_addr", flags: "interval", autoMerge: true,
                    elements: p.ipv6Networks.map(\.network.description)))
            add(
                declaration(
                    "set", "port_nets6", type: "ifname . ipv6_addr", flags: "interval", autoMerge: false,
                    elements: p.containers.compactMap { container in
                        p.ipv6(ofBridge: container.bridge).map { "\(quoted(container.port)) . \($0.network)" }
                    }))
        }
        // "Inside the bridge" (docs/verdicts.md): a container, the bridge
        // subnet, multicast, limited broadcast.
        var inside = p.subnets.map(\.description) + p.containersOutsideSubnet.map(\.description)
        inside += ["224.0.0.0/4", "255.255.255.255"]
        add(declaration("set", "inside", type: "ipv4_addr", flags: "interval", autoMerge: true, elements: inside))
        let tuple = "ipv4_addr . ipv4_addr . inet_proto . inet_service"
        add(declaration("set", "link_forward", type: tuple, elements: linkElements(.forward)))
        add(declaration("set", "link_reverse", type: tuple, elements: linkElements(.reverse)))
        add(declaration("set", "link_pairs", type: "ipv4_addr . ipv4_addr . inet_proto", elements: linkElements(.pair)))
        if networks { add(networkDeclarations(mixedICC: mixedICC, internalPorts: internalPorts)) }

        add("    chain port {")
        add("        type filter hook prerouting priority filter; policy accept;")
        // A port no container of the policy owns (a veth added by hand, a
        // container started since): under icc=false it reaches the host and
        // the outside, no container. With networks, `unknown_ports` gives each
        // unknown port seen at the apply its network's icc; a port that joined
        // a bridge since (which one is not known here: no `meta ibrname`) is
        // held as the eBPF backend's guard holds a port without the program,
        // from the containers whenever any network has icc off.
        if networks && (!p.unknownPorts.isEmpty || p.networks.contains(where: { !$0.unknownPorts.isEmpty })) {
            add("        iifname != @ports iifname vmap @unknown_ports")
        }
        add("        iifname != @ports " + (!p.anyICCOff ? "return" : "goto port_unknown"))
        // A known port's frames must be its container's, icc or not.
        add("        iifname . ether saddr != @port_macs \(count(.spoofed)) drop")
        add("        meta protocol ip iifname . ip saddr != @port_addrs \(count(.spoofed)) drop")
        // :: (duplicate address detection) and link-local sources are anyone's.
        add(
            "        meta protocol ip6 ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @port_addrs6 "
                + "\(count(.spoofed)) drop")
        // Neighbour discovery (hop limit 255, RFC 4861; the port program's
        // port_nd_claim): a container is no router (RA, redirect), and
        // advertises only its own or link-local addresses. ND is never
        // fragmented (RFC 6980): a first fragment of it is dropped, so that
        // no part of a claim hides in a later fragment.
        add(
            "        meta protocol ip6 ip6 hoplimit 255 exthdr frag exists icmpv6 type "
                + "{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } "
                + "\(count(.spoofed)) drop")
        add(
            "        meta protocol ip6 ip6 hoplimit 255 icmpv6 type { nd-router-advert, nd-redirect } "
                + "\(count(.spoofed)) drop")
        add(
            "        meta protocol ip6 ip6 hoplimit 255 icmpv6 type nd-neighbor-advert @th,64,16 & 0xffc0 != 0xfe80 "
                + "iifname . @th,64,128 != @port_nd_targets \(count(.spoofed)) drop")
        add("        meta protocol arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 jump port_arp")
        add("        meta protocol ip goto port_ipv4")
        add("        meta protocol ip6 goto port_ipv6")
        // A frame that still carries a VLAN tag after the kernel took the
        // outer one (QinQ) hides its network header from nft; between
        // containers with icc off it is dropped rather than waved through.
        if p.anyICCOff {
            let iccOff = mixedICC ? "iifname != @icc_ports " : ""
            add("        \(iccOff)meta protocol { 8021q, 8021ad } ether daddr @macs \(count(.icc)) drop")
        }
        add("        \(count(.nonIP)) accept")
        add("    }")

        add("    chain port_arp {")
        add("        iifname . arp saddr ether != @port_macs \(count(.spoofed)) drop")
        // 0.0.0.0: an RFC 5227 probe.
        add("        arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @port_addrs \(count(.spoofed)) drop")
        add("    }")

        if p.anyICCOff {
            add("    chain port_unknown {")
            add("        meta protocol { ip, ip6, 8021q, 8021ad } ether daddr @macs \(count(.unknownPort)) drop")
            if networks {
                // Routed through any bridge's MAC to a container of any network.
                add(
                    "        ether daddr @bridge_macs meta protocol ip ip daddr != @gateways ip daddr @inside "
                        + "\(count(.unknownPort)) drop")
            } else if bridgeMAC != .zero {
                let host = p.bridgeAddress.map { "ip daddr != \($0.address) " } ?? ""
                add(
                    "        ether daddr \(bridgeMAC) meta protocol ip \(host)ip daddr @inside \(count(.unknownPort)) drop"
                )
            }
            add("    }")
        }
        // An unknown port of an internal network is kept to the Docker
        // subnets too, then follows its network's icc.
        for icc in [true, false] where internalUnknown.contains(where: { $0.icc == icc }) {
            add("    chain \(icc ? "port_unknown_internal" : "port_unknown_internal_closed") {")
            add("        meta protocol ip ether daddr != @macs ip daddr != @inside \(count(.internal)) drop")
            add("        " + (icc ? "accept" : "goto port_unknown"))
            add("    }")
        }

        // IPv6 as the port program's port_destination6: multicast frames carry
        // neighbour discovery; a unicast destination address in one is
        // flooded to every port and accepted there, so it is judged between
        // containers, as a frame to a container's MAC, to a gateway at a
        // container's MAC or to an address of the port's own IPv6 subnet.
        // Another network's subnet is isolated; link-local addresses are the
        // host's; an internal network reaches nothing else.
        add("    chain port_ipv6 {")
        let multicast = "ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00"
        add("        \(multicast) ip6 daddr ff00::/8 \(count(.ipv6)) accept")
        add("        \(multicast) goto port_ipv6_between")
        if p.hasIPv6 {
            add("        ip6 daddr @gateways6 ether daddr != @macs \(count(.host)) accept")
            add("        ip6 daddr @gateways6 goto port_ipv6_between")
            add("        ip6 daddr @subnets6 iifname . ip6 daddr != @port_nets6 \(count(.network)) drop")
            add("        ip6 daddr @subnets6 goto port_ipv6_between")
        }
        add("        ether daddr @macs goto port_ipv6_between")
        add("        ip6 daddr fe80::/10 \(count(.ipv6)) accept")
        if !internalPorts.isEmpty { add("        iifname @internal_ports \(count(.internal)) drop") }
        add("        \(count(.ipv6)) accept")
        add("    }")
        // Between containers over IPv6: icc alone (links are IPv4 rules).
        add("    chain port_ipv6_between {")
        if mixedICC { add("        iifname @icc_ports \(count(.iccAllowed)) accept") }
        add("        " + (!p.anyICCOff ? "\(count(.iccAllowed)) accept" : "\(count(.icc)) drop"))
        add("    }")

        add("    chain port_ipv4 {")
        add("        ip version != 4 \(count(.malformed)) drop")
        add("        ip hdrlength < 5 \(count(.malformed)) drop")
        if networks {
            // Every bridge's address is the host's (another network's gateway too).
            add("        ether daddr != @macs ip daddr @gateways \(count(.host)) accept")
        } else if let address = p.bridgeAddress?.address {
            add("        ether daddr != @macs ip daddr \(address) \(count(.host)) accept")
        }
        if !internalPorts.isEmpty {
            // An internal network reaches nothing outside the Docker subnets
            // but the bridge addresses (other subnets: isolated in table ip).
            add("        iifname @internal_ports ether daddr != @macs ip daddr != @inside \(count(.internal)) drop")
        }
        // A frame to a container's MAC goes to that container whatever its
        // IP header says (a poisoned neighbour entry): judged between containers.
        add("        ether daddr != @macs ip daddr != @inside \(count(.outside)) accept")
        if !p.anyICCOff {
            add("        \(count(.iccAllowed)) accept")
        } else {
            if mixedICC { add("        iifname @icc_ports \(count(.iccAllowed)) accept") }
            add("        ip frag-off & 0x1fff != 0 goto port_fragment")
            add("        ip saddr . ip daddr . meta l4proto . th dport @link_forward \(count(.link)) accept")
            add("        ip saddr . ip daddr . meta l4proto . th sport @link_reverse \(count(.linkReverse)) accept")
            add("        \(count(.icc)) drop")
        }
        add("    }")

        if p.anyICCOff {
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

    /// The sets that tell the networks apart: which ports follow icc on, the
    /// bridges' addresses and MACs, unknown ports by network, internal ports.
    private func networkDeclarations(mixedICC: Bool, internalPorts: [String]) -> String {
        let p = policy
        var lines: [String] = []
        lines.append(declaration("set", "gateways", type: "ipv4_addr", elements: p.gateways.map(\.description)))
        let macs = ([bridgeMAC] + p.networks.map(\.mac)).filter { $0 != .zero }
        lines.append(declaration("set", "bridge_macs", type: "ether_addr", elements: macs.map(\.description)))
        if mixedICC {
            let ports = p.containers.filter { p.icc(ofBridge: $0.bridge) }.map { quoted($0.port) }
            lines.append(declaration("set", "icc_ports", type: "ifname", elements: ports))
        }
        let unknown =
            p.unknownPorts.map { "\(quoted($0)) : " + (p.icc ? "accept" : "goto port_unknown") }
            + p.networks.flatMap { network in
                network.unknownPorts.map { port in
                    let verdict =
                        network.internal
                        ? (network.icc ? "goto port_unknown_internal" : "goto port_unknown_internal_closed")
                        : (network.icc ? "accept" : "goto port_unknown")
                    return "\(quoted(port)) : \(verdict)"
                }
            }
        if !unknown.isEmpty {
            lines.append(declaration("map", "unknown_ports", type: "ifname : verdict", elements: unknown))
        }
        if !internalPorts.isEmpty {
            lines.append(declaration("set", "internal_ports", type: "ifname", elements: internalPorts.map(quoted)))
        }
        return lines.joined(separator: "\n")
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

    // MARK: helpers

    func count(_ reason: Reason, program: String = NFTablesRuleset.portProgram) -> String {
        "counter name \(quoted(reason.name))"
    }

    func counterDeclaration(_ program: String, _ reason: Reason) -> String {
        let value = counters[program]?[reason.name] ?? CounterValue(packets: 0, bytes: 0)
        return "    counter \(reason.name) { packets \(value.packets) bytes \(value.bytes) }"
    }

    /// A set or map; `typeof` instead of `type` keys it by expressions (a raw payload).
    func declaration(
        _ kind: String, _ name: String, type: String? = nil, typeof: String? = nil, flags: String? = nil,
        autoMerge: Bool = false, elements: [String]
    ) -> String {
        var lines = ["    \(kind) \(name) {", type.map { "        type \($0)" } ?? "        typeof \(typeof ?? "")"]
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

    func quoted(_ text: String) -> String { "\"\(text)\"" }

    /// An IPv6 address as the 128-bit integer a raw payload compares with.
    static func rawHex(_ address: IPv6Address) -> String {
        func padded(_ value: UInt64) -> String {
            let digits = String(value, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        return "0x" + padded(address.high) + padded(address.low)
    }
}
