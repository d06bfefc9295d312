// SPDX-License-Identifier: Apache-2.0
//
// An untyped map handle: the fd, what the kernel says about the map, pins,
// and the raw element operations the typed maps build on.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Flags for map updates (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
public struct BPFMapUpdateFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// `BPF_ANY`: create or replace.
    public static let any: BPFMapUpdateFlags = []
    /// `BPF_NOEXIST`: only create; fails with `isExists` if the key exists.
    public static let noExist = BPFMapUpdateFlags(rawValue: UInt64(BPF_NOEXIST))
    /// `BPF_EXIST`: only replace; fails with `isNotFound` if the key is absent.
    public static let exist = BPFMapUpdateFlags(rawValue: UInt64(BPF_EXIST))
    /// `BPF_F_LOCK`: update under the value's `struct bpf_spin_lock`.
    public static let lock = BPFMapUpdateFlags(rawValue: UInt64(BPF_F_LOCK))
}

/// A map in the kernel, untyped: its fd and the parameters the kernel
/// reports (`bpf_obj_get_info_by_fd` on a map fd).
///
/// Read and write elements through a typed view: `BPFMap<Key, Value>` or
/// `BPFPerCPUMap<Key, Value>`, which check the sizes once.
public final class BPFMapHandle: @unchecked Sendable {
    /// The map fd, valid as long as this handle lives.
    public let fd: CInt
    /// The name in the object for maps of a `BPFObject`; the kernel's name
    /// (at most 15 characters) for maps opened by pin or id.
    public let name: String
    /// The map type (`bpf_map_info.type`).
    public let type: BPFMapType
    /// Key and value sizes in bytes as the kernel has them (for per-CPU
    /// maps the size of one CPU's value).
    public let keySize: Int
    public let valueSize: Int
    /// Capacity (for arrays: the number of indexes).
    public let maxEntries: UInt32
    /// `map_flags` (BPF_F_NO_PREALLOC, BPF_F_RDONLY_PROG, ...).
    public let flags: UInt32
    /// The kernel's map id, as `bpftool map` shows it.
    public let id: UInt32

    /// Keeps the owning `BPFObject` alive; `nil` when we own `fd`. Never accessed.
    private let owner: AnyObject?

    /// Wraps an fd owned by `owner` (a BPFObject).
    init(borrowing fd: CInt, name: String, owner: AnyObject) throws {
        let info = try BPFMapHandle.info(fd: fd, subject: "map \(name)")
        self.fd = fd
        self.name = name
        self.owner = owner
        (type, keySize, valueSize, maxEntries, flags, id) =
            (
                BPFMapType(rawValue: info.type), Int(info.key_size), Int(info.value_size),
                info.max_entries, info.map_flags, info.id
            )
    }

