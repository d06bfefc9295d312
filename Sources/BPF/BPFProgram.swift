// SPDX-License-Identifier: Apache-2.0
//
// A loaded eBPF program: an fd, its kernel identity and pinning
// (BPF_PROG_TEST_RUN is BPFTestRun.swift).

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A program loaded in the kernel.
///
/// Programs come from a loaded `BPFObject` (`object.program(named:)`, the fd
/// belongs to the object, which the program keeps alive), from a pin
/// (`BPFProgram(pinnedAt:)`), from a kernel id (`BPFProgram(id:)`) or from
/// raw instructions (`BPFProgram.load(...)`); the last three own their fd and
/// close it on deinit. Closing the fd does not unload a program that is
/// attached or pinned.
public final class BPFProgram: @unchecked Sendable {
    /// The function name for programs of an object; the kernel's name
    /// (at most 15 characters) for programs opened by pin or id.
    public let name: String
    /// The program fd, valid as long as this instance lives.
    public let fd: CInt
    /// The program type (`bpf_prog_info.type`).
    public let type: BPFProgramType
    /// The kernel's program id (`bpf_prog_info.id`), as `bpftool prog` shows it.
    public let id: UInt32

    /// Keeps the `BPFObject` that owns `fd` alive; `nil` when we own `fd`.
    /// Never accessed, hence `@unchecked Sendable`.
    private let owner: AnyObject?

    /// Wraps an fd owned by `owner` (a BPFObject).
    init(borrowing fd: CInt, name: String, owner: AnyObject) throws {
        let info = try BPFProgramInfo(fd: fd, subject: name)
        self.fd = fd
        self.name = name
        self.type = info.type
        self.id = info.id
        self.owner = owner
    }

    /// Takes ownership of `fd`; closes it if reading its info fails.
    init(owning fd: CInt, name: String?, subject: String) throws {
        let info: BPFProgramInfo
        do {
            info = try BPFProgramInfo(fd: fd, subject: subject)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.name = name ?? info.name
        self.type = info.type
        self.id = info.id
        self.owner = nil
    }

    deinit {
        if owner == nil { close(fd) }
    }

    /// Opens a pinned program (`bpf_obj_get`).
    public convenience init(pinnedAt path: FilePath) throws {
        let fd = try objectGet(path, expecting: .program)
        try self.init(owning: fd, name: nil, subject: path.string)
    }

    /// Opens a program by kernel id (`bpf_prog_get_fd_by_id`); needs CAP_SYS_ADMIN.
    public convenience init(id: UInt32) throws {
        let fd = try check(
            bpf_prog_get_fd_by_id(id), "bpf_prog_get_fd_by_id(\(id))",
            action: "opening program id \(id)"
        ) { errno in
            errno == .noSuchFileOrDirectory ? "no program with id \(id) is loaded" : nil
        }
        try self.init(owning: fd, name: nil, subject: "program id \(id)")
    }

    /// The kernel's description of this program (`bpf_obj_get_info_by_fd`).
    public func info() throws -> BPFProgramInfo {
        try BPFProgramInfo(fd: fd, subject: name)
    }

    /// The kernel's description of the program with this id, e.g. the one
    /// `TCAttachment.query` or `XDPAttachment.query` reported.
    public static func info(id: UInt32) throws -> BPFProgramInfo {
        try BPFProgram(id: id).info()
    }

    /// Pins the program at `path` on a bpffs (`bpf_obj_pin`), so it stays
    /// loaded and can be opened by other processes.
    public func pin(at path: FilePath) throws {
        try pinObject(fd: fd, at: path, what: "program \(name)")
    }

    /// Removes the pin at `path` (unlink). The program stays loaded while
    /// attached or otherwise referenced.
    public func unpin(at path: FilePath) throws {
        try BPFFileSystem.removePin(at: path)
    }

    // MARK: Loading raw instructions

    /// Loads a program from raw instructions (`bpf_prog_load`), for programs
    /// that are not worth an ELF object (probes, tests).
    ///
    /// Like libbpf, it loads without a verifier log first and, if the
    /// verifier rejects the program, loads again with log level 1 so the
    /// error carries `verifierLog`.
    public static func load(
        type: BPFProgramType,
        name: String,
        instructions: [bpf_insn],
        license: String = "Dual BSD/GPL",
        verifierLogSize: Int = 1 << 20
    ) throws -> BPFProgram {
        func attempt(logLevel: UInt32, log: UnsafeMutablePointer<CChar>?) -> CInt {
            var opts = bpf_prog_load_opts()
            opts.sz = optionsSize(\bpf_prog_load_opts.log_buf)
            opts.log_level = logLevel
            opts.log_buf = log
            opts.log_size = log == nil ? 0 : UInt32(verifierLogSize)
            return name.withCString { cName in
                license.withCString { cLicense in
                    instructions.withUnsafeBufferPointer { insns in
                        bpf_prog_load(
                            bpf_prog_type(type.rawValue), cName, cLicense,
                            insns.baseAddress, insns.count, &opts)
                    }
                }
            }
        }
        let fd = attempt(logLevel: 0, log: nil)
        if fd >= 0 {
            return try BPFProgram(owning: fd, name: name, subject: name)
        }
        var error = makeError(
            fd, "bpf_prog_load(\(type), \(name), \(instructions.count) insns)",
            action: "loading program \(name)")
        if error.errno != .notPermitted {
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: verifierLogSize)
            defer { buffer.deallocate() }
            buffer.pointee = 0
            let retry = attempt(logLevel: 1, log: buffer)
            if retry >= 0 {
                // Passed with a log: the first failure was not the verifier's.
                return try BPFProgram(owning: retry, name: name, subject: name)
            }
            if buffer.pointee != 0 {
                error.verifierLog = String(cString: buffer)
                error.hint = BPFError.defaultHint(for: error.errno, verifierLog: error.verifierLog)
            }
        }
        throw error
    }
}

