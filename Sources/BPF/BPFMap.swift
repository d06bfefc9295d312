// SPDX-License-Identifier: Apache-2.0
//
// Typed views of a map. Like aya's HashMap<K, V>, the sizes are checked once,
// when the view is made, so that every later call can hand the kernel a
// pointer to a Key or a Value without checking again (and without the kernel
// reading or writing past them).

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Checks that `Key` and `Value` have exactly the sizes the kernel has for
/// the map, and that the map is (or is not) per-CPU as the view expects.
/// Internal and static so that it can be tested without a kernel.
func checkMapLayout<Key, Value>(
    _: Key.Type, _: Value.Type, mapName: String, type: BPFMapType, keySize: Int, valueSize: Int, perCPU: Bool
) throws(BPFError) {
    let view = perCPU ? "BPFPerCPUMap" : "BPFMap"
    let operation = "\(view)<\(Key.self), \(Value.self)>(\(mapName))"
    if type.isPerCPU != perCPU {
        throw BPFError(
            operation: operation, action: "opening \(type) map \(mapName) as \(view)", errno: .invalidArgument,
            hint: perCPU ? "the map is not per-CPU; use BPFMap" : "the map holds one value per CPU; use BPFPerCPUMap")
    }
    let keyBytes = MemoryLayout<Key>.size
    let valueBytes = MemoryLayout<Value>.size
    var problems: [String] = []
    if keyBytes != keySize {
        problems.append("key \(Key.self) is \(keyBytes) bytes but the map's key_size is \(keySize)")
    }
    if valueBytes != valueSize {
        problems.append("value \(Value.self) is \(valueBytes) bytes but the map's value_size is \(valueSize)")
    }
    if !problems.isEmpty {
        throw BPFError(
            operation: operation,
            action: "opening map \(mapName) as \(view)<\(Key.self), \(Value.self)>: "
                + problems.joined(separator: "; "),
            errno: .invalidArgument,
            hint: "use the key and value structs the BPF program declares (from the shared C header)")
    }
}

/// A map with fixed-size keys and values (HASH, ARRAY, LPM_TRIE, LRU_HASH,
/// DEVMAP, ...), seen as `Key` → `Value`.
///
/// `Key` and `Value` are trivial types, normally the C structs of the header
/// the BPF program also includes (or `UInt32` and friends). Their sizes are
/// checked against the map once, in `init`. LPM trie keys start with the
/// prefix length as a host-order `UInt32`, as the kernel's `struct
/// bpf_lpm_trie_key` does.
public final class BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: Sendable {
    /// The untyped map (fd, kernel parameters).
    public let handle: BPFMapHandle

    /// A typed view of `handle`; throws if the sizes differ or the map is per-CPU.
    public init(_ handle: BPFMapHandle) throws {
        try checkMapLayout(
            Key.self, Value.self, mapName: handle.name, type: handle.type,
            keySize: handle.keySize, valueSize: handle.valueSize, perCPU: false)
        self.handle = handle
    }

    /// The map `name` of a loaded object.
    public convenience init(_ object: BPFObject, name: String) throws {
        try self.init(object.map(named: name))
    }

    /// The map pinned at `path`.
    public convenience init(pinnedAt path: FilePath) throws {
        try self.init(BPFMapHandle(pinnedAt: path))
    }

    /// The map's name.
    public var name: String { handle.name }

    /// Batch calls hand the kernel arrays of keys and values back to back;
    /// a Swift array has that layout only if stride == size (true for C structs).
    private static var arraysArePacked: Bool {
        MemoryLayout<Key>.stride == MemoryLayout<Key>.size && MemoryLayout<Value>.stride == MemoryLayout<Value>.size
    }

    /// The value for `key`, or nil if absent (`bpf_map_lookup_elem`).
    public func lookup(_ key: Key) throws -> Value? {
        try withUnsafeBytes(of: key) { keyBytes in
            try withUnsafeTemporaryAllocation(of: Value.self, capacity: 1) { value in
                let raw = UnsafeMutableRawPointer(value.baseAddress!)
                return try handle.lookup(key: keyBytes.baseAddress!, into: raw) ? raw.load(as: Value.self) : nil
            }
        }
    }