    /// Takes ownership of `fd`; closes it if reading its info fails.
    init(owning fd: CInt, subject: String) throws {
        let info: bpf_map_info
        do {
            info = try BPFMapHandle.info(fd: fd, subject: subject)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        self.owner = nil
        (type, keySize, valueSize, maxEntries, flags, id) =
            (
                BPFMapType(rawValue: info.type), Int(info.key_size), Int(info.value_size),
                info.max_entries, info.map_flags, info.id
            )
    }

    deinit {
        if owner == nil { close(fd) }
    }

    /// Opens a pinned map (`bpf_obj_get`), e.g. from another process than
    /// the one that loaded it.
    public convenience init(pinnedAt path: FilePath) throws {
        let fd = try objectGet(path, expecting: .map)
        try self.init(owning: fd, subject: "map pinned at \(path)")
    }

    /// Opens a map by kernel id (`bpf_map_get_fd_by_id`); needs CAP_SYS_ADMIN.
    public convenience init(id: UInt32) throws {
        let fd = try check(
            bpf_map_get_fd_by_id(id), "bpf_map_get_fd_by_id(\(id))",
            action: "opening map id \(id)"
        ) { errno in
            errno == .noSuchFileOrDirectory ? "no map with id \(id) exists" : nil
        }
        try self.init(owning: fd, subject: "map id \(id)")
    }

    private static func info(fd: CInt, subject: String) throws -> bpf_map_info {
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try check(
            bpf_obj_get_info_by_fd(fd, &info, &length), "bpf_obj_get_info_by_fd(\(subject))",
            action: "reading the parameters of \(subject)")
        return info
    }

    /// Pins the map at `path` on a bpffs (`bpf_obj_pin`).
    public func pin(at path: FilePath) throws {
        try pinObject(fd: fd, at: path, what: "map \(name)")
    }

    /// Removes the pin at `path` (unlink); the map lives on while referenced.
    public func unpin(at path: FilePath) throws {
        try BPFFileSystem.removePin(at: path)
    }

    /// Number of possible CPUs (`libbpf_num_possible_cpus`): per-CPU maps
    /// hold this many values per key.
    public static func possibleCPUs() throws -> Int {
        Int(
            try check(
                libbpf_num_possible_cpus(), "libbpf_num_possible_cpus()",
                action: "reading /sys/devices/system/cpu/possible"))
    }

    /// Bytes of one value as user space exchanges it: `valueSize`, or for
    /// per-CPU maps one 8-byte-aligned slot per possible CPU.
    func userValueSize() throws -> Int {
        type.isPerCPU ? try BPFMapHandle.possibleCPUs() * ((valueSize + 7) & ~7) : valueSize
    }

    var summary: String { "\(type) map \(name)" }

    // MARK: Raw element operations (pointers to keySize / userValueSize bytes)

    /// `bpf_map_lookup_elem`; false if the key is absent.
    func lookup(key: UnsafeRawPointer, into value: UnsafeMutableRawPointer) throws -> Bool {
        let result = bpf_map_lookup_elem(fd, key, value)
        if result == 0 { return true }
        if result == -ENOENT { return false }
        throw elementError(result, "bpf_map_lookup_elem", "looking up", key: key)
    }

    /// `bpf_map_update_elem`.
    func update(key: UnsafeRawPointer, value: UnsafeRawPointer, flags: BPFMapUpdateFlags) throws {
        let result = bpf_map_update_elem(fd, key, value, flags.rawValue)
        if result < 0 {
            throw elementError(result, "bpf_map_update_elem", "updating", key: key, flags: flags)
        }
    }

    /// `bpf_map_delete_elem`; false if the key was absent.
    func delete(key: UnsafeRawPointer) throws -> Bool {
        let result = bpf_map_delete_elem(fd, key)
        if result == 0 { return true }
        if result == -ENOENT { return false }
        throw elementError(result, "bpf_map_delete_elem", "deleting", key: key)
    }

    /// `bpf_map_get_next_key`; false at the end. `key == nil` asks for the first key.
    func nextKey(after key: UnsafeRawPointer?, into next: UnsafeMutableRawPointer) throws -> Bool {
        let result = bpf_map_get_next_key(fd, key, next)
        if result == 0 { return true }
        if result == -ENOENT { return false }
        throw elementError(result, "bpf_map_get_next_key", "iterating", key: key)
    }

    /// Every key, as a snapshot (`bpf_map_get_next_key`).
    ///
    /// The caller may delete or add entries while looping over the result.
    /// When another thread or program deletes the key we are standing on,
    /// the kernel restarts hash and LPM iteration from the first key; keys
    /// seen before are skipped, so each key appears once, and a map that
    /// keeps changing under us ends the walk with an error rather than a loop.
    func collectKeys<Key: BitwiseCopyable>(_: Key.Type) throws -> [Key] {
        try collectKeyBytes().map { $0.withUnsafeBytes { $0.loadUnaligned(as: Key.self) } }
    }

    /// `collectKeys` as keySize bytes each (the typed and the raw maps share it).
    func collectKeyBytes() throws -> [[UInt8]] {
        var keys: [[UInt8]] = []
        var seen = Set<[UInt8]>()
        // Arrays iterate by index and never restart.
        let deduplicate = !type.isArray
        let limit = Int(maxEntries) * 4 + 64
        var previous: [UInt8]?
        var steps = 0
        while true {
            steps += 1
            if steps > limit {
                throw BPFError(
                    operation: "bpf_map_get_next_key(\(name))", action: "listing the keys of \(summary)",
                    errno: .resourceTemporarilyUnavailable,
                    hint: "the map changed faster than it could be walked; try again")
            }
            var next = [UInt8](repeating: 0, count: keySize)
            let found = try next.withUnsafeMutableBytes { buffer in
                if let previous {
                    return try previous.withUnsafeBytes {
                        try nextKey(after: $0.baseAddress!, into: buffer.baseAddress!)
                    }
                }
                return try nextKey(after: nil, into: buffer.baseAddress!)
            }
            guard found else { return keys }
            previous = next
            if deduplicate {
                guard seen.insert(next).inserted else { continue }
            }
            keys.append(next)
        }
    }

    // MARK: Batch operations

    /// `bpf_map_lookup_batch` over the whole map, `chunk` entries at a time;
    /// `body` gets the keys, the values (userValueSize each) and the count of
    /// each chunk. Returns false, having called nothing, if the map type has
    /// no batch lookup (the caller then walks the keys).
    func lookupBatch(
        chunk initialChunk: Int = 1024,
        _ body: (UnsafeRawPointer, UnsafeRawPointer, Int) throws -> Void
    ) throws -> Bool {
        let valueBytes = try userValueSize()
        var chunk = max(initialChunk, 1)
        // The position token is a u32 bucket for hash maps and a key for
        // arrays: room for either.
        let tokenSize = max(keySize, 8)
        let inToken = UnsafeMutableRawPointer.allocate(byteCount: tokenSize, alignment: 8)
        let outToken = UnsafeMutableRawPointer.allocate(byteCount: tokenSize, alignment: 8)
        defer {
            inToken.deallocate()
            outToken.deallocate()
        }
        var keys = UnsafeMutableRawPointer.allocate(byteCount: chunk * keySize, alignment: 8)
        var values = UnsafeMutableRawPointer.allocate(byteCount: chunk * max(valueBytes, 1), alignment: 8)
        defer {
            keys.deallocate()
            values.deallocate()
        }
        var first = true
        while true {
            var count = UInt32(chunk)
            var opts = bpf_map_batch_opts()
            opts.sz = optionsSize(\bpf_map_batch_opts.flags)
            let result = bpf_map_lookup_batch(fd, first ? nil : inToken, outToken, keys, values, &count, &opts)
            let finished = result == -ENOENT
            if result < 0 && !finished {
                let errno = Errno(rawValue: -result)
                if errno == .noSpace && count == 0 {
                    // A hash bucket holds more entries than the chunk: grow and retry.
                    chunk *= 2
                    keys.deallocate()
                    values.deallocate()
                    keys = UnsafeMutableRawPointer.allocate(byteCount: chunk * keySize, alignment: 8)
                    values = UnsafeMutableRawPointer.allocate(byteCount: chunk * max(valueBytes, 1), alignment: 8)
                    continue
                }
                if first && errno.isUnsupportedOperation { return false }
                throw makeError(result, "bpf_map_lookup_batch(\(name))", action: "reading the entries of \(summary)")
            }
            if count > 0 { try body(keys, values, Int(count)) }
            if finished { return true }
            inToken.copyMemory(from: outToken, byteCount: tokenSize)
            first = false
        }
    }

    /// `bpf_map_update_batch` of `count` entries, falling back to one
    /// `bpf_map_update_elem` per entry where the map type has no batch update
    /// (LPM tries, ...).
    func updateBatch(keys: UnsafeRawPointer, values: UnsafeRawPointer, count: Int, flags: BPFMapUpdateFlags) throws {
        guard count > 0 else { return }
        let valueBytes = try userValueSize()
        var processed = UInt32(count)
        var opts = bpf_map_batch_opts()
        opts.sz = optionsSize(\bpf_map_batch_opts.flags)
        opts.elem_flags = flags.rawValue
        let result = bpf_map_update_batch(fd, keys, values, &processed, &opts)
        if result == 0 { return }
        let errno = Errno(rawValue: -result)
        let done = Int(min(processed, UInt32(count)))
        guard errno.isUnsupportedOperation else {
            throw elementError(
                result, "bpf_map_update_batch", "updating \(count) entries (\(done) done) in",
                key: done < count ? keys + done * keySize : nil, flags: flags)
        }
        for index in done..<count {
            try update(key: keys + index * keySize, value: values + index * valueBytes, flags: flags)
        }
    }

    /// `bpf_map_delete_batch` of `count` keys, skipping absent keys, falling
    /// back to `bpf_map_delete_elem` per key. Returns how many were deleted.
    func deleteBatch(keys: UnsafeRawPointer, count: Int) throws -> Int {
        var done = 0
        var deleted = 0
        var opts = bpf_map_batch_opts()
        opts.sz = optionsSize(\bpf_map_batch_opts.flags)
        while done < count {
            var processed = UInt32(count - done)
            let result = bpf_map_delete_batch(fd, keys + done * keySize, &processed, &opts)
            let progressed = Int(min(processed, UInt32(count - done)))
            if result == 0 {
                return deleted + progressed
            }
            if result == -ENOENT {
                // Key number `progressed` is absent: count the ones before it, skip it.
                deleted += progressed
                done += progressed + 1
                continue
            }
            if Errno(rawValue: -result).isUnsupportedOperation && progressed == 0 {
                for index in done..<count where try delete(key: keys + index * keySize) {
                    deleted += 1
                }
                return deleted
            }
            throw elementError(
                result, "bpf_map_delete_batch", "deleting \(count) keys from",
                key: keys + (done + progressed) * keySize)
        }
        return deleted
    }

    // MARK: Errors

    /// The error for a failed element operation, with what to do for the
    /// usual suspects.
    func elementError(
        _ result: CInt, _ call: String, _ verb: String, key: UnsafeRawPointer?, flags: BPFMapUpdateFlags = .any
    ) -> BPFError {
        let keyText = key.map { " key " + hexBytes($0, count: keySize) } ?? ""
        return makeError(result, "\(call)(\(name))", action: "\(verb)\(keyText) in \(summary)") { errno in
            switch errno {
            case .argListTooLong, .noSpace:
                if self.type.isArray {
                    return "the index is outside the array (max_entries \(self.maxEntries))"
                }
                return
                    "the map is full (max_entries \(self.maxEntries)): delete entries or raise max_entries before load"
            case .fileExists where flags.contains(.noExist):
                return "the key exists and the update used noExist"
            case .noSuchFileOrDirectory where flags.contains(.exist):
                return "the key does not exist and the update used exist"
            case .invalidArgument where self.type.isArray && verb.hasPrefix("deleting"):
                return "array maps cannot delete elements; write a zero value instead"
            case .invalidArgument where self.type == .lpmTrie:
                return "an LPM trie key starts with a u32 prefix length no larger than the address bits"
            case .notPermitted, .permissionDenied:
                return "run as root or grant CAP_BPF; maps frozen or created read-only (BPF_F_RDONLY) cannot be written"
            default:
                return nil
            }
        }
    }
}

/// Lowercase hex of `count` bytes at `pointer` (at most 32, then "…").
func hexBytes(_ pointer: UnsafeRawPointer, count: Int) -> String {
    let bytes = UnsafeRawBufferPointer(start: pointer, count: count)
    var text = ""
    for byte in bytes.prefix(32) {
        let hex = String(byte, radix: 16)
        text += byte < 16 ? "0" + hex : hex
    }
    return count > 32 ? text + "…" : text
}
