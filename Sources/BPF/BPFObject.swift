// SPDX-License-Identifier: Apache-2.0
//
// An eBPF ELF object opened and loaded through libbpf (`struct bpf_object`).

import CLibBPF
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An eBPF ELF object: its programs and maps, opened with
/// `bpf_object__open_mem()` and loaded into the kernel with `bpf_object__load()`.
///
/// Lifecycle: open (parse the ELF; no privileges needed) → adjust (max
/// entries, autoload) → `load()` → take `program(named:)` / `map(named:)`.
/// Programs and maps taken from the object keep it alive; when the last
/// reference goes, `bpf_object__close()` closes the object's fds. Attachments
/// made through netlink (tc, XDP) and pins outlive the object and the process.
///
/// Thread-safe: every access to the underlying `bpf_object` is serialized.
public final class BPFObject: @unchecked Sendable {
    /// The object's name (used in error messages and by libbpf).
    public let name: String
    /// The options the object was opened with.
    public let options: Options

    private let lock = Mutex(())
    private let object: OpaquePointer
    /// libbpf keeps pointers into the ELF bytes while the object is open, so
    /// we own a copy for exactly as long as the object lives.
    private let elf: UnsafeMutableRawBufferPointer?
    /// Handed to libbpf at open as `kernel_log_buf`, written during load.
    private let logBuffer: UnsafeMutablePointer<CChar>?
    private var loaded = false

    /// Opens an object from ELF bytes in memory (`bpf_object__open_mem`).
    ///
    /// - Parameters:
    ///   - bytes: the ELF object, e.g. `BPFObjects.port.bytes`.
    ///   - name: the object's name (libbpf's `object_name`).
    ///   - options: pin root, max_entries overrides, autoload, log size.
    public init(bytes: [UInt8], name: String, options: Options = Options()) throws {
        LibBPFLog.installIfNeeded()
        self.name = name
        self.options = options
        let elf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { elf.baseAddress!.copyMemory(from: base, byteCount: source.count) }
        }
        self.elf = elf
        let logBuffer =
            options.verifierLogSize > 0
            ? calloc(options.verifierLogSize, 1)?.assumingMemoryBound(to: CChar.self) : nil
        self.logBuffer = logBuffer