    /// Sets `key` to `value` (`bpf_map_update_elem`). With `.noExist` it
    /// fails if the key exists (`isExists`), with `.exist` if it does not
    /// (`isNotFound`); a full map fails with `isNoSpace`.
    public func update(_ key: Key, _ value: Value, flags: BPFMapUpdateFlags = .any) throws {
        try withUnsafeBytes(of: key) { keyBytes in
            try withUnsafeBytes(of: value) { valueBytes in
                try handle.update(key: keyBytes.baseAddress!, value: valueBytes.baseAddress!, flags: flags)
            }
        }
    }

    /// Removes `key` (`bpf_map_delete_elem`); false if it was absent.
    @discardableResult
    public func delete(_ key: Key) throws -> Bool {
        try withUnsafeBytes(of: key) { try handle.delete(key: $0.baseAddress!) }
    }

    /// A snapshot of every key (`bpf_map_get_next_key`); each key once, even
    /// if the map changes meanwhile. Deleting while looping over the result
    /// is fine.
    public func keys() throws -> [Key] {
        try handle.collectKeys(Key.self)
    }

    /// A snapshot of every entry: `bpf_map_lookup_batch` where the map type
    /// has it (hash, array, LRU), otherwise the keys and one lookup each
    /// (entries deleted in between are left out).
    public func entries() throws -> [(key: Key, value: Value)] {
        var entries: [(key: Key, value: Value)] = []
        let batched = try handle.lookupBatch { keys, values, count in
            entries.reserveCapacity(entries.count + count)
            for index in 0..<count {
                entries.append(
                    (
                        keys.loadUnaligned(fromByteOffset: index * MemoryLayout<Key>.size, as: Key.self),
                        values.loadUnaligned(fromByteOffset: index * MemoryLayout<Value>.size, as: Value.self)
                    ))
            }
        }
        if batched { return entries }
        for key in try keys() {
            if let value = try lookup(key) { entries.append((key, value)) }
        }
        return entries
    }

    /// Sets many entries at once (`bpf_map_update_batch`, one syscall), or
    /// one by one where the map type has no batch update (LPM tries).
    /// `keys[i]` gets `values[i]`. On failure, the entries before the failing
    /// one are written.
    public func update(keys: [Key], values: [Value], flags: BPFMapUpdateFlags = .any) throws {
        precondition(keys.count == values.count, "update(keys:values:): \(keys.count) keys but \(values.count) values")
        if !Self.arraysArePacked {
            for (key, value) in zip(keys, values) { try update(key, value, flags: flags) }
            return
        }
        try keys.withUnsafeBytes { keyBytes in
            try values.withUnsafeBytes { valueBytes in
                guard let keyBase = keyBytes.baseAddress, let valueBase = valueBytes.baseAddress else { return }
                try handle.updateBatch(keys: keyBase, values: valueBase, count: keys.count, flags: flags)
            }
        }
    }

    /// Sets many entries at once; see `update(keys:values:flags:)`.
    public func update(_ entries: [(key: Key, value: Value)], flags: BPFMapUpdateFlags = .any) throws {
        try update(keys: entries.map(\.key), values: entries.map(\.value), flags: flags)
    }

    /// Deletes many keys at once (`bpf_map_delete_batch`, or one by one);
    /// absent keys are skipped. Returns how many were deleted.
    @discardableResult
    public func delete(keys: [Key]) throws -> Int {
        if !Self.arraysArePacked {
            return try keys.reduce(0) { count, key in try delete(key) ? count + 1 : count }
        }
        return try keys.withUnsafeBytes { keyBytes in
            guard let base = keyBytes.baseAddress else { return 0 }
            return try handle.deleteBatch(keys: base, count: keys.count)
        }
    }

    /// Deletes every entry (not for arrays, which cannot delete). Returns how
    /// many were deleted.
    @discardableResult
    public func removeAll() throws -> Int {
        try delete(keys: keys())
    }
}

/// A per-CPU map (PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH): each key has
/// one `Value` per possible CPU.
///
/// The kernel exchanges per-CPU values as one slot per possible CPU
/// (`libbpf_num_possible_cpus()`, not just the online ones), each slot the
/// value size rounded up to 8 bytes.
public final class BPFPerCPUMap<Key: BitwiseCopyable, Value: BitwiseCopyable>: Sendable {
    /// The untyped map (fd, kernel parameters).
    public let handle: BPFMapHandle
    /// Values per key (`libbpf_num_possible_cpus`).
    public let possibleCPUs: Int
    /// Bytes between consecutive CPUs' values.
    public let valueStride: Int

