// SPDX-License-Identifier: Apache-2.0
//
// Policy + facts about the host → the map contents that enforce it.
// Core does no syscalls: the caller resolves interface indexes and the
// bridge's address and hands them in as HostFacts.

import BPFNetShared

/// What the compiler needs to know about the host.
public struct HostFacts: Sendable {
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
        var problems = policy.problems(bridgeAddress: facts.bridgeAddress)

        var state = MapState()
        state.config = config(for: policy, facts: facts)

        for (i, container) in policy.containers.enumerated() {
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
            state.containers[container.ip] = ContainerRecord(portIfindex: ifindex, mac: container.mac)
            state.ports[ifindex] = PortRecord(address: container.ip, mac: container.mac)
            state.macs[container.mac] = container.ip
            state.names[container.ip] = ContainerNameRecord.truncated(container.name)
        }

        state.links = linkRules(for: policy)

        for container in policy.containers {
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

    /// The `bn_config` record: policy flags, the bridge's address and subnet.
    public static func config(for policy: Policy, facts: HostFacts) -> ConfigRecord {
        var flags: ConfigFlags = [.loaded]
        if policy.icc { flags.insert(.icc) }
        if policy.forwardPolicy == .accept { flags.insert(.forwardAccept) }
        if policy.ipForward { flags.insert(.ipForward) }
        // Delivery, not policy: the programs take the fast path only after a pass.
        if policy.fastPath { flags.insert(.fastPath) }
        var record = ConfigRecord(flags: flags, bridgeIfindex: facts.bridgeIfindex, bridgeMAC: facts.bridgeMAC)
        if let address = facts.bridgeAddress {
            record.bridgeAddress = address.address
            record.bridgeSubnet = address.network.address
            record.bridgeNetmask = IPv4Address(address.netmask)
        }
        // Only then do the programs look a non-subnet address up in bn_containers.
        if policy.containers.contains(where: { facts.bridgeAddress?.network.contains($0.ip) != true }) {
            record.flags.insert(.outsideContainers)
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
