// SPDX-License-Identifier: Apache-2.0
//
// MapState: everything the BPF policy maps hold, as Swift values (the records
// of MapRecords.swift), and the entries, keys and writes that the compiler,
// the reconciler and the map readers and writers exchange. What they are in
// bytes is MapEncoding.swift.

// MARK: - MapState

/// The complete contents of the policy maps. `PolicyCompiler` builds the
/// desired one; a `MapReader` rebuilds the actual one from the kernel; the
/// reconciler turns the difference into ordered map writes.
public struct MapState: Hashable, Sendable {
    public var config: ConfigRecord
    /// `bn_containers`: container address → port and MAC.
    public var containers: [IPv4Address: ContainerRecord]
    /// `bn_macs`: container MAC → address.
    public var macs: [MACAddress: IPv4Address]
    /// `bn_links` (values are always flags 0).
    public var links: Set<LinkRule>
    /// `bn_published`.
    public var published: [PublishedKey: PublishedTarget]
    /// `bn_ext_ifs`: ifindex → flags.
    public var extInterfaces: [UInt32: ExtInterfaceRecord]
    /// `bn_allow_src` (values are always 1).
    public var allowSources: Set<AllowSource>
    /// `bn_allow_src6`: the IPv6 entries of the same lists.
    public var allowSources6: Set<AllowSource6>
    /// `bn_names`: container address → name (for status only).
    public var names: [IPv4Address: String]
    /// `bn_ports`: bridge port ifindex → the container behind it; the same
    /// facts as `containers`, keyed for the port program's identity check.
    public var ports: [UInt32: PortRecord]
    /// `bn_networks`: slot → network (0: the default bridge).
    public var networks: [UInt16: NetworkRecord]
    /// `bn_subnets`: every network's subnet → its slot and gateway.
    public var subnets: [IPv4CIDR: SubnetRecord]
    /// `bn_peers`: every peer host's container subnet → the peer's own address.
    public var peers: [IPv4CIDR: IPv4Address]
    /// `bn_subnets6`: every dual-stack network's IPv6 subnet → its slot and gateway.
    public var subnets6: [IPv6CIDR: Subnet6Record]
    /// `bn_containers6`: container IPv6 address → port and MAC.
    public var containers6: [IPv6Address: ContainerRecord]

    public init(
        config: ConfigRecord = .zero, containers: [IPv4Address: ContainerRecord] = [:],
        macs: [MACAddress: IPv4Address] = [:], links: Set<LinkRule> = [],
        published: [PublishedKey: PublishedTarget] = [:], extInterfaces: [UInt32: ExtInterfaceRecord] = [:],
        allowSources: Set<AllowSource> = [], names: [IPv4Address: String] = [:], ports: [UInt32: PortRecord] = [:],
        allowSources6: Set<AllowSource6> = [], networks: [UInt16: NetworkRecord] = [:],
        subnets: [IPv4CIDR: SubnetRecord] = [:], peers: [IPv4CIDR: IPv4Address] = [:],
        subnets6: [IPv6CIDR: Subnet6Record] = [:], containers6: [IPv6Address: ContainerRecord] = [:]
    ) {
        self.config = config
        self.containers = containers
        self.macs = macs
        self.links = links
        self.published = published
        self.extInterfaces = extInterfaces
        self.allowSources = allowSources
        self.allowSources6 = allowSources6
        self.names = names
        self.ports = ports
        self.networks = networks
        self.subnets = subnets
        self.peers = peers
        self.subnets6 = subnets6
        self.containers6 = containers6
    }

    /// Freshly created maps: zero config, no entries.
    public static let empty = MapState()

    /// Every entry, map by map in `MapKind` order, each map sorted.
    public var entries: [MapEntry] {
        var result: [MapEntry] = [.config(config)]
        result += containers.sorted { $0.key < $1.key }.map { .container($0.key, $0.value) }
        result += macs.sorted { $0.value < $1.value }.map { .mac($0.key, $0.value) }
        result += links.sorted().map { .link($0) }
        result += published.sorted { $0.key < $1.key }.map { .published($0.key, $0.value) }
        result += extInterfaces.sorted { $0.key < $1.key }.map { .extInterface(ifindex: $0.key, $0.value) }
        result += allowSources.sorted().map { .allowSource($0) }
        result += names.sorted { $0.key < $1.key }.map { .name($0.key, $0.value) }
        result += ports.sorted { $0.key < $1.key }.map { .port(ifindex: $0.key, $0.value) }
        result += allowSources6.sorted().map { .allowSource6($0) }
        result += networks.sorted { $0.key < $1.key }.map { .network($0.key, $0.value) }
        result += subnets.sorted { $0.key < $1.key }.map { .subnet($0.key, $0.value) }
        result += peers.sorted { $0.key < $1.key }.map { .peer($0.key, address: $0.value) }
        result += subnets6.sorted { $0.key < $1.key }.map { .subnet6($0.key, $0.value) }
        result += containers6.sorted { $0.key < $1.key }.map { .container6($0.key, $0.value) }
        return result
    }

