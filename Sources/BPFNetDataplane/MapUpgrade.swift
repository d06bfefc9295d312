// SPDX-License-Identifier: Apache-2.0
//
// Upgrading the eBPF dataplane in place. A new bpfnet process loads its own
// programs and reuses the pinned maps; `AttachmentManager` then swaps the
// programs on every interface in place (a tc filter replaced under the same
// handle and priority, XDP with XDP_FLAGS_REPLACE), so each interface runs
// the old program until the instant the new one takes over.
//
// A version that changes a map's layout (a value grows, a capacity changes)
// cannot reuse that pin: libbpf refuses a pinned map whose type, key and
// value sizes, capacity or flags differ from the object's. Taking the old
// dataplane down first would leave every port unpoliced until the new one is
// up. Instead the new maps are built beside the old ones, in the `.upgrade`
// directory under the pin path, and filled from the policy; the programs are
// swapped as above (the old programs keep their old maps until then); only
// after that are the new pins moved over the old ones. The records that
// only the running dataplane knows (which interfaces carry a program, which
// interfaces' offloads bpfnet changed) are copied across; the counters start
// again at zero. docs/agent.md, "Upgrades".

import BPF
import BPFNetCore
import BPFNetShared
import Foundation
import Logging
import SystemPackage

enum MapUpgrade {
    /// The directory, under the pin path, that holds a new set of maps
    /// until the programs using them are attached everywhere.
    static let stagingName = "upgrade"

    /// Maps whose contents are not derived from the policy: copied into the
    /// new set when their layout is unchanged.
    static let carriedOver: [bpfnet_map_id] = [BPFNET_MAP_ID_ATTACH, BPFNET_MAP_ID_FP_IFS]

    /// The pinned maps of `objects` whose existing pin holds a map of another
    /// shape (or no map at all), each described; empty when every pin can be
    /// reused or does not exist yet.
    static func layoutChanges(of objects: [BPFObject], pinnedAt pinPath: FilePath) -> [String] {
        var changes: [String] = []
        var seen: Set<String> = []
        for definition in objects.flatMap(\.mapDefinitions) where !definition.isInternal {
            guard definition.pinPath != nil, seen.insert(definition.name).inserted else { continue }
            let pin = pinPath.appending(definition.name)
            guard FileManager.default.fileExists(atPath: pin.string) else { continue }
            guard let pinned = try? BPFMapHandle(pinnedAt: pin) else {
                changes.append("\(definition.name): the pin is not a map this process can open")
                continue
            }
            var differences: [String] = []
            if pinned.type != definition.type { differences.append("type \(pinned.type) → \(definition.type)") }
            if pinned.keySize != definition.keySize {
                differences.append("key \(pinned.keySize) → \(definition.keySize) bytes")
            }
            if pinned.valueSize != definition.valueSize {
                differences.append("value \(pinned.valueSize) → \(definition.valueSize) bytes")
            }
            if pinned.maxEntries != definition.maxEntries {
                differences.append("capacity \(pinned.maxEntries) → \(definition.maxEntries)")
            }
            if pinned.flags != definition.flags { differences.append("flags \(pinned.flags) → \(definition.flags)") }
            if !differences.isEmpty {
                changes.append("\(definition.name): \(differences.joined(separator: ", "))")
            }
        }
        return changes.sorted()
    }

    /// Empties the staging directory a failed upgrade left (its maps live on
    /// while programs attached from it still use them) and creates it anew.
    static func prepareStaging(pinPath: FilePath) throws -> FilePath {
        let staging = pinPath.appending(stagingName)
        try removeStaging(pinPath: pinPath)
        guard mkdir(staging.string, 0o700) == 0 else {
            throw DataplaneError.runtime(
                "bpf: creating \(staging) for the new maps: \(String(cString: strerror(errno)))")
        }
        return staging
    }

    /// Removes the staging directory and its pins, if there is one.
    static func removeStaging(pinPath: FilePath) throws {
        let staging = pinPath.appending(stagingName)
        let manager = FileManager.default
        guard manager.fileExists(atPath: staging.string) else { return }
        for name in try manager.contentsOfDirectory(atPath: staging.string) {
            try BPFFileSystem.removePin(at: staging.appending(name))
        }
        guard rmdir(staging.string) == 0 else {
            throw DataplaneError.runtime("bpf: removing \(staging): \(String(cString: strerror(errno)))")
        }
    }

    /// Copies the records maps (`carriedOver`) from the old pins into the new
    /// set, where both have the same layout. Returns what could not be copied.
    static func carryRecords(from pinPath: FilePath, to staging: FilePath) -> [String] {
        var problems: [String] = []
        for id in carriedOver {
            let name = MapKind.name(of: id)
            guard FileManager.default.fileExists(atPath: pinPath.appending(name).string) else { continue }
            do {
                let old = try BPFRawMap(pinnedAt: pinPath.appending(name))
                let new = try BPFRawMap(pinnedAt: staging.appending(name))
                guard old.handle.keySize == new.handle.keySize, old.handle.valueSize == new.handle.valueSize else {
                    problems.append("\(name): its layout changed; its records start empty")
                    continue
                }
                for (key, value) in try old.entries() { try new.update(key, value) }
            } catch {
                problems.append("\(name): \(error)")
            }
        }
        return problems
    }

    /// Moves every new pin from the staging directory over the old one of
    /// the same name (rename replaces a pin in one step) and removes the old
    /// pins the new version no longer has. Called once the new programs run
    /// on every interface: nothing uses the old maps any more.
    static func promote(staging: FilePath, into pinPath: FilePath, logger: Logger) throws {
        let manager = FileManager.default
        let names = Set(try manager.contentsOfDirectory(atPath: staging.string))
        for name in names.sorted() {
            let from = staging.appending(name)
            let to = pinPath.appending(name)
            guard rename(from.string, to.string) == 0 else {
                throw DataplaneError.runtime("bpf: moving \(from) to \(to): \(String(cString: strerror(errno)))")
            }
        }
        for name in try manager.contentsOfDirectory(atPath: pinPath.string)
        where !names.contains(name) && !Pins.preloaded.contains(name) && name != stagingName {
            try BPFFileSystem.removePin(at: pinPath.appending(name))
            logger.info("upgrade: removed the pin \(name), which this version no longer uses")
        }
        guard rmdir(staging.string) == 0 else {
            throw DataplaneError.runtime("bpf: removing \(staging): \(String(cString: strerror(errno)))")
        }
    }
}
