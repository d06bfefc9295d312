// SPDX-License-Identifier: Apache-2.0
//
// The nftables fallback's `table ip bpfnet` (the NAT table, rows 8-11 and
// the forward chain that isolates the Docker networks) and `table ip6 bpfnet`
// (the ext program's IPv6 rule). NFTablesRuleset.swift has the bridge table.

extension NFTablesRuleset {
    // MARK: ip table (NAT + rows 8-11)

    func renderIPTable() -> String {
        let p = policy
        let nat = p.natRuleset
        var lines: [String] = []
        func add(_ text: String) { lines.append(text) }

        add("table ip \(Self.tableName) {")
        add("    comment \"\(nat.comment)\"")
        add(nat.renderBody())
        let networks = !p.networks.isEmpty
        let internalBridges = p.internalBridges
        let networkReasons: [Reason] = networks ? [.network] + (internalBridges.isEmpty ? [] : [.internal]) : []
        let peers = !p.peers.isEmpty
        let peerReasons: [Reason] = peers ? [.peer, .peerSpoofed, .icc, .internal] : []
        var declared: Set<Reason> = []
        for reason in Self.extReasons + networkReasons + peerReasons where declared.insert(reason).inserted {
            add(counterDeclaration(Self.extProgram, reason))
        }
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
        let direct = p.subnets.map(\.description) + p.containersOutsideSubnet.map(\.description)
        add(declaration("set", "containers", type: "ipv4_addr", flags: "interval", autoMerge: true, elements: direct))
        if networks {
            // Docker's isolation: nothing is routed from one Docker bridge to another.
            let bridges = p.bridges.map(quoted)
            let pairs = bridges.flatMap { from in bridges.filter { $0 != from }.map { "\(from) . \($0)" } }
            add(declaration("set", "gateways", type: "ipv4_addr", elements: p.gateways.map(\.description)))
            add(declaration("set", "bridges", type: "ifname", elements: bridges))
            add(declaration("set", "isolated", type: "ifname . ifname", elements: pairs))
            if !internalBridges.isEmpty {
                add(declaration("set", "internal_bridges", type: "ifname", elements: internalBridges.map(quoted)))
            }
        }

        if peers {
            // Each subnet commented with its peer's name and address, for `status`.
            add(
                declaration(
                    "set", "peer_subnets", type: "ipv4_addr", flags: "interval",
                    elements: p.peers.flatMap { peer in
                        peer.subnets.map { "\($0) comment \(quoted("\(peer.name) \(peer.address)"))" }
                    }))
            // Each peer subnet with the interface its peer is routed through.
            add(
                declaration(
                    "set", "peer_ways", type: "ifname . ipv4_addr", flags: "interval", autoMerge: false,
                    elements: p.peers.flatMap { peer in
                        peer.interface.map { interface in peer.subnets.map { "\(quoted(interface)) . \($0)" } } ?? []
                    }))
            add(
                declaration(
                    "set", "peer_internal", type: "ipv4_addr", flags: "interval", autoMerge: true,
                    elements: p.peerInternalDestinations.map(\.description)))
            add(
                declaration(
                    "set", "peer_icc_off", type: "ipv4_addr", flags: "interval", autoMerge: true,
                    elements: p.peerICCOffDestinations.map(\.description)))
        }

        // Before DNAT (dstnat is -100), after conntrack (-200): the ext
        // program's view plus conntrack.
        add("    chain ext {")
        add("        type filter hook prerouting priority mangle; policy accept;")
        add("        iifname != @ext_ifs return")
        let notBridge = networks ? "ip daddr != @gateways " : p.bridgeAddress.map { "ip daddr != \($0.address) " } ?? ""
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
        // Between Docker networks, and in or out of an internal one (Docker's
        // DOCKER-ISOLATION chains), first: one lookup however many networks.
        lines += forwardChain(program: Self.extProgram, dnatAccepted: true)

        add("    chain ext_direct {")
        // Rows 12, 13: a peer's container, before the allow-list and the forward policy.
        if peers { add("        ip saddr @peer_subnets goto ext_peer") }
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

        if peers {
            // Row 13: not the way its peer is routed (never taken for a reply).
            // Row 12: the destination network's internal flag and icc
            // (peerPolicy icc), a TCP/UDP reply conntrack knows excepted.
            add("    chain ext_peer {")
            add("        iifname . ip saddr != @peer_ways \(count(.peerSpoofed, program: Self.extProgram)) drop")
            add("        ip daddr @peer_internal \(count(.internal, program: Self.extProgram)) drop")
            add("        ip daddr @peer_icc_off goto ext_peer_icc")
            add("        \(count(.peer, program: Self.extProgram)) accept")
            add("    }")
            add("    chain ext_peer_icc {")
            add(
                "        meta l4proto { tcp, udp } ct direction reply \(count(.reply, program: Self.extProgram)) accept"
            )
            add("        \(count(.icc, program: Self.extProgram)) drop")
            add("    }")
        }

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

    // MARK: ip6 table (the ext program's IPv6 branch)

    /// The ext program's IPv6 branch (docs/verdicts.md, "Ext program"), and
    /// the forward chain of the ip table for IPv6.
    ///
    /// To ports published on all addresses (docker-proxy listens on
    /// `[::]:HOSTPORT`): on an interface with an allow-list, IPv6 TCP/UDP is
    /// admitted only from the list's IPv6 prefixes (`allow_src6`, none when the
    /// list holds IPv4 prefixes only), as the eBPF backend's `bn_allow_src6`.
    /// The packet is delivered locally, so the rule sits on prerouting (no
    /// DNAT in IPv6 to come before). `meta l4proto` and `th dport` are found
    /// behind any extension headers (the kernel's ipv6_find_hdr); a non-first
    /// fragment has no transport header for `th dport` and passes, as in the
    /// ext program (the first one, which carries the port, is dropped, so the
    /// datagram is never reassembled). Ports published on one IPv4 address are
    /// not reachable over IPv6 and are not in the set.
    ///
    /// Dual stack: to a container's IPv6 address (a network's IPv6 subnet, not
    /// its gateway), row 9 (the forward policy, internal networks, the list's
    /// IPv6 part) with row 10's exceptions (a TCP/UDP reply, an ICMPv6 error
    /// conntrack relates to a connection), as `ext_ipv6` decides.
    func renderIP6Table() -> String {
        let p = policy
        var lines: [String] = []
        func add(_ text: String) { lines.append(text) }
        let networks = !p.networks.isEmpty
        let internalBridges = p.internalBridges
        let internal6 = p.networks.filter(\.internal).compactMap(\.ipv6)
        add("table ip6 \(Self.tableName) {")
        add(
            "    comment \"\(Self.ownerComment): IPv6 policy (bridge \(p.bridge)); do not edit, run bpfnet unload\"")
        var reasons = Self.ext6Reasons
        if p.hasIPv6 { reasons += [.forward, .forwardAccept, .reply, .related, .internal] }
        if networks { reasons += [.network, .internal] }
        if !p.forwardAccept { reasons += [.forward] }
        var declared: Set<Reason> = []
        for reason in reasons where declared.insert(reason).inserted {
            add(counterDeclaration(Self.ext6Program, reason))
        }
        add(declaration("set", "ext_ifs", type: "ifname", elements: p.extInterfaces.map { quoted($0.name) }))
        add(
            declaration(
                "set", "allowlisted", type: "ifname",
                elements: p.extInterfaces.filter(\.hasAllowList).map { quoted($0.name) }))
        let published = p.published.filter { $0.key.hostAddress == .any && [.tcp, .udp].contains($0.proto) }.map {
            "\($0.proto.rawValue) . \($0.key.hostPort)"
        }
        add(declaration("set", "published_any", type: "inet_proto . inet_service", elements: published))
        add(
            declaration(
                "set", "allow_src6", type: "ifname . ipv6_addr", flags: "interval", autoMerge: false,
                elements: p.extInterfaces.flatMap { ext in
                    Self.withoutCovered(ext.allowSourcesIPv6).map { "\(quoted(ext.name)) . \($0)" }
                }))
        if p.hasIPv6 {
            add(declaration("set", "gateways6", type: "ipv6_addr", elements: p.ipv6Networks.map(\.address.description)))
            add(
                declaration(
                    "set", "subnets6", type: "ipv6_addr", flags: "interval", autoMerge: true,
                    elements: p.ipv6Networks.map(\.network.description)))
            if !internal6.isEmpty {
                add(
                    declaration(
                        "set", "internal_subnets6", type: "ipv6_addr", flags: "interval", autoMerge: true,
                        elements: internal6.map(\.network.description)))
            }
        }
        if networks {
            let bridges = p.bridges.map(quoted)
            let pairs = bridges.flatMap { from in bridges.filter { $0 != from }.map { "\(from) . \($0)" } }
            add(declaration("set", "bridges", type: "ifname", elements: bridges))
            add(declaration("set", "isolated", type: "ifname . ifname", elements: pairs))
            if !internalBridges.isEmpty {
                add(declaration("set", "internal_bridges", type: "ifname", elements: internalBridges.map(quoted)))
            }
        }

        add("    chain ext {")
        add("        type filter hook prerouting priority mangle; policy accept;")
        if p.hasIPv6 {
            add("        iifname @ext_ifs ip6 daddr @subnets6 ip6 daddr != @gateways6 goto ext_direct6")
        }
        add(
            "        iifname @allowlisted meta l4proto { tcp, udp } meta l4proto . th dport @published_any "
                + "iifname . ip6 saddr != @allow_src6 \(count(.source, program: Self.ext6Program)) drop")
        add("    }")

        if p.hasIPv6 {
            // Row 9 for a container's IPv6 address; each drop first asks row 10.
            add("    chain ext_direct6 {")
            if !p.forwardAccept {
                add("        goto ext_refused6_forward")
            } else {
                if !internal6.isEmpty { add("        ip6 daddr @internal_subnets6 goto ext_refused6_internal") }
                add("        iifname @allowlisted iifname . ip6 saddr != @allow_src6 goto ext_refused6_source")
                add("        \(count(.forwardAccept, program: Self.ext6Program)) accept")
            }
            add("    }")
            for (reason, chain) in [(Reason.forward, "forward"), (.internal, "internal"), (.source, "source")] {
                add("    chain ext_refused6_\(chain) {")
                add(
                    "        meta l4proto { tcp, udp } ct direction reply \(count(.reply, program: Self.ext6Program)) accept"
                )
                add(
                    "        meta l4proto ipv6-icmp ct state related \(count(.related, program: Self.ext6Program)) accept"
                )
                add("        \(count(reason, program: Self.ext6Program)) drop")
                add("    }")
            }
        }

        // As the ip table's forward chain: isolation between Docker
        // networks, internal networks, and the forward policy for what is
        // routed to a bridge from an interface without the ext rules.
        lines += forwardChain(program: Self.ext6Program, dnatAccepted: false)
        add("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The forward chain of the ip and ip6 tables (each counts under its
    /// own `program`): isolation between Docker bridges, internal networks,
    /// and, under forward policy drop, what is routed to a bridge from an
    /// interface without the ext rules. `dnatAccepted`: DNATed packets pass
    /// (IPv4; IPv6 has no NAT). Empty when there is nothing to hold.
    func forwardChain(program: String, dnatAccepted: Bool) -> [String] {
        let p = policy
        let networks = !p.networks.isEmpty
        guard networks || !p.forwardAccept else { return [] }
        var lines = ["    chain forward {", "        type filter hook forward priority filter - 1; policy accept;"]
        if networks {
            lines.append("        iifname . oifname @isolated \(count(.network, program: program)) drop")
            if !p.internalBridges.isEmpty {
                lines.append(
                    "        iifname @internal_bridges oifname != @bridges \(count(.internal, program: program)) drop")
                lines.append(
                    "        oifname @internal_bridges iifname != @bridges \(count(.internal, program: program)) drop")
            }
        }
        if !p.forwardAccept {
            let bridges = networks ? "@bridges" : quoted(p.bridge)
            lines.append("        oifname != \(bridges) accept")
            lines.append("        iifname \(bridges) accept")
            lines.append("        iifname @ext_ifs accept")
            lines.append("        ct state established,related accept")
            if dnatAccepted { lines.append("        ct status dnat accept") }
            lines.append("        \(count(.forward, program: program)) drop")
        }
        lines.append("    }")
        return lines
    }

    // MARK: interval sets

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

    static func withoutCovered(_ prefixes: [IPv6CIDR]) -> [IPv6CIDR] {
        let unique = Array(Set(prefixes))
        return unique.filter { prefix in
            !unique.contains { other in
                other != prefix && other.prefixLength <= prefix.prefixLength && other.contains(prefix.address)
            }
        }.sorted()
    }

}
