// SPDX-License-Identifier: Apache-2.0
//
// The policy model: what the operator (or Docker) says should hold. Pure
// values; no syscalls, no libbpf. Field meanings follow docs/policy.md.

/// An IPv4 address, stored in host byte order (`value` 0x0A000001 is 10.0.0.1).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad notation ("10.0.0.1"); nil when it is not exactly that.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var result: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCIIDigit),
                let octet = UInt8(part)
            else { return nil }
            result = result << 8 | UInt32(octet)
        }
        value = result
    }

    /// The address in network byte order, as the kernel and `__be32` fields hold it.
    public var networkOrder: UInt32 { value.bigEndian }

    public init(networkOrder: UInt32) { value = UInt32(bigEndian: networkOrder) }

    public static let any = IPv4Address(0)

    public var isMulticast: Bool { value >> 28 == 0xE }
    public var isLimitedBroadcast: Bool { value == 0xFFFF_FFFF }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let address = IPv4Address(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not an IPv4 address (expected a.b.c.d)"))
        }
        self = address
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An IPv4 prefix such as 203.0.113.0/24. The address is stored masked.
public struct IPv4CIDR: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let address: IPv4Address
    public let prefixLength: UInt8

    public init?(address: IPv4Address, prefixLength: UInt8) {
        guard prefixLength <= 32 else { return nil }
        self.address = IPv4Address(address.value & Self.mask(prefixLength))
        self.prefixLength = prefixLength
    }

    /// Parses "a.b.c.d/len" or a bare address (taken as /32). Host bits are masked off.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPv4Address(parts[0]) else { return nil }
        var length: UInt8 = 32
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].count <= 2, parts[1].allSatisfy(\.isASCIIDigit),
                let parsed = UInt8(parts[1]), parsed <= 32
            else { return nil }
            length = parsed
        }
        self.init(address: address, prefixLength: length)
    }

    public var netmask: UInt32 { Self.mask(prefixLength) }

    public func contains(_ candidate: IPv4Address) -> Bool {
        candidate.value & netmask == address.value
    }

    /// Whether the two prefixes share an address (one holds the other).
    public func overlaps(_ other: IPv4CIDR) -> Bool {
        prefixLength <= other.prefixLength ? contains(other.address) : other.contains(address)
    }

    static func mask(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : UInt32.max << (32 - UInt32(length))
    }

    public var description: String { "\(address)/\(prefixLength)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.address, lhs.prefixLength) < (rhs.address, rhs.prefixLength)
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cidr = IPv4CIDR(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not an IPv4 CIDR (expected a.b.c.d/len, len 0-32)"))
        }
        self = cidr
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An Ethernet MAC address.
public struct MACAddress: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// 00:00:00:00:00:00, "unknown".
    public static let zero = MACAddress(0, 0, 0, 0, 0, 0)

    public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Parses "02:42:ac:11:00:02" (colons or dashes, any case).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(omittingEmptySubsequences: false) { $0 == ":" || $0 == "-" }
        guard parts.count == 6 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard part.count == 2, part.allSatisfy(\.isHexDigit), part.allSatisfy(\.isASCII),
                let octet = UInt8(part, radix: 16)
            else { return nil }
            octets.append(octet)
        }
        bytes = (octets[0], octets[1], octets[2], octets[3], octets[4], octets[5])
    }

    public var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    /// Docker 20.10's MAC for a container address: 02:42 followed by the IPv4 address.
    public init(dockerStyleFor address: IPv4Address) {
        let v = address.value
        self.init(0x02, 0x42, UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF))
    }

    public var description: String {
        array.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    /// The six octets as one number, first octet highest: compared, hashed
    /// and ordered without building an array (the compiler and reconciler
    /// do so for every container on every apply).
    var packed: UInt64 {
        UInt64(bytes.0) << 40 | UInt64(bytes.1) << 32 | UInt64(bytes.2) << 24
            | UInt64(bytes.3) << 16 | UInt64(bytes.4) << 8 | UInt64(bytes.5)
    }

    public static func == (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.packed == rhs.packed }
    public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool { lhs.packed < rhs.packed }
    public func hash(into hasher: inout Hasher) { hasher.combine(packed) }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let mac = MACAddress(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not a MAC address (expected xx:xx:xx:xx:xx:xx)"))
        }
        self = mac
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The transport protocols Docker's port and link rules can name.
public enum TransportProtocol: String, Hashable, Sendable, Codable, CaseIterable, Comparable {
    case tcp, udp, sctp

    /// IANA protocol number, as in the IPv4 header.
    public var number: UInt8 {
        switch self {
        case .tcp: 6
        case .udp: 17
        case .sctp: 132
        }
    }

    public init?(number: UInt8) {
        switch number {
        case 6: self = .tcp
        case 17: self = .udp
        case 132: self = .sctp
        default: return nil
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.number < rhs.number }
}

/// A port with its protocol, written "80/tcp" (the protocol defaults to tcp, as in Docker).
public struct PortSpec: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var port: UInt16
    public var proto: TransportProtocol

    public init(_ port: UInt16, _ proto: TransportProtocol = .tcp) {
        self.port = port
        self.proto = proto
    }

    /// Parses "80", "80/tcp", "53/udp", "132/sctp". Port 0 is rejected.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, !parts[0].isEmpty, parts[0].allSatisfy(\.isASCIIDigit),
            let port = UInt16(parts[0]), port != 0
        else { return nil }
        var proto = TransportProtocol.tcp
        if parts.count == 2 {
            guard let parsed = TransportProtocol(rawValue: parts[1].lowercased()) else { return nil }
            proto = parsed
        }
        self.init(port, proto)
    }

    public var description: String { "\(port)/\(proto.rawValue)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.proto, lhs.port) < (rhs.proto, rhs.port)
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = (try? container.decode(String.self)) ?? (try? container.decode(Int.self)).map(String.init) ?? ""
        guard let spec = PortSpec(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not a port (expected PORT or PORT/tcp|udp|sctp, 1-65535)"))
        }
        self = spec
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// `-p [hostIP:]hostPort:containerPort[/proto]`.
public struct PublishedPort: Hashable, Sendable, Codable {
    /// nil binds every host address (Docker's 0.0.0.0).
    public var hostIP: IPv4Address?
    public var hostPort: UInt16
    public var containerPort: UInt16
    public var proto: TransportProtocol

    public init(hostIP: IPv4Address? = nil, hostPort: UInt16, containerPort: UInt16, proto: TransportProtocol = .tcp) {
        self.hostIP = hostIP
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.proto = proto
    }
}

/// A container's endpoint on one bridge network. A container on several
/// networks (`docker network connect`) is one `Container` per network, each
/// with its own address, MAC and port, and the same name.
public struct Container: Hashable, Sendable, Codable {
    public var name: String
    public var ip: IPv4Address
    public var mac: MACAddress
    /// The host-side veth enslaved to the network's bridge (the container's bridge port).
    public var port: String
    /// The `BridgeNetwork` it sits on by name; nil: the default bridge.
    public var network: String?
    /// exp(c): `Config.ExposedPorts`, which already includes every published port.
    public var exposed: [PortSpec]
    /// pub(c).
    public var published: [PublishedPort]
    /// Its IPv6 address on a dual-stack network (Docker's
    /// `GlobalIPv6Address`); nil: none.
    public var ipv6: IPv6Address?

    public init(
        name: String, ip: IPv4Address, mac: MACAddress, port: String,
        exposed: [PortSpec] = [], published: [PublishedPort] = [], network: String? = nil,
        ipv6: IPv6Address? = nil
    ) {
        self.name = name
        self.ip = ip
        self.mac = mac
        self.port = port
        self.network = network
        self.exposed = exposed
        self.published = published
        self.ipv6 = ipv6
    }
}

/// A user-defined Docker bridge network (`docker network create`, what
/// `docker compose` makes for every project). The default bridge is not one
/// of these: `Policy.bridge` and `Policy.icc` describe it, and only it has
/// links. Containers on different networks never reach each other directly
/// (Docker's isolation); docs/policy.md, "Networks".
public struct BridgeNetwork: Hashable, Sendable, Codable {
    /// Docker's name for it (`docker network ls`); containers name it in `network`.
    public var name: String
    /// Its Linux bridge: `com.docker.network.bridge.name`, else "br-" and the
    /// first 12 characters of the network's ID.
    public var bridge: String
    /// `com.docker.network.bridge.enable_icc` (default true).
    public var icc: Bool
    /// `docker network create --internal`: nothing in or out but its own subnet.
    public var `internal`: Bool
    /// `com.docker.network.bridge.enable_ip_masquerade` (default true).
    public var masquerade: Bool
    /// `com.docker.network.host_ipv4`: outbound traffic takes this source
    /// address (SNAT) instead of the outgoing interface's (masquerade). Not
    /// `com.docker.network.bridge.host_binding_ipv4`, the default host address
    /// of published ports, which the containers' bindings already carry.
    public var hostIPv4: IPv4Address?
    /// Dual stack (`docker network create --ipv6`): the bridge's IPv6
    /// gateway address with the subnet's prefix length ("fd00:30::1/64").
    /// nil: the network has no IPv6.
    public var ipv6: IPv6InterfaceAddress?

    public init(
        name: String, bridge: String, icc: Bool = true, internal: Bool = false, masquerade: Bool = true,
        hostIPv4: IPv4Address? = nil, ipv6: IPv6InterfaceAddress? = nil
    ) {
        self.name = name
        self.bridge = bridge
        self.icc = icc
        self.internal = `internal`
        self.masquerade = masquerade
        self.hostIPv4 = hostIPv4
        self.ipv6 = ipv6
    }
}

/// `docker run --link child:alias` on the parent.
public struct Link: Hashable, Sendable, Codable {
    public var parent: String
    public var child: String
    public var alias: String?

    public init(parent: String, child: String, alias: String? = nil) {
        self.parent = parent
        self.child = child
        self.alias = alias
    }
}

public enum ForwardPolicy: String, Hashable, Sendable, Codable, CaseIterable {
    case drop, accept
}

/// Another Docker host whose containers reach this host's containers by
/// routing, without NAT (docs/policy.md, "Peers").
public struct Peer: Hashable, Sendable, Codable {
    /// The operator's name for it, unique in the policy.
    public var name: String
    /// The peer host's own IPv4 address: traffic from its subnets must arrive
    /// the way this host routes towards this address.
    public var address: IPv4Address
    /// Its container subnets (its bridges' IPv4 subnets).
    public var subnets: [IPv4CIDR]
    /// Whether bpfnet routes `subnets` towards the peer itself (the way the
    /// host reaches `address`), under its own route protocol number
    /// (docs/policy.md, "Routes to peers"); false: the operator routes them.
    public var routes: Bool

    public init(name: String, address: IPv4Address, subnets: [IPv4CIDR], routes: Bool = false) {
        self.name = name
        self.address = address
        self.subnets = subnets
        self.routes = routes
    }

    private enum CodingKeys: String, CodingKey { case name, address, subnets, routes }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        address = try container.decode(IPv4Address.self, forKey: .address)
        subnets = try container.decode([IPv4CIDR].self, forKey: .subnets)
        routes = try container.decodeIfPresent(Bool.self, forKey: .routes) ?? false
    }
}

/// How traffic from a peer's containers to this host's containers is judged.
public enum PeerPolicy: String, Hashable, Sendable, Codable, CaseIterable {
    /// As traffic between local containers: the destination network's icc.
    case icc
    /// Always admitted (still not into an internal network).
    case allow
}

/// Where the port program runs on each bridge port.
public enum PortHook: String, Hashable, Sendable, Codable, CaseIterable {
    case tc, xdp
}

/// An interface towards the outside and the sources it admits (both lists
/// empty: everyone).
public struct ExternalInterface: Hashable, Sendable, Codable {
    public var name: String
    public var allowSources: [IPv4CIDR]
    /// IPv6 sources admitted to the ports published on all addresses, which
    /// docker-proxy also serves on [::] (the default bridge has no IPv6).
    public var allowSourcesIPv6: [IPv6CIDR]

    public init(name: String, allowSources: [IPv4CIDR] = [], allowSourcesIPv6: [IPv6CIDR] = []) {
        self.name = name
        self.allowSources = allowSources
        self.allowSourcesIPv6 = allowSourcesIPv6
    }

    /// Whether the interface admits only listed sources (of either family).
    public var hasAllowList: Bool { !allowSources.isEmpty || !allowSourcesIPv6.isEmpty }

    /// Encoded as the policy file writes it: one `allowSources` list of both families.
    private enum CodingKeys: String, CodingKey { case name, allowSources }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        var v4: [IPv4CIDR] = []
        var v6: [IPv6CIDR] = []
        for text in try container.decodeIfPresent([String].self, forKey: .allowSources) ?? [] {
            switch SourcePrefix(text) {
            case .v4(let cidr): v4.append(cidr)
            case .v6(let cidr): v6.append(cidr)
            case nil:
                throw DecodingError.dataCorruptedError(
                    forKey: .allowSources, in: container,
                    debugDescription: "'\(text)' is not an IPv4 or IPv6 prefix")
            }
        }
        allowSources = v4
        allowSourcesIPv6 = v6
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(
            allowSources.map(\.description) + allowSourcesIPv6.map(\.description), forKey: .allowSources)
    }
}

