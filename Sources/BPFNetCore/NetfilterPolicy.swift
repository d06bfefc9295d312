// SPDX-License-Identifier: Apache-2.0
//
// The netfilter fallbacks (nftables, iptables) take the same model as the
// eBPF backend: the `MapState` PolicyCompiler builds from a Policy. This file
// turns that compiled state into what a rule set needs (interface *names*
// instead of ifindexes, sorted lists so the rendering is deterministic) and
// back into a `DataplaneStatus` when the rules are read back from the kernel.
// See docs/fallback.md for the rule sets themselves.

import Foundation

/// A container as the netfilter rule sets need it.
public struct NetfilterContainer: Hashable, Sendable, Comparable {
    public var name: String
    public var ip: IPv4Address
    public var mac: MACAddress
    /// The host-side veth (bridge port).
    public var port: String
    /// The bridge of its user-defined network; nil: the default bridge.
    public var bridge: String?
    /// Its IPv6 address on a dual-stack network.
    public var ipv6: IPv6Address?

    public init(
        name: String, ip: IPv4Address, mac: MACAddress, port: String, bridge: String? = nil, ipv6: IPv6Address? = nil
    ) {
        self.ipv6 = ipv6
        self.name = name
        self.ip = ip
        self.mac = mac
        self.port = port
        self.bridge = bridge
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.ip < rhs.ip }
}

/// An external interface and the sources it admits (empty: every source).
public struct NetfilterExtInterface: Hashable, Sendable, Comparable {
    public var name: String
    /// Sorted by address, then prefix length.
    public var allowSources: [IPv4CIDR]
    /// The list's IPv6 entries (sorted): an interface with only these still
    /// has a list, so it admits no IPv4 source.
    public var allowSourcesIPv6: [IPv6CIDR]

    public init(name: String, allowSources: [IPv4CIDR], allowSourcesIPv6: [IPv6CIDR] = []) {
        self.name = name
        self.allowSources = allowSources.sorted { ($0.address, $0.prefixLength) < ($1.address, $1.prefixLength) }
        self.allowSourcesIPv6 = allowSourcesIPv6.sorted()
    }

    public var hasAllowList: Bool { !allowSources.isEmpty || !allowSourcesIPv6.isEmpty }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.name < rhs.name }
}

/// A published port with its target (the `bn_published` entry).
public struct NetfilterPublished: Hashable, Sendable, Comparable {
    public var key: PublishedKey
    public var target: PublishedTarget

    public init(key: PublishedKey, target: PublishedTarget) {
        self.key = key
        self.target = target
    }

    public var proto: TransportProtocol { TransportProtocol(number: key.proto) ?? .tcp }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.key < rhs.key }
}

/// Everything a netfilter rule set enforces, in a deterministic order.
public struct NetfilterPolicy: Hashable, Sendable {
    public var bridge: String
    /// The bridge's address and prefix; nil when it has none (then only the
    /// listed container addresses count as "inside the bridge").
    public var bridgeAddress: IPv4InterfaceAddress?
    public var icc: Bool
    public var forwardAccept: Bool
    public var ipForward: Bool
    /// Sorted by address.
    public var containers: [NetfilterContainer]
    /// Every link rule (forward, reverse, pair), sorted.
    public var links: [LinkRule]
    /// Sorted by key.
    public var published: [NetfilterPublished]
    /// Sorted by name.
    public var extInterfaces: [NetfilterExtInterface]
    /// User-defined networks, in policy order (none: the default bridge alone).
    public var networks: [NetfilterNetwork]
    /// With networks: the default bridge's ports no container claims (when
    /// compiled), sorted. Each network's are in `networks`.
    public var unknownPorts: [String] = []
    /// Backend name → why `--backend auto` did not use it (kept in the kernel
    /// next to the rules so `bpfnet status` can say it from another process).
    public var unusedBackends: [String: String]
    /// Peer hosts (NetfilterPeers.swift), sorted by address; their
    /// interfaces are filled in by the dataplane.
    public var peers: [NetfilterPeer] = []
    /// `peerPolicy: allow`.
    public var peerAllow = false
    /// Dual stack: the default bridge's IPv6 gateway and prefix (each
    /// network's is its `ipv6`).
    public var bridgeIPv6: IPv6InterfaceAddress?

