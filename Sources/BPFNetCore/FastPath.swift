// SPDX-License-Identifier: Apache-2.0
//
// Fast-path events: the Swift face of `enum bpfnet_fastpath_event`
// (bpfnet_shared.h). Every packet a program passes counts exactly one event:
// `hit` (delivered around the bridge or the host's routing) or the reason it
// took the normal path. The names are what `bpfnet status` shows (the table in
// docs/verdicts.md, "Fast path").

import BPFNetShared

/// How an allowed packet was delivered. A struct over the C value, like
/// `Reason`: counters read back from pinned maps may hold events of a newer
/// program.
public struct FastPathEvent: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ event: bpfnet_fastpath_event) { rawValue = event.rawValue }

    public static let hit = FastPathEvent(BPFNET_FP_HIT)
    public static let disabled = FastPathEvent(BPFNET_FP_DISABLED)
    public static let verdict = FastPathEvent(BPFNET_FP_VERDICT)
    public static let notIPv4 = FastPathEvent(BPFNET_FP_NOT_IPV4)
    public static let vlan = FastPathEvent(BPFNET_FP_VLAN)
    public static let mac = FastPathEvent(BPFNET_FP_MAC)
    public static let unknownDestination = FastPathEvent(BPFNET_FP_UNKNOWN_DEST)
    public static let samePort = FastPathEvent(BPFNET_FP_SAME_PORT)
    public static let noNAPI = FastPathEvent(BPFNET_FP_NO_NAPI)
    public static let partialChecksum = FastPathEvent(BPFNET_FP_PARTIAL_CSUM)
    public static let ipOptions = FastPathEvent(BPFNET_FP_IP_OPTIONS)
    public static let fragment = FastPathEvent(BPFNET_FP_FRAGMENT)
    public static let ttl = FastPathEvent(BPFNET_FP_TTL)
    public static let proto = FastPathEvent(BPFNET_FP_PROTOCOL)
    public static let conntrack = FastPathEvent(BPFNET_FP_CONNTRACK)
    public static let fib = FastPathEvent(BPFNET_FP_FIB)
    public static let forwardingDisabled = FastPathEvent(BPFNET_FP_FWD_DISABLED)
    public static let noNeighbour = FastPathEvent(BPFNET_FP_NO_NEIGH)
    public static let redirect = FastPathEvent(BPFNET_FP_REDIRECT)
    public static let unconfirmed = FastPathEvent(BPFNET_FP_UNCONFIRMED)
    public static let peerState = FastPathEvent(BPFNET_FP_PEER_STATE)
    public static let natState = FastPathEvent(BPFNET_FP_NAT_STATE)

    /// Every event this build knows, in numeric order.
    public static let allKnown: [FastPathEvent] = [
        .hit, .disabled, .verdict, .notIPv4, .vlan, .mac, .unknownDestination, .samePort, .noNAPI,
        .partialChecksum, .ipOptions, .fragment, .ttl, .proto, .conntrack, .fib, .forwardingDisabled,
        .noNeighbour, .redirect, .unconfirmed, .peerState, .natState,
    ]

    /// Counter slots per program (`BPFNET_FP_EVENT_MAX`).
    public static let slotsPerProgram = Int(BPFNET_FP_EVENT_MAX.rawValue)

    /// The stable name shown by `bpfnet status`; unknown values read "event-N".
    public var name: String {
        switch self {
        case .hit: "hit"
        case .disabled: "disabled"
        case .verdict: "not-eligible"
        case .notIPv4: "not-ipv4"
        case .vlan: "vlan"
        case .mac: "mac"
        case .unknownDestination: "unknown-destination"
        case .samePort: "same-port"
        case .noNAPI: "no-napi"
        case .partialChecksum: "partial-checksum"
        case .ipOptions: "ip-options"
        case .fragment: "fragment"
        case .ttl: "ttl"
        case .proto: "protocol"
        case .conntrack: "conntrack"
        case .fib: "fib"
        case .forwardingDisabled: "forwarding-disabled"
        case .noNeighbour: "no-neighbour"
        case .redirect: "redirect-failed"
        case .unconfirmed: "unconfirmed-port"
        case .peerState: "peer-needs-conntrack"
        case .natState: "nat-no-connection"
        default: "event-\(rawValue)"
        }
    }

    public var description: String { name }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension ProgramKind {
    /// Index into `bn_fp_counters` (`BPFNET_FP_INDEX`).
    public func fastPathIndex(_ event: FastPathEvent) -> Int {
        Int(rawValue) * FastPathEvent.slotsPerProgram + Int(event.rawValue)
    }

    /// `BPFNET_FP_SLOTS`.
    public static let fastPathSlots = Int(BPFNET_PROG_MAX.rawValue) * FastPathEvent.slotsPerProgram
}
