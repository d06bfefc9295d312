// SPDX-License-Identifier: Apache-2.0
//
// MapState: everything the BPF policy maps hold, as Swift values. Each record
// converts to and from the C key/value structs of bpfnet_shared.h (which Swift
// imports and never re-declares). Byte order is handled here and only here:
// Swift values are host order; `__be32`/`__be16` fields get network order.

import BPFNetShared

// MARK: - Maps

/// The policy maps (the ones the control plane writes and the reconciler diffs).
public enum MapKind: String, CaseIterable, Hashable, Sendable, Codable {
    case config, containers, macs, links, published, extInterfaces, allowSources, names

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
        }
    }

    /// The map's name in the object and under the pin directory ("bn_links").
    public var mapName: String { Self.name(of: id) }

    /// `bpfnet_map_name()`: the name of any map, policy or not.
    public static func name(of id: bpfnet_map_id) -> String { String(cString: bpfnet_map_name(id)) }

    /// Key and value sizes in bytes, as the C structs have them.
    public var keySize: Int {
        switch self {
        case .config, .containers, .extInterfaces, .names: MemoryLayout<UInt32>.size
        case .macs: MemoryLayout<bpfnet_mac_key>.size
        case .links: MemoryLayout<bpfnet_link_key>.size
        case .published: MemoryLayout<bpfnet_published_key>.size
        case .allowSources: MemoryLayout<bpfnet_allow_key>.size
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
        case .allowSources: MemoryLayout<UInt32>.size
        case .names: MemoryLayout<bpfnet_container_name>.size
        }
    }
}

// MARK: - Records

/// `enum bpfnet_config_flags`.
public struct ConfigFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let icc = ConfigFlags(rawValue: BPFNET_CFG_ICC.rawValue)
    public static let forwardAccept = ConfigFlags(rawValue: BPFNET_CFG_FORWARD_ACCEPT.rawValue)
    public static let ipForward = ConfigFlags(rawValue: BPFNET_CFG_IP_FORWARD.rawValue)
    public static let fastPath = ConfigFlags(rawValue: BPFNET_CFG_FAST_PATH.rawValue)
    public static let outsideContainers = ConfigFlags(rawValue: BPFNET_CFG_OUTSIDE_CONTAINERS.rawValue)
    public static let loaded = ConfigFlags(rawValue: BPFNET_CFG_LOADED.rawValue)

    /// Flags whose setting lets more packets through. The reconciler turns these
    /// on before anything else and off only after new rules are in place.
    public static let relaxing: ConfigFlags = [.icc, .forwardAccept]
}

/// `struct bpfnet_config`, the one record of `bn_config` (key 0).
public struct ConfigRecord: Hashable, Sendable {
    public var flags: ConfigFlags
    public var bridgeAddress: IPv4Address
    /// The bridge network, already masked.
    public var bridgeSubnet: IPv4Address
    /// The netmask as an address (255.255.0.0); 0 = no subnet known (never matches).
    public var bridgeNetmask: IPv4Address
    public var bridgeIfindex: UInt32
    /// Bumped on every policy change (by the reconciler, not the compiler).
    public var generation: UInt32

    public init(flags: ConfigFlags = [], bridgeAddress: IPv4Address = .any, bridgeSubnet: IPv4Address = .any,
                bridgeNetmask: IPv4Address = .any, bridgeIfindex: UInt32 = 0, generation: UInt32 = 0) {
        self.flags = flags
        self.bridgeAddress = bridgeAddress
        self.bridgeSubnet = bridgeSubnet
        self.bridgeNetmask = bridgeNetmask
        self.bridgeIfindex = bridgeIfindex
        self.generation = generation
    }

    /// What an all-zero `bn_config` means: nothing loaded yet.
    public static let zero = ConfigRecord()

    public init(_ c: bpfnet_config) {
        flags = ConfigFlags(rawValue: c.flags)
        bridgeAddress = IPv4Address(networkOrder: c.bridge_addr)
        bridgeSubnet = IPv4Address(networkOrder: c.bridge_subnet)
        bridgeNetmask = IPv4Address(networkOrder: c.bridge_netmask)
        bridgeIfindex = c.bridge_ifindex
        generation = c.generation
    }

    public var cValue: bpfnet_config {
        var c = bpfnet_config()
        c.flags = flags.rawValue
        c.bridge_addr = bridgeAddress.networkOrder
        c.bridge_subnet = bridgeSubnet.networkOrder
        c.bridge_netmask = bridgeNetmask.networkOrder
        c.bridge_ifindex = bridgeIfindex
        c.generation = generation
        return c
    }

