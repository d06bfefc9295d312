// SPDX-License-Identifier: Apache-2.0
//
// User-defined Docker bridge networks as the netfilter fallbacks need them:
// each network's bridge by name, its address and MAC (from the compiled
// `bn_networks` records), its icc and internal flags, and its NAT settings
// (from the policy: the maps have no NAT). docs/fallback.md, "Networks".

/// A user-defined bridge network, beside the default bridge.
public struct NetfilterNetwork: Hashable, Sendable {
    public var name: String
    public var bridge: String
    /// The bridge's address and prefix; nil when it has none.
    public var address: IPv4InterfaceAddress?
    /// The bridge's MAC (`.zero` when unknown).
    public var mac: MACAddress
    public var icc: Bool
    public var `internal`: Bool
    /// `enable_ip_masquerade` (never on an internal network).
    public var masquerade: Bool
    /// `host_ipv4`: SNAT to this address instead of masquerading.
    public var sourceAddress: IPv4Address?
    /// Ports of its bridge no container of the policy claims (when it was
    /// compiled), sorted: unknown ports of this network.
    public var unknownPorts: [String]
    /// Dual stack: its IPv6 gateway and prefix.
    public var ipv6: IPv6InterfaceAddress?

    public init(
        name: String, bridge: String, address: IPv4InterfaceAddress?, mac: MACAddress = .zero, icc: Bool = true,
        internal: Bool = false, masquerade: Bool = true, sourceAddress: IPv4Address? = nil, unknownPorts: [String] = [],
        ipv6: IPv6InterfaceAddress? = nil
    ) {
        self.ipv6 = ipv6
        self.unknownPorts = unknownPorts.sorted()
        self.name = name
        self.bridge = bridge
        self.address = address
        self.mac = mac
        self.icc = icc
        self.internal = `internal`
        self.masquerade = masquerade
        self.sourceAddress = sourceAddress
    }

    public var subnet: IPv4CIDR? { address?.network }
}

extension NetfilterPolicy {
    /// The user-defined networks of `state` (slots 1...), with the NAT
    /// settings of the policy network on the same bridge, in policy order.
    static func networks(
        of state: MapState, policyNetworks: [BridgeNetwork], name: (UInt32, String) -> String,
        portName: (UInt32) -> String?
    ) -> [NetfilterNetwork] {
        state.networks.filter { $0.key != 0 }.compactMap { slot, record -> (Int, NetfilterNetwork)? in
            let bridge = name(record.bridgeIfindex, "network bridge")
            guard let index = policyNetworks.firstIndex(where: { $0.bridge == bridge }) else { return nil }
            let network = policyNetworks[index]
            let prefix = UInt8(record.netmask.value.nonzeroBitCount)
            let address =
                record.netmask == .any ? nil : IPv4InterfaceAddress(address: record.bridgeAddress, prefixLength: prefix)
            return (
                index,
                NetfilterNetwork(
                    name: network.name, bridge: bridge, address: address, mac: record.bridgeMAC,
                    icc: record.flags.contains(.icc), internal: record.flags.contains(.internal),
                    masquerade: network.masquerade && !network.internal, sourceAddress: network.hostIPv4,
                    // A port gone since, or with a name the rules cannot hold, is
                    // left out: it is held like one that joined after the apply.
                    unknownPorts: state.ports.filter { !$0.value.known && $0.value.network == slot }.keys
                        .compactMap(portName).filter { NetfilterName.problem($0) == nil },
                    ipv6: ipv6(ofSlot: slot, in: state))
            )
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// Every bridge the rules police: the default one first.
    public var bridges: [String] { [bridge] + networks.map(\.bridge) }

    /// Every bridge's address (each a host address).
    public var gateways: [IPv4Address] {
        ([bridgeAddress] + networks.map(\.address)).compactMap { $0?.address }
    }

    /// Every bridge's subnet, the default bridge's first.
    public var subnets: [IPv4CIDR] { ([bridgeSubnet] + networks.map(\.subnet)).compactMap { $0 } }

    /// The bridges whose network keeps to its subnet.
    public var internalBridges: [String] { networks.filter(\.internal).map(\.bridge) }

    /// The IPv6 gateway and prefix of network slot `slot` in `state` (bn_subnets6).
    static func ipv6(ofSlot slot: UInt16, in state: MapState) -> IPv6InterfaceAddress? {
        state.subnets6.first { $0.value.network == slot }.flatMap {
            IPv6InterfaceAddress(address: $0.value.bridgeAddress, prefixLength: $0.key.prefixLength)
        }
    }

    /// Dual stack: every IPv6 gateway with its prefix, the default bridge's first.
    public var ipv6Networks: [IPv6InterfaceAddress] { ([bridgeIPv6] + networks.map(\.ipv6)).compactMap { $0 } }

    /// Whether some network has IPv6.
    public var hasIPv6: Bool { !ipv6Networks.isEmpty }

    /// The IPv6 gateway and prefix of the network on `bridge` (nil: the default bridge).
    public func ipv6(ofBridge bridge: String?) -> IPv6InterfaceAddress? {
        bridge.map { network(onBridge: $0)?.ipv6 } ?? bridgeIPv6
    }

    /// The user-defined network on `bridge` (nil: the default bridge, or none).
    public func network(onBridge bridge: String?) -> NetfilterNetwork? {
        bridge.flatMap { name in networks.first { $0.bridge == name } }
    }

    /// icc of the network on `bridge` (nil: the default bridge).
    public func icc(ofBridge bridge: String?) -> Bool { network(onBridge: bridge)?.icc ?? icc }

    /// Whether some network (the default bridge included) has icc off.
    public var anyICCOff: Bool { !icc || networks.contains { !$0.icc } }

    /// The subnet of the network on `bridge` (nil: the default bridge).
    func subnet(ofBridge bridge: String?) -> IPv4CIDR? {
        bridge.map { network(onBridge: $0)?.subnet } ?? bridgeSubnet
    }
}
