// SPDX-License-Identifier: Apache-2.0
//
// The policy maps as the kernel holds them: their names and key/value sizes
// (MapKind), every entry and key to and from the exact bytes of the C structs,
// and the error for bytes that do not decode.

import BPFNetShared

// MARK: - Maps

/// The policy maps (the ones the control plane writes and the reconciler diffs).
public enum MapKind: String, CaseIterable, Hashable, Sendable, Codable {
    case config, containers, macs, links, published, extInterfaces, allowSources, names, ports, allowSources6
    case networks, subnets, peers, subnets6, containers6

    /// The C map id.
    public var id: bpfnet_map_id {
        switch self {
        case .config: BPFNET_MAP_ID_CONFIG
        case .containers: BPFNET_MAP_ID_CONTAINERS
        case .macs: BPFNET_MAP_ID_MACS
        case .links: BPFNET_MAP_ID_LINKS
        case .published: BPFNET_MAP_ID_PUBLISHED
        case .extInterfaces: BPFNET_MAP_ID_EXT_IFS
        case .allowSources: BPFNET_MAP_ID_ALLOW_SRC
        case .names: BPFNET_MAP_ID_NAMES
        case .ports: BPFNET_MAP_ID_PORTS
        case .allowSources6: BPFNET_MAP_ID_ALLOW_SRC6
        case .networks: BPFNET_MAP_ID_NETWORKS
        case .subnets: BPFNET_MAP_ID_SUBNETS
        case .peers: BPFNET_MAP_ID_PEERS
        case .subnets6: BPFNET_MAP_ID_SUBNETS6
        case .containers6: BPFNET_MAP_ID_CONTAINERS6
        }
    }

    /// The map's name in the object and under the pin directory ("bn_links").
    public var mapName: String { Self.name(of: id) }

    /// `bpfnet_map_name()`: the name of any map, policy or not.
    public static func name(of id: bpfnet_map_id) -> String { String(cString: bpfnet_map_name(id)) }

    /// Key and value sizes in bytes, as the C structs have them.
    public var keySize: Int {
        switch self {
        case .config, .containers, .extInterfaces, .names, .ports, .networks: MemoryLayout<UInt32>.size
        case .subnets, .peers: MemoryLayout<bpfnet_subnet_key>.size
        case .macs: MemoryLayout<bpfnet_mac_key>.size
        case .links: MemoryLayout<bpfnet_link_key>.size
        case .published: MemoryLayout<bpfnet_published_key>.size
        case .allowSources: MemoryLayout<bpfnet_allow_key>.size
        case .allowSources6: MemoryLayout<bpfnet_allow6_key>.size
        case .subnets6: MemoryLayout<bpfnet_subnet6_key>.size
        case .containers6: MemoryLayout<bpfnet_addr6>.size
        }
    }

    public var valueSize: Int {
        switch self {
        case .config: MemoryLayout<bpfnet_config>.size
        case .containers: MemoryLayout<bpfnet_container>.size
        case .macs: MemoryLayout<UInt32>.size
        case .links: MemoryLayout<bpfnet_link_value>.size
        case .published: MemoryLayout<bpfnet_published_value>.size
        case .extInterfaces: MemoryLayout<bpfnet_ext_if>.size
        case .allowSources, .allowSources6: MemoryLayout<UInt32>.size
        case .names: MemoryLayout<bpfnet_container_name>.size
        case .ports: MemoryLayout<bpfnet_port>.size
        case .networks: MemoryLayout<bpfnet_network>.size
        case .subnets: MemoryLayout<bpfnet_subnet>.size
        case .peers: MemoryLayout<bpfnet_peer>.size
        case .subnets6: MemoryLayout<bpfnet_subnet6>.size
        case .containers6: MemoryLayout<bpfnet_container>.size
        }
    }
}

// MARK: - Entries and keys as bytes

extension MapEntry {
    /// The value exactly as the C struct lays it out.
    public var valueBytes: [UInt8] {
        switch self {
        case .config(let record): rawBytes(record.cValue)
        case .container(_, let record): rawBytes(record.cValue)
        case .mac(_, let address): rawBytes(address.networkOrder)
        case .link: rawBytes(LinkRule.cValue)
        case .published(_, let target): rawBytes(target.cValue)
        case .extInterface(_, let record): rawBytes(record.cValue)
        case .allowSource: rawBytes(AllowSource.cValue)
        case .name(_, let name): rawBytes(ContainerNameRecord.cValue(name))
        case .port(_, let record): rawBytes(record.cValue)
        case .allowSource6: rawBytes(AllowSource.cValue)
        case .network(_, let record): rawBytes(record.cValue)
        case .subnet(_, let record): rawBytes(record.cValue)
        case .peer(_, let address): rawBytes(bpfnet_peer(addr: address.networkOrder, flags: 0))
        case .subnet6(_, let record): rawBytes(record.cValue)
        case .container6(_, let record): rawBytes(record.cValue)
        }
    }

    public var keyBytes: [UInt8] { key.bytes }