    public init(
        bridge: String, bridgeAddress: IPv4InterfaceAddress?, icc: Bool, forwardAccept: Bool,
        ipForward: Bool, containers: [NetfilterContainer] = [], links: [LinkRule] = [],
        published: [NetfilterPublished] = [], extInterfaces: [NetfilterExtInterface] = [],
        unusedBackends: [String: String] = [:], networks: [NetfilterNetwork] = []
    ) {
        self.networks = networks
        self.bridge = bridge
        self.bridgeAddress = bridgeAddress
        self.icc = icc
        self.forwardAccept = forwardAccept
        self.ipForward = ipForward
        self.containers = containers.sorted()
        self.links = links.sorted()
        self.published = published.sorted()
        self.extInterfaces = extInterfaces.sorted()
        self.unusedBackends = unusedBackends
    }

    /// The compiled state with interface names.
    /// - Parameters:
    ///   - state: PolicyCompiler's output for the policy.
    ///   - bridge: the bridge's name.
    ///   - interfaceName: ifindex → name, for container ports, external interfaces and network bridges.
    ///   - policyNetworks: the policy's user-defined networks (their NAT settings).
    public init(
        state: MapState, bridge: String, interfaceName: (UInt32) -> String?,
        unusedBackends: [String: String] = [:], networks policyNetworks: [BridgeNetwork] = []
    ) throws(NetfilterPolicyError) {
        var problems: [String] = []
        func name(_ index: UInt32, _ what: String) -> String {
            guard let name = interfaceName(index) else {
                problems.append("\(what): no interface has ifindex \(index)")
                return "if\(index)"
            }
            return name
        }
        let networks = Self.networks(
            of: state, policyNetworks: policyNetworks, name: name, portName: interfaceName)
        // A container's IPv6 address is the bn_containers6 entry of its port and MAC.
        var ipv6ByPort: [UInt32: IPv6Address] = [:]
        for (address, record) in state.containers6 { ipv6ByPort[record.portIfindex] = address }
        let containers = state.containers.map { address, record in
            NetfilterContainer(
                name: state.names[address] ?? address.description, ip: address, mac: record.mac,
                port: name(record.portIfindex, "container \(address)"),
                bridge: record.network == 0
                    ? nil : state.networks[record.network].map { name($0.bridgeIfindex, "network bridge") },
                ipv6: ipv6ByPort[record.portIfindex].flatMap { state.containers6[$0]?.mac == record.mac ? $0 : nil })
        }
        let published = state.published.map { NetfilterPublished(key: $0.key, target: $0.value) }
        let extInterfaces = state.extInterfaces.keys.map { ifindex in
            NetfilterExtInterface(
                name: name(ifindex, "external interface"),
                allowSources: state.allowSources.filter { $0.ifindex == ifindex }.map(\.prefix),
                allowSourcesIPv6: state.allowSources6.filter { $0.ifindex == ifindex }.map(\.prefix))
        }
        let config = state.config
        self.init(
            bridge: bridge, bridgeAddress: config.bridgeInterfaceAddress, icc: config.flags.contains(.icc),
            forwardAccept: config.flags.contains(.forwardAccept), ipForward: config.flags.contains(.ipForward),
            containers: containers, links: Array(state.links), published: published,
            extInterfaces: extInterfaces, unusedBackends: unusedBackends, networks: networks)
        peers = Self.peers(of: state)
        peerAllow = config.flags.contains(.peerAllow)
        bridgeIPv6 = Self.ipv6(ofSlot: 0, in: state)
        for peer in peers where !NetfilterName.isSafeText(peer.name) {
            problems.append("peer name '\(peer.name)' cannot be written into a rule comment")
        }
        for interface in self.bridges + self.containers.map(\.port) + self.extInterfaces.map(\.name) {
            if let problem = NetfilterName.problem(interface) { problems.append(problem) }
        }
        for container in self.containers where !NetfilterName.isSafeText(container.name) {
            problems.append("container name '\(container.name)' cannot be written into a rule comment")
        }
        guard problems.isEmpty else { throw NetfilterPolicyError(problems: problems) }
    }