    /// Equal apart from `generation`.
    public func samePolicy(as other: ConfigRecord) -> Bool {
        var a = self, b = other
        a.generation = 0
        b.generation = 0
        return a == b
    }

    /// The bridge's address with its prefix, when a subnet is set and the mask is contiguous.
    public var bridgeInterfaceAddress: IPv4InterfaceAddress? {
        let mask = bridgeNetmask.value
        guard mask != 0, ~mask & (~mask &+ 1) == 0 else { return nil }
        return IPv4InterfaceAddress(address: bridgeAddress, prefixLength: UInt8(mask.nonzeroBitCount))
    }
}

/// `struct bpfnet_container`: where a container (key: its IPv4 address) lives.
public struct ContainerRecord: Hashable, Sendable {
    public var portIfindex: UInt32
    public var mac: MACAddress
    public var flags: UInt16

    public init(portIfindex: UInt32, mac: MACAddress, flags: UInt16 = 0) {
        self.portIfindex = portIfindex
        self.mac = mac
        self.flags = flags
    }

    public init(_ c: bpfnet_container) {
        portIfindex = c.port_ifindex
        mac = MACAddress(c.mac.0, c.mac.1, c.mac.2, c.mac.3, c.mac.4, c.mac.5)
        flags = c.flags
    }

    public var cValue: bpfnet_container {
        var c = bpfnet_container()
        c.port_ifindex = portIfindex
        c.mac = mac.bytes
        c.flags = flags
        return c
    }
}

extension MACAddress {
    /// `struct bpfnet_mac_key` (pad 0).
    public var cMacKey: bpfnet_mac_key {
        var key = bpfnet_mac_key()
        key.mac = bytes
        return key
    }

    public init(_ key: bpfnet_mac_key) {
        self.init(key.mac.0, key.mac.1, key.mac.2, key.mac.3, key.mac.4, key.mac.5)
    }
}

/// `enum bpfnet_link_dir`. A struct so that a foreign value read back from the
/// kernel survives a round trip (and is then deleted by the reconciler).
public struct LinkDirection: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// parent → child, matched on the destination port.
    public static let forward = LinkDirection(rawValue: UInt8(BPFNET_LINK_FORWARD.rawValue))
    /// child → parent, matched on the source port (Docker's stateless reverse rule).
    public static let reverse = LinkDirection(rawValue: UInt8(BPFNET_LINK_REVERSE.rawValue))
    /// Non-first fragments between a pair; port 0.
    public static let pair = LinkDirection(rawValue: UInt8(BPFNET_LINK_PAIR.rawValue))

    public var description: String {
        switch self {
        case .forward: "forward"
        case .reverse: "reverse"
        case .pair: "pair"
        default: "dir-\(rawValue)"
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One `bn_links` entry (`struct bpfnet_link_key`; the value is always flags 0).
public struct LinkRule: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var source: IPv4Address
    public var destination: IPv4Address
    /// dport for forward, sport for reverse, 0 for pair; host order.
    public var port: UInt16
    /// IP protocol number (6, 17, 132).
    public var proto: UInt8
    public var direction: LinkDirection

    public init(source: IPv4Address, destination: IPv4Address, port: UInt16, proto: UInt8, direction: LinkDirection) {
        self.source = source
        self.destination = destination
        self.port = port
        self.proto = proto
        self.direction = direction
    }

    public init(_ key: bpfnet_link_key) {
        source = IPv4Address(networkOrder: key.saddr)
        destination = IPv4Address(networkOrder: key.daddr)
        port = UInt16(bigEndian: key.port)
        proto = key.proto
        direction = LinkDirection(rawValue: key.dir)
    }

    public var cKey: bpfnet_link_key {
        var key = bpfnet_link_key()
        key.saddr = source.networkOrder
        key.daddr = destination.networkOrder
        key.port = port.bigEndian
        key.proto = proto
        key.dir = direction.rawValue
        return key
    }

    public static let cValue = bpfnet_link_value()

    public var description: String {
        let protoName = TransportProtocol(number: proto)?.rawValue ?? "proto-\(proto)"
        return "\(direction) \(source) → \(destination) \(port)/\(protoName)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.source, lhs.destination, lhs.proto, lhs.port, lhs.direction)
            < (rhs.source, rhs.destination, rhs.proto, rhs.port, rhs.direction)
    }
}

/// `struct bpfnet_published_key`: a published host port, matched before DNAT.
public struct PublishedKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// 0.0.0.0 = every address.
    public var hostAddress: IPv4Address
    public var hostPort: UInt16
    public var proto: UInt8

    public init(hostAddress: IPv4Address = .any, hostPort: UInt16, proto: UInt8) {
        self.hostAddress = hostAddress
        self.hostPort = hostPort
        self.proto = proto
    }

    public init(_ key: bpfnet_published_key) {
        hostAddress = IPv4Address(networkOrder: key.host_addr)
        hostPort = UInt16(bigEndian: key.host_port)
        proto = key.proto
    }

    public var cKey: bpfnet_published_key {
        var key = bpfnet_published_key()
        key.host_addr = hostAddress.networkOrder
        key.host_port = hostPort.bigEndian
        key.proto = proto
        return key
    }

    public var description: String {
        let protoName = TransportProtocol(number: proto)?.rawValue ?? "proto-\(proto)"
        return hostAddress == .any ? "\(hostPort)/\(protoName)" : "\(hostAddress):\(hostPort)/\(protoName)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.hostAddress, lhs.proto, lhs.hostPort) < (rhs.hostAddress, rhs.proto, rhs.hostPort)
    }
}

