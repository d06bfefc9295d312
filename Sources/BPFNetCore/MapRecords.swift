// SPDX-License-Identifier: Apache-2.0
//
// The records of the policy maps: one Swift value per C key/value struct of
// bpfnet_shared.h (which Swift imports and never re-declares), each converting
// to and from it. Byte order is handled here and only here: Swift values are
// host order; `__be32`/`__be16` fields get network order.

import BPFNetShared

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
    /// User-defined networks exist: the programs consult `bn_subnets`.
    public static let networks = ConfigFlags(rawValue: BPFNET_CFG_NETWORKS.rawValue)
    /// Peer hosts exist: the ext program consults `bn_peers`.
    public static let peers = ConfigFlags(rawValue: BPFNET_CFG_PEERS.rawValue)
    /// `peerPolicy: allow`: peers' containers reach local ones whatever icc says.
    public static let peerAllow = ConfigFlags(rawValue: BPFNET_CFG_PEER_ALLOW.rawValue)
    /// A network has IPv6: the programs consult `bn_subnets6`.
    public static let ipv6 = ConfigFlags(rawValue: BPFNET_CFG_IPV6.rawValue)
    /// `--nat ebpf`: the programs open eBPF NAT connections to published ports.
    public static let nat = ConfigFlags(rawValue: BPFNET_CFG_NAT.rawValue)
    /// bn_nat may hold live connections: the programs keep translating them.
    public static let natDrain = ConfigFlags(rawValue: BPFNET_CFG_NAT_DRAIN.rawValue)
    public static let loaded = ConfigFlags(rawValue: BPFNET_CFG_LOADED.rawValue)

    /// Flags whose setting lets more packets through (and `peers`, which only
    /// makes the programs read `bn_peers`: harmless while it is empty). The
    /// reconciler turns these on before anything else and off only after new
    /// rules are in place.
    public static let relaxing: ConfigFlags = [.icc, .forwardAccept, .peerAllow, .peers]
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
    /// The bridge's own MAC: the port program skips the bn_macs lookup for
    /// frames addressed to it. All-zero when unknown (every unicast frame is
    /// then looked up; the verdicts do not change).
    public var bridgeMAC: MACAddress

    public init(
        flags: ConfigFlags = [], bridgeAddress: IPv4Address = .any, bridgeSubnet: IPv4Address = .any,
        bridgeNetmask: IPv4Address = .any, bridgeIfindex: UInt32 = 0, generation: UInt32 = 0,
        bridgeMAC: MACAddress = .zero
    ) {
        self.flags = flags
        self.bridgeAddress = bridgeAddress
        self.bridgeSubnet = bridgeSubnet
        self.bridgeNetmask = bridgeNetmask
        self.bridgeIfindex = bridgeIfindex
        self.generation = generation
        self.bridgeMAC = bridgeMAC
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
        bridgeMAC = MACAddress(
            c.bridge_mac.0, c.bridge_mac.1, c.bridge_mac.2, c.bridge_mac.3, c.bridge_mac.4, c.bridge_mac.5)
    }

    public var cValue: bpfnet_config {
        var c = bpfnet_config()
        c.flags = flags.rawValue
        c.bridge_addr = bridgeAddress.networkOrder
        c.bridge_subnet = bridgeSubnet.networkOrder
        c.bridge_netmask = bridgeNetmask.networkOrder
        c.bridge_ifindex = bridgeIfindex
        c.generation = generation
        c.bridge_mac = bridgeMAC.bytes
        return c
    }

    /// Equal apart from `generation`.
    public func samePolicy(as other: ConfigRecord) -> Bool {
        var a = self
        var b = other
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
    /// Its network's `bn_networks` slot (0: the default bridge).
    public var network: UInt16

    public init(portIfindex: UInt32, mac: MACAddress, network: UInt16 = 0) {
        self.portIfindex = portIfindex
        self.mac = mac
        self.network = network
    }

    public init(_ c: bpfnet_container) {
        portIfindex = c.port_ifindex
        mac = MACAddress(c.mac.0, c.mac.1, c.mac.2, c.mac.3, c.mac.4, c.mac.5)
        network = c.network
    }

    public var cValue: bpfnet_container {
        var c = bpfnet_container()
        c.port_ifindex = portIfindex
        c.mac = mac.bytes
        c.network = network
        return c
    }
}

