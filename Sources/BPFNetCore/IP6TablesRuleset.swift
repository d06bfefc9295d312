// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback's IPv6 rules: one `ip6tables-restore --noflush`
// input, the filter table only (so its commit is atomic), next to the
// iptables rules of IPTablesRuleset.
//
//   INPUT    -j BPFNET-EXT                          (first)
//   FORWARD  -j BPFNET-EXT                          (first)
//            -i br -o br DROP                       (icc off: IPv6 between containers)
//   BPFNET-EXT  per ext_if with an allow-list, per port published on all
//               addresses: -i <ext_if> -p tcp|udp --dport <host port> -g BPFNET-SRC-<ext_if>
//   BPFNET-SRC-<ext_if>  -s <listed IPv6 prefix> RETURN ...; DROP
//   BPFNET-STATE  never jumped to: the settings (for `status` and `unload`)
//
// Dual stack (networks with IPv6), after those in FORWARD, in this order:
//   -i br -j BPFNET-SENDER6            (every bridge: a known port's IPv6
//                                       source is ::, link-local or its own)
//   -i brA -o brB DROP                 (isolation, every pair of bridges)
//   -i brI ! -o brI DROP, -o brI ! -i brI DROP   (internal networks)
//   -o br ctstate RELATED,ESTABLISHED ACCEPT     (row 10)
//   -i ext -o br -g BPFNET-SRC-<ext>   (forward accept: the list's IPv6 part)
//   -o br ! -i br DROP                 (forward policy drop)
//
// The ext program's IPv6 branch (docs/verdicts.md, "Ext program"): the
// default bridge is IPv4-only, but docker-proxy listens on [::]:HOSTPORT for
// every port published on all addresses, so on an interface with an
// allow-list only the list's IPv6 prefixes are admitted to those (none when
// it holds IPv4 prefixes only), as the eBPF backend's bn_allow_src6.
// `-p tcp|udp` finds the transport header behind extension headers
// (ipv6_find_hdr), and `--dport` never matches a non-first fragment, which
// passes as in the ext program. Bridged IPv6 reaches FORWARD only with
// br_netfilter's bridge-nf-call-ip6tables=1, which the backend sets in its
// own network namespace while icc is off (as bridge-nf-call-iptables).

public struct IP6TablesRuleset: Sendable {
    /// Chain that records the settings (never jumped to).
    public static let stateChain = IPTablesRuleset.stateChain
    /// The published-port drops, jumped to from INPUT and FORWARD.
    public static let extChain = "BPFNET-EXT"
    /// Dual stack: a known port's IPv6 sources.
    public static let sender6Chain = "BPFNET-SENDER6"
    /// Start of the settings comment in the state chain.
    public static let settingsPrefix = "bpfnet ip6tables:"

    /// Filter chains bpfnet owns in ip6tables (flushed and rebuilt on every apply).
    public static func isOwnChain(_ name: String) -> Bool { name.hasPrefix("BPFNET-") }

    public var policy: NetfilterPolicy
    /// What `ip6tables-save` shows now (to delete bpfnet's old rules in INPUT and FORWARD).
    public var current: IPTablesSave

    public init(policy: NetfilterPolicy, current: IPTablesSave = IPTablesSave()) {
        self.policy = policy
        self.current = current
    }

