// SPDX-License-Identifier: Apache-2.0
//
// eBPF NAT connections (`--nat ebpf`, docs/nat.md) as `bpfnet status
// --connections` shows them: read from bn_nat, whose two entries per
// connection (original and reply direction, bpfnet_shared.h) are paired here.
// The timeouts are the programs' (bpfnet_shared.h, nat.h): a connection is
// live while its last packet is within the timeout of its state.

import BPFNetShared

/// How published ports are translated.
public enum NATMode: String, Hashable, Sendable, Codable, CaseIterable {
    /// The default: `ebpf` where it can run (the eBPF backend, the tc port
    /// hook, the fast path on), `netfilter` otherwise (`Policy.natInForce`).
    case auto
    /// Netfilter's DNAT (bpfnet's `ip bpfnet` table): every packet climbs the stack.
    case netfilter
    /// The ext and port programs translate and deliver connections themselves;
    /// netfilter's DNAT stays for what they leave to the stack.
    case ebpf
}

/// One direction's key of `bn_nat`: the tuple as that direction's packets carry it.
public typealias NATKey = FlowTuple

extension FlowTuple {
    public init(_ c: bpfnet_nat_key) {
        self.init(
            source: IPv4Address(networkOrder: c.saddr), destination: IPv4Address(networkOrder: c.daddr),
            sourcePort: UInt16(bigEndian: c.sport), destinationPort: UInt16(bigEndian: c.dport), proto: c.proto)
    }

    /// `struct bpfnet_nat_key`.
    public var cValue: bpfnet_nat_key {
        var c = bpfnet_nat_key()
        c.saddr = source.networkOrder
        c.daddr = destination.networkOrder
        c.sport = sourcePort.bigEndian
        c.dport = destinationPort.bigEndian
        c.proto = proto
        return c
    }
}

/// One entry of `bn_nat` (`struct bpfnet_nat_entry`).
public struct NATEntry: Hashable, Sendable {
    public var createdNanoseconds: UInt64
    public var seenNanoseconds: UInt64
    public var other: NATKey
    public var address: IPv4Address
    public var port: UInt16
    public var isReply: Bool
    public var state: NATState
    public var portIfindex: UInt32
    public var extIfindex: UInt32
    public var packets: UInt64
    public var bytes: UInt64

    public init(_ c: bpfnet_nat_entry) {
        createdNanoseconds = c.created_ns
        seenNanoseconds = c.seen_ns
        other = NATKey(c.other)
        address = IPv4Address(networkOrder: c.addr)
        port = UInt16(bigEndian: c.port)
        isReply = UInt32(c.direction) == BPFNET_NAT_REPLY.rawValue
        state = NATState(rawValue: c.state)
        portIfindex = c.port_ifindex
        extIfindex = c.ext_ifindex
        packets = c.packets
        bytes = c.bytes
    }
}

/// `enum bpfnet_nat_state`, kept on a connection's original entry.
public struct NATState: OptionSet, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let replied = NATState(rawValue: UInt8(BPFNET_NAT_REPLIED.rawValue))
    public static let finOutside = NATState(rawValue: UInt8(BPFNET_NAT_FIN_OUTSIDE.rawValue))
    public static let finInside = NATState(rawValue: UInt8(BPFNET_NAT_FIN_INSIDE.rawValue))
    public static let reset = NATState(rawValue: UInt8(BPFNET_NAT_RST.rawValue))

    /// The idle timeout of a connection in this state, in seconds (nat.h's `nat_timeout_ns`).
    public func timeoutSeconds(proto: UInt8) -> UInt64 {
        if proto == 6 {
            if contains(.reset) { return UInt64(BPFNET_NAT_TCP_CLOSE) }
            if !isDisjoint(with: [.finOutside, .finInside]) { return UInt64(BPFNET_NAT_TCP_CLOSING) }
            return contains(.replied) ? UInt64(BPFNET_NAT_TCP_ESTABLISHED) : UInt64(BPFNET_NAT_TCP_SYN_SENT)
        }
        return contains(.replied) ? UInt64(BPFNET_NAT_UDP_REPLIED) : UInt64(BPFNET_NAT_UDP_UNREPLIED)
    }

    /// conntrack's name for the state (TCP), or UDP's replied/unreplied.
    public func name(proto: UInt8) -> String {
        if proto == 6 {
            if contains(.reset) { return "close" }
            if contains(.finOutside) && contains(.finInside) { return "time-wait" }
            if !isDisjoint(with: [.finOutside, .finInside]) { return "fin-wait" }
            return contains(.replied) ? "established" : "syn-sent"
        }
        return contains(.replied) ? "replied" : "unreplied"
    }
}

