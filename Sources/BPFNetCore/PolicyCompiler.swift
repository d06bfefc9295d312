// SPDX-License-Identifier: Apache-2.0
//
// Policy + facts about the host → the map contents that enforce it.
// Core does no syscalls: the caller resolves interface indexes and the
// bridge's address and hands them in as HostFacts.

import BPFNetShared

/// A user-defined network's bridge as the host has it.
public struct BridgeFacts: Sendable, Hashable {
    public var ifindex: UInt32
    /// nil when the bridge has no IPv4 address.
    public var address: IPv4InterfaceAddress?
    public var mac: MACAddress
    /// Every port of the bridge, by ifindex: a port no container claims is an
    /// unknown port of this network.
    public var ports: [UInt32]

    public init(ifindex: UInt32, address: IPv4InterfaceAddress?, mac: MACAddress = .zero, ports: [UInt32] = []) {
        self.ifindex = ifindex
        self.address = address
        self.mac = mac
        self.ports = ports
    }
}

extension NetworkRecord {
    /// The record of a network with `flags` whose bridge is `bridge`: no
    /// address means no subnet (netmask 0, which never matches).
    init(flags: NetworkFlags, bridge: BridgeFacts) {
        self.init(
            flags: flags, bridgeAddress: bridge.address?.address ?? .any,
            subnet: bridge.address?.network.address ?? .any,
            netmask: bridge.address.map { IPv4Address($0.netmask) } ?? .any,
            bridgeIfindex: bridge.ifindex, bridgeMAC: bridge.mac)
    }
}

/// What the compiler needs to know about the host.
public struct HostFacts: Sendable {
    /// The user-defined networks' bridges, by network name; a network missing
    /// here has no bridge on this host.
    public var networks: [String: BridgeFacts] = [:]
    public var bridgeIfindex: UInt32
    /// nil when the bridge has no IPv4 address (then no subnet is matched, and
    /// only known container addresses count as "inside the bridge").
    public var bridgeAddress: IPv4InterfaceAddress?
    /// ifindex of an interface by name; nil when it does not exist.
    public var interfaceIndex: @Sendable (String) -> UInt32?
    /// The bridge's own MAC (`.zero` when unknown).
    public var bridgeMAC: MACAddress

    public init(
        bridgeIfindex: UInt32, bridgeAddress: IPv4InterfaceAddress?, bridgeMAC: MACAddress = .zero,
        interfaceIndex: @escaping @Sendable (String) -> UInt32?
    ) {
        self.bridgeIfindex = bridgeIfindex
        self.bridgeAddress = bridgeAddress
        self.bridgeMAC = bridgeMAC
        self.interfaceIndex = interfaceIndex
    }

    public init(
        bridgeIfindex: UInt32, bridgeAddress: IPv4InterfaceAddress?, bridgeMAC: MACAddress = .zero,
        interfaces: [String: UInt32]
    ) {
        self.init(bridgeIfindex: bridgeIfindex, bridgeAddress: bridgeAddress, bridgeMAC: bridgeMAC) {
            interfaces[$0]
        }
    }
}

