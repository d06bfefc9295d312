// SPDX-License-Identifier: Apache-2.0
//
// A byte-level view of a map, for callers that carry keys and values as raw
// C-layout bytes (e.g. a reconciler that handles several maps uniformly).
// Sizes are checked on every call, since a byte array has no static size.

import SystemPackage

/// A map seen as `[UInt8]` → `[UInt8]`; each key must be `keySize` bytes and
/// each value `valueSize` bytes (per-CPU maps are not supported here).
public final class BPFRawMap: Sendable {
    /// The untyped map (fd, kernel parameters).
    public let handle: BPFMapHandle

    public init(_ handle: BPFMapHandle) throws {
        guard !handle.type.isPerCPU else {
            throw BPFError(
                operation: "BPFRawMap(\(handle.name))",
                action: "opening \(handle.type) map \(handle.name) as raw bytes", errno: .invalidArgument,
                hint: "the map holds one value per CPU; use BPFPerCPUMap")
        }
        self.handle = handle
    }

    /// The map pinned at `path`.
    public convenience init(pinnedAt path: FilePath) throws {
        try self.init(BPFMapHandle(pinnedAt: path))
    }

    public var name: String { handle.name }

    /// The value for `key`, or nil if absent (`bpf_map_lookup_elem`).
    public func lookup(_ key: [UInt8]) throws -> [UInt8]? {
        try check(key: key)
        var value = [UInt8](repeating: 0, count: handle.valueSize)
        let found = try key.withUnsafeBytes { keyBytes in
            try value.withUnsafeMutableBytes { try handle.lookup(key: keyBytes.baseAddress!, into: $0.baseAddress!) }
        }
        return found ? value : nil
    }

    /// Sets `key` to `value` (`bpf_map_update_elem`).
    public func update(_ key: [UInt8], _ value: [UInt8], flags: BPFMapUpdateFlags = .any) throws {
        try check(key: key, value: value)
        try key.withUnsafeBytes { keyBytes in
            try value.withUnsafeBytes {
                try handle.update(key: keyBytes.baseAddress!, value: $0.baseAddress!, flags: flags)
            }
        }
    }

    /// Removes `key` (`bpf_map_delete_elem`); false if it was absent.
    @discardableResult
    public func delete(_ key: [UInt8]) throws -> Bool {
        try check(key: key)
        return try key.withUnsafeBytes { try handle.delete(key: $0.baseAddress!) }
    }

    /// A snapshot of every entry: `bpf_map_lookup_batch` where the map type
    /// has it (a few syscalls for the whole map), else the keys walked as the
    /// typed maps walk them and one lookup each (entries deleted in between
    /// are left out).
    public func entries() throws -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        let keySize = handle.keySize
        let valueSize = handle.valueSize
        let batched = try handle.lookupBatch { keys, values, count in
            result.reserveCapacity(result.count + count)
            for index in 0..<count {
                result.append(
                    (
                        Array(UnsafeRawBufferPointer(start: keys + index * keySize, count: keySize)),
                        Array(UnsafeRawBufferPointer(start: values + index * valueSize, count: valueSize))
                    ))
            }
        }
        if batched { return result }
        for key in try handle.collectKeyBytes() {
            if let value = try lookup(key) { result.append((key, value)) }
        }
        return result
    }

    private func check(key: [UInt8], value: [UInt8]? = nil) throws {
        var problems: [String] = []
        if key.count != handle.keySize { problems.append("key is \(key.count) bytes, key_size is \(handle.keySize)") }
        if let value, value.count != handle.valueSize {
            problems.append("value is \(value.count) bytes, value_size is \(handle.valueSize)")
        }
        guard problems.isEmpty else {
            throw BPFError(
                operation: "BPFRawMap(\(name))", action: problems.joined(separator: "; "),
                errno: .invalidArgument, hint: "build keys and values from the shared C header's structs")
        }
    }
}
