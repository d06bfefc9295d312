// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback's rule set, for hosts without nft: Docker 20.10's
// chains and rule order (docs/docker.md), written as one
// `iptables-restore --noflush` input so the whole change is one commit per
// table and no process runs per rule.
//
//   FORWARD   DOCKER-USER                     (first; never flushed by bpfnet)
//             DOCKER-ISOLATION-STAGE-1
//             -i <ext_if> BPFNET-EXT-<ext_if>  (rows 8-10: allow-list, forward policy)
//             -o br RELATED,ESTABLISHED ACCEPT
//             -o br DOCKER                     (links, published ports)
//             -i br ! -o br ACCEPT             (row 7)
//             -i br -o br ACCEPT | DROP        (icc; rows 3/6)
//
// Every rule bpfnet writes carries a comment "bpfnet" or "bpfnet:<reason>":
// the reason names the counter (docs/reasons.md) and lets bpfnet find and
// delete its own rules in the shared built-in chains. Container-to-container
// rules only work with br_netfilter's bridge-nf-call-iptables=1, which the
// backend sets in its own network namespace when icc is off. The IPv6 rules
// (ip6tables) are IP6TablesRuleset's.
// docs/fallback.md explains each rule.

public struct IPTablesRuleset: Sendable {
    /// The comment of every rule bpfnet writes (or its prefix before ":<reason>").
    public static let ownComment = "bpfnet"
    /// Chain that records the settings and containers (never jumped to).
    public static let stateChain = "BPFNET-STATE"
    public static let dockerChain = "DOCKER"
    public static let userChain = "DOCKER-USER"
    public static let isolation1 = "DOCKER-ISOLATION-STAGE-1"
    public static let isolation2 = "DOCKER-ISOLATION-STAGE-2"
    /// Start of the settings comment in the state chain.
    public static let settingsPrefix = "bpfnet iptables:"
    /// Program name in `programCounters`.
    public static let program = "iptables"
    /// Counter of Docker's RELATED,ESTABLISHED accept (no eBPF reason: the
    /// eBPF and nftables backends are stateless between containers).
    public static let establishedCounter = "established"

    /// Who sent what comes from the bridge (the port program's sender checks and unknown ports).
    public static let senderChain = "BPFNET-SENDER"
    public static func extChain(_ interface: String) -> String { "BPFNET-EXT-" + interface }
    public static func publishedChain(_ interface: String) -> String { "BPFNET-PUB-" + interface }
    public static func sourceChain(_ interface: String) -> String { "BPFNET-SRC-" + interface }

    /// Filter chains bpfnet owns outright (flushed and rebuilt on every apply).
    public static func isOwnFilterChain(_ name: String) -> Bool {
        [dockerChain, isolation1, isolation2, stateChain].contains(name) || name.hasPrefix("BPFNET-")
    }

    /// Chains whose existence without bpfnet's state chain means someone else
    /// (a dockerd with --iptables=true) owns them.
    public static let conflictingFilterChains = [dockerChain, isolation1, isolation2]

    /// Settings that only the iptables backend records.
    public struct HostChanges: Sendable, Equatable {
        /// bpfnet created DOCKER-USER (and may delete it again while it holds only its RETURN).
        public var createdUserChain: Bool
        /// bpfnet turned net.bridge.bridge-nf-call-iptables on (and turns it off again).
        public var setBridgeNetfilter: Bool
        /// bpfnet turned net.bridge.bridge-nf-call-ip6tables on (and turns it off again).
        public var setBridgeNetfilter6: Bool

        public init(createdUserChain: Bool = false, setBridgeNetfilter: Bool = false, setBridgeNetfilter6: Bool = false)
        {
            self.createdUserChain = createdUserChain
            self.setBridgeNetfilter = setBridgeNetfilter
            self.setBridgeNetfilter6 = setBridgeNetfilter6
        }
    }

