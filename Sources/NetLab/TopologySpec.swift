// SPDX-License-Identifier: Apache-2.0
//
// The declarative description of a test/demo host: one "host" namespace with
// a bridge, container namespaces hanging off it on veths, and external
// namespaces connected to the host on veths of their own.
//
//   container ns: eth0 ══ <hostInterface> ─┐
//   container ns: eth0 ══ <hostInterface> ─┼─ <bridge> ── host ns ── <ext hostInterface> ══ eth0 :external ns
//                                          ┘

import BPFNetCore

/// The Linux bridge in the host namespace (Docker's `docker0`).
public struct BridgeSpec: Sendable, Hashable {
    public var name: String
    /// The bridge's own address; its subnet is the container subnet.
    public var address: IPv4InterfaceAddress
    /// nil: 02:42 followed by the bridge address (stable, unlike the
    /// lowest-port MAC a bridge takes by default, which changes as ports come and go).
    public var mac: MACAddress?
    public var mtu: Int?

    public init(name: String = "docker0", address: IPv4InterfaceAddress, mac: MACAddress? = nil, mtu: Int? = nil) {
        self.name = name
        self.address = address
        self.mac = mac
        self.mtu = mtu
    }
}

/// A container: its own namespace with `eth0`, a veth to the bridge.
public struct ContainerSpec: Sendable, Hashable {
    /// Role name: part of the namespace name and the probe server's name
    /// (lowercase letters, digits, '-'; at most 20 characters).
    public var name: String
    /// On the bridge subnet; the prefix length is the bridge's.
    public var address: IPv4Address
    /// nil: Docker 20.10's 02:42 + IPv4 address.
    public var mac: MACAddress?
    /// The host-side veth, enslaved to the bridge; nil: "veth" + name (≤ 15 characters).
    public var hostInterface: String?
    /// `ethtool -K <hostInterface> gro on` (NAPI for XDP frames sent from this container).
    public var hostSideGRO: Bool
    /// `ethtool -K eth0 gro on` inside the container (NAPI for DEVMAP redirects to it).
    public var containerSideGRO: Bool
    /// The bridge it hangs off: one of `TopologySpec.networks` by name; nil: the main bridge.
    public var bridge: String?

    public init(
        name: String, address: IPv4Address, mac: MACAddress? = nil, hostInterface: String? = nil,
        hostSideGRO: Bool = false, containerSideGRO: Bool = false, bridge: String? = nil
    ) {
        self.bridge = bridge
        self.name = name
        self.address = address
        self.mac = mac
        self.hostInterface = hostInterface
        self.hostSideGRO = hostSideGRO
        self.containerSideGRO = containerSideGRO
    }

    public var resolvedMAC: MACAddress { mac ?? MACAddress(dockerStyleFor: address) }
    public var resolvedHostInterface: String { hostInterface ?? "veth" + name }
}

/// A machine outside the host, on a veth whose host side is an ext_if.
public struct ExternalSpec: Sendable, Hashable {
    public var name: String
    /// The host-side interface (the ext_if bpfnet attaches to), e.g. "ext0".
    public var hostInterface: String
    /// The host's address on that link.
    public var hostAddress: IPv4InterfaceAddress
    /// The external side's addresses on its `eth0`; the first is the primary
    /// and the next hop for the host's routes back to the others. Addresses
    /// outside the link subnet get a host route back via the primary.
    public var addresses: [IPv4InterfaceAddress]
    /// Route the bridge (container) subnet via the host, so direct routing
    /// to containers can be tried (row 9 of docs/policy.md).
    public var routeToBridge: Bool
    /// More destinations routed via the host.
    public var extraRoutes: [IPv4CIDR]
    public var hostSideGRO: Bool

    public init(
        name: String, hostInterface: String, hostAddress: IPv4InterfaceAddress,
        addresses: [IPv4InterfaceAddress],
        routeToBridge: Bool = true, extraRoutes: [IPv4CIDR] = [], hostSideGRO: Bool = false
    ) {
        self.name = name
        self.hostInterface = hostInterface
        self.hostAddress = hostAddress
        self.addresses = addresses
        self.routeToBridge = routeToBridge
        self.extraRoutes = extraRoutes
        self.hostSideGRO = hostSideGRO
    }
}

public struct TopologySpec: Sendable, Hashable {
    public var bridge: BridgeSpec
    /// More bridges in the host namespace (user-defined Docker networks),
    /// each with its own subnet; containers name theirs in `bridge`.
    public var networks: [BridgeSpec] = []
    public var containers: [ContainerSpec]
    public var externals: [ExternalSpec]
    /// net.ipv4.ip_forward in the host namespace (the only place it is set).
    public var ipForward: Bool
    /// net.ipv6.conf.{all,default}.disable_ipv6 in every namespace; set before
    /// any interface exists, so no link-local addresses or router solicitations.
    public var disableIPv6: Bool
    /// net.bridge.bridge-nf-call-{iptables,ip6tables} in the host namespace.
    /// Per namespace on this kernel and 1 by default in a new one: always set.
    public var bridgeNetfilter: Bool
    /// Permanent neighbour entries (containers ↔ bridge address, containers
    /// among themselves) and static FDB entries on the bridge, so no ARP and
    /// no flooding disturb a measurement.
    public var staticNeighbours: Bool
    /// Further sysctls for the host namespace ("net.ipv4.conf.all.rp_filter": "0").
    public var hostSysctls: [String: String]

