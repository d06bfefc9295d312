// SPDX-License-Identifier: Apache-2.0
//
// Verdict reasons: the Swift face of `enum bpfnet_reason` (bpfnet_shared.h).
// The numeric values come from the C header and nowhere else; the names are
// what `bpfnet status` and its JSON show (table in docs/reasons.md).

import BPFNetShared

/// Why a program passed or dropped a packet. A struct over the C value rather
/// than a Swift enum: counters read back from pinned maps may have been written
/// by a newer program with reasons this build does not know.
public struct Reason: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ reason: bpfnet_reason) { rawValue = reason.rawValue }

    /// `BPFNET_REASON_NONE`: never a verdict; the unused counter slot 0.
    public static let unspecified = Reason(BPFNET_REASON_NONE)
    public static let nonIP = Reason(BPFNET_PASS_NON_IP)
    public static let host = Reason(BPFNET_PASS_HOST)
    public static let iccAllowed = Reason(BPFNET_PASS_ICC)
    public static let link = Reason(BPFNET_PASS_LINK)
    public static let linkReverse = Reason(BPFNET_PASS_LINK_REVERSE)
    public static let linkFragment = Reason(BPFNET_PASS_LINK_FRAGMENT)
    public static let outside = Reason(BPFNET_PASS_OUTSIDE)
    public static let ipv6 = Reason(BPFNET_PASS_IPV6)
    public static let published = Reason(BPFNET_PASS_PUBLISHED)
    public static let forwardAccept = Reason(BPFNET_PASS_FORWARD)
    public static let reply = Reason(BPFNET_PASS_REPLY)
    public static let local = Reason(BPFNET_PASS_LOCAL)
    public static let fragment = Reason(BPFNET_PASS_FRAGMENT)
    public static let related = Reason(BPFNET_PASS_RELATED)
    /// A peer host's container to a local container (row 12).
    public static let peer = Reason(BPFNET_PASS_PEER)
    public static let icc = Reason(BPFNET_DROP_ICC)
    public static let source = Reason(BPFNET_DROP_SOURCE)
    public static let forward = Reason(BPFNET_DROP_FORWARD)
    public static let malformed = Reason(BPFNET_DROP_MALFORMED)
    public static let unknownPort = Reason(BPFNET_DROP_UNKNOWN_PORT)
    public static let spoofed = Reason(BPFNET_DROP_SPOOFED)
    public static let encap = Reason(BPFNET_DROP_ENCAP)
    /// Between two Docker networks (Docker's DOCKER-ISOLATION chains).
    public static let network = Reason(BPFNET_DROP_NETWORK)
    public static let `internal` = Reason(BPFNET_DROP_INTERNAL)
    /// A peer's subnet as source, not arriving the way the peer is routed (row 13).
    public static let peerSpoofed = Reason(BPFNET_DROP_PEER_SPOOFED)

    /// Every reason this build knows, passes first, in numeric order.
    public static let allKnown: [Reason] = [
        .nonIP, .host, .iccAllowed, .link, .linkReverse, .linkFragment, .outside, .ipv6,
        .published, .forwardAccept, .reply, .local, .fragment, .related, .peer, .icc, .source, .forward,
        .malformed, .unknownPort, .spoofed, .encap, .network, .internal, .peerSpoofed,
    ]

    /// Number of counter slots per program (`BPFNET_REASON_MAX`).
    public static let slotsPerProgram = Int(BPFNET_REASON_MAX.rawValue)

    /// True for reasons at or above `BPFNET_REASON_DROP_FIRST`.
    public var isDrop: Bool { rawValue >= UInt32(BPFNET_REASON_DROP_FIRST) }

    public var action: Verdict.Action { isDrop ? .drop : .pass }

    /// The stable name shown by `bpfnet status` (docs/reasons.md). Drop reasons
    /// carry the bare word of docs/policy.md ("icc", "source"); pass reasons say what
    /// was allowed. Unknown values read "reason-N".
    public var name: String {
        switch self {
        case .unspecified: "none"
        case .nonIP: "non-ip"
        case .host: "host"
        case .iccAllowed: "icc-allowed"
        case .link: "link"
        case .linkReverse: "link-reverse"
        case .linkFragment: "link-fragment"
        case .outside: "outside"
        case .ipv6: "ipv6"
        case .published: "published"
        case .forwardAccept: "forward-accept"
        case .reply: "reply"
        case .local: "local"
        case .fragment: "fragment"
        case .related: "related"
        case .peer: "peer"
        case .icc: "icc"
        case .source: "source"
        case .forward: "forward"
        case .malformed: "malformed"
        case .unknownPort: "unknown-port"
        case .spoofed: "spoofed"
        case .encap: "encap"
        case .network: "network"
        case .internal: "internal"
        case .peerSpoofed: "peer-spoofed"
        default: "reason-\(rawValue)"
        }
    }

    /// The reason with this `name` (including "reason-N").
    public init?(name: String) {
        if let known = Self.allKnown.first(where: { $0.name == name }) {
            self = known
        } else if name == "none" {
            self = .unspecified
        } else if name.hasPrefix("reason-"), let value = UInt32(name.dropFirst(7)) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }

    public var description: String { name }

    public static func < (lhs: Reason, rhs: Reason) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let reason = Reason(name: text) else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "'\(text)' is not a verdict reason"))
        }
        self = reason
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}

/// What a program does with a packet, and why.
public struct Verdict: Hashable, Sendable, CustomStringConvertible {
    public enum Action: String, Hashable, Sendable, Codable {
        case pass, drop
    }

    public var action: Action
    public var reason: Reason

    public init(action: Action, reason: Reason) {
        self.action = action
        self.reason = reason
    }

    public static func pass(_ reason: Reason) -> Verdict { Verdict(action: .pass, reason: reason) }
    public static func drop(_ reason: Reason) -> Verdict { Verdict(action: .drop, reason: reason) }

    public var description: String { "\(action.rawValue) \(reason.name)" }
}

/// The programs that keep counters (`enum bpfnet_program`).
public struct ProgramKind: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ program: bpfnet_program) { rawValue = program.rawValue }

    public static let portTC = ProgramKind(BPFNET_PROG_PORT_TC)
    public static let portXDP = ProgramKind(BPFNET_PROG_PORT_XDP)
    public static let extXDP = ProgramKind(BPFNET_PROG_EXT_XDP)
    public static let all: [ProgramKind] = [.portTC, .portXDP, .extXDP]

    /// "port-tc", "port-xdp", "ext-xdp".
    public var name: String {
        switch self {
        case .portTC: "port-tc"
        case .portXDP: "port-xdp"
        case .extXDP: "ext-xdp"
        default: "program-\(rawValue)"
        }
    }

    public var description: String { name }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Index into `bn_counters` (`BPFNET_COUNTER_INDEX`).
    public func counterIndex(_ reason: Reason) -> Int {
        Int(rawValue) * Reason.slotsPerProgram + Int(reason.rawValue)
    }

    /// `BPFNET_COUNTER_SLOTS`.
    public static let counterSlots = Int(BPFNET_PROG_MAX.rawValue) * Reason.slotsPerProgram
}