    /// Writes one entry (insert or replace).
    public mutating func upsert(_ entry: MapEntry) {
        switch entry {
        case .config(let record): config = record
        case .container(let address, let record): containers[address] = record
        case .mac(let mac, let address): macs[mac] = address
        case .link(let rule): links.insert(rule)
        case .published(let key, let target): published[key] = target
        case .extInterface(let ifindex, let record): extInterfaces[ifindex] = record
        case .allowSource(let source): allowSources.insert(source)
        case .name(let address, let name): names[address] = name
        case .port(let ifindex, let record): ports[ifindex] = record
        case .allowSource6(let source): allowSources6.insert(source)
        case .network(let id, let record): networks[id] = record
        case .subnet(let prefix, let record): subnets[prefix] = record
        case .peer(let prefix, let address): peers[prefix] = address
        case .subnet6(let prefix, let record): subnets6[prefix] = record
        case .container6(let address, let record): containers6[address] = record
        }
    }

    /// Removes one entry; deleting the config resets it to zero (an ARRAY slot
    /// cannot be removed).
    public mutating func delete(_ key: MapKey) {
        switch key {
        case .config: config = .zero
        case .container(let address): containers[address] = nil
        case .mac(let mac): macs[mac] = nil
        case .link(let rule): links.remove(rule)
        case .published(let key): published[key] = nil
        case .extInterface(let ifindex): extInterfaces[ifindex] = nil
        case .allowSource(let source): allowSources.remove(source)
        case .name(let address): names[address] = nil
        case .port(let ifindex): ports[ifindex] = nil
        case .allowSource6(let source): allowSources6.remove(source)
        case .network(let id): networks[id] = nil
        case .subnet(let prefix): subnets[prefix] = nil
        case .peer(let prefix): peers[prefix] = nil
        case .subnet6(let prefix): subnets6[prefix] = nil
        case .container6(let address): containers6[address] = nil
        }
    }

    public mutating func apply(_ change: MapChange) {
        switch change {
        case .upsert(let entry): upsert(entry)
        case .delete(let key): delete(key)
        }
    }
}

// MARK: - Network slots

extension MapState {
    /// The same state with each user-defined network in the `bn_networks`
    /// slot `current` already gives its bridge (by ifindex), and new ones in
    /// slots neither uses: the compiler numbers networks in policy order, and
    /// renumbering them would rewrite every port and container of a network
    /// whenever another one comes or goes (and, between those writes, judge
    /// ports by another network's record). Slot 0 stays the default bridge.
    public func keepingNetworkIDs(of current: MapState) -> MapState {
        let currentByBridge = Dictionary(
            current.networks.filter { $0.key != 0 }.map { ($0.value.bridgeIfindex, $0.key) },
            uniquingKeysWith: min)
        var mapping: [UInt16: UInt16] = [0: 0]
        var taken: Set<UInt16> = [0]
        for (id, record) in networks where id != 0 {
            if let kept = currentByBridge[record.bridgeIfindex], !taken.contains(kept) {
                mapping[id] = kept
                taken.insert(kept)
            }
        }
        // Fresh slots: not one a current network holds (its ports may still name it).
        var next: UInt16 = 1
        for id in networks.keys.sorted() where mapping[id] == nil {
            while taken.contains(next) || current.networks[next] != nil { next += 1 }
            mapping[id] = next
            taken.insert(next)
        }
        guard mapping.contains(where: { $0.key != $0.value }) else { return self }
        var result = self
        result.networks = Dictionary(uniqueKeysWithValues: networks.map { (mapping[$0.key]!, $0.value) })
        // Every record that names a network slot.
        func renumbered<Record: NetworkSlotted>(_ record: Record) -> Record {
            var record = record
            record.network = mapping[record.network] ?? record.network
            return record
        }
        result.containers = containers.mapValues(renumbered)
        result.ports = ports.mapValues(renumbered)
        result.subnets = subnets.mapValues(renumbered)
        result.subnets6 = subnets6.mapValues(renumbered)
        result.containers6 = containers6.mapValues(renumbered)
        return result
    }
}

/// A map record that names its network's `bn_networks` slot.
protocol NetworkSlotted { var network: UInt16 { get set } }
extension ContainerRecord: NetworkSlotted {}
extension PortRecord: NetworkSlotted {}
extension SubnetRecord: NetworkSlotted {}
extension Subnet6Record: NetworkSlotted {}

// MARK: - Entries, keys and changes

/// One map entry, key and value.
public enum MapEntry: Hashable, Sendable, CustomStringConvertible {
    case config(ConfigRecord)
    case container(IPv4Address, ContainerRecord)
    case mac(MACAddress, IPv4Address)
    case link(LinkRule)
    case published(PublishedKey, PublishedTarget)
    case extInterface(ifindex: UInt32, ExtInterfaceRecord)
    case allowSource(AllowSource)
    case name(IPv4Address, String)
    case port(ifindex: UInt32, PortRecord)
    case allowSource6(AllowSource6)
    case network(UInt16, NetworkRecord)
    case subnet(IPv4CIDR, SubnetRecord)
    /// A peer host's container subnet and the peer's own address.
    case peer(IPv4CIDR, address: IPv4Address)
    case subnet6(IPv6CIDR, Subnet6Record)
    case container6(IPv6Address, ContainerRecord)