/// `enum bpfnet_network_flags` (without `BPFNET_NET_KNOWN`, which the encoding sets).
public struct NetworkFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let icc = NetworkFlags(rawValue: BPFNET_NET_ICC.rawValue)
    public static let `internal` = NetworkFlags(rawValue: BPFNET_NET_INTERNAL.rawValue)
    /// The network's subnet is masqueraded (or SNATed) on the way out. NAT is
    /// netfilter's: the flag is there for `bpfnet status`, the programs ignore it.
    public static let masquerade = NetworkFlags(rawValue: BPFNET_NET_MASQ.rawValue)
}

/// `struct bpfnet_network`: one bridge network (key: its slot, 0 for the
/// default bridge).
public struct NetworkRecord: Hashable, Sendable {
    public var flags: NetworkFlags
    public var bridgeAddress: IPv4Address
    /// Already masked.
    public var subnet: IPv4Address
    /// As an address; 0 = no subnet known (never matches).
    public var netmask: IPv4Address
    public var bridgeIfindex: UInt32
    public var bridgeMAC: MACAddress

    public init(
        flags: NetworkFlags = [], bridgeAddress: IPv4Address = .any, subnet: IPv4Address = .any,
        netmask: IPv4Address = .any, bridgeIfindex: UInt32 = 0, bridgeMAC: MACAddress = .zero
    ) {
        self.flags = flags
        self.bridgeAddress = bridgeAddress
        self.subnet = subnet
        self.netmask = netmask
        self.bridgeIfindex = bridgeIfindex
        self.bridgeMAC = bridgeMAC
    }

    /// Where `BPFNET_NET_KNOWN` is (the top byte of `flags`), to tell used
    /// slots from empty ones.
    static let knownBit = BPFNET_NET_KNOWN.rawValue

    public init(_ c: bpfnet_network) {
        flags = NetworkFlags(rawValue: c.flags & ~Self.knownBit)
        bridgeAddress = IPv4Address(networkOrder: c.bridge_addr)
        subnet = IPv4Address(networkOrder: c.subnet)
        netmask = IPv4Address(networkOrder: c.netmask)
        bridgeIfindex = c.bridge_ifindex
        bridgeMAC = MACAddress(
            c.bridge_mac.0, c.bridge_mac.1, c.bridge_mac.2, c.bridge_mac.3, c.bridge_mac.4, c.bridge_mac.5)
    }

    public var cValue: bpfnet_network {
        var c = bpfnet_network()
        c.flags = flags.rawValue | Self.knownBit
        c.bridge_addr = bridgeAddress.networkOrder
        c.subnet = subnet.networkOrder
        c.netmask = netmask.networkOrder
        c.bridge_ifindex = bridgeIfindex
        c.bridge_mac = bridgeMAC.bytes
        return c
    }

    /// Whether a slot's bytes, read back from the kernel, were written by bpfnet.
    public static func isWritten(bytes: [UInt8]) -> Bool {
        bytes.count == MemoryLayout<bpfnet_network>.size && load(bytes, as: bpfnet_network.self).flags & knownBit != 0
    }
}

/// `struct bpfnet_subnet`: which network a `bn_subnets` prefix belongs to.
public struct SubnetRecord: Hashable, Sendable {
    public var network: UInt16
    /// That network's gateway (the bridge's address), a host address.
    public var bridgeAddress: IPv4Address

    public init(network: UInt16, bridgeAddress: IPv4Address) {
        self.network = network
        self.bridgeAddress = bridgeAddress
    }