    /// A typed view of `handle`; throws if the sizes differ or the map is not per-CPU.
    public init(_ handle: BPFMapHandle) throws {
        try checkMapLayout(
            Key.self, Value.self, mapName: handle.name, type: handle.type,
            keySize: handle.keySize, valueSize: handle.valueSize, perCPU: true)
        self.handle = handle
        self.possibleCPUs = try BPFMapHandle.possibleCPUs()
        self.valueStride = (handle.valueSize + 7) & ~7
    }

    /// The map `name` of a loaded object.
    public convenience init(_ object: BPFObject, name: String) throws {
        try self.init(object.map(named: name))
    }

    /// The map pinned at `path`.
    public convenience init(pinnedAt path: FilePath) throws {
        try self.init(BPFMapHandle(pinnedAt: path))
    }

    /// The map's name.
    public var name: String { handle.name }

    /// One value per possible CPU (index = CPU number), or nil if the key is absent.
    public func lookup(_ key: Key) throws -> [Value]? {
        try withUnsafeBytes(of: key) { keyBytes in
            try withUnsafeTemporaryAllocation(byteCount: possibleCPUs * valueStride, alignment: 8) { buffer in
                guard try handle.lookup(key: keyBytes.baseAddress!, into: buffer.baseAddress!) else { return nil }
                return (0..<possibleCPUs).map { cpu in
                    buffer.loadUnaligned(fromByteOffset: cpu * valueStride, as: Value.self)
                }
            }
        }
    }

    /// Sets each CPU's value; `values.count` must be `possibleCPUs`.
    public func update(_ key: Key, perCPU values: [Value], flags: BPFMapUpdateFlags = .any) throws {
        guard values.count == possibleCPUs else {
            throw BPFError(
                operation: "bpf_map_update_elem(\(name))", action: "updating per-CPU map \(name)",
                errno: .invalidArgument,
                hint: "pass one value per possible CPU: \(possibleCPUs), not \(values.count)")
        }
        try withStrided(values) { buffer in
            try withUnsafeBytes(of: key) { keyBytes in
                try handle.update(key: keyBytes.baseAddress!, value: buffer.baseAddress!, flags: flags)
            }
        }
    }

    /// Sets every CPU's value to `value`.
    public func update(_ key: Key, allCPUs value: Value, flags: BPFMapUpdateFlags = .any) throws {
        try update(key, perCPU: Array(repeating: value, count: possibleCPUs), flags: flags)
    }

    /// Sets every CPU's value to all-zero bytes (resets a counter).
    public func zero(_ key: Key) throws {
        try withUnsafeTemporaryAllocation(byteCount: possibleCPUs * valueStride, alignment: 8) { buffer in
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            try withUnsafeBytes(of: key) { keyBytes in
                try handle.update(key: keyBytes.baseAddress!, value: buffer.baseAddress!, flags: .any)
            }
        }
    }

    /// Removes `key` (hash maps only); false if it was absent.
    @discardableResult
    public func delete(_ key: Key) throws -> Bool {
        try withUnsafeBytes(of: key) { try handle.delete(key: $0.baseAddress!) }
    }

    /// A snapshot of every key; see `BPFMap.keys()`.
    public func keys() throws -> [Key] {
        try handle.collectKeys(Key.self)
    }

    /// A snapshot of every entry with its per-CPU values
    /// (`bpf_map_lookup_batch`, or the keys and one lookup each).
    public func entries() throws -> [(key: Key, values: [Value])] {
        var entries: [(key: Key, values: [Value])] = []
        let slot = possibleCPUs * valueStride
        let batched = try handle.lookupBatch { keys, values, count in
            for index in 0..<count {
                let key = keys.loadUnaligned(fromByteOffset: index * MemoryLayout<Key>.size, as: Key.self)
                let base = values + index * slot
                entries.append(
                    (
                        key,
                        (0..<possibleCPUs).map { cpu in
                            base.loadUnaligned(fromByteOffset: cpu * valueStride, as: Value.self)
                        }
                    ))
            }
        }
        if batched { return entries }
        for key in try keys() {
            if let values = try lookup(key) { entries.append((key, values)) }
        }
        return entries
    }

    private func withStrided<R>(_ values: [Value], _ body: (UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        try withUnsafeTemporaryAllocation(byteCount: possibleCPUs * valueStride, alignment: 8) { buffer in
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            for (cpu, value) in values.enumerated() {
                buffer.storeBytes(of: value, toByteOffset: cpu * valueStride, as: Value.self)
            }
            return try body(buffer)
        }
    }
}