    public init(
        bridge: BridgeSpec, containers: [ContainerSpec] = [], externals: [ExternalSpec] = [],
        ipForward: Bool = true, disableIPv6: Bool = true, bridgeNetfilter: Bool = false,
        staticNeighbours: Bool = false, hostSysctls: [String: String] = [:]
    ) {
        self.bridge = bridge
        self.containers = containers
        self.externals = externals
        self.ipForward = ipForward
        self.disableIPv6 = disableIPv6
        self.bridgeNetfilter = bridgeNetfilter
        self.staticNeighbours = staticNeighbours
        self.hostSysctls = hostSysctls
    }

    /// The name of the host namespace's role.
    public static let hostRole = "host"

    /// Every role: "host", then containers, then externals.
    public var roles: [String] { [Self.hostRole] + containers.map(\.name) + externals.map(\.name) }

    /// Checks names, lengths and addresses before anything is created.
    public func validate() throws(NetLabError) {
        func fail(_ message: String) -> NetLabError { .invalidSpec(message) }
        var seen: Set<String> = []
        for role in roles {
            guard !role.isEmpty, role.count <= 20, role.first != "-",
                role.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
            else {
                throw fail("name '\(role)': use 1-20 lowercase letters, digits and '-' (not first)")
            }
            guard seen.insert(role).inserted else {
                throw fail("name '\(role)' is used twice (\"host\" is reserved for the host namespace)")
            }
        }
        var hostInterfaces: Set<String> = [bridge.name]
        try Self.checkInterfaceName(bridge.name, what: "bridge")
        for network in networks {
            try Self.checkInterfaceName(network.name, what: "bridge")
            guard hostInterfaces.insert(network.name).inserted else {
                throw fail("bridge '\(network.name)' is used twice")
            }
            guard network.address.prefixLength <= 30 else {
                throw fail("bridge address \(network.address): the subnet must be /30 or larger")
            }
            try Self.checkAddress(network.address.address, what: "bridge \(network.name) address")
            for other in [bridge] + networks where other.name != network.name {
                if other.address.network.overlaps(network.address.network) {
                    throw fail("bridge \(network.name)'s subnet overlaps \(other.name)'s")
                }
            }
        }
        for name in containers.map(\.resolvedHostInterface) + externals.map(\.hostInterface) {
            try Self.checkInterfaceName(name, what: "host-side interface")
            guard hostInterfaces.insert(name).inserted else {
                throw fail("host-side interface '\(name)' is used twice")
            }
        }
        guard bridge.address.prefixLength <= 30 else {
            throw fail("bridge address \(bridge.address): the subnet must be /30 or larger")
        }
        try Self.checkAddress(bridge.address.address, what: "bridge address")
        var addresses: [IPv4Address: String] = [bridge.address.address: "the bridge"]
        for container in containers {
            try Self.checkAddress(container.address, what: "container \(container.name)")
            guard let own = self.bridge(of: container) else {
                throw fail("container \(container.name): no bridge '\(container.bridge ?? "")' among the networks")
            }
            let subnet = own.address.network
            guard subnet.contains(container.address) else {
                throw fail(
                    "container \(container.name) address \(container.address) is outside the bridge subnet \(subnet)")
            }
            if let owner = addresses.updateValue("container \(container.name)", forKey: container.address) {
                throw fail("container \(container.name) address \(container.address) is already used by \(owner)")
            }
        }
        for external in externals {
            guard let primary = external.addresses.first else {
                throw fail("external \(external.name) needs at least one address")
            }
            for address in [external.hostAddress] + external.addresses {
                try Self.checkAddress(address.address, what: "external \(external.name)")
                for bridge in [bridge] + networks where bridge.address.network.contains(address.address) {
                    throw fail(
                        "external \(external.name) address \(address) overlaps the bridge subnet \(bridge.address.network)"
                    )
                }
            }
            guard external.hostAddress.network.contains(primary.address),
                primary.address != external.hostAddress.address
            else {
                throw fail(
                    "external \(external.name): the first address \(primary) must be on the host's link subnet \(external.hostAddress.network) (it is the next hop for the others)"
                )
            }
        }
    }

    /// The bridge `container` hangs off (nil: it names no bridge of the spec).
    public func bridge(of container: ContainerSpec) -> BridgeSpec? {
        guard let name = container.bridge else { return bridge }
        return networks.first { $0.name == name }
    }

    static func checkInterfaceName(_ name: String, what: String) throws(NetLabError) {
        guard !name.isEmpty, name.utf8.count <= 15,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
            name != "lo", name != "eth0"
        else {
            throw .invalidSpec(
                "\(what) name '\(name)': 1-15 characters of letters, digits, '-', '_', '.' (not lo/eth0)")
        }
    }

    /// The machine's own uplink is 192.0.2.0/24; a namespace using it would
    /// make every failure ambiguous.
    static let forbidden = IPv4CIDR("192.0.2.0/24")!

    static func checkAddress(_ address: IPv4Address, what: String) throws(NetLabError) {
        if forbidden.contains(address) {
            throw .invalidSpec(
                "\(what) \(address) is in 192.0.2.0/24, the machine's uplink — use 10.x, 198.51.100.0/24 or 203.0.113.0/24"
            )
        }
        if address.isMulticast || address.isLimitedBroadcast || address.value >> 24 == 127 || address.value == 0 {
            throw .invalidSpec("\(what) \(address) is not a unicast address")
        }
    }
}