    public init(_ c: bpfnet_subnet) {
        network = UInt16(truncatingIfNeeded: c.network)
        bridgeAddress = IPv4Address(networkOrder: c.bridge_addr)
    }

    public var cValue: bpfnet_subnet {
        var c = bpfnet_subnet()
        c.network = UInt32(network)
        c.bridge_addr = bridgeAddress.networkOrder
        return c
    }
}

/// `struct bpfnet_subnet6`: the network an IPv6 subnet belongs to and its
/// gateway (a host address).
public struct Subnet6Record: Hashable, Sendable {
    public var network: UInt16
    public var bridgeAddress: IPv6Address

    public init(network: UInt16, bridgeAddress: IPv6Address) {
        self.network = network
        self.bridgeAddress = bridgeAddress
    }

    public init(_ c: bpfnet_subnet6) {
        network = UInt16(truncatingIfNeeded: c.network)
        bridgeAddress = IPv6Address(bytes: withUnsafeBytes(of: c.bridge_addr) { Array($0) })
    }

    public var cValue: bpfnet_subnet6 {
        var c = bpfnet_subnet6()
        c.network = UInt32(network)
        let bytes = bridgeAddress.bytes
        withUnsafeMutableBytes(of: &c.bridge_addr) { for index in 0..<16 { $0[index] = bytes[index] } }
        return c
    }
}

extension IPv6Address {
    /// `struct bpfnet_addr6`: the 16 bytes in network order.
    public var cAddr6: bpfnet_addr6 {
        var key = bpfnet_addr6()
        let bytes = self.bytes
        withUnsafeMutableBytes(of: &key.addr) { for index in 0..<16 { $0[index] = bytes[index] } }
        return key
    }

    public init(_ key: bpfnet_addr6) {
        self.init(bytes: withUnsafeBytes(of: key.addr) { Array($0) })
    }
}

extension IPv6CIDR {
    /// The bn_subnets6 LPM key.
    public var cSubnet6Key: bpfnet_subnet6_key {
        var key = bpfnet_subnet6_key()
        key.prefixlen = UInt32(prefixLength)
        let bytes = address.bytes
        withUnsafeMutableBytes(of: &key.addr) { for index in 0..<16 { $0[index] = bytes[index] } }
        return key
    }

    /// nil unless `prefixlen` is 0-128.
    public init?(_ key: bpfnet_subnet6_key) {
        guard key.prefixlen <= 128 else { return nil }
        self.init(
            address: IPv6Address(bytes: withUnsafeBytes(of: key.addr) { Array($0) }),
            prefixLength: UInt8(key.prefixlen))
    }
}

extension IPv4CIDR {
    /// The `bn_subnets` key.
    public var cSubnetKey: bpfnet_subnet_key {
        var key = bpfnet_subnet_key()
        key.prefixlen = UInt32(prefixLength)
        key.addr = address.networkOrder
        return key
    }

    /// nil unless `prefixlen` is 0-32.
    public init?(_ key: bpfnet_subnet_key) {
        guard key.prefixlen <= 32 else { return nil }
        self.init(address: IPv4Address(networkOrder: key.addr), prefixLength: UInt8(key.prefixlen))
    }
}

