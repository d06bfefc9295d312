// SPDX-License-Identifier: Apache-2.0
//
// The pinned policy maps as the reconciler sees them: a MapWriter (one
// bpf_map_update_elem / _delete_elem per change) and a MapReader (raw C
// key/value bytes, decoded by BPFNetCore).

import BPF
import BPFNetCore
import BPFNetShared
import Foundation
import SystemPackage

/// The policy maps pinned under one directory.
///
/// `MapKind.ports` is two maps in the kernel: the ARRAY `bn_ports` for
/// ifindexes below `BPFNET_PORT_SLOTS` (its lookup is inlined, which keeps
/// the port program's sender check cheap) and the HASH `bn_ports_high` for
/// the rest. Here, as for the reconciler, they are one map: an entry goes to
/// the one its ifindex belongs to; deleting an array entry zeroes its slot.
public struct PolicyMaps: MapWriter, MapReader {
    private let maps: [MapKind: BPFRawMap]
    private let portsHigh: BPFRawMap
    /// `bn_ports`' memory: read by scanning it, as a batch lookup of its
    /// 65,536 slots would cost ~13 ms per apply.
    private let portSlots: BPFMappedArray

    /// Opens every policy map pinned under `pinPath`.
    public init(pinnedAt pinPath: FilePath) throws {
        var maps: [MapKind: BPFRawMap] = [:]
        for kind in MapKind.allCases {
            let map = try BPFRawMap(pinnedAt: pinPath.appending(kind.mapName))
            guard map.handle.keySize == kind.keySize, map.handle.valueSize == kind.valueSize else {
                throw DataplaneError.runtime(
                    "bpf: the map pinned at \(pinPath.appending(kind.mapName)) has a \(map.handle.keySize)-byte key and "
                        + "\(map.handle.valueSize)-byte value, this bpfnet expects \(kind.keySize) and \(kind.valueSize) "
                        + "— it was written by another version; run `bpfnet unload` and load again")
            }
            maps[kind] = map
        }
        self.maps = maps
        portsHigh = try BPFRawMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_PORTS_HIGH)))
        portSlots = try BPFMappedArray(maps[.ports]!.handle)
    }

    /// The kernel map that holds `key`.
    private func map(for key: MapKey) -> BPFRawMap {
        if case .port(let ifindex) = key, ifindex >= BPFNET_PORT_SLOTS { return portsHigh }
        return maps[key.kind]!
    }

    /// The map's capacity (max_entries).
    public func capacity(of kind: MapKind) -> UInt32 { maps[kind]!.handle.maxEntries }

    public mutating func upsert(_ entry: MapEntry) throws {
        let map = map(for: entry.key)
        do {
            try map.update(entry.keyBytes, entry.valueBytes)
        } catch let error as BPFError where error.isNoSpace {
            throw DataplaneError.noSpace(
                "bpf: map \(entry.kind.mapName) is full (\(map.handle.maxEntries) entries) while adding \(entry) "
                    + "— the policy is larger than the dataplane was built for")
        }
    }

    public mutating func delete(_ key: MapKey) throws {
        let map = map(for: key)
        guard map.handle.type == .array else {
            _ = try map.delete(key.bytes)
            return
        }
        // An array slot cannot go: all zeros is "no entry" (bn_ports: no
        // BPFNET_PORT_WRITTEN; bn_networks: no BPFNET_NET_KNOWN; bn_config:
        // the zero record, as MapState has it).
        try map.update(key.bytes, [UInt8](repeating: 0, count: key.kind.valueSize))
    }

    public func entries(of kind: MapKind) throws -> [(key: [UInt8], value: [UInt8])] {
        let map = maps[kind]!
        if kind == .config {
            // An ARRAY always has its slot; read just key 0.
            let key = MapKey.config.bytes
            return try map.lookup(key).map { [(key, $0)] } ?? []
        }
        if kind == .ports {
            let written = portSlots.slots(flaggedAt: PortRecord.knownFlagByteOffset, bits: PortRecord.writtenBits)
            return try written.map { (withUnsafeBytes(of: $0.index) { Array($0) }, $0.value) } + portsHigh.entries()
        }
        if kind == .networks {
            // Every slot exists; bpfnet's have BPFNET_NET_KNOWN.
            return try map.entries().filter { NetworkRecord.isWritten(bytes: $0.value) }
        }
        return try map.entries()
    }
}