/// `struct bpfnet_published_value`: where a published port leads.
public struct PublishedTarget: Hashable, Sendable {
    public var containerAddress: IPv4Address
    public var containerPort: UInt16

    public init(containerAddress: IPv4Address, containerPort: UInt16) {
        self.containerAddress = containerAddress
        self.containerPort = containerPort
    }

    public init(_ value: bpfnet_published_value) {
        containerAddress = IPv4Address(networkOrder: value.container_addr)
        containerPort = UInt16(bigEndian: value.container_port)
    }

    public var cValue: bpfnet_published_value {
        var value = bpfnet_published_value()
        value.container_addr = containerAddress.networkOrder
        value.container_port = containerPort.bigEndian
        return value
    }
}

/// `enum bpfnet_ext_if_flags`.
public struct ExtInterfaceFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The allow-list is non-empty: enforce it.
    public static let allowList = ExtInterfaceFlags(rawValue: BPFNET_EXT_ALLOWLIST.rawValue)
}

/// `struct bpfnet_ext_if` (key: ifindex).
public struct ExtInterfaceRecord: Hashable, Sendable {
    public var flags: ExtInterfaceFlags

    public init(flags: ExtInterfaceFlags = []) { self.flags = flags }
    public init(_ c: bpfnet_ext_if) { flags = ExtInterfaceFlags(rawValue: c.flags) }

    public var cValue: bpfnet_ext_if {
        var c = bpfnet_ext_if()
        c.flags = flags.rawValue
        return c
    }
}

/// One `bn_allow_src` entry: a source prefix admitted on one interface.
public struct AllowSource: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var ifindex: UInt32
    public var prefix: IPv4CIDR

    public init(ifindex: UInt32, prefix: IPv4CIDR) {
        self.ifindex = ifindex
        self.prefix = prefix
    }

    /// nil unless `prefixlen` is 32 + (0...32), the only keys bpfnet writes.
    public init?(_ key: bpfnet_allow_key) {
        let base = UInt32(BPFNET_ALLOW_PREFIX_BASE)
        guard key.prefixlen >= base, key.prefixlen - base <= 32,
              let prefix = IPv4CIDR(address: IPv4Address(networkOrder: key.addr),
                                    prefixLength: UInt8(key.prefixlen - base)) else { return nil }
        ifindex = key.ifindex
        self.prefix = prefix
    }

    /// The LPM key: prefixlen = 32 (the ifindex, always fully matched) + the
    /// prefix length; the address masked, in network order.
    public var cKey: bpfnet_allow_key {
        var key = bpfnet_allow_key()
        key.prefixlen = UInt32(BPFNET_ALLOW_PREFIX_BASE) + UInt32(prefix.prefixLength)
        key.ifindex = ifindex
        key.addr = prefix.address.networkOrder
        return key
    }

    /// The value written for every entry (the programs only test presence).
    public static let cValue: UInt32 = 1

    public var description: String { "\(prefix) on ifindex \(ifindex)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.ifindex, lhs.prefix.address, lhs.prefix.prefixLength) < (rhs.ifindex, rhs.prefix.address, rhs.prefix.prefixLength)
    }
}

/// `struct bpfnet_container_name`.
public enum ContainerNameRecord {
    /// Longest name stored: 63 bytes, so the C string is always NUL-terminated.
    public static let maximumBytes = Int(BPFNET_NAME_LEN) - 1