/// An allow-list entry of either family, as a policy file lists them.
public enum SourcePrefix: Hashable, Sendable {
    case v4(IPv4CIDR)
    case v6(IPv6CIDR)

    public var v4: IPv4CIDR? { if case .v4(let cidr) = self { cidr } else { nil } }
    public var v6: IPv6CIDR? { if case .v6(let cidr) = self { cidr } else { nil } }

    /// An IPv4 prefix, else an IPv6 one; nil when the text is neither.
    public init?(_ text: some StringProtocol) {
        if let cidr = IPv4CIDR(text) {
            self = .v4(cidr)
        } else if text.contains(":"), let cidr = IPv6CIDR(text) {
            self = .v6(cidr)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .v4(let cidr): cidr.description
        case .v6(let cidr): cidr.description
        }
    }
}

/// Everything the dataplane must enforce. Defaults follow Docker's defaults
/// (icc on, ip_forward on) and Docker 28+'s closed direct routing.
public struct Policy: Hashable, Sendable, Codable {
    public var bridge: String = "docker0"
    public var icc: Bool = true
    public var ipForward: Bool = true
    public var forwardPolicy: ForwardPolicy = .drop
    public var portHook: PortHook = .tc
    /// Deliver allowed traffic around the bridge (and routed traffic around
    /// the host's stack) where the dataplane can; never changes a verdict.
    public var fastPath: Bool = true
    /// Who translates published ports: the eBPF programs or netfilter, or
    /// (the default) whichever can (`natInForce`; docs/nat.md).
    public var nat: NATMode = .auto
    public var extInterfaces: [ExternalInterface] = []
    /// User-defined bridge networks, beside the default bridge.
    public var networks: [BridgeNetwork] = []
    public var containers: [Container] = []
    /// Links between containers on the default bridge (Docker has none elsewhere).
    public var links: [Link] = []
    /// Other Docker hosts whose containers are routed to this host's.
    public var peers: [Peer] = []
    /// How the peers' containers are judged when they reach local containers.
    public var peerPolicy: PeerPolicy = .icc
    /// The default bridge's IPv6 gateway address and prefix (dockerd
    /// `--ipv6 --fixed-cidr-v6`); nil: the default bridge has no IPv6.
    public var bridgeIPv6: IPv6InterfaceAddress?