    /// The bridge subnet, when the bridge has an address.
    public var bridgeSubnet: IPv4CIDR? { bridgeAddress?.network }

    /// Container addresses their network's subnet does not cover (normally none).
    public var containersOutsideSubnet: [IPv4Address] {
        containers.filter { !(subnet(ofBridge: $0.bridge)?.contains($0.ip) ?? false) }.map(\.ip)
    }

    /// The NAT table both nftables-based backends install (identical to the eBPF backend's).
    public var natRuleset: NATRuleset {
        var nat = NATRuleset(
            bridge: bridge, bridgeSubnet: bridgeSubnet,
            published: published.map { entry in
                (
                    entry.target.containerAddress,
                    PublishedPort(
                        hostIP: entry.key.hostAddress == .any ? nil : entry.key.hostAddress,
                        hostPort: entry.key.hostPort, containerPort: entry.target.containerPort, proto: entry.proto)
                )
            })
        nat.networks = networks.map { network in
            NATRuleset.Network(
                bridge: network.bridge, subnet: network.subnet, masquerade: network.masquerade,
                sourceAddress: network.sourceAddress)
        }
        nat.peerSubnets = peerSubnets
        return nat
    }

    public var forwardPolicy: ForwardPolicy { forwardAccept ? .accept : .drop }

    /// `key=value` settings written next to the rules (a set comment in
    /// nftables, a comment rule in iptables) and parsed back by `status`.
    public var settingsText: String {
        var fields = ["bridge=\(bridge)"]
        if let bridgeAddress { fields.append("address=\(bridgeAddress)") }
        fields += ["icc=\(icc)", "forward-policy=\(forwardPolicy.rawValue)", "ip-forward=\(ipForward)"]
        if peerAllow { fields.append("peer-policy=allow") }
        return fields.joined(separator: " ")
    }

