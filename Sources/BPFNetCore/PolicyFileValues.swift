// SPDX-License-Identifier: Apache-2.0
//
// The scalar values of a policy file: booleans, choices, names, addresses,
// prefixes, MACs, ports and port specs, each checked and, when wrong,
// reported with what would be accepted.

import Yams

extension PolicyFileReader {
    mutating func bool(_ node: Node, path: String) -> Bool? {
        guard let text = text(node, path: path, expected: "true or false") else { return nil }
        switch text {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default:
            fail(path, node, "'\(text)' is not a boolean; expected true or false")
            return nil
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node, path: String) -> T?
    where T.RawValue == String {
        let accepted = T.allCases.map(\.rawValue).joined(separator: " or ")
        guard let text = text(node, path: path, expected: accepted) else { return nil }
        if let value = T(rawValue: text) ?? T(rawValue: text.lowercased()) { return value }
        fail(path, node, "'\(text)' is not accepted; expected \(accepted)")
        return nil
    }

    mutating func interfaceName(_ node: Node, path: String) -> String? {
        guard let text = text(node, path: path, expected: "an interface name") else { return nil }
        if let problem = InterfaceName.problem(text) {
            fail(path, node, problem + "; expected a Linux interface name (1-15 bytes, no '/', ':' or whitespace)")
            return nil
        }
        return text
    }

    mutating func containerName(_ node: Node, path: String) -> String? {
        guard let text = text(node, path: path, expected: "a container name") else { return nil }
        guard let name = ContainerName.normalized(text) else {
            fail(path, node, "'\(text)' is not a valid container name; use \(ContainerName.accepted)")
            return nil
        }
        return name
    }

    mutating func ipv4(_ node: Node, path: String) -> IPv4Address? {
        guard let text = text(node, path: path, expected: "an IPv4 address") else { return nil }
        guard let address = IPv4Address(text) else {
            fail(
                path, node,
                "'\(text)' is not an IPv4 address; expected dotted-quad a.b.c.d with each part 0-255, such as 172.17.0.2"
            )
            return nil
        }
        return address
    }

    mutating func ipv6Address(_ node: Node, path: String) -> IPv6Address? {
        guard let text = text(node, path: path, expected: "an IPv6 address") else { return nil }
        guard let address = IPv6Address(text) else {
            fail(path, node, "'\(text)' is not an IPv6 address; expected RFC 4291 text such as fd00:30::2")
            return nil
        }
        return address
    }

    /// A bridge's IPv6 gateway address with the subnet's prefix length.
    mutating func ipv6InterfaceAddress(_ node: Node, path: String) -> IPv6InterfaceAddress? {
        guard let text = text(node, path: path, expected: "an IPv6 gateway address with its prefix length")
        else { return nil }
        guard let address = IPv6InterfaceAddress(text) else {
            fail(
                path, node,
                "'\(text)' is not an IPv6 gateway address with a prefix length; expected address/len with len 0-128, "
                    + "such as fd00:30::1/64 (the bridge's address, as `ip -6 addr` shows it)")
            return nil
        }
        return address
    }

    mutating func cidr(_ node: Node, path: String) -> IPv4CIDR? {
        guard let text = text(node, path: path, expected: "an IPv4 prefix") else { return nil }
        guard let cidr = IPv4CIDR(text) else {
            fail(
                path, node,
                "'\(text)' is not an IPv4 prefix; expected a.b.c.d/len with len 0-32 (such as 203.0.113.0/24), or a single address"
            )
            return nil
        }
        return cidr
    }

    /// An allow-list entry: an IPv4 or an IPv6 prefix.
    mutating func sourcePrefix(_ node: Node, path: String) -> SourcePrefix? {
        guard let text = text(node, path: path, expected: "an IPv4 or IPv6 prefix") else { return nil }
        if let prefix = SourcePrefix(text) { return prefix }
        fail(
            path, node,
            "'\(text)' is not an IPv4 or IPv6 prefix; expected a.b.c.d/len with len 0-32 (such as 203.0.113.0/24), "
                + "an IPv6 prefix with len 0-128 (such as 2001:db8::/32), or a single address")
        return nil
    }

    mutating func mac(_ node: Node, path: String) -> MACAddress? {
        guard let text = text(node, path: path, expected: "a MAC address") else { return nil }
        guard let mac = MACAddress(text) else {
            fail(
                path, node, "'\(text)' is not a MAC address; expected six two-digit hex bytes such as 02:42:ac:11:00:02"
            )
            return nil
        }
        return mac
    }

    mutating func port(_ node: Node, path: String) -> UInt16? {
        guard let text = text(node, path: path, expected: "a port number 1-65535") else { return nil }
        guard !text.isEmpty, text.allSatisfy(\.isASCIIDigit), let port = UInt16(text), port != 0 else {
            fail(path, node, "'\(text)' is not a port; expected a number 1-65535")
            return nil
        }
        return port
    }

    mutating func transport(_ node: Node, path: String) -> TransportProtocol? {
        guard let text = text(node, path: path, expected: "tcp, udp or sctp") else { return nil }
        guard let proto = TransportProtocol(rawValue: text.lowercased()) else {
            fail(path, node, "'\(text)' is not a protocol; expected tcp, udp or sctp")
            return nil
        }
        return proto
    }

    mutating func portSpec(_ node: Node, path: String) -> PortSpec? {
        guard let text = text(node, path: path, expected: "PORT or PORT/PROTO") else { return nil }
        guard let spec = PortSpec(text) else {
            fail(
                path, node,
                "'\(text)' is not an exposed port; expected PORT or PORT/PROTO with PORT 1-65535 "
                    + "and PROTO tcp, udp or sctp (such as 80, 80/tcp, 53/udp, 132/sctp)")
            return nil
        }
        return spec
    }
}