    /// `name` cut to at most 63 bytes of UTF-8 without splitting a character.
    public static func truncated(_ name: String) -> String {
        guard name.utf8.count > maximumBytes else { return name }
        var result = ""
        var used = 0
        for character in name {
            let size = character.utf8.count
            if used + size > maximumBytes { break }
            result.append(character)
            used += size
        }
        return result
    }

    public static func cValue(_ name: String) -> bpfnet_container_name {
        var c = bpfnet_container_name()
        let bytes = Array(truncated(name).utf8)
        withUnsafeMutableBytes(of: &c.name) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        return c
    }

    /// The name up to the first NUL (or all 64 bytes); invalid UTF-8 is repaired.
    public static func name(_ c: bpfnet_container_name) -> String {
        withUnsafeBytes(of: c.name) { buffer in
            let end = buffer.firstIndex(of: 0) ?? buffer.count
            return String(decoding: buffer[..<end], as: UTF8.self)
        }
    }
}

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
    /// `bn_names`: container address → name (for status only).
    public var names: [IPv4Address: String]

    public init(config: ConfigRecord = .zero, containers: [IPv4Address: ContainerRecord] = [:],
                macs: [MACAddress: IPv4Address] = [:], links: Set<LinkRule> = [],
                published: [PublishedKey: PublishedTarget] = [:], extInterfaces: [UInt32: ExtInterfaceRecord] = [:],
                allowSources: Set<AllowSource> = [], names: [IPv4Address: String] = [:]) {
        self.config = config
        self.containers = containers
        self.macs = macs
        self.links = links
        self.published = published
        self.extInterfaces = extInterfaces
        self.allowSources = allowSources
        self.names = names
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
        }
    }

    public mutating func apply(_ change: MapChange) {
        switch change {
        case .upsert(let entry): upsert(entry)
        case .delete(let key): delete(key)
        }
    }
}

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
        }
    }

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
        }
    }

    public var keyBytes: [UInt8] { key.bytes }

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
        }
    }

    /// Decodes one entry from raw key/value bytes as read from `kind`'s map.
    public init(kind: MapKind, key: [UInt8], value: [UInt8]) throws(MapDecodingError) {
        guard key.count == kind.keySize, value.count == kind.valueSize else {
            throw MapDecodingError(map: kind, key: key, message: "expected a \(kind.keySize)-byte key and a "
                + "\(kind.valueSize)-byte value, got \(key.count) and \(value.count) bytes; "
                + "the pinned maps were created by an incompatible bpfnet; run `bpfnet unload` and load again")
        }
        switch kind {
        case .config:
            self = .config(ConfigRecord(load(value, as: bpfnet_config.self)))
        case .containers:
            self = .container(IPv4Address(networkOrder: load(key, as: UInt32.self)),
                              ContainerRecord(load(value, as: bpfnet_container.self)))
        case .macs:
            self = .mac(MACAddress(load(key, as: bpfnet_mac_key.self)), IPv4Address(networkOrder: load(value, as: UInt32.self)))
        case .links:
            self = .link(LinkRule(load(key, as: bpfnet_link_key.self)))
        case .published:
            self = .published(PublishedKey(load(key, as: bpfnet_published_key.self)),
                              PublishedTarget(load(value, as: bpfnet_published_value.self)))
        case .extInterfaces:
            self = .extInterface(ifindex: load(key, as: UInt32.self), ExtInterfaceRecord(load(value, as: bpfnet_ext_if.self)))
        case .allowSources:
            let raw = load(key, as: bpfnet_allow_key.self)
            guard let source = AllowSource(raw) else {
                throw MapDecodingError(map: kind, key: key, message: "prefixlen \(raw.prefixlen) is outside 32-64; "
                    + "bpfnet never writes such a key")
            }
            self = .allowSource(source)
        case .names:
            self = .name(IPv4Address(networkOrder: load(key, as: UInt32.self)),
                         ContainerNameRecord.name(load(value, as: bpfnet_container_name.self)))
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
        }
    }

    /// The key exactly as the C map holds it.
    public var bytes: [UInt8] {
        switch self {
        case .config: rawBytes(UInt32(0))
        case .container(let address), .name(let address): rawBytes(address.networkOrder)
        case .mac(let mac): rawBytes(mac.cMacKey)
        case .link(let rule): rawBytes(rule.cKey)
        case .published(let key): rawBytes(key.cKey)
        case .extInterface(let ifindex): rawBytes(ifindex)
        case .allowSource(let source): rawBytes(source.cKey)
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