    public var kind: MapKind { key.kind }

    public var key: MapKey {
        switch self {
        case .config: .config
        case .container(let address, _): .container(address)
        case .mac(let mac, _): .mac(mac)
        case .link(let rule): .link(rule)
        case .published(let key, _): .published(key)
        case .extInterface(let ifindex, _): .extInterface(ifindex)
        case .allowSource(let source): .allowSource(source)
        case .name(let address, _): .name(address)
        case .port(let ifindex, _): .port(ifindex)
        case .allowSource6(let source): .allowSource6(source)
        case .network(let id, _): .network(id)
        case .subnet(let prefix, _): .subnet(prefix)
        case .peer(let prefix, _): .peer(prefix)
        case .subnet6(let prefix, _): .subnet6(prefix)
        case .container6(let address, _): .container6(address)
        }
    }

    public var description: String {
        switch self {
        case .config(let c):
            "config flags=0x\(String(c.flags.rawValue, radix: 16)) bridge=\(c.bridgeAddress) subnet=\(c.bridgeSubnet) "
                + "mask=\(c.bridgeNetmask) ifindex=\(c.bridgeIfindex) generation=\(c.generation)"
        case .container(let address, let r): "container \(address) port=\(r.portIfindex) mac=\(r.mac)"
        case .mac(let mac, let address): "mac \(mac) → \(address)"
        case .link(let rule): "link \(rule)"
        case .published(let key, let target): "published \(key) → \(target.containerAddress):\(target.containerPort)"
        case .extInterface(let ifindex, let r): "ext_if \(ifindex) flags=\(r.flags.rawValue)"
        case .allowSource(let source): "allow \(source)"
        case .name(let address, let name): "name \(address) = \(name)"
        case .port(let ifindex, let r):
            r.known
                ? "port \(ifindex) → \(r.address) mac=\(r.mac) network=\(r.network)"
                : "port \(ifindex) unknown container, network=\(r.network)"
        case .allowSource6(let source): "allow \(source)"
        case .network(let id, let r):
            "network \(id) bridge=\(r.bridgeAddress) subnet=\(r.subnet) mask=\(r.netmask) "
                + "ifindex=\(r.bridgeIfindex) flags=\(r.flags.rawValue)"
        case .subnet(let prefix, let r): "subnet \(prefix) → network \(r.network) gateway \(r.bridgeAddress)"
        case .peer(let prefix, let address): "peer subnet \(prefix) → host \(address)"
        case .subnet6(let prefix, let r): "subnet \(prefix) → network \(r.network) gateway \(r.bridgeAddress)"
        case .container6(let address, let r):
            "container \(address) port=\(r.portIfindex) mac=\(r.mac) network=\(r.network)"
        }
    }
}

/// A key of one of the policy maps.
public enum MapKey: Hashable, Sendable, CustomStringConvertible {
    case config
    case container(IPv4Address)
    case mac(MACAddress)
    case link(LinkRule)
    case published(PublishedKey)
    case extInterface(UInt32)
    case allowSource(AllowSource)
    case name(IPv4Address)
    case port(UInt32)
    case allowSource6(AllowSource6)
    case network(UInt16)
    case subnet(IPv4CIDR)
    case peer(IPv4CIDR)
    case subnet6(IPv6CIDR)
    case container6(IPv6Address)

    public var kind: MapKind {
        switch self {
        case .config: .config
        case .container: .containers
        case .mac: .macs
        case .link: .links
        case .published: .published
        case .extInterface: .extInterfaces
        case .allowSource: .allowSources
        case .name: .names
        case .port: .ports
        case .allowSource6: .allowSources6
        case .network: .networks
        case .subnet: .subnets
        case .peer: .peers
        case .subnet6: .subnets6
        case .container6: .containers6
        }
    }

    public var description: String {
        switch self {
        case .config: "config"
        case .container(let address): "container \(address)"
        case .mac(let mac): "mac \(mac)"
        case .link(let rule): "link \(rule)"
        case .published(let key): "published \(key)"
        case .extInterface(let ifindex): "ext_if \(ifindex)"
        case .allowSource(let source): "allow \(source)"
        case .name(let address): "name \(address)"
        case .port(let ifindex): "port \(ifindex)"
        case .allowSource6(let source): "allow \(source)"
        case .network(let id): "network \(id)"
        case .subnet(let prefix): "subnet \(prefix)"
        case .peer(let prefix): "peer subnet \(prefix)"
        case .subnet6(let prefix): "subnet \(prefix)"
        case .container6(let address): "container \(address)"
        }
    }
}

/// One map write.
public enum MapChange: Hashable, Sendable, CustomStringConvertible {
    case upsert(MapEntry)
    case delete(MapKey)

    public var kind: MapKind {
        switch self {
        case .upsert(let entry): entry.kind
        case .delete(let key): key.kind
        }
    }

    public var description: String {
        switch self {
        case .upsert(let entry): "upsert \(entry)"
        case .delete(let key): "delete \(key)"
        }
    }
}
