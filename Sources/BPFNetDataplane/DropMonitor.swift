// SPDX-License-Identifier: Apache-2.0
//
// Follows the pinned bn_drops ring buffer of a loaded eBPF dataplane.

import BPF
import BPFNetCore
import BPFNetShared
import Glibc
import SystemPackage

public final class DropMonitor {
    /// Collects what one poll delivers (the ring's callback cannot return values).
    private final class Inbox { var events: [DropEvent] = [] }

    private let inbox = Inbox()
    private let ring: BPFRingBuffer
    private let rate: BPFPerCPUMap<UInt32, bpfnet_drop_rate>

    /// Opens the ring buffer pinned under `pinPath` (a loaded eBPF dataplane).
    public init(pinPath: FilePath) throws {
        let inbox = inbox
        ring = try BPFRingBuffer(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_DROPS))) { bytes in
            if let event = DropEvent(bytes: bytes) { inbox.events.append(event) }
            return true
        }
        rate = try BPFPerCPUMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_DROP_RATE)))
    }

    /// Waits up to `timeoutMilliseconds` and returns the events that arrived.
    public func next(timeoutMilliseconds: Int32) throws -> [DropEvent] {
        try ring.poll(timeoutMilliseconds: timeoutMilliseconds)
        defer { inbox.events.removeAll(keepingCapacity: true) }
        return inbox.events
    }

    /// Events the per-CPU rate limit left out, and events the full ring lost, so far.
    public func missed() throws -> (suppressed: UInt64, lost: UInt64) {
        try Self.missed(rate)
    }

    /// The same without opening the ring (`bpfnet status --prometheus`, the
    /// metrics endpoint); nil when no eBPF dataplane is pinned at `pinPath`.
    public static func missed(pinPath: FilePath) throws -> (suppressed: UInt64, lost: UInt64)? {
        let path = pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_DROP_RATE))
        guard access(path.string, F_OK) == 0 else { return nil }
        return try missed(BPFPerCPUMap(pinnedAt: path))
    }

    private static func missed(
        _ rate: BPFPerCPUMap<UInt32, bpfnet_drop_rate>
    ) throws -> (suppressed: UInt64, lost: UInt64) {
        let perCPU = try rate.lookup(0) ?? []
        return (perCPU.reduce(0) { $0 &+ $1.suppressed }, perCPU.reduce(0) { $0 &+ $1.lost })
    }
}