    public var policy: NetfilterPolicy
    /// What `iptables-save` shows now (to delete bpfnet's old rules in
    /// built-in chains and to leave an existing DOCKER-USER alone).
    public var current: IPTablesSave
    public var changes: HostChanges

    public init(policy: NetfilterPolicy, current: IPTablesSave = IPTablesSave(), changes: HostChanges = HostChanges()) {
        self.policy = policy
        self.current = current
        self.changes = changes
    }

    /// Whether container-to-container traffic must pass through iptables:
    /// only icc=false has rules for bridged packets (links are Docker's
    /// exceptions to icc=false and get no rules with icc on).
    public static func needsBridgeNetfilter(_ policy: NetfilterPolicy) -> Bool { !policy.icc }

    // MARK: apply

    /// `iptables-restore --noflush` input that replaces bpfnet's rules with `policy`.
    public func render() -> String {
        let filter = current.table("filter")
        let nat = current.table("nat")
        let p = policy
        let bridge = p.bridge
        var out: [String] = []
        func add(_ line: String) { out.append(line) }
        func own(_ reason: Reason? = nil) -> String { Self.comment(reason?.name) }

        // ---- filter
        let extChains = p.extInterfaces.flatMap { ext in
            [Self.extChain(ext.name), Self.publishedChain(ext.name)]
                + (ext.hasAllowList ? [Self.sourceChain(ext.name)] : [])
        }
        let wanted =
            [Self.dockerChain, Self.isolation1, Self.isolation2, Self.stateChain, Self.senderChain] + extChains
        let createUserChain = !filter.hasChain(Self.userChain)
        add("*filter")
        // Declaring a user chain under --noflush creates it or flushes it.
        for chain in wanted { add(":\(chain) - [0:0]") }
        if createUserChain { add(":\(Self.userChain) - [0:0]") }
        for rule in filter.rules(in: "FORWARD") where rule.isOwn { add("-D FORWARD \(rule.spec)") }
        let obsolete = filter.chains.map(\.name).filter { Self.isOwnFilterChain($0) && !wanted.contains($0) }
        for chain in obsolete { add("-F \(chain)") }
        for chain in obsolete { add("-X \(chain)") }

        var forward = [
            "-j \(Self.userChain)",
            "-i \(bridge) -j \(Self.senderChain)",
            "-j \(Self.isolation1)",
        ]
        forward += p.extInterfaces.map { "-i \($0.name) -j \(Self.extChain($0.name))" }
        var forwardRules = forward.map { "\(own()) \($0)" }
        forwardRules.append(
            "-o \(bridge) -m conntrack --ctstate RELATED,ESTABLISHED \(Self.comment(Self.establishedCounter)) -j ACCEPT"
        )
        forwardRules.append("-o \(bridge) \(own()) -j \(Self.dockerChain)")
        forwardRules.append("-i \(bridge) ! -o \(bridge) \(own(.outside)) -j ACCEPT")
        forwardRules.append(
            p.icc
                ? "-i \(bridge) -o \(bridge) \(own(.iccAllowed)) -j ACCEPT"
                : "-i \(bridge) -o \(bridge) \(own(.icc)) -j DROP")
        // Docker's FORWARD policy DROP, for every interface the policy does
        // not list (listed ones were judged by their BPFNET-EXT chain): what is
        // routed to the bridge and no rule above accepted follows the forward policy.
        if !p.forwardAccept {
            forwardRules.append("-o \(bridge) ! -i \(bridge) \(own(.forward)) -j DROP")
        }
        for (index, rule) in forwardRules.enumerated() {
            add("-I FORWARD \(index + 1) \(rule)")
        }

        // BPFNET-SENDER: a known port's packets carry its container's address
        // and MAC; an unknown port (icc off) reaches no container. physdev
        // needs br_netfilter, which the backend turns on only with icc off:
        // with icc on these rules match nothing.
        for container in p.containers {
            let port = "-m physdev --physdev-in \(container.port)"
            add("-A \(Self.senderChain) \(port) ! -s \(container.ip)/32 \(own(.spoofed)) -j DROP")
            add("-A \(Self.senderChain) \(port) -m mac ! --mac-source \(container.mac) \(own(.spoofed)) -j DROP")
            add("-A \(Self.senderChain) \(port) \(own()) -j RETURN")
        }
        if !p.icc {
            add("-A \(Self.senderChain) -o \(bridge) -m physdev --physdev-is-in \(own(.unknownPort)) -j DROP")
        }
        add("-A \(Self.senderChain) \(own()) -j RETURN")

        add("-A \(Self.isolation1) -i \(bridge) ! -o \(bridge) \(own()) -j \(Self.isolation2)")
        add("-A \(Self.isolation1) \(own()) -j RETURN")
        add("-A \(Self.isolation2) -o \(bridge) \(own()) -j DROP")
        add("-A \(Self.isolation2) \(own()) -j RETURN")
        if createUserChain { add("-A \(Self.userChain) -j RETURN") }

        // DOCKER: link pairs (icc=false only, as Docker), then published ports.
        let linkRules = Self.linkRuleLines(p)
        if !p.icc {
            for rule in linkRules { add("-A \(Self.dockerChain) \(rule) -j ACCEPT") }
        }
        // Only what was DNATed to it (Docker's rule matches the container's
        // address and port alone, so any interface could route straight at
        // them past the forward policy).
        for entry in p.published {
            let proto = entry.proto.rawValue
            add(
                "-A \(Self.dockerChain) -d \(entry.target.containerAddress)/32 ! -i \(bridge) -o \(bridge) -p \(proto) "
                    + "-m \(proto) --dport \(entry.target.containerPort) -m conntrack --ctstate DNAT \(own()) -j ACCEPT"
            )
        }

        // Rows 8-10, per external interface.
        for ext in p.extInterfaces { out += extRules(ext) }

        // State: settings, containers, notes; links as never-reached rules when icc is on.
        var settings = Self.settingsPrefix + " " + p.settingsText
        if createUserChain || changes.createdUserChain { settings += " docker-user=created" }
        if changes.setBridgeNetfilter { settings += " br-netfilter=set" }
        if changes.setBridgeNetfilter6 { settings += " br-netfilter6=set" }
        add("-A \(Self.stateChain) -m comment --comment \(quoted(settings)) -j RETURN")
        for container in p.containers {
            add(
                "-A \(Self.stateChain) -s \(container.ip)/32 -m comment --comment "
                    + "\(quoted("container \(container.name) \(container.mac) \(container.port)")) -j RETURN")
        }
        for (backend, reason) in p.unusedBackends.sorted(by: { $0.key < $1.key }) {
            add(
                "-A \(Self.stateChain) -m comment --comment "
                    + "\(quoted(NetfilterName.commentText("unused \(backend): \(reason)", limit: 250))) -j RETURN")
        }
        if p.icc {
            for rule in linkRules { add("-A \(Self.stateChain) \(rule) -j RETURN") }
        }
        add("COMMIT")

        // ---- nat (the same translations as the nftables NAT table)
        add("*nat")
        add(":\(Self.dockerChain) - [0:0]")
        for chain in ["PREROUTING", "OUTPUT", "POSTROUTING"] {
            for rule in nat.rules(in: chain) where rule.isOwn { add("-D \(chain) \(rule.spec)") }
        }
        add("-I PREROUTING 1 -m addrtype --dst-type LOCAL \(own()) -j \(Self.dockerChain)")
        add("-I OUTPUT 1 ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL \(own()) -j \(Self.dockerChain)")
        if let subnet = p.bridgeSubnet {
            add("-I POSTROUTING 1 -s \(subnet) ! -o \(bridge) \(own()) -j MASQUERADE")
        }
        add("-A \(Self.dockerChain) -i \(bridge) \(own()) -j RETURN")
        // Specific host addresses before the wildcard, as the NAT table tries them.
        let ordered =
            p.published.filter { $0.key.hostAddress != .any } + p.published.filter { $0.key.hostAddress == .any }
        for entry in ordered {
            let proto = entry.proto.rawValue
            let destination = entry.key.hostAddress == .any ? "" : "-d \(entry.key.hostAddress)/32 "
            add(
                "-A \(Self.dockerChain) \(destination)! -i \(bridge) -p \(proto) -m \(proto) --dport \(entry.key.hostPort) "
                    + "\(own()) -j DNAT --to-destination \(entry.target.containerAddress):\(entry.target.containerPort)"
            )
        }
        add("COMMIT")
        return out.joined(separator: "\n") + "\n"
    }