        let ((pointer, openErrno), log) = BPFObject.withOpenOptions(name: name, options: options, logBuffer: logBuffer)
        { opts in
            LibBPFLog.capture { () -> (OpaquePointer?, CInt) in
                let pointer = bpf_object__open_mem(elf.baseAddress, bytes.count, opts)
                return (pointer, Glibc.errno)
            }
        }
        guard let pointer else {
            elf.deallocate()
            free(logBuffer)
            throw makeError(
                -openErrno, "bpf_object__open_mem(\(name))",
                action: "opening eBPF object \(name) (\(bytes.count) bytes)",
                libbpfLog: log.lines
            ) { errno in
                errno == .invalidArgument || errno.rawValue >= 4000
                    ? "the bytes are not a valid eBPF ELF object; rebuild it with clang -target bpf" : nil
            }
        }
        log.forward()
        self.object = pointer
        // Fully initialized: if this throws, deinit closes and frees.
        try applyOptions()
    }

    /// Opens an object from an ELF file (read into memory, then as `init(bytes:name:options:)`).
    public convenience init(path: FilePath, name: String? = nil, options: Options = Options()) throws {
        let fd = try FileDescriptor.open(path, .readOnly, options: .closeOnExec)
        let bytes: [UInt8]
        do {
            defer { try? fd.close() }
            let size = try fd.seek(offset: 0, from: .end)
            _ = try fd.seek(offset: 0, from: .start)
            bytes = try [UInt8](unsafeUninitializedCapacity: Int(size)) { buffer, count in
                count = try fd.read(into: UnsafeMutableRawBufferPointer(buffer))
            }
        }
        var stem = path.stem ?? "object"
        if stem.hasSuffix(".bpf") { stem.removeLast(".bpf".count) }
        try self.init(bytes: bytes, name: name ?? stem, options: options)
    }

    deinit {
        bpf_object__close(object)
        elf?.deallocate()
        free(logBuffer)
    }

    private static func withOpenOptions<R>(
        name: String, options: Options, logBuffer: UnsafeMutablePointer<CChar>?,
        _ body: (UnsafePointer<bpf_object_open_opts>) -> R
    ) -> R {
        // libbpf copies object_name and the pin root (into each map's pin
        // path) during open, so these C strings only need to live for the call.
        name.withCString { cName in
            func withPinRoot(_ inner: (UnsafePointer<CChar>?) -> R) -> R {
                if let root = options.pinRoot { return root.withCString { inner($0) } }
                return inner(nil)
            }
            return withPinRoot { cRoot in
                var opts = bpf_object_open_opts()
                opts.sz = optionsSize(\bpf_object_open_opts.kernel_log_level)
                opts.object_name = cName
                opts.pin_root_path = cRoot
                opts.kernel_log_buf = logBuffer
                opts.kernel_log_size = logBuffer == nil ? 0 : options.verifierLogSize
                // 0: load without a log, retry with level 1 into our buffer on failure.
                opts.kernel_log_level = 0
                return withUnsafePointer(to: &opts) { body($0) }
            }
        }
    }

    private func applyOptions() throws {
        if !options.pinMaps {
            try lock.withLock { _ in
                var map = bpf_object__next_map(object, nil)
                while let current = map {
                    try check(
                        bpf_map__set_pin_path(current, nil),
                        "bpf_map__set_pin_path(\(String(cString: bpf_map__name(current))), NULL)",
                        action: "turning off pinning in \(name)")
                    map = bpf_object__next_map(object, current)
                }
            }
        }
        for (mapName, entries) in options.maxEntries.sorted(by: { $0.key < $1.key }) {
            try setMaxEntries(entries, forMap: mapName)
        }
        for (programName, enabled) in options.autoload.sorted(by: { $0.key < $1.key }) {
            try setAutoload(enabled, forProgram: programName)
        }
    }

    // MARK: Before load

    /// Sets a map's max_entries before load (`bpf_map__set_max_entries`).
    public func setMaxEntries(_ maxEntries: UInt32, forMap mapName: String) throws {
        try lock.withLock { _ in
            let map = try findMap(mapName)
            try check(
                bpf_map__set_max_entries(map, maxEntries),
                "bpf_map__set_max_entries(\(mapName), \(maxEntries))",
                action: "setting max_entries of map \(mapName) in \(name) to \(maxEntries)"
            ) { errno in
                errno == .resourceBusy ? "max_entries can only be changed before load()" : nil
            }
        }
    }

    /// Enables or disables loading a program (`bpf_program__set_autoload`).
    public func setAutoload(_ enabled: Bool, forProgram programName: String) throws {
        try lock.withLock { _ in
            let program = try findProgram(programName)
            try check(
                bpf_program__set_autoload(program, enabled),
                "bpf_program__set_autoload(\(programName), \(enabled))",
                action: "setting autoload of program \(programName) in \(name)"
            ) { errno in
                errno == .resourceBusy ? "autoload can only be changed before load()" : nil
            }
        }
    }

    // MARK: Load

    /// Whether `load()` succeeded.
    public var isLoaded: Bool { lock.withLock { _ in loaded } }

    /// Creates (or reuses pinned) maps and loads every autoload program into
    /// the kernel (`bpf_object__load`).
    ///
    /// On failure the error carries the verifier log of the rejected program
    /// (`BPFError.verifierLog`) and libbpf's warnings; a pinned map whose
    /// parameters differ from the object's is named with its pin path. An
    /// object can be loaded once; after a failure, open it again.
    public func load() throws {
        try lock.withLock { _ in
            if loaded { return }
            logBuffer?.pointee = 0
            let (result, log) = LibBPFLog.capture { bpf_object__load(object) }
            if result == 0 {
                loaded = true
                log.forward()
                return
            }
            throw loadError(result, log)
        }
    }

    private func loadError(_ result: CInt, _ log: CapturedLog) -> BPFError {
        let code = Errno(rawValue: -result)
        var error = BPFError(
            operation: "bpf_object__load(\(name))", action: "loading eBPF object \(name)",
            errno: code, libbpfLog: log.lines)

        // A program rejected by the verifier: "prog 'x': BPF program load failed: ...".
        if let line = log.first(containing: "BPF program load failed") ?? log.first(containing: "': failed to load"),
            let program = quoted(after: "prog '", in: line)
        {
            var verifier: String?
            if let buffer = logBuffer, buffer.pointee != 0 {
                verifier = String(cString: buffer)
            }
            verifier = verifier ?? log.verifierLog
            error.verifierLog = verifier
            error.action = "loading eBPF object \(name): program \(program) was rejected"
            if let verifier, !verifier.isEmpty {
                error.hint = "fix the program; BPFError.verifierLog has the verifier's log"
                if code == .noSpace {
                    error.hint =
                        "the verifier log did not fit \(options.verifierLogSize) bytes, so the kernel"
                        + " reported ENOSPC instead of its own error; raise Options.verifierLogSize"
                }
            }
            return error
        }

        // A LIBBPF_PIN_BY_NAME map that exists under the pin root with other parameters.
        if let mismatch = log.first(containing: "parameter mismatch") {
            let path = quoted(after: "pinned map at '", in: mismatch) ?? "(pin path unknown)"
            let mapName =
                log.first(containing: "error reusing pinned map").flatMap { quoted(after: "map '", in: $0) }
                ?? FilePath(path).lastComponent.map { $0.string } ?? "?"
            error.action =
                "loading eBPF object \(name): map \(mapName) is pinned at \(path) with different parameters"
                + " (type, key/value size, max_entries or flags)"
            error.hint =
                "unload first (remove \(path), e.g. with `bpfnet unload`) so the map is created anew,"
                + " or load with the parameters it was pinned with"
            return error
        }

        // "map 'x': failed to auto-pin at '/path': -22", after "specified path ... is not on BPF FS".
        if let line = log.first(containing: "failed to auto-pin at '"), let mapName = quoted(after: "map '", in: line) {
            let path = quoted(after: "auto-pin at '", in: line) ?? "?"
            error.action = "loading eBPF object \(name): pinning map \(mapName) at \(path)"
            if log.first(containing: "is not on BPF FS") != nil {
                let root = options.pinRoot.map { "\($0)" } ?? "/sys/fs/bpf (libbpf's default pin root)"
                error.hint =
                    "\(root) is not on a bpffs: mount one (BPFFileSystem.ensureMounted(at:)),"
                    + " choose another Options.pinRoot, or load with Options.pinMaps = false"
            } else {
                error.hint = "the pin root must be a writable directory on a bpffs; an existing pin there blocks it"
            }
            return error
        }
        if let line = log.first(containing: "failed to create"), let mapName = quoted(after: "map '", in: line) {
            error.action = "loading eBPF object \(name): creating map \(mapName)"
            if code == .notPermitted { error.hint = BPFError.privilegeHint }
        }
        return error
    }

    // MARK: Programs and maps

    /// The names of the object's programs (function names), in ELF order.
    public var programNames: [String] {
        lock.withLock { _ in
            var names: [String] = []
            var program = bpf_object__next_program(object, nil)
            while let current = program {
                names.append(String(cString: bpf_program__name(current)))
                program = bpf_object__next_program(object, current)
            }
            return names
        }
    }

    /// The object's maps as declared (with overrides applied), including
    /// libbpf's internal .bss/.data/.rodata maps.
    public var mapDefinitions: [MapDefinition] {
        lock.withLock { _ in
            var definitions: [MapDefinition] = []
            var map = bpf_object__next_map(object, nil)
            while let current = map {
                definitions.append(
                    MapDefinition(
                        name: String(cString: bpf_map__name(current)),
                        type: BPFMapType(bpf_map__type(current)),
                        keySize: Int(bpf_map__key_size(current)),
                        valueSize: Int(bpf_map__value_size(current)),
                        maxEntries: bpf_map__max_entries(current),
                        flags: bpf_map__map_flags(current),
                        isInternal: bpf_map__is_internal(current),
                        pinPath: bpf_map__pin_path(current).map { FilePath(String(cString: $0)) }
                    ))
                map = bpf_object__next_map(object, current)
            }
            return definitions
        }
    }

    /// The names of the object's maps, in ELF order.
    public var mapNames: [String] { mapDefinitions.map(\.name) }

    /// A loaded program by function name (`bpf_object__find_program_by_name`,
    /// `bpf_program__fd`). The program keeps this object alive.
    public func program(named programName: String) throws -> BPFProgram {
        let fd: CInt = try lock.withLock { _ in
            let program = try findProgram(programName)
            let fd = bpf_program__fd(program)
            if fd < 0 {
                throw BPFError(
                    operation: "bpf_program__fd(\(programName))",
                    action: "getting program \(programName) of \(name)", errno: .badFileDescriptor,
                    hint: loaded
                        ? "the program was not loaded: its autoload is off (SEC(\"?...\") or Options.autoload)"
                        : "call load() first")
            }
            return fd
        }
        return try BPFProgram(borrowing: fd, name: programName, owner: self)
    }

    /// Every loaded program of the object.
    public func programs() throws -> [BPFProgram] {
        try programNames.compactMap { programName in
            let autoload = lock.withLock { _ in
                (try? findProgram(programName)).map { bpf_program__fd($0) >= 0 } ?? false
            }
            return autoload ? try program(named: programName) : nil
        }
    }

    /// A map of the loaded object by name (`bpf_object__find_map_by_name`,
    /// `bpf_map__fd`). The handle keeps this object alive.
    public func map(named mapName: String) throws -> BPFMapHandle {
        let fd: CInt = try lock.withLock { _ in
            let map = try findMap(mapName)
            let fd = bpf_map__fd(map)
            if fd < 0 {
                throw BPFError(
                    operation: "bpf_map__fd(\(mapName))", action: "getting map \(mapName) of \(name)",
                    errno: .badFileDescriptor, hint: "call load() first")
            }
            return fd
        }
        return try BPFMapHandle(borrowing: fd, name: mapName, owner: self)
    }

    /// Every map of the loaded object (internal ones included).
    public func maps() throws -> [BPFMapHandle] {
        try mapNames.map { try map(named: $0) }
    }

    // MARK: Lookup helpers (call with the lock held)

    private func findProgram(_ programName: String) throws(BPFError) -> OpaquePointer {
        if let program = programName.withCString({ bpf_object__find_program_by_name(object, $0) }) {
            return program
        }
        let known = knownNames {
            bpf_object__next_program(object, $0)
        } name: {
            bpf_program__name($0)
        }
        throw BPFError(
            operation: "bpf_object__find_program_by_name(\(programName))",
            action: "finding program \(programName) in \(name)", errno: .noSuchFileOrDirectory,
            hint: "the object has programs: \(known.joined(separator: ", "))")
    }

    private func findMap(_ mapName: String) throws(BPFError) -> OpaquePointer {
        if let map = mapName.withCString({ bpf_object__find_map_by_name(object, $0) }) {
            return map
        }
        let known = knownNames {
            bpf_object__next_map(object, $0)
        } name: {
            bpf_map__name($0)
        }
        throw BPFError(
            operation: "bpf_object__find_map_by_name(\(mapName))",
            action: "finding map \(mapName) in \(name)", errno: .noSuchFileOrDirectory,
            hint: "the object has maps: \(known.joined(separator: ", "))")
    }

    private func knownNames(
        next: (OpaquePointer?) -> OpaquePointer?, name: (OpaquePointer) -> UnsafePointer<CChar>?
    ) -> [String] {
        var names: [String] = []
        var item = next(nil)
        while let current = item {
            if let cName = name(current) { names.append(String(cString: cName)) }
            item = next(current)
        }
        return names
    }
}

/// The text between `prefix` and the next single quote in `line`.
func quoted(after prefix: String, in line: String) -> String? {
    guard let start = line.firstRange(of: prefix) else { return nil }
    let rest = line[start.upperBound...]
    guard let end = rest.firstIndex(of: "'") else { return nil }
    return String(rest[..<end])
}