    /// Decodes one entry from raw key/value bytes as read from `kind`'s map.
    public init(kind: MapKind, key: [UInt8], value: [UInt8]) throws(MapDecodingError) {
        guard key.count == kind.keySize, value.count == kind.valueSize else {
            throw MapDecodingError(
                map: kind, key: key,
                message: "expected a \(kind.keySize)-byte key and a "
                    + "\(kind.valueSize)-byte value, got \(key.count) and \(value.count) bytes; "
                    + "the pinned maps were created by an incompatible bpfnet; run `bpfnet unload` and load again")
        }
        switch kind {
        case .config:
            self = .config(ConfigRecord(load(value, as: bpfnet_config.self)))
        case .containers:
            self = .container(
                IPv4Address(networkOrder: load(key, as: UInt32.self)),
                ContainerRecord(load(value, as: bpfnet_container.self)))
        case .macs:
            self = .mac(
                MACAddress(load(key, as: bpfnet_mac_key.self)), IPv4Address(networkOrder: load(value, as: UInt32.self)))
        case .links:
            self = .link(LinkRule(load(key, as: bpfnet_link_key.self)))
        case .published:
            self = .published(
                PublishedKey(load(key, as: bpfnet_published_key.self)),
                PublishedTarget(load(value, as: bpfnet_published_value.self)))
        case .extInterfaces:
            self = .extInterface(
                ifindex: load(key, as: UInt32.self), ExtInterfaceRecord(load(value, as: bpfnet_ext_if.self)))
        case .allowSources:
            let raw = load(key, as: bpfnet_allow_key.self)
            guard let source = AllowSource(raw) else {
                throw MapDecodingError(
                    map: kind, key: key,
                    message: "prefixlen \(raw.prefixlen) is outside 32-64; "
                        + "bpfnet never writes such a key")
            }
            self = .allowSource(source)
        case .names:
            self = .name(
                IPv4Address(networkOrder: load(key, as: UInt32.self)),
                ContainerNameRecord.name(load(value, as: bpfnet_container_name.self)))
        case .ports:
            self = .port(ifindex: load(key, as: UInt32.self), PortRecord(load(value, as: bpfnet_port.self)))
        case .allowSources6:
            let raw = load(key, as: bpfnet_allow6_key.self)
            guard let source = AllowSource6(raw) else {
                throw MapDecodingError(
                    map: kind, key: key,
                    message: "prefixlen \(raw.prefixlen) is outside 32-160; bpfnet never writes such a key")
            }
            self = .allowSource6(source)
        case .networks:
            self = .network(
                UInt16(truncatingIfNeeded: load(key, as: UInt32.self)),
                NetworkRecord(load(value, as: bpfnet_network.self)))
        case .subnets:
            self = .subnet(
                try Self.subnetPrefix(kind, key), SubnetRecord(load(value, as: bpfnet_subnet.self)))
        case .peers:
            self = .peer(
                try Self.subnetPrefix(kind, key),
                address: IPv4Address(networkOrder: load(value, as: bpfnet_peer.self).addr))
        case .subnets6:
            let raw = load(key, as: bpfnet_subnet6_key.self)
            guard let prefix = IPv6CIDR(raw) else {
                throw MapDecodingError(
                    map: kind, key: key,
                    message: "prefixlen \(raw.prefixlen) is outside 0-128; bpfnet never writes such a key")
            }
            self = .subnet6(prefix, Subnet6Record(load(value, as: bpfnet_subnet6.self)))
        case .containers6:
            self = .container6(
                IPv6Address(load(key, as: bpfnet_addr6.self)), ContainerRecord(load(value, as: bpfnet_container.self)))
        }
    }

    /// The IPv4 prefix of an LPM key of bn_subnets or bn_peers.
    private static func subnetPrefix(_ kind: MapKind, _ key: [UInt8]) throws(MapDecodingError) -> IPv4CIDR {
        let raw = load(key, as: bpfnet_subnet_key.self)
        guard let prefix = IPv4CIDR(raw) else {
            throw MapDecodingError(
                map: kind, key: key,
                message: "prefixlen \(raw.prefixlen) is outside 0-32; bpfnet never writes such a key")
        }
        return prefix
    }
}

extension MapKey {
    /// The key exactly as the C map holds it.
    public var bytes: [UInt8] {
        switch self {
        case .config: rawBytes(UInt32(0))
        case .container(let address), .name(let address): rawBytes(address.networkOrder)
        case .mac(let mac): rawBytes(mac.cMacKey)
        case .link(let rule): rawBytes(rule.cKey)
        case .published(let key): rawBytes(key.cKey)
        case .extInterface(let ifindex), .port(let ifindex): rawBytes(ifindex)
        case .allowSource(let source): rawBytes(source.cKey)
        case .allowSource6(let source): rawBytes(source.cKey)
        case .network(let id): rawBytes(UInt32(id))
        case .subnet(let prefix), .peer(let prefix): rawBytes(prefix.cSubnetKey)
        case .subnet6(let prefix): rawBytes(prefix.cSubnet6Key)
        case .container6(let address): rawBytes(address.cAddr6)
        }
    }
}

// MARK: - Decoding errors

/// A map entry that cannot be turned back into a record.
public struct MapDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    public var map: MapKind
    public var key: [UInt8]
    public var message: String

    public var description: String {
        "\(map.mapName): entry with key \(key.map { String(format2: $0) }.joined()): \(message)"
    }
}

extension String {
    init(format2 byte: UInt8) { self = (byte < 16 ? "0" : "") + String(byte, radix: 16) }
}

// MARK: - Byte helpers

@inline(__always)
func rawBytes<T>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

@inline(__always)
func load<T: BitwiseCopyable>(_ bytes: [UInt8], as type: T.Type) -> T {
    bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
}
