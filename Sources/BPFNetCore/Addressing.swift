// SPDX-License-Identifier: Apache-2.0
//
// Small value types and name rules the policy model needs besides Model.swift:
// an interface address with its prefix (what the bridge has), and the rules
// for interface and container names, written once so that the policy file,
// the validator and the CLI reject the same things with the same words.

/// An IPv4 address together with the prefix length of its network, as an
/// interface holds it ("172.17.0.1/16"). Unlike `IPv4CIDR` the host bits are kept.
public struct IPv4InterfaceAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    public var address: IPv4Address
    public var prefixLength: UInt8

    /// nil when `prefixLength` > 32.
    public init?(address: IPv4Address, prefixLength: UInt8) {
        guard prefixLength <= 32 else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses "a.b.c.d/len" (len 0-32).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]),
            !parts[1].isEmpty, parts[1].count <= 2, parts[1].allSatisfy(\.isASCIIDigit),
            let length = UInt8(parts[1]), length <= 32
        else { return nil }
        self.init(address: address, prefixLength: length)
    }

    /// The netmask in host order (0xFFFF0000 for /16).
    public var netmask: UInt32 { IPv4CIDR.mask(prefixLength) }

    /// The network this address belongs to, host bits cleared.
    public var network: IPv4CIDR { IPv4CIDR(address: address, prefixLength: prefixLength)! }

    /// The subnet's directed broadcast address (only meaningful below /31).
    public var broadcast: IPv4Address { IPv4Address(address.value | ~netmask) }

    public var description: String { "\(address)/\(prefixLength)" }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = IPv4InterfaceAddress(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not an interface address (expected a.b.c.d/len, len 0-32)"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension IPv4Address {
    /// 127.0.0.0/8.
    public var isLoopback: Bool { value >> 24 == 127 }
    /// 0.0.0.0/8 ("this network"; never a real peer).
    public var isThisNetwork: Bool { value >> 24 == 0 }
    /// An address a container (or a host binding) can actually have.
    public var isUsableUnicast: Bool { !isThisNetwork && !isLoopback && !isMulticast && value >> 28 != 0xF }
}

extension MACAddress {
    /// Multicast and broadcast MACs have the lowest bit of the first byte set.
    public var isMulticast: Bool { bytes.0 & 1 == 1 }
    public var isZero: Bool { array.allSatisfy { $0 == 0 } }
}

/// Rules for Linux interface names (`dev_valid_name` in net/core/dev.c).
public enum InterfaceName {
    /// IFNAMSIZ - 1.
    public static let maximumLength = 15

    /// Why `name` cannot be an interface name, or nil when it can.
    public static func problem(_ name: String) -> String? {
        if name.isEmpty { return "an interface name cannot be empty" }
        if name.utf8.count > maximumLength {
            return "'\(name)' is \(name.utf8.count) bytes long; interface names have at most \(maximumLength)"
        }
        if name == "." || name == ".." { return "'\(name)' is not a valid interface name" }
        if let bad = name.unicodeScalars.first(where: {
            $0 == "/" || $0 == ":" || $0.properties.isWhitespace
                || $0.value < 0x20 || $0.value == 0x7F
        }) {
            return "'\(name)' is not a valid interface name (it contains \(Self.quote(bad)); "
                + "'/', ':', whitespace and control characters are not allowed)"
        }
        return nil
    }

    public static func isValid(_ name: String) -> Bool { problem(name) == nil }

    static func quote(_ scalar: Unicode.Scalar) -> String {
        scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7F
            ? "U+" + String(scalar.value, radix: 16, uppercase: true) : "'\(scalar)'"
    }
}

/// Rules for container names, as Docker has them (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`;
/// Docker's API prefixes names with '/', which is accepted and dropped).
public enum ContainerName {
    /// The name without Docker's leading '/', or nil when it is not a valid name.
    public static func normalized(_ name: String) -> String? {
        let trimmed = name.hasPrefix("/") ? String(name.dropFirst()) : name
        guard let first = trimmed.unicodeScalars.first, isAlnum(first),
            trimmed.unicodeScalars.allSatisfy({ isAlnum($0) || $0 == "_" || $0 == "." || $0 == "-" })
        else { return nil }
        return trimmed
    }

    public static let accepted = "letters, digits, '_', '.' and '-', starting with a letter or digit"

    private static func isAlnum(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }
}

extension Policy {
    /// The policy in the form the compiler and the validator expect, without
    /// changing what it means:
    /// - every published container port is added to the container's exposed
    ///   ports (Docker merges `-p` into `Config.ExposedPorts`);
    /// - exposed ports are de-duplicated and sorted;
    /// - a published `hostIP` of 0.0.0.0 becomes nil (both mean "every address");
    /// - allow-list entries are de-duplicated (order kept);
    /// - a container's `network` of "bridge" (the default bridge) becomes nil.
    /// Containers, links and interfaces keep their order, so indices in
    /// problem messages still point at the operator's file.
    public func normalized() -> Policy {
        var result = self
        for index in result.containers.indices {
            var container = result.containers[index]
            for binding in container.published.indices where container.published[binding].hostIP == IPv4Address.any {
                container.published[binding].hostIP = nil
            }
            container.exposed = Policy.effectiveExposedPorts(of: container)
            // "bridge" is the default bridge's network, which nil already names.
            if container.network == Policy.defaultNetworkName { container.network = nil }
            result.containers[index] = container
        }
        for index in result.extInterfaces.indices {
            var seen = Set<IPv4CIDR>()
            result.extInterfaces[index].allowSources = result.extInterfaces[index].allowSources.filter {
                seen.insert($0).inserted
            }
            var seen6 = Set<IPv6CIDR>()
            result.extInterfaces[index].allowSourcesIPv6 = result.extInterfaces[index].allowSourcesIPv6.filter {
                seen6.insert($0).inserted
            }
        }
        return result
    }

    /// exp(c): the container's exposed ports including its published ones.
    public static func effectiveExposedPorts(of container: Container) -> [PortSpec] {
        Set(container.exposed).union(container.published.map { PortSpec($0.containerPort, $0.proto) }).sorted()
    }
}