    /// Docker's pair of rules per (link, exposed port) (docs/docker.md, "Links"),
    /// forward then reverse, without the target.
    static func linkRuleLines(_ p: NetfilterPolicy) -> [String] {
        let bridge = p.bridge
        var lines: [String] = []
        for rule in p.links where rule.direction == .forward {
            let proto = TransportProtocol(number: rule.proto)?.rawValue ?? String(rule.proto)
            lines.append(
                "-s \(rule.source)/32 -d \(rule.destination)/32 -i \(bridge) -o \(bridge) -p \(proto) -m \(proto) "
                    + "--dport \(rule.port) -m comment --comment \(ownComment):\(Reason.link.name)")
            lines.append(
                "-s \(rule.destination)/32 -d \(rule.source)/32 -i \(bridge) -o \(bridge) -p \(proto) -m \(proto) "
                    + "--sport \(rule.port) -m comment --comment \(ownComment):\(Reason.linkReverse.name)")
        }
        return lines
    }

    /// BPFNET-EXT-<if>, BPFNET-PUB-<if> and BPFNET-SRC-<if>: what the ext
    /// program decides, matched on the conntrack original tuple (the
    /// destination before DNAT) since FORWARD sees packets after it.
    func extRules(_ ext: NetfilterExtInterface) -> [String] {
        let p = policy
        let extChain = Self.extChain(ext.name)
        let pubChain = Self.publishedChain(ext.name)
        let srcChain = Self.sourceChain(ext.name)
        var out: [String] = []
        func own(_ reason: Reason) -> String { "-m comment --comment \(Self.ownComment):\(reason.name)" }

        // Row 9: aimed at a container address, not a DNATed published port.
        var direct = p.containersOutsideSubnet.map { "\($0)/32" }
        if let subnet = p.bridgeSubnet { direct.insert(subnet.description, at: 0) }
        for destination in direct {
            let match = "-m conntrack ! --ctstate DNAT --ctorigdst \(destination)"
            if p.forwardAccept {
                if ext.hasAllowList { out.append("-A \(extChain) \(match) -j \(srcChain)") }
                out.append("-A \(extChain) \(match) \(own(.forwardAccept)) -j ACCEPT")
            } else {
                for proto in ["tcp", "udp"] {
                    out.append("-A \(extChain) -p \(proto) \(match) --ctdir REPLY \(own(.reply)) -j RETURN")
                }
                out.append("-A \(extChain) \(match) \(own(.forward)) -j DROP")
            }
        }
        // Row 8: a published host port (host address and port before DNAT).
        for entry in p.published {
            let address = entry.key.hostAddress == .any ? "" : "--ctorigdst \(entry.key.hostAddress)/32 "
            out.append(
                "-A \(extChain) -p \(entry.proto.rawValue) -m conntrack \(address)--ctorigdstport \(entry.key.hostPort) "
                    + "-g \(pubChain)")
        }
        out.append("-A \(extChain) \(own(.local)) -j RETURN")

        if ext.hasAllowList { out.append("-A \(pubChain) -j \(srcChain)") }
        out.append("-A \(pubChain) \(own(.published)) -j RETURN")

        if ext.hasAllowList {
            for source in ext.allowSources { out.append("-A \(srcChain) -s \(source) -j RETURN") }
            // Row 10: replies to connections opened from this side pass.
            for proto in ["tcp", "udp"] {
                out.append("-A \(srcChain) -p \(proto) -m conntrack --ctdir REPLY \(own(.reply)) -j RETURN")
            }
            out.append("-A \(srcChain) \(own(.source)) -j DROP")
        }
        return out
    }