/// Turns a `Policy` into the `MapState` that enforces it.
public enum PolicyCompiler {
    /// Normalises and validates `policy` (with the bridge's address when known),
    /// resolves every interface, and builds the maps. Throws every problem at
    /// once, including interfaces that do not exist.
    ///
    /// The config's `generation` is left 0: the reconciler bumps it.
    public static func compile(_ policy: Policy, facts: HostFacts) throws(PolicyValidationError) -> MapState {
        let policy = policy.normalized()
        var problems = policy.problems(
            bridgeAddress: facts.bridgeAddress, networkAddresses: facts.networks.compactMapValues(\.address))

        var state = MapState()
        state.config = config(for: policy, facts: facts)
        let networkIDs = networks(of: policy, facts: facts, into: &state, problems: &problems)

        for (i, container) in policy.containers.enumerated() {
            // Unknown networks are reported by validation.
            guard let networkID = container.network.map({ networkIDs[$0] }) ?? 0 else { continue }
            guard let ifindex = facts.interfaceIndex(container.port) else {
                problems.append(
                    PolicyProblem(
                        path: "containers[\(i)].port",
                        message:
                            "interface '\(container.port)' of container '\(container.name)' does not exist on this host; "
                            + "port must name the container's host-side veth on \(policy.bridge)"))
                continue
            }
            if ifindex == facts.bridgeIfindex {
                problems.append(
                    PolicyProblem(
                        path: "containers[\(i)].port",
                        message:
                            "'\(container.port)' is the bridge (ifindex \(ifindex)); port must be the container's veth")
                )
            }
            state.containers[container.ip] = ContainerRecord(
                portIfindex: ifindex, mac: container.mac, network: networkID)
            state.ports[ifindex] = PortRecord(address: container.ip, mac: container.mac, network: networkID)
            state.macs[container.mac] = container.ip
            state.names[container.ip] = ContainerNameRecord.truncated(container.name)
            if let ipv6 = container.ipv6 {
                state.containers6[ipv6] = ContainerRecord(portIfindex: ifindex, mac: container.mac, network: networkID)
            }
        }

        // A port of a user-defined network's bridge that no container claims
        // is an unknown port of that network (the default bridge's need no entry).
        for network in policy.networks {
            guard let id = networkIDs[network.name], let bridge = facts.networks[network.name] else { continue }
            for port in bridge.ports where state.ports[port] == nil {
                state.ports[port] = .unknown(network: id)
            }
        }

        state.links = linkRules(for: policy)

        // Dual stack: every network's IPv6 subnet with its slot and gateway
        // (validation keeps them apart).
        if let gateway = policy.bridgeIPv6 {
            state.subnets6[gateway.network] = Subnet6Record(network: 0, bridgeAddress: gateway.address)
        }
        for network in policy.networks {
            guard let gateway = network.ipv6, let id = networkIDs[network.name] else { continue }
            state.subnets6[gateway.network] = Subnet6Record(network: id, bridgeAddress: gateway.address)
        }

        // Peer hosts: every container subnet of each, with the peer's own
        // address (validation keeps them apart from each other and from ours).
        for peer in policy.peers {
            for subnet in peer.subnets { state.peers[subnet] = peer.address }
            // Its name, for `status` (the programs never read bn_names).
            if state.names[peer.address] == nil {
                state.names[peer.address] = ContainerNameRecord.truncated(peer.name)
            }
        }
        if state.peers.count > Int(BPFNET_MAX_PEER_SUBNETS) {
            problems.append(
                PolicyProblem(
                    path: "peers",
                    message:
                        "\(state.peers.count) peer subnets; the dataplane holds at most \(BPFNET_MAX_PEER_SUBNETS)"))
        }

        let internalNetworks = Set(policy.networks.filter(\.internal).map(\.name))
        // An internal network has no way in: Docker publishes none of its ports.
        for container in policy.containers where !internalNetworks.contains(container.network ?? "") {
            for binding in container.published {
                let key = PublishedKey(
                    hostAddress: binding.hostIP ?? .any, hostPort: binding.hostPort,
                    proto: binding.proto.number)
                state.published[key] = PublishedTarget(
                    containerAddress: container.ip, containerPort: binding.containerPort)
            }
        }

        for (i, ext) in policy.extInterfaces.enumerated() {
            guard let ifindex = facts.interfaceIndex(ext.name) else {
                problems.append(
                    PolicyProblem(
                        path: "extInterfaces[\(i)].name",
                        message:
                            "interface '\(ext.name)' does not exist on this host; name an interface towards the outside "
                            + "(see `ip link`)"))
                continue
            }
            if ifindex == facts.bridgeIfindex {
                problems.append(
                    PolicyProblem(
                        path: "extInterfaces[\(i)].name",
                        message:
                            "'\(ext.name)' is the bridge (ifindex \(ifindex)); an external interface must be another interface"
                    ))
                continue
            }
            if state.extInterfaces[ifindex] != nil {
                problems.append(
                    PolicyProblem(
                        path: "extInterfaces[\(i)].name",
                        message:
                            "'\(ext.name)' is the same interface (ifindex \(ifindex)) as an earlier entry; list it once"
                    ))
                continue
            }
            state.extInterfaces[ifindex] = ExtInterfaceRecord(flags: ext.hasAllowList ? .allowList : [])
            for prefix in ext.allowSourcesIPv6 {
                state.allowSources6.insert(AllowSource6(ifindex: ifindex, prefix: prefix))
            }
            for prefix in ext.allowSources {
                state.allowSources.insert(AllowSource(ifindex: ifindex, prefix: prefix))
            }
        }

        if !problems.isEmpty { throw PolicyValidationError(problems: problems) }
        return state
    }