/// What the kernel says about a loaded program (`struct bpf_prog_info`).
public struct BPFProgramInfo: Sendable, Hashable {
    /// The kernel's program id.
    public var id: UInt32
    /// The program type.
    public var type: BPFProgramType
    /// The kernel's name (at most 15 characters).
    public var name: String
    /// The program tag (hash of its instructions), as hex, as bpftool shows it.
    public var tag: String
    /// Size of the JITed image and of the translated instructions, in bytes.
    public var jitedSize: Int
    /// Size of the instructions after the verifier's rewrites, in bytes.
    public var translatedSize: Int
    /// Ids of the maps the program uses.
    public var mapIDs: [UInt32]
    /// Instructions the verifier processed.
    public var verifiedInstructions: UInt32
    /// Run count and total run time; only counted while
    /// `kernel.bpf_stats_enabled` is 1.
    public var runCount: UInt64
    /// Total run time in nanoseconds (see `runCount`).
    public var runTimeNanoseconds: UInt64

    /// `bpf_obj_get_info_by_fd` on a program fd (called twice to get the map ids).
    init(fd: CInt, subject: String) throws {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try check(
            bpf_obj_get_info_by_fd(fd, &info, &length), "bpf_obj_get_info_by_fd(\(subject))",
            action: "reading program info of \(subject)")
        var mapIDs: [UInt32] = []
        if info.nr_map_ids > 0 {
            let count = Int(info.nr_map_ids)
            mapIDs = [UInt32](repeating: 0, count: count)
            var second = bpf_prog_info()
            second.nr_map_ids = UInt32(count)
            var secondLength = UInt32(MemoryLayout<bpf_prog_info>.size)
            let result = mapIDs.withUnsafeMutableBufferPointer { ids -> CInt in
                second.map_ids = UInt64(UInt(bitPattern: ids.baseAddress))
                return bpf_obj_get_info_by_fd(fd, &second, &secondLength)
            }
            try check(
                result, "bpf_obj_get_info_by_fd(\(subject), map_ids)",
                action: "reading the map ids of program \(subject)")
            mapIDs = Array(mapIDs.prefix(min(count, Int(second.nr_map_ids))))
        }
        self.id = info.id
        self.type = BPFProgramType(rawValue: info.type)
        self.name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        self.tag = withUnsafeBytes(of: info.tag) { bytes in
            bytes.map { byte in
                let hex = String(byte, radix: 16)
                return byte < 16 ? "0" + hex : hex
            }.joined()
        }
        self.jitedSize = Int(info.jited_prog_len)
        self.translatedSize = Int(info.xlated_prog_len)
        self.mapIDs = mapIDs
        self.verifiedInstructions = info.verified_insns
        self.runCount = info.run_cnt
        self.runTimeNanoseconds = info.run_time_ns
    }
}

// MARK: - Pins shared by programs and maps

enum PinnedKind: String {
    case program = "bpf-prog"
    case map = "bpf-map"

    var noun: String { self == .program ? "program" : "map" }
}

/// What kind of bpf object an fd refers to, from /proc/self/fd (the kernel
/// names the anon inode "bpf-prog", "bpf-map", "bpf_link", ...).
func kindOfBPFDescriptor(_ fd: CInt) -> String? {
    var buffer = [CChar](repeating: 0, count: 64)
    let length = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    let target = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return target.hasPrefix("anon_inode:") ? String(target.dropFirst("anon_inode:".count)) : target
}

/// `bpf_obj_get(path)`, checking that the pin holds the expected kind.
func objectGet(_ path: FilePath, expecting kind: PinnedKind) throws -> CInt {
    let fd = try check(
        path.withCString { bpf_obj_get($0) }, "bpf_obj_get(\(path))",
        action: "opening the \(kind.noun) pinned at \(path)"
    ) { errno in
        switch errno {
        case .noSuchFileOrDirectory: "nothing is pinned at \(path) (not loaded, or a different pin path)"
        case .invalidArgument, .permissionDenied: "\(path) must be a pin on a bpffs mount"
        case .notPermitted: BPFError.privilegeHint
        default: nil
        }
    }
    if let actual = kindOfBPFDescriptor(fd), actual != kind.rawValue {
        close(fd)
        throw BPFError(
            operation: "bpf_obj_get(\(path))", action: "opening the \(kind.noun) pinned at \(path)",
            errno: .invalidArgument, hint: "\(path) holds a \(actual), not a \(kind.rawValue)")
    }
    return fd
}

/// `bpf_obj_pin(fd, path)`.
func pinObject(fd: CInt, at path: FilePath, what: String) throws {
    try check(
        path.withCString { bpf_obj_pin(fd, $0) }, "bpf_obj_pin(\(path))",
        action: "pinning \(what) at \(path)"
    ) { errno in
        switch errno {
        case .fileExists: "\(path) already exists; unpin it first"
        case .noSuchFileOrDirectory: "the directory of \(path) does not exist"
        case .permissionDenied, .notPermitted, .invalidArgument:
            "\(path) must be on a bpffs mount (BPFFileSystem.ensureMounted(at:)) and the caller needs CAP_BPF"
        default: nil
        }
    }
}
