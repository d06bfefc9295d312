// SPDX-License-Identifier: Apache-2.0
//
// Removing the iptables fallback's rules, and reading them back from
// `iptables-save` for `bpfnet status` (IPTablesRuleset.swift writes them).

extension IPTablesRuleset {
    // MARK: removal

    /// `iptables-restore --noflush` input that removes every rule and chain
    /// bpfnet wrote; nil when there is nothing to remove. DOCKER-USER stays
    /// unless bpfnet created it and it still holds nothing but that RETURN.
    public static func renderRemoval(current: IPTablesSave, changes: HostChanges) -> String? {
        let filter = current.table("filter")
        let nat = current.table("nat")
        var out: [String] = []
        var filterLines: [String] = []
        for chain in ["FORWARD", "INPUT"] {
            for rule in filter.rules(in: chain) where rule.isOwn { filterLines.append("-D \(chain) \(rule.spec)") }
        }
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
    /// when bpfnet's state chain is missing or unreadable. `save6`
    /// (`ip6tables-save`) adds the allow-lists' IPv6 parts.
    public static func policy(from save: IPTablesSave, save6: IPTablesSave?) -> NetfilterPolicy? {
        guard var policy = policy(from: save) else { return nil }
        guard let save6 else { return policy }
        let filter6 = save6.table("filter")
        for index in policy.extInterfaces.indices {
            let name = policy.extInterfaces[index].name
            let sources = filter6.rules(in: sourceChain(name)).filter { $0.target == "RETURN" && $0.comment == nil }
                .compactMap { $0.value("-s").flatMap { IPv6CIDR($0) } }
            policy.extInterfaces[index] = NetfilterExtInterface(
                name: name, allowSources: policy.extInterfaces[index].allowSources, allowSourcesIPv6: sources)
        }
        return policy
    }

    /// The policy of the IPv4 rules alone (the allow-lists without their IPv6 parts).
    public static func policy(from save: IPTablesSave) -> NetfilterPolicy? {
        guard let settings = settingsComment(save),
            var policy = NetfilterPolicy.settings(from: String(settings.dropFirst(settingsPrefix.count)))
        else { return nil }
        let filter = save.table("filter")
        let nat = save.table("nat")
        var containers: [NetfilterContainer] = []
        var notes: [String: String] = [:]
        var peers: [IPv4Address: NetfilterPeer] = [:]
        for rule in filter.rules(in: stateChain) {
            guard let comment = rule.comment else { continue }
            let words = comment.split(separator: " ").map(String.init)
            if words.first == "container", words.count == 4, let source = rule.value("-s"),
                let address = IPv4CIDR(source)?.address, let mac = MACAddress(words[2])
            {
                containers.append(NetfilterContainer(name: words[1], ip: address, mac: mac, port: words[3]))
            } else if words.first == "peer", words.count == 3, let subnet = rule.value("-s").flatMap({ IPv4CIDR($0) }),
                let address = IPv4Address(words[2])
            {
                var peer = peers[address] ?? NetfilterPeer(name: words[1], address: address, subnets: [])
                peer.subnets = (peer.subnets + [subnet]).sorted()
                peers[address] = peer
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
        let peerAllow = policy.peerAllow
        policy = NetfilterPolicy(
            bridge: policy.bridge, bridgeAddress: policy.bridgeAddress, icc: policy.icc,
            forwardAccept: policy.forwardAccept, ipForward: policy.ipForward,
            containers: containers, links: links, published: published,
            extInterfaces: extInterfaces, unusedBackends: notes)
        policy.peers = peers.values.sorted()
        policy.peerAllow = peerAllow
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