/// Refuses a policy that would not fit into the maps, before anything is written.
enum MapCapacity {
    /// The reconciler writes a map's new entries before it deletes its old
    /// ones (a packet must never meet a policy stricter than both), so at its
    /// peak a map holds every key of `current` and of `desired`: that union
    /// must fit, not only `desired`.
    static func check(_ desired: MapState, replacing current: MapState = .empty) throws {
        let overflows = self.overflows(desired, alongside: current)
        guard overflows.isEmpty else {
            let fitsAlone = self.overflows(desired, alongside: .empty).isEmpty
            throw DataplaneError.badInput(
                "the policy does not fit into the dataplane's maps: " + overflows.joined(separator: "; ")
                    + (fitsAlone
                        ? " while the current policy's entries are still there (the reconciler adds before it "
                            + "deletes, so old and new must fit together) — apply a smaller step first, or unload and load"
                        : " — reduce the policy (links × exposed ports, allowed sources) or raise the BPFNET_MAX_* sizes")
                    + "; the current rules stay in force")
        }
    }

    /// "MAP needs N entries but holds C" for each map that would overflow
    /// holding the keys of both states at once. Counted per map from the
    /// states' own collections: this runs on every apply (every Docker event).
    private static func overflows(_ desired: MapState, alongside current: MapState) -> [String] {
        func peak<K: Hashable, V>(_ new: [K: V], _ old: [K: V]) -> Int {
            new.count + old.keys.count { new[$0] == nil }
        }
        func peak<K: Hashable>(_ new: Set<K>, _ old: Set<K>) -> Int { new.count + old.count { !new.contains($0) } }
        // bn_ports' array has a slot for every low ifindex; only the rest take room.
        func high(_ ports: [UInt32: PortRecord]) -> [UInt32: PortRecord] {
            ports.filter { $0.key >= BPFNET_PORT_SLOTS }
        }
        let needs: [(MapKind, Int, Int)] = [
            (.containers, peak(desired.containers, current.containers), Int(BPFNET_MAX_CONTAINERS)),
            (.macs, peak(desired.macs, current.macs), Int(BPFNET_MAX_CONTAINERS)),
            (.names, peak(desired.names, current.names), Int(BPFNET_MAX_CONTAINERS)),
            (.ports, peak(high(desired.ports), high(current.ports)), Int(BPFNET_MAX_CONTAINERS)),
            (.links, peak(desired.links, current.links), Int(BPFNET_MAX_LINK_RULES)),
            (.published, peak(desired.published, current.published), Int(BPFNET_MAX_PUBLISHED)),
            (.extInterfaces, peak(desired.extInterfaces, current.extInterfaces), Int(BPFNET_MAX_EXT_IFS)),
            (.allowSources, peak(desired.allowSources, current.allowSources), Int(BPFNET_MAX_ALLOW_SRC)),
            (.allowSources6, peak(desired.allowSources6, current.allowSources6), Int(BPFNET_MAX_ALLOW_SRC)),
            (.subnets, peak(desired.subnets, current.subnets), Int(BPFNET_MAX_NETWORKS)),
            (.peers, peak(desired.peers, current.peers), Int(BPFNET_MAX_PEER_SUBNETS)),
            (.subnets6, peak(desired.subnets6, current.subnets6), Int(BPFNET_MAX_NETWORKS)),
            (.containers6, peak(desired.containers6, current.containers6), Int(BPFNET_MAX_CONTAINERS)),
            // Slots are numbered from 0: the highest one must exist.
            (.networks, Int(desired.networks.keys.max() ?? 0) + 1, Int(BPFNET_MAX_NETWORKS)),
        ]
        return needs.filter { $0.1 > $0.2 }.map { kind, needed, capacity in
            let name = kind == .ports ? MapKind.name(of: BPFNET_MAP_ID_PORTS_HIGH) : kind.mapName
            return "\(name) needs \(needed) entries but holds \(capacity)"
        }
    }
}

/// Sums the per-CPU counters into one slot per (program, reason) — or per
/// (program, fast-path event) for bn_fp_counters.
struct CounterReader {
    let map: BPFPerCPUMap<UInt32, bpfnet_counter>
    let slotCount: Int

    init(pinnedAt pinPath: FilePath) throws {
        map = try BPFPerCPUMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_COUNTERS)))
        slotCount = ProgramKind.all.count * Reason.slotsPerProgram
    }

    /// nil when `map` is not pinned there (a dataplane loaded by a bpfnet without it).
    init?(pinnedAt pinPath: FilePath, map id: bpfnet_map_id, slots: Int) throws {
        let path = pinPath.appending(MapKind.name(of: id))
        guard FileManager.default.fileExists(atPath: path.string) else { return nil }
        map = try BPFPerCPUMap(pinnedAt: path)
        slotCount = slots
    }

    func read() throws -> [bpfnet_counter] {
        var slots = [bpfnet_counter](repeating: bpfnet_counter(), count: slotCount)
        for (index, perCPU) in try map.entries() where Int(index) < slots.count {
            for value in perCPU {
                slots[Int(index)].packets &+= value.packets
                slots[Int(index)].bytes &+= value.bytes
            }
        }
        return slots
    }
}