    /// `-m comment --comment bpfnet[:<counter>]`.
    static func comment(_ counter: String?) -> String {
        "-m comment --comment " + (counter.map { "\(ownComment):\($0)" } ?? ownComment)
    }

    private func quoted(_ text: String) -> String { "\"\(text)\"" }

    // MARK: removal

    /// `iptables-restore --noflush` input that removes every rule and chain
    /// bpfnet wrote; nil when there is nothing to remove. DOCKER-USER stays
    /// unless bpfnet created it and it still holds nothing but that RETURN.
    public static func renderRemoval(current: IPTablesSave, changes: HostChanges) -> String? {
        let filter = current.table("filter")
        let nat = current.table("nat")
        var out: [String] = []
        var filterLines: [String] = []
        for rule in filter.rules(in: "FORWARD") where rule.isOwn { filterLines.append("-D FORWARD \(rule.spec)") }
        // Docker's chain names are only bpfnet's while its state chain says so.
        let loaded = isLoaded(current)
        var chains = filter.chains.map(\.name).filter { loaded ? isOwnFilterChain($0) : $0.hasPrefix("BPFNET-") }
        let userRules = filter.rules(in: userChain)
        if loaded && changes.createdUserChain && filter.hasChain(userChain)
            && userRules.allSatisfy({ $0.arguments == ["-j", "RETURN"] }) && userRules.count <= 1
        {
            chains.append(userChain)
        }
        for chain in chains { filterLines.append("-F \(chain)") }
        for chain in chains { filterLines.append("-X \(chain)") }
        if !filterLines.isEmpty { out += ["*filter"] + filterLines + ["COMMIT"] }

        var natLines: [String] = []
        for chain in ["PREROUTING", "OUTPUT", "POSTROUTING"] {
            for rule in nat.rules(in: chain) where rule.isOwn { natLines.append("-D \(chain) \(rule.spec)") }
        }
        if nat.hasChain(dockerChain)
            && (loaded || (!nat.rules(in: dockerChain).isEmpty && nat.rules(in: dockerChain).allSatisfy(\.isOwn)))
        {
            natLines += ["-F \(dockerChain)", "-X \(dockerChain)"]
        }
        if !natLines.isEmpty { out += ["*nat"] + natLines + ["COMMIT"] }
        return out.isEmpty ? nil : out.joined(separator: "\n") + "\n"
    }