    public init(
        bridge: String = "docker0", icc: Bool = true, ipForward: Bool = true,
        forwardPolicy: ForwardPolicy = .drop, portHook: PortHook = .tc,
        extInterfaces: [ExternalInterface] = [], containers: [Container] = [],
        links: [Link] = [], fastPath: Bool = true, networks: [BridgeNetwork] = [],
        peers: [Peer] = [], peerPolicy: PeerPolicy = .icc, bridgeIPv6: IPv6InterfaceAddress? = nil,
        nat: NATMode = .auto
    ) {
        self.nat = nat
        self.bridge = bridge
        self.icc = icc
        self.ipForward = ipForward
        self.forwardPolicy = forwardPolicy
        self.portHook = portHook
        self.fastPath = fastPath
        self.extInterfaces = extInterfaces
        self.networks = networks
        self.containers = containers
        self.links = links
        self.peers = peers
        self.peerPolicy = peerPolicy
        self.bridgeIPv6 = bridgeIPv6
    }

    /// Who translates published ports on the eBPF backend: `nat` resolved.
    /// `auto` is `ebpf` when the replies can be translated back (the tc port
    /// hook) and the policy delivers around the bridge at all (`fastPath`;
    /// off, every packet takes the stack, as an operator debugging expects).
    /// The netfilter backends always translate with netfilter.
    public var natInForce: NATMode {
        switch nat {
        case .auto: portHook == .tc && fastPath ? .ebpf : .netfilter
        case .ebpf, .netfilter: nat
        }
    }

    /// The name the default bridge's network has in Docker, and in a
    /// container's `network` when written out.
    public static let defaultNetworkName = "bridge"

    /// The bridge and icc of the network `container` sits on; nil when the
    /// policy has no such network.
    public func network(of container: Container) -> (bridge: String, icc: Bool)? {
        guard let name = container.network else { return (bridge, icc) }
        return networks.first { $0.name == name }.map { ($0.bridge, $0.icc) }
    }

    /// The IPv6 gateway address of the network `container` sits on; nil
    /// when that network has no IPv6 (or does not exist).
    public func ipv6Gateway(of container: Container) -> IPv6InterfaceAddress? {
        guard let name = container.network else { return bridgeIPv6 }
        return networks.first { $0.name == name }?.ipv6
    }

    /// Every bridge the policy polices: the default one first, then each
    /// network's in order.
    public var bridges: [String] { [bridge] + networks.map(\.bridge) }
}

extension Character {
    /// 0-9 only (not other scripts' digits, not signs).
    var isASCIIDigit: Bool { isASCII && isNumber }
}