/// One IPv6 allow-list entry: (ifindex, prefix) in `bn_allow_src6`.
public struct AllowSource6: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var ifindex: UInt32
    public var prefix: IPv6CIDR

    public init(ifindex: UInt32, prefix: IPv6CIDR) {
        self.ifindex = ifindex
        self.prefix = prefix
    }

    /// nil unless `prefixlen` is 32 + (0...128), the only keys bpfnet writes.
    public init?(_ key: bpfnet_allow6_key) {
        let base = UInt32(BPFNET_ALLOW_PREFIX_BASE)
        let bytes = withUnsafeBytes(of: key.addr) { Array($0) }
        guard key.prefixlen >= base, key.prefixlen - base <= 128,
            let prefix = IPv6CIDR(address: IPv6Address(bytes: bytes), prefixLength: UInt8(key.prefixlen - base))
        else { return nil }
        ifindex = key.ifindex
        self.prefix = prefix
    }

    /// The LPM key: prefixlen = 32 (the ifindex) + the prefix length; the address masked.
    public var cKey: bpfnet_allow6_key {
        var key = bpfnet_allow6_key()
        key.prefixlen = UInt32(BPFNET_ALLOW_PREFIX_BASE) + UInt32(prefix.prefixLength)
        key.ifindex = ifindex
        let bytes = prefix.address.bytes
        withUnsafeMutableBytes(of: &key.addr) { for index in 0..<16 { $0[index] = bytes[index] } }
        return key
    }

    public var description: String { "\(prefix) on ifindex \(ifindex)" }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.ifindex, lhs.prefix) < (rhs.ifindex, rhs.prefix) }
}

/// `struct bpfnet_port`: the container behind a bridge port (key: the port's
/// ifindex), for the port program's identity check, and the port's network.
public struct PortRecord: Hashable, Sendable {
    public var address: IPv4Address
    public var mac: MACAddress
    public var flags: UInt16
    /// The network of the port's bridge (`bn_networks` slot).
    public var network: UInt16
    /// Whether `address` and `mac` are the container's. An entry without (a
    /// port of a user-defined network whose container is unknown) only says
    /// which network the port is on.
    public var known: Bool

    public init(address: IPv4Address, mac: MACAddress, flags: UInt16 = 0, network: UInt16 = 0) {
        self.address = address
        self.mac = mac
        self.flags = flags
        self.network = network
        self.known = true
    }

    /// A port of `network` whose container is not known.
    public static func unknown(network: UInt16) -> PortRecord {
        var record = PortRecord(address: .any, mac: .zero, network: network)
        record.known = false
        return record
    }

    /// `BPFNET_PORT_KNOWN` and `BPFNET_PORT_WRITTEN` are the encoding's
    /// business (an array slot that was never written reads as zeros): `flags`
    /// never holds them.
    public init(_ c: bpfnet_port) {
        address = IPv4Address(networkOrder: c.addr)
        mac = MACAddress(c.mac.0, c.mac.1, c.mac.2, c.mac.3, c.mac.4, c.mac.5)
        flags = c.flags & ~Self.encodingFlags
        network = c.network
        known = c.flags & UInt16(BPFNET_PORT_KNOWN) != 0
    }

    static let encodingFlags = UInt16(BPFNET_PORT_KNOWN | BPFNET_PORT_WRITTEN)

    /// The bits of the byte at `flagByteOffset` that every written entry has.
    public static let writtenBits = UInt8(BPFNET_PORT_KNOWN | BPFNET_PORT_WRITTEN)

    /// Where in a `struct bpfnet_port` the byte with `BPFNET_PORT_KNOWN` and
    /// `BPFNET_PORT_WRITTEN` is (the low byte of `flags`), to tell used
    /// `bn_ports` slots from empty ones.
    public static var knownFlagByteOffset: Int {
        #if _endian(little)
        MemoryLayout<bpfnet_port>.offset(of: \.flags)!
        #else
        MemoryLayout<bpfnet_port>.offset(of: \.flags)! + 1
        #endif
    }

    public var cValue: bpfnet_port {
        var c = bpfnet_port()
        c.addr = address.networkOrder
        c.mac = mac.bytes
        c.flags = flags | UInt16(BPFNET_PORT_WRITTEN) | (known ? UInt16(BPFNET_PORT_KNOWN) : 0)
        c.network = network
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
            let prefix = IPv4CIDR(
                address: IPv4Address(networkOrder: key.addr),
                prefixLength: UInt8(key.prefixlen - base))
        else { return nil }
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
        (lhs.ifindex, lhs.prefix.address, lhs.prefix.prefixLength) < (
            rhs.ifindex, rhs.prefix.address, rhs.prefix.prefixLength
        )
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