    // MARK: reading back

    /// Whether bpfnet's iptables rules are in the kernel.
    public static func isLoaded(_ save: IPTablesSave) -> Bool {
        save.table("filter").hasChain(stateChain)
    }

    /// The host changes recorded in the state chain.
    public static func recordedChanges(_ save: IPTablesSave) -> HostChanges {
        guard let settings = settingsComment(save) else { return HostChanges() }
        let fields = Set(settings.split(separator: " ").map(String.init))
        return HostChanges(
            createdUserChain: fields.contains("docker-user=created"),
            setBridgeNetfilter: fields.contains("br-netfilter=set"),
            setBridgeNetfilter6: fields.contains("br-netfilter6=set"))
    }

    static func settingsComment(_ save: IPTablesSave) -> String? {
        save.table("filter").rules(in: stateChain).compactMap(\.comment).first { $0.hasPrefix(settingsPrefix) }
    }

    /// The policy the rules enforce, rebuilt from the kernel's rules; nil
    /// when bpfnet's state chain is missing or unreadable.
    public static func policy(from save: IPTablesSave) -> NetfilterPolicy? {
        guard let settings = settingsComment(save),
            var policy = NetfilterPolicy.settings(from: String(settings.dropFirst(settingsPrefix.count)))
        else { return nil }
        let filter = save.table("filter")
        let nat = save.table("nat")
        var containers: [NetfilterContainer] = []
        var notes: [String: String] = [:]
        for rule in filter.rules(in: stateChain) {
            guard let comment = rule.comment else { continue }
            let words = comment.split(separator: " ").map(String.init)
            if words.first == "container", words.count == 4, let source = rule.value("-s"),
                let address = IPv4CIDR(source)?.address, let mac = MACAddress(words[2])
            {
                containers.append(NetfilterContainer(name: words[1], ip: address, mac: mac, port: words[3]))
            } else if words.first == "unused", words.count >= 2 {
                let rest = comment.dropFirst("unused ".count)
                if let colon = rest.firstIndex(of: ":") {
                    notes[String(rest[..<colon])] = rest[rest.index(after: colon)...].trimmingWhitespace
                }
            }
        }
        var links: [LinkRule] = []
        for rule in filter.rules(in: dockerChain) + filter.rules(in: stateChain) {
            let direction: LinkDirection
            switch rule.reason {
            case Reason.link.name: direction = .forward
            case Reason.linkReverse.name: direction = .reverse
            default: continue
            }
            guard let source = rule.value("-s").flatMap({ IPv4CIDR($0) })?.address,
                let destination = rule.value("-d").flatMap({ IPv4CIDR($0) })?.address,
                let proto = rule.value("-p").flatMap({ TransportProtocol(rawValue: $0) }),
                let port = (direction == .forward ? rule.value("--dport") : rule.value("--sport")).flatMap({
                    UInt16($0)
                })
            else { continue }
            links.append(
                LinkRule(
                    source: source, destination: destination, port: port, proto: proto.number,
                    direction: direction))
        }
        var published: [NetfilterPublished] = []
        for rule in nat.rules(in: dockerChain) where rule.target == "DNAT" {
            guard let proto = rule.value("-p").flatMap({ TransportProtocol(rawValue: $0) }),
                let hostPort = rule.value("--dport").flatMap({ UInt16($0) }),
                let target = rule.value("--to-destination")
            else { continue }
            let parts = target.split(separator: ":")
            guard parts.count == 2, let address = IPv4Address(parts[0]), let port = UInt16(parts[1]) else { continue }
            let host = rule.value("-d").flatMap { IPv4CIDR($0) }?.address ?? .any
            published.append(
                NetfilterPublished(
                    key: PublishedKey(hostAddress: host, hostPort: hostPort, proto: proto.number),
                    target: PublishedTarget(containerAddress: address, containerPort: port)))
        }
        var extInterfaces: [NetfilterExtInterface] = []
        for rule in filter.rules(in: "FORWARD") where rule.isOwn {
            guard let interface = rule.value("-i"), !rule.isNegated("-i"),
                rule.target == extChain(interface)
            else { continue }
            let sources = filter.rules(in: sourceChain(interface)).filter { $0.target == "RETURN" && $0.comment == nil }
                .compactMap { $0.value("-s").flatMap { IPv4CIDR($0) } }
            extInterfaces.append(NetfilterExtInterface(name: interface, allowSources: sources))
        }
        policy = NetfilterPolicy(
            bridge: policy.bridge, bridgeAddress: policy.bridgeAddress, icc: policy.icc,
            forwardAccept: policy.forwardAccept, ipForward: policy.ipForward,
            containers: containers, links: links, published: published,
            extInterfaces: extInterfaces, unusedBackends: notes)
        return policy
    }

    /// Packets and bytes per reason, summed over bpfnet's counting rules.
    public static func counters(from save: IPTablesSave) -> [String: DataplaneStatus.CounterValue] {
        var result: [String: DataplaneStatus.CounterValue] = [:]
        for table in save.tables.values {
            for rule in table.rules {
                guard let reason = rule.reason else { continue }
                var value = result[reason] ?? DataplaneStatus.CounterValue()
                value.packets += rule.packets
                value.bytes += rule.bytes
                result[reason] = value
            }
        }
        return result
    }
}