/// A connection translated by the eBPF NAT, both directions paired.
public struct NATConnection: Hashable, Sendable, Codable {
    public var proto: String
    /// The outside peer.
    public var outside: String
    /// The host address and published port it reached.
    public var published: String
    /// The container's address and port.
    public var container: String
    public var state: String
    public var ageSeconds: UInt64
    /// Seconds left before the idle timeout ends it.
    public var expiresInSeconds: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// The container's host-side veth (ifindex), and where the connection came in.
    public var portIfindex: UInt32
    public var extIfindex: UInt32
}

/// `bn_nat` read at one moment.
public struct NATConnectionTable: Sendable {
    public var connections: [NATConnection]
    /// Entries whose connection is over (timed out, or half of a pair):
    /// user space deletes them, the programs already ignore them.
    public var expired: [NATKey]

    /// A live connection's two halves, and how long it has been idle.
    private struct Live {
        var key: NATKey
        var original: NATEntry
        var reply: NATEntry
        var idle: UInt64
        var timeout: UInt64
    }

    /// Sorts the entries into live connections (by their original entry)
    /// and entries that are over. `now`: CLOCK_MONOTONIC in nanoseconds, the
    /// programs' `bpf_ktime_get_ns` clock.
    private static func classify(_ entries: [(key: NATKey, entry: NATEntry)], now: UInt64) -> (
        live: [Live], expired: [NATKey]
    ) {
        let byKey = Dictionary(entries.map { ($0.key, $0.entry) }, uniquingKeysWith: { first, _ in first })
        var live: [Live] = []
        var expired: [NATKey] = []
        for (key, entry) in entries {
            // Both halves, each naming the other: the programs translate nothing else.
            let (originalKey, replyKey) = entry.isReply ? (entry.other, key) : (key, entry.other)
            guard let original = byKey[originalKey], let reply = byKey[replyKey], !original.isReply, reply.isReply,
                original.other == replyKey, reply.other == originalKey
            else {
                expired.append(key)  // its other half is gone or belongs to another connection
                continue
            }
            let timeout = original.state.timeoutSeconds(proto: key.proto) * 1_000_000_000
            let seen = original.seenNanoseconds
            let idle = now > seen ? now - seen : 0
            guard idle <= timeout else {
                expired.append(key)
                continue
            }
            if !entry.isReply {
                live.append(Live(key: key, original: entry, reply: reply, idle: idle, timeout: timeout))
            }
        }
        return (live, expired)
    }

    /// What a sweep needs, without describing each connection: the entries
    /// to delete and how many connections are live.
    public static func sweep(entries: [(key: NATKey, entry: NATEntry)], now: UInt64) -> (
        expired: [NATKey], liveConnections: Int
    ) {
        let (live, expired) = classify(entries, now: now)
        return (expired, live.count)
    }

    /// Pairs the entries, one row per live connection.
    public init(entries: [(key: NATKey, entry: NATEntry)], now: UInt64) {
        let (live, expired) = Self.classify(entries, now: now)
        connections = live.map { connection in
            let (key, entry) = (connection.key, connection.original)
            return NATConnection(
                proto: Self.protocolName(key.proto), outside: "\(key.source):\(key.sourcePort)",
                published: "\(key.destination):\(key.destinationPort)",
                container: "\(entry.address):\(entry.port)",
                state: entry.state.name(proto: key.proto),
                ageSeconds: (now > entry.createdNanoseconds ? now - entry.createdNanoseconds : 0) / 1_000_000_000,
                expiresInSeconds: (connection.timeout - connection.idle) / 1_000_000_000,
                packetsIn: entry.packets, packetsOut: connection.reply.packets,
                bytesIn: entry.bytes, bytesOut: connection.reply.bytes,
                portIfindex: entry.portIfindex, extIfindex: entry.extIfindex)
        }.sorted { ($0.published, $0.outside, $0.proto) < ($1.published, $1.outside, $1.proto) }
        self.expired = expired
    }

    static func protocolName(_ proto: UInt8) -> String {
        switch proto {
        case 6: "tcp"
        case 17: "udp"
        default: "proto-\(proto)"
        }
    }
}