    /// Fills `bn_networks` (0: the default bridge; 1...: `policy.networks` in
    /// order) and, when there are user-defined networks, `bn_subnets`.
    /// Returns each user-defined network's slot by name.
    static func networks(
        of policy: Policy, facts: HostFacts, into state: inout MapState, problems: inout [PolicyProblem]
    ) -> [String: UInt16] {
        // The NAT table masquerades the default bridge's subnet whenever it has one.
        var defaultFlags: NetworkFlags = policy.icc ? [.icc] : []
        if facts.bridgeAddress != nil { defaultFlags.insert(.masquerade) }
        state.networks[0] = NetworkRecord(
            flags: defaultFlags,
            bridge: BridgeFacts(ifindex: facts.bridgeIfindex, address: facts.bridgeAddress, mac: facts.bridgeMAC))
        guard !policy.networks.isEmpty else { return [:] }
        if let address = facts.bridgeAddress {
            state.subnets[address.network] = SubnetRecord(network: 0, bridgeAddress: address.address)
        }
        var ids: [String: UInt16] = [:]
        for (i, network) in policy.networks.enumerated() {
            let id = UInt16(i + 1)
            guard i + 1 < Int(BPFNET_MAX_NETWORKS) else {
                problems.append(
                    PolicyProblem(
                        path: "networks[\(i)]",
                        message:
                            "more than \(BPFNET_MAX_NETWORKS - 1) user-defined networks; the dataplane has no slot for it"
                    ))
                break
            }
            guard let bridge = facts.networks[network.name] else {
                problems.append(
                    PolicyProblem(
                        path: "networks[\(i)].bridge",
                        message:
                            "bridge '\(network.bridge)' of network '\(network.name)' does not exist on this host; "
                            + "create the network (docker network create) first, or name its bridge"))
                continue
            }
            if bridge.ifindex == facts.bridgeIfindex {
                problems.append(
                    PolicyProblem(
                        path: "networks[\(i)].bridge",
                        message: "'\(network.bridge)' is the default bridge; every network has its own bridge"))
                continue
            }
            ids[network.name] = id
            var flags: NetworkFlags = network.icc ? [.icc] : []
            if network.internal { flags.insert(.internal) }
            if network.masquerade && !network.internal && bridge.address != nil { flags.insert(.masquerade) }
            state.networks[id] = NetworkRecord(flags: flags, bridge: bridge)
            guard let address = bridge.address else { continue }
            // The network's name, for status, under its gateway (no container's address).
            if state.names[address.address] == nil {
                state.names[address.address] = ContainerNameRecord.truncated(network.name)
            }
            if let clash = state.subnets.keys.first(where: { $0.overlaps(address.network) }) {
                let owner = state.subnets[clash]!.network
                let ownerName = owner == 0 ? "the default bridge (\(policy.bridge))" : "networks[\(owner - 1)]"
                problems.append(
                    PolicyProblem(
                        path: "networks[\(i)].bridge",
                        message:
                            "the subnet of '\(network.bridge)', \(address.network), overlaps \(clash) of \(ownerName); "
                            + "Docker networks never share addresses"))
                continue
            }
            state.subnets[address.network] = SubnetRecord(network: id, bridgeAddress: address.address)
        }
        return ids
    }

    /// The `bn_config` record: policy flags, the bridge's address and subnet.
    public static func config(for policy: Policy, facts: HostFacts) -> ConfigRecord {
        var flags: ConfigFlags = [.loaded]
        if policy.icc { flags.insert(.icc) }
        if policy.forwardPolicy == .accept { flags.insert(.forwardAccept) }
        if policy.ipForward { flags.insert(.ipForward) }
        // Delivery, not policy: the programs take the fast path only after a pass.
        if policy.fastPath { flags.insert(.fastPath) }
        // Translation, not policy: only packets row 8 passed are translated.
        if policy.natInForce == .ebpf { flags.formUnion([.nat, .natDrain]) }
        var record = ConfigRecord(flags: flags, bridgeIfindex: facts.bridgeIfindex, bridgeMAC: facts.bridgeMAC)
        if let address = facts.bridgeAddress {
            record.bridgeAddress = address.address
            record.bridgeSubnet = address.network.address
            record.bridgeNetmask = IPv4Address(address.netmask)
        }
        // Only then do the programs look a non-subnet address up in bn_containers.
        let outside = policy.containers.contains { container in
            let subnet =
                container.network.map { facts.networks[$0]?.address?.network } ?? facts.bridgeAddress?.network
            return subnet?.contains(container.ip) != true
        }
        if outside { record.flags.insert(.outsideContainers) }
        if !policy.networks.isEmpty { record.flags.insert(.networks) }
        if !policy.peers.isEmpty { record.flags.insert(.peers) }
        if policy.peerPolicy == .allow { record.flags.insert(.peerAllow) }
        if policy.bridgeIPv6 != nil || policy.networks.contains(where: { $0.ipv6 != nil }) {
            record.flags.insert(.ipv6)
        }
        return record
    }

    /// Docker's link rules (docs/docker.md, "Links"), compiled whatever `icc` says
    /// so that switching icc is a single config write. For each link (P, C) and
    /// each exposed port (proto, port) of C: forward (P → C, dport) and reverse
    /// (C → P, sport); plus a pair rule each way for every protocol that has a
    /// rule. Links naming unknown containers are skipped (validation reports them).
    /// `policy` is normalized: a child's `exposed` already holds its published ports.
    static func linkRules(for policy: Policy) -> Set<LinkRule> {
        let byName = Dictionary(policy.containers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var rules = Set<LinkRule>()
        for link in policy.links {
            guard let parent = byName[link.parent], let child = byName[link.child], parent.ip != child.ip else {
                continue
            }
            var protocols = Set<UInt8>()
            for spec in child.exposed {
                let proto = spec.proto.number
                protocols.insert(proto)
                rules.insert(
                    LinkRule(
                        source: parent.ip, destination: child.ip, port: spec.port, proto: proto, direction: .forward))
                rules.insert(
                    LinkRule(
                        source: child.ip, destination: parent.ip, port: spec.port, proto: proto, direction: .reverse))
            }
            for proto in protocols {
                rules.insert(
                    LinkRule(source: parent.ip, destination: child.ip, port: 0, proto: proto, direction: .pair))
                rules.insert(
                    LinkRule(source: child.ip, destination: parent.ip, port: 0, proto: proto, direction: .pair))
            }
        }
        return rules
    }
}