    /// `ip6tables-restore --noflush` input that replaces bpfnet's IPv6 rules with `policy`.
    public func render() -> String {
        let filter = current.table("filter")
        let p = policy
        let bridge = p.bridge
        var out: [String] = []
        func add(_ line: String) { out.append(line) }

        let listed = p.extInterfaces.filter(\.hasAllowList)
        let wanted =
            [Self.stateChain, Self.extChain] + (p.hasIPv6 ? [Self.sender6Chain] : [])
            + listed.map { IPTablesRuleset.sourceChain($0.name) }
        add("*filter")
        // Declaring a user chain under --noflush creates it or flushes it.
        for chain in wanted { add(":\(chain) - [0:0]") }
        for chain in ["INPUT", "FORWARD"] {
            for rule in filter.rules(in: chain) where rule.isOwn { add("-D \(chain) \(rule.spec)") }
        }
        let obsolete = filter.chains.map(\.name).filter { Self.isOwnChain($0) && !wanted.contains($0) }
        for chain in obsolete { add("-F \(chain)") }
        for chain in obsolete { add("-X \(chain)") }

        add("-I INPUT 1 \(IPTablesRuleset.comment(nil)) -j \(Self.extChain)")
        add("-I FORWARD 1 \(IPTablesRuleset.comment(nil)) -j \(Self.extChain)")
        // IPv6 between containers: nothing is allowed under icc=false (the
        // port program drops IPv6 to a container's MAC; links are IPv4).
        // Every bridge whose network has icc off (IPv6 is not NATed, so
        // between networks it is routed, and Docker's ip6tables has no rule for it).
        let iccOff = zip(p.bridges, [p.icc] + p.networks.map(\.icc)).filter { !$0.1 }.map(\.0)
        var forward: [String] = []
        if p.hasIPv6 {
            func own(_ reason: Reason? = nil) -> String { IPTablesRuleset.comment(reason?.name) }
            for bridge in p.bridges { forward.append("-i \(bridge) \(own()) -j \(Self.sender6Chain)") }
            // Docker's isolation: nothing is routed from one Docker bridge to another.
            for from in p.bridges where p.bridges.count > 1 {
                for to in p.bridges where to != from {
                    forward.append("-i \(from) -o \(to) \(own(.network)) -j DROP")
                }
            }
            for bridge in p.internalBridges {
                forward.append("-i \(bridge) ! -o \(bridge) \(own(.internal)) -j DROP")
                forward.append("-o \(bridge) ! -i \(bridge) \(own(.internal)) -j DROP")
            }
            forward += iccOff.map { "-i \($0) -o \($0) \(own(.icc)) -j DROP" }
            for bridge in p.bridges {
                forward.append("-o \(bridge) -m conntrack --ctstate RELATED,ESTABLISHED \(own()) -j ACCEPT")
            }
            if p.forwardAccept {
                for ext in listed {
                    for bridge in p.bridges {
                        forward.append(
                            "-i \(ext.name) -o \(bridge) \(own()) -g \(IPTablesRuleset.sourceChain(ext.name))")
                    }
                }
            } else {
                for bridge in p.bridges { forward.append("-o \(bridge) ! -i \(bridge) \(own(.forward)) -j DROP") }
            }
        } else {
            forward = iccOff.map { "-i \($0) -o \($0) \(IPTablesRuleset.comment(Reason.icc.name)) -j DROP" }
        }
        for (index, rule) in forward.enumerated() { add("-I FORWARD \(index + 2) \(rule)") }
        if p.hasIPv6 {
            // physdev needs br_netfilter, which the backend turns on with icc off
            // (as for IPv4's BPFNET-SENDER): with icc on these rules match nothing.
            add("-A \(Self.sender6Chain) -s fe80::/10 -j RETURN")
            add("-A \(Self.sender6Chain) -s ::/128 -j RETURN")
            for container in p.containers {
                let port = "-m physdev --physdev-in \(container.port)"
                if let ipv6 = container.ipv6 { add("-A \(Self.sender6Chain) \(port) -s \(ipv6)/128 -j RETURN") }
                add("-A \(Self.sender6Chain) \(port) \(IPTablesRuleset.comment(Reason.spoofed.name)) -j DROP")
            }
            add("-A \(Self.sender6Chain) -j RETURN")
        }
        for ext in listed {
            let sourceChain = IPTablesRuleset.sourceChain(ext.name)
            for entry in p.published where entry.key.hostAddress == .any && [.tcp, .udp].contains(entry.proto) {
                let proto = entry.proto.rawValue
                add(
                    "-A \(Self.extChain) -i \(ext.name) -p \(proto) -m \(proto) --dport \(entry.key.hostPort) "
                        + "-g \(sourceChain)")
            }
            // RETURN from a chain entered by -g goes back to INPUT or FORWARD: admitted.
            for source in ext.allowSourcesIPv6 {
                add("-A \(sourceChain) -s \(source) -j RETURN")
            }
            add("-A \(sourceChain) \(IPTablesRuleset.comment(Reason.source.name)) -j DROP")
        }
        let settings = "\(Self.settingsPrefix) bridge=\(bridge) icc=\(p.icc)"
        add("-A \(Self.stateChain) -m comment --comment \"\(settings)\" -j RETURN")
        add("COMMIT")
        return out.joined(separator: "\n") + "\n"
    }

    /// `ip6tables-restore --noflush` input that removes every rule and chain
    /// bpfnet wrote; nil when there is nothing to remove.
    public static func renderRemoval(current: IPTablesSave) -> String? {
        let filter = current.table("filter")
        var lines: [String] = []
        for chain in ["INPUT", "FORWARD"] {
            for rule in filter.rules(in: chain) where rule.isOwn { lines.append("-D \(chain) \(rule.spec)") }
        }
        let chains = filter.chains.map(\.name).filter(isOwnChain)
        for chain in chains { lines.append("-F \(chain)") }
        for chain in chains { lines.append("-X \(chain)") }
        return lines.isEmpty ? nil : (["*filter"] + lines + ["COMMIT"]).joined(separator: "\n") + "\n"
    }

    /// Whether bpfnet's ip6tables rules are in the kernel.
    public static func isLoaded(_ save: IPTablesSave) -> Bool {
        save.table("filter").hasChain(stateChain)
    }
}
