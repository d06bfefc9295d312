// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback's rule set, for hosts without nft: Docker 20.10's
// chains and rule order (docs/docker.md), written as one
// `iptables-restore --noflush` input so the whole change is one commit per
// table and no process runs per rule.
//
//   FORWARD   DOCKER-USER                     (first; never flushed by bpfnet)
//             -i br BPFNET-SENDER              (every bridge)
//             DOCKER-ISOLATION-STAGE-1         (between networks, internal networks)
//             -i <ext_if> BPFNET-EXT-<ext_if>  (rows 8-10: allow-list, forward policy)
//             per bridge (the default one, then each user-defined network's):
//             -o br RELATED,ESTABLISHED ACCEPT
//             -o br DOCKER                     (links, published ports)
//             -i br ! -o br ACCEPT             (row 7)
//             -i br -o br ACCEPT | DROP        (that network's icc; rows 3/6)
//   INPUT     -i <internal br> BPFNET-INTERNAL (first; only with internal networks)
//   BPFNET-INTERNAL  -d <its subnet | a bridge's address> RETURN; DROP (internal)
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
    /// What an internal network's containers may deliver to the host.
    public static let internalInputChain = "BPFNET-INTERNAL"
    public static func extChain(_ interface: String) -> String { "BPFNET-EXT-" + interface }
    public static func publishedChain(_ interface: String) -> String { "BPFNET-PUB-" + interface }
    public static func sourceChain(_ interface: String) -> String { "BPFNET-SRC-" + interface }
    /// Which peers' subnets may arrive on `interface` (NetfilterPeers.swift).
    public static func peerWayChain(_ interface: String) -> String { "BPFNET-WAY-" + interface }
    /// Rows 12 for a peer's container that came the right way; with icc off, its replies.
    public static let peerChain = "BPFNET-PEER"
    public static let peerICCChain = "BPFNET-PEER-ICC"

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
    public static func needsBridgeNetfilter(_ policy: NetfilterPolicy) -> Bool { policy.anyICCOff }

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
        let internalNetworks = p.networks.filter(\.internal)
        let peerChains =
            p.peers.isEmpty
            ? [] : p.extInterfaces.map { Self.peerWayChain($0.name) } + [Self.peerChain, Self.peerICCChain]
        let wanted =
            [Self.dockerChain, Self.isolation1, Self.isolation2, Self.stateChain, Self.senderChain] + extChains
            + (internalNetworks.isEmpty ? [] : [Self.internalInputChain]) + peerChains
        let createUserChain = !filter.hasChain(Self.userChain)
        add("*filter")
        // Declaring a user chain under --noflush creates it or flushes it.
        for chain in wanted { add(":\(chain) - [0:0]") }
        if createUserChain { add(":\(Self.userChain) - [0:0]") }
        for chain in ["FORWARD", "INPUT"] {
            for rule in filter.rules(in: chain) where rule.isOwn { add("-D \(chain) \(rule.spec)") }
        }
        let obsolete = filter.chains.map(\.name).filter { Self.isOwnFilterChain($0) && !wanted.contains($0) }
        for chain in obsolete { add("-F \(chain)") }
        for chain in obsolete { add("-X \(chain)") }

        let bridges = p.bridges
        var forward = ["-j \(Self.userChain)"] + bridges.map { "-i \($0) -j \(Self.senderChain)" }
        forward.append("-j \(Self.isolation1)")
        forward += p.extInterfaces.map { "-i \($0.name) -j \(Self.extChain($0.name))" }
        var forwardRules = forward.map { "\(own()) \($0)" }
        // Docker's four rules per network, each network with its own icc.
        for (bridge, icc) in zip(bridges, [p.icc] + p.networks.map(\.icc)) {
            forwardRules.append(
                "-o \(bridge) -m conntrack --ctstate RELATED,ESTABLISHED \(Self.comment(Self.establishedCounter)) "
                    + "-j ACCEPT")
            forwardRules.append("-o \(bridge) \(own()) -j \(Self.dockerChain)")
            forwardRules.append("-i \(bridge) ! -o \(bridge) \(own(.outside)) -j ACCEPT")
            forwardRules.append(
                icc
                    ? "-i \(bridge) -o \(bridge) \(own(.iccAllowed)) -j ACCEPT"
                    : "-i \(bridge) -o \(bridge) \(own(.icc)) -j DROP")
        }
        // Docker's FORWARD policy DROP, for every interface the policy does
        // not list (listed ones were judged by their BPFNET-EXT chain): what is
        // routed to a bridge and no rule above accepted follows the forward policy.
        if !p.forwardAccept {
            for bridge in bridges {
                forwardRules.append("-o \(bridge) ! -i \(bridge) \(own(.forward)) -j DROP")
            }
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
        for bridge in bridges where !p.icc(ofBridge: bridge == p.bridge ? nil : bridge) {
            add("-A \(Self.senderChain) -o \(bridge) -m physdev --physdev-is-in \(own(.unknownPort)) -j DROP")
        }
        add("-A \(Self.senderChain) \(own()) -j RETURN")

        // An internal network reaches no host address but the bridges' (the
        // port program's `internal` rule). Docker leaves INPUT alone, but its
        // DNAT turns a connection to a published host port into a forward
        // out of the internal network, which its isolation drops; docker-proxy
        // would take it here, so local delivery is judged too.
        for (index, network) in internalNetworks.enumerated() {
            add("-I INPUT \(index + 1) -i \(network.bridge) \(own()) -j \(Self.internalInputChain)")
        }
        if !internalNetworks.isEmpty {
            for gateway in p.gateways {
                add("-A \(Self.internalInputChain) -d \(gateway)/32 \(own()) -j RETURN")
            }
            for subnet in internalNetworks.compactMap(\.subnet) {
                add("-A \(Self.internalInputChain) -d \(subnet) \(own()) -j RETURN")
            }
            add("-A \(Self.internalInputChain) \(own(.internal)) -j DROP")
        }

        // Docker's isolation: an internal network keeps to its subnet; from
        // any other network, nothing is forwarded to another network's bridge.
        let isolation: Reason? = p.networks.isEmpty ? nil : .network
        for network in p.networks where network.internal {
            // Without an address the bridge has no subnet: nothing leaves or enters it.
            let (to, from) =
                network.subnet.map { ("! -d \($0)", "! -s \($0)") } ?? (
                    "! -o \(network.bridge)", "! -i \(network.bridge)"
                )
            add("-A \(Self.isolation1) -i \(network.bridge) \(to) \(own(.internal)) -j DROP")
            add("-A \(Self.isolation1) -o \(network.bridge) \(from) \(own(.internal)) -j DROP")
        }
        for bridge in bridges where !(p.network(onBridge: bridge)?.internal ?? false) {
            add("-A \(Self.isolation1) -i \(bridge) ! -o \(bridge) \(own()) -j \(Self.isolation2)")
        }
        add("-A \(Self.isolation1) \(own()) -j RETURN")
        for bridge in bridges {
            add("-A \(Self.isolation2) -o \(bridge) \(own(isolation)) -j DROP")
        }
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
            let bridge = containerBridge(entry.target.containerAddress)
            add(
                "-A \(Self.dockerChain) -d \(entry.target.containerAddress)/32 ! -i \(bridge) -o \(bridge) -p \(proto) "
                    + "-m \(proto) --dport \(entry.target.containerPort) -m conntrack --ctstate DNAT \(own()) -j ACCEPT"
            )
        }

        // Rows 8-10, per external interface; rows 12, 13 for peers.
        for ext in p.extInterfaces { out += extRules(ext) }
        out += peerRules()

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
        for peer in p.peers {
            for subnet in peer.subnets {
                add(
                    "-A \(Self.stateChain) -s \(subnet) -m comment --comment "
                        + "\(quoted("peer \(peer.name) \(peer.address)")) -j RETURN")
            }
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
        var postrouting: [String] = []
        // Towards a peer's containers the source stays (docs/policy.md, "Peers").
        for subnet in p.subnets {
            for peerSubnet in p.peerSubnets {
                postrouting.append("-s \(subnet) -d \(peerSubnet) \(own()) -j RETURN")
            }
        }
        if let subnet = p.bridgeSubnet {
            postrouting.append("-s \(subnet) ! -o \(bridge) \(own()) -j MASQUERADE")
        }
        for network in p.networks where network.masquerade {
            guard let subnet = network.subnet else { continue }
            let action = network.sourceAddress.map { "SNAT --to-source \($0)" } ?? "MASQUERADE"
            postrouting.append("-s \(subnet) ! -o \(network.bridge) \(own()) -j \(action)")
        }
        for (index, rule) in postrouting.enumerated() { add("-I POSTROUTING \(index + 1) \(rule)") }
        for bridge in bridges { add("-A \(Self.dockerChain) -i \(bridge) \(own()) -j RETURN") }
        // Specific host addresses before the wildcard, as the NAT table tries them.
        let ordered =
            p.published.filter { $0.key.hostAddress != .any } + p.published.filter { $0.key.hostAddress == .any }
        for entry in ordered {
            let proto = entry.proto.rawValue
            let destination = entry.key.hostAddress == .any ? "" : "-d \(entry.key.hostAddress)/32 "
            add(
                "-A \(Self.dockerChain) \(destination)! -i \(containerBridge(entry.target.containerAddress)) -p \(proto) -m \(proto) --dport \(entry.key.hostPort) "
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
        let direct = p.subnets.map(\.description) + p.containersOutsideSubnet.map { "\($0)/32" }
        if !p.peers.isEmpty {
            // Rows 12, 13 first: from a peer's subnet, whatever the allow-list
            // and forward policy. Matched on the packet's own destination, not
            // the original tuple's: a reply to a connection a local container
            // opened to a peer's is judged by these rows too, as by the ext program.
            for destination in direct {
                out.append(
                    "-A \(extChain) -d \(destination) -m conntrack ! --ctstate DNAT "
                        + "-j \(Self.peerWayChain(ext.name))")
            }
        }
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

    /// BPFNET-WAY-<if> (a peer's subnet arriving on `if`: on to BPFNET-PEER
    /// when its peer is routed through `if`, else `peer-spoofed`; any other
    /// source returns), BPFNET-PEER (row 12: internal networks refused, icc
    /// off asks BPFNET-PEER-ICC, else `peer`) and BPFNET-PEER-ICC (a TCP/UDP
    /// reply conntrack knows passes, the rest is `icc`).
    func peerRules() -> [String] {
        let p = policy
        guard !p.peers.isEmpty else { return [] }
        var out: [String] = []
        func own(_ reason: Reason? = nil) -> String { Self.comment(reason?.name) }
        for ext in p.extInterfaces {
            for peer in p.peers {
                for subnet in peer.subnets {
                    out.append(
                        peer.interface == ext.name
                            ? "-A \(Self.peerWayChain(ext.name)) -s \(subnet) \(own()) -g \(Self.peerChain)"
                            : "-A \(Self.peerWayChain(ext.name)) -s \(subnet) \(own(.peerSpoofed)) -j DROP")
                }
            }
        }
        for destination in p.peerInternalDestinations {
            out.append("-A \(Self.peerChain) -d \(destination) \(own(.internal)) -j DROP")
        }
        for destination in p.peerICCOffDestinations {
            out.append("-A \(Self.peerChain) -d \(destination) \(own()) -g \(Self.peerICCChain)")
        }
        out.append("-A \(Self.peerChain) \(own(.peer)) -j ACCEPT")
        for proto in ["tcp", "udp"] {
            out.append("-A \(Self.peerICCChain) -p \(proto) -m conntrack --ctdir REPLY \(own(.reply)) -j ACCEPT")
        }
        out.append("-A \(Self.peerICCChain) \(own(.icc)) -j DROP")
        return out
    }

    /// `-m comment --comment bpfnet[:<counter>]`.
    static func comment(_ counter: String?) -> String {
        "-m comment --comment " + (counter.map { "\(ownComment):\($0)" } ?? ownComment)
    }

    private func quoted(_ text: String) -> String { "\"\(text)\"" }

    /// The bridge of the container at `address` (the default one when unknown).
    private func containerBridge(_ address: IPv4Address) -> String {
        policy.containers.first { $0.ip == address }?.bridge ?? policy.bridge
    }
}
