// SPDX-License-Identifier: Apache-2.0
//
// IPv6 addresses and prefixes: allow-lists (docker-proxy listens on [::] for
// published ports) and dual-stack networks, whose containers have IPv6
// addresses of their network's IPv6 subnet (docs/policy.md, "Dual stack").

import Foundation

/// An IPv6 address, as two 64-bit halves in host order (`high` holds bytes 0-7).
public struct IPv6Address: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// From the 16 bytes in network order.
    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 16, "an IPv6 address is 16 bytes")
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(high: high, low: low)
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// Parses the RFC 4291 text forms: eight groups of 1-4 hex digits, one
    /// "::" for a run of zero groups, and an IPv4 address in the last 32 bits.
    public init?(_ text: some StringProtocol) {
        let text = String(text)
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String, last: Bool) -> [UInt16]? {
            guard !part.isEmpty else { return [] }
            var result: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if last, index == pieces.count - 1, piece.contains("."), let v4 = IPv4Address(piece) {
                    result += [UInt16(v4.value >> 16), UInt16(v4.value & 0xFFFF)]
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy(\.isHexDigit),
                    let group = UInt16(piece, radix: 16)
                else { return nil }
                result.append(group)
            }
            return result
        }
        guard let head = groups(halves[0], last: halves.count == 1) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1], last: true), head.count + tail.count <= 7 else { return nil }
            all += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        self.init(bytes: all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
    }

    /// RFC 5952: lower case, leading zeros dropped, the longest run (of two
    /// or more) of zero groups as "::".
    public var description: String {
        let groups = (0..<8).map { index -> UInt16 in
            let half = index < 4 ? high : low
            return UInt16(truncatingIfNeeded: half >> (48 - 16 * UInt64(index % 4)))
        }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else {
                index += 1
                continue
            }
            let start = index
            while index < 8, groups[index] == 0 { index += 1 }
            if index - start > best.length { best = (start, index - start) }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard best.length >= 2 else { return hex.joined(separator: ":") }
        let head = hex[..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }

    /// fe80::/10: never routed, so no network's (neighbour discovery uses it).
    public var isLinkLocal: Bool { high >> 54 == 0x3FA }
    /// ff00::/8.
    public var isMulticast: Bool { high >> 56 == 0xFF }
    /// `::`.
    public var isUnspecified: Bool { high == 0 && low == 0 }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let address = IPv6Address(text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not an IPv6 address"))
        }
        self = address
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An IPv6 address with its prefix length, as a bridge carries its gateway
/// address ("fd00:30::1/64"): the network's gateway and subnet in one.
public struct IPv6InterfaceAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    public var address: IPv6Address
    public var prefixLength: UInt8

    /// nil when `prefixLength` > 128.
    public init?(address: IPv6Address, prefixLength: UInt8) {
        guard prefixLength <= 128 else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses "address/len" (len 0-128).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv6Address(parts[0]), !parts[1].isEmpty, parts[1].count <= 3,
            parts[1].allSatisfy(\.isASCIIDigit), let length = UInt8(parts[1])
        else { return nil }
        self.init(address: address, prefixLength: length)
    }

    /// The subnet, host bits cleared.
    public var network: IPv6CIDR { IPv6CIDR(address: address, prefixLength: prefixLength)! }

    public var description: String { "\(address)/\(prefixLength)" }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = IPv6InterfaceAddress(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not an IPv6 interface address (expected address/len, len 0-128)"))
        }
        self = value
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An IPv6 prefix; host bits are masked off.
public struct IPv6CIDR: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public let address: IPv6Address
    public let prefixLength: UInt8

    public init?(address: IPv6Address, prefixLength: UInt8) {
        guard prefixLength <= 128 else { return nil }
        let length = UInt64(prefixLength)
        let highMask: UInt64 = length >= 64 ? .max : (length == 0 ? 0 : .max << (64 - length))
        let lowMask: UInt64 = length <= 64 ? 0 : (length == 128 ? .max : .max << (128 - length))
        self.address = IPv6Address(high: address.high & highMask, low: address.low & lowMask)
        self.prefixLength = prefixLength
    }

    /// Parses "address/len" or a bare address (taken as /128).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPv6Address(parts[0]) else { return nil }
        var length: UInt8 = 128
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].count <= 3, parts[1].allSatisfy(\.isASCIIDigit),
                let parsed = UInt8(parts[1]), parsed <= 128
            else { return nil }
            length = parsed
        }
        self.init(address: address, prefixLength: length)
    }

    public func contains(_ candidate: IPv6Address) -> Bool {
        IPv6CIDR(address: candidate, prefixLength: prefixLength)?.address == address
    }

    public func overlaps(_ other: IPv6CIDR) -> Bool {
        prefixLength <= other.prefixLength ? contains(other.address) : other.contains(address)
    }

    public var description: String { "\(address)/\(prefixLength)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.address, lhs.prefixLength) < (rhs.address, rhs.prefixLength)
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let cidr = IPv6CIDR(text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not an IPv6 CIDR (expected address/len, len 0-128)"))
        }
        self = cidr
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
