// SPDX-License-Identifier: Apache-2.0
//
// bn_nat, the eBPF NAT's connections (docs/nat.md), as the control plane
// reads and tidies it: `status` pairs and shows them, and every apply deletes
// the entries of connections that are over (the programs already ignore
// them; the LRU would evict them only under pressure) and learns whether any
// are left to drain after a switch to --nat netfilter.

import BPF
import BPFNetCore
import BPFNetShared
import Foundation
import SystemPackage

struct NATConnectionMap {
    let map: BPFMap<bpfnet_nat_key, bpfnet_nat_entry>

    /// nil when the pin path has no bn_nat (a dataplane loaded by a bpfnet without eBPF NAT).
    init?(pinnedAt pinPath: FilePath) throws {
        let path = pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_NAT))
        guard FileManager.default.fileExists(atPath: path.string) else { return nil }
        map = try BPFMap(pinnedAt: path)
    }

    /// The programs' clock: bpf_ktime_get_ns is CLOCK_MONOTONIC.
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    private func entries() throws -> [(key: NATKey, entry: NATEntry)] {
        try map.entries().map { (NATKey($0.key), NATEntry($0.value)) }
    }

    func read() throws -> NATConnectionTable {
        NATConnectionTable(entries: try entries(), now: Self.now())
    }

    /// Deletes what is over; returns how many connections are live.
    @discardableResult
    func deleteExpired() throws -> Int {
        let (expired, live) = NATConnectionTable.sweep(entries: try entries(), now: Self.now())
        if !expired.isEmpty { _ = try map.delete(keys: expired.map(\.cValue)) }
        return live
    }
}