    /// Parses `settingsText` into a policy without containers, links or ports.
    public static func settings(from text: String) -> NetfilterPolicy? {
        var fields: [String: String] = [:]
        for field in text.split(separator: " ") {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let bridge = fields["bridge"], let icc = fields["icc"].flatMap(Bool.init),
            let forward = fields["forward-policy"].flatMap(ForwardPolicy.init(rawValue:)),
            let ipForward = fields["ip-forward"].flatMap(Bool.init)
        else { return nil }
        var policy = NetfilterPolicy(
            bridge: bridge, bridgeAddress: fields["address"].flatMap { IPv4InterfaceAddress($0) },
            icc: icc, forwardAccept: forward == .accept, ipForward: ipForward)
        policy.peerAllow = fields["peer-policy"] == PeerPolicy.allow.rawValue
        return policy
    }

    /// The status document for what was read back from the kernel.
    /// - Parameter interfaceIndex: name → ifindex (0 when the interface is gone).
    public func status(backend: String, interfaceIndex: (String) -> UInt32?) -> DataplaneStatus {
        func name(_ address: IPv4Address) -> String {
            containers.first { $0.ip == address }?.name ?? address.description
        }
        var ports: [DataplaneStatus.Pair: [(UInt8, UInt16)]] = [:]
        for rule in links where rule.direction == .forward {
            ports[DataplaneStatus.Pair(parent: rule.source, child: rule.destination), default: []].append(
                (rule.proto, rule.port))
        }
        let links = ports.keys.sorted().map { pair in
            DataplaneStatus.Link(
                parent: name(pair.parent), child: name(pair.child), parentIP: pair.parent.description,
                childIP: pair.child.description,
                ports: ports[pair]!.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { proto, port in
                    "\(port)/\(TransportProtocol(number: proto)?.rawValue ?? String(proto))"
                })
        }
        var status = DataplaneStatus(
            backend: backend, bridge: bridge, bridgeAddress: bridgeAddress?.description, icc: icc,
            forwardPolicy: forwardPolicy.rawValue, ipForward: ipForward, loaded: true,
            extInterfaces: extInterfaces.map { ext in
                DataplaneStatus.ExtInterface(
                    name: ext.name, ifindex: interfaceIndex(ext.name) ?? 0,
                    // IPv4 first, then IPv6, as the eBPF backend lists them.
                    allowSources: ext.allowSources.map(\.description) + ext.allowSourcesIPv6.map(\.description))
            },
            containers: containers.map { container in
                DataplaneStatus.Container(
                    name: container.name, ip: container.ip.description,
                    mac: container.mac.description, port: container.port,
                    portIfindex: interfaceIndex(container.port) ?? 0)
            },
            links: links,
            published: published.map { entry in
                DataplaneStatus.Published(
                    hostIP: entry.key.hostAddress == .any ? nil : entry.key.hostAddress.description,
                    hostPort: entry.key.hostPort, proto: entry.proto.rawValue,
                    container: name(entry.target.containerAddress),
                    containerIP: entry.target.containerAddress.description,
                    containerPort: entry.target.containerPort)
            })
        status.unusedBackends = unusedBackends.isEmpty ? nil : unusedBackends
        if !peers.isEmpty {
            status.peers = peers.map { peer in
                DataplaneStatus.Peer(
                    name: peer.name, address: peer.address.description, subnets: peer.subnets.map(\.description))
            }
            status.peerPolicy = (peerAllow ? PeerPolicy.allow : .icc).rawValue
        }
        return status
    }
}

/// The compiled policy cannot be written as netfilter rules.
public struct NetfilterPolicyError: Error, CustomStringConvertible, Sendable {
    public var problems: [String]
    public var description: String { problems.joined(separator: "; ") }
}

/// What may appear in names and comments written into nft and iptables-restore input.
public enum NetfilterName {
    /// Interface names go into both syntaxes as words or quoted strings: keep
    /// to what needs no escaping in either.
    public static func problem(_ name: String) -> String? {
        if let problem = InterfaceName.problem(name) { return problem }
        let allowed = name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                || "_.-@+=".unicodeScalars.contains($0)
        }
        guard allowed else {
            return "interface '\(name)' cannot be named in nftables/iptables rules by bpfnet "
                + "(use letters, digits and '_', '.', '-', '@', '+', '=')"
        }
        // iptables reads a trailing '+' as "any name with this prefix": the
        // rule would match every such interface, not this one.
        if name.hasSuffix("+") {
            return "interface '\(name)' ends in '+', which iptables reads as a wildcard for every name it begins"
        }
        return nil
    }

    /// Text that can sit inside a double-quoted comment in both syntaxes.
    public static func isSafeText(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy(isSafeScalar)
    }

    /// `text` made safe for a comment and cut to `limit` bytes.
    public static func commentText(_ text: String, limit: Int) -> String {
        let plain = text.replacingOccurrences(of: "\u{2014}", with: "-").replacingOccurrences(of: "\u{2013}", with: "-")
        var result = String(String.UnicodeScalarView(plain.unicodeScalars.map { isSafeScalar($0) ? $0 : "?" }))
        if result.utf8.count > limit { result = String(result.prefix(limit - 3)) + "..." }
        return result
    }

    private static func isSafeScalar(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\" && scalar != "'"
    }
}
