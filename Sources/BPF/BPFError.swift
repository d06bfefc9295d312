// SPDX-License-Identifier: Apache-2.0
//
// The one error type of the BPF module and the choke points that produce it.
// Every libbpf call goes through `check(...)` / `makeError(...)` and every
// system call through `systemError(...)` (like swift-system's `valueOrErrno`),
// so errors always carry the call, the errno, libbpf's own text for it and,
// where we can tell, what to do.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An error from libbpf, the bpf(2) system call or one of the system calls
/// the BPF module makes around them (netlink through libbpf, mount, setns, ...).
///
/// `description` is written for operators:
///
///     bpf: attaching tc ingress to vethab12: Operation not permitted — run as root or grant CAP_BPF and CAP_NET_ADMIN
///
/// Classify with `isNotFound`, `isExists`, `isNoSpace` and `isPermission`
/// instead of comparing errno values (cilium/ebpf's sentinel errors).
public struct BPFError: Error, CustomStringConvertible, CustomDebugStringConvertible, Sendable {
    /// The C call and its subject, e.g. `bpf_object__load(port)`.
    public var operation: String
    /// What we were doing, in words, e.g. `attaching tc ingress to vethab12`.
    /// `nil` when `operation` says it well enough.
    public var action: String?
    /// The error number. libbpf's own codes (`LIBBPF_ERRNO__*`, 4000 and up)
    /// are kept as they are; `libbpfMessage` spells them out.
    public var errno: Errno
    /// `libbpf_strerror()`'s text for `errno` (also covers `LIBBPF_ERRNO__*`).
    public var libbpfMessage: String
    /// The verifier's log when a program was rejected (log level 1, the tail
    /// if the log did not fit the buffer).
    public var verifierLog: String?
    /// What libbpf printed while the call ran (warnings such as
    /// "map 'x': error reusing pinned map", netlink's "Kernel error message"),
    /// without the verifier log, which is in `verifierLog`.
    public var libbpfLog: [String]
    /// What to do about it, when we can tell.
    public var hint: String?

    /// An error for `operation`; `libbpfMessage` is filled in from `errno`,
    /// and `hint` defaults to advice for `errno` (privileges, verifier) when nil.
    public init(
        operation: String,
        action: String? = nil,
        errno: Errno,
        verifierLog: String? = nil,
        libbpfLog: [String] = [],
        hint: String? = nil
    ) {
        self.operation = operation
        self.action = action
        self.errno = errno
        self.libbpfMessage = BPFError.message(for: errno.rawValue)
        self.verifierLog = verifierLog
        self.libbpfLog = libbpfLog
        self.hint = hint ?? BPFError.defaultHint(for: errno, verifierLog: verifierLog)
    }

    /// The key (or pinned path, interface, program id) does not exist: `ENOENT`.
    public var isNotFound: Bool { errno == .noSuchFileOrDirectory }
    /// The key (or filter, attachment) already exists: `EEXIST`.
    public var isExists: Bool { errno == .fileExists }
    /// A map is full: `E2BIG` (hash maps at max_entries, array index out of
    /// range) or `ENOSPC`.
    public var isNoSpace: Bool { errno == .argListTooLong || errno == .noSpace }
    /// Missing privileges: `EPERM`, or `EACCES` that is not a verifier
    /// rejection (the verifier also answers `EACCES`).
    public var isPermission: Bool {
        errno == .notPermitted || (errno == .permissionDenied && (verifierLog ?? "").isEmpty)
    }
    /// The verifier rejected a program; `verifierLog` says why.
    public var isVerifierRejection: Bool { !(verifierLog ?? "").isEmpty }

    public var description: String {
        var text = "bpf: \(action ?? operation): \(libbpfMessage)"
        if let kernelMessage = kernelMessage {
            text += " (kernel: \(kernelMessage))"
        }
        if let summary = verifierSummary {
            text += "; verifier: \(summary)"
        }
        if let hint = hint {
            text += " — \(hint)"
        }
        return text
    }

    public var debugDescription: String {
        var text = description + "\n  call: \(operation) -> -\(errno.rawValue)"
        for line in libbpfLog {
            text += "\n  libbpf: \(line)"
        }
        if let log = verifierLog, !log.isEmpty {
            text += "\n  verifier log:\n" + log
        }
        return text
    }

    /// netlink's extended ack ("native and generic XDP can't be active at the
    /// same time"), which libbpf prints as "Kernel error message: ...".
    var kernelMessage: String? {
        for line in libbpfLog {
            if let range = line.firstRange(of: "Kernel error message: ") {
                return String(line[range.upperBound...])
            }
        }
        return nil
    }

    /// The verifier's complaint: the last lines of its log that are not its
    /// closing statistics ("processed N insns ...", "verification time ...").
    var verifierSummary: String? {
        guard let log = verifierLog, !log.isEmpty else { return nil }
        let statistics = ["processed ", "verification time", "stack depth", "peak_states", "mark_read"]
        let lines = log.split(separator: "\n", omittingEmptySubsequences: true)
            .map { $0.trimmingSpaces() }
            .filter { line in !statistics.contains(where: { line.hasPrefix($0) }) }
        guard !lines.isEmpty else { return nil }
        return lines.suffix(2).joined(separator: " / ")
    }

    /// `libbpf_strerror()`: strerror for ordinary errno values, and libbpf's
    /// own table for `LIBBPF_ERRNO__*`.
    static func message(for code: CInt) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            buffer.initialize(repeating: 0)
            if libbpf_strerror(code, buffer.baseAddress, buffer.count) != 0 || buffer[0] == 0 {
                return code == BPFNET_ENOTSUPP ? "Operation not supported (ENOTSUPP)" : "error \(code)"
            }
            return String(cString: buffer.baseAddress!)
        }
    }

    static let privilegeHint = "run as root or grant CAP_BPF and CAP_NET_ADMIN"

    static func defaultHint(for errno: Errno, verifierLog: String?) -> String? {
        if let log = verifierLog, !log.isEmpty {
            return "the verifier rejected the program; BPFError.verifierLog has its full log"
        }
        switch errno {
        case .notPermitted, .permissionDenied:
            return privilegeHint
        default:
            return nil
        }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var slice = self[...]
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" || last == "\r" { slice = slice.dropLast() }
        return String(slice)
    }
}

extension Errno {
    /// The kernel-internal `ENOTSUPP` (524) that bpf(2) returns for batch
    /// operations a map type does not implement (LPM tries, ...).
    static var kernelNotSupported: Errno { Errno(rawValue: BPFNET_ENOTSUPP) }

    /// "This map type or driver cannot do that": `EINVAL`, `ENOTSUPP`,
    /// `EOPNOTSUPP`/`ENOTSUP`.
    var isUnsupportedOperation: Bool {
        self == .invalidArgument || self == .kernelNotSupported
            || self == .notSupported || self == .notSupportedOnSocket
    }
}

// MARK: - Choke points

/// Runs a libbpf or bpf(2) wrapper that returns a negative errno (the
/// libbpf 1.x convention) and throws a `BPFError` describing `operation` when
/// it fails. Returns the non-negative result (an fd, a count, 0).
///
/// `operation`, `action` and `hint` are autoclosures so that hot paths (map
/// lookups, test runs) build no strings unless they fail.
@inline(__always)
@discardableResult
func check(
    _ result: CInt,
    _ operation: @autoclosure () -> String,
    action: @autoclosure () -> String? = nil,
    hint: (Errno) -> String? = { _ in nil }
) throws(BPFError) -> CInt {
    if result >= 0 { return result }
    throw makeError(result, operation(), action: action(), hint: hint)
}

/// The error for a libbpf call that returned `result` = -errno.
func makeError(
    _ result: CInt,
    _ operation: String,
    action: String?,
    libbpfLog: [String] = [],
    hint: (Errno) -> String? = { _ in nil }
) -> BPFError {
    let errno = Errno(rawValue: -result)
    return BPFError(operation: operation, action: action, errno: errno, libbpfLog: libbpfLog, hint: hint(errno))
}

/// The error for a system call that just returned -1 and set `errno`; call
/// it right after the failing call, before anything else can change errno.
func systemError(
    _ operation: String,
    action: String?,
    hint: (Errno) -> String? = { _ in nil }
) -> BPFError {
    let code = Glibc.errno
    return makeError(-(code > 0 ? code : EIO), operation, action: action, hint: hint)
}

/// Best-effort "ifindex 7 (vethab12)" for messages, resolved in the calling
/// thread's network namespace.
func describeInterface(_ ifindex: UInt32) -> String {
    if let name = try? NetworkInterface.name(index: ifindex) {
        return "\(name) (ifindex \(ifindex))"
    }
    return "ifindex \(ifindex)"
}

/// The `sz` to put in a libbpf options struct: the end of its last field
/// (what libbpf's `offsetofend(type, type##__last_field)` computes).
///
/// Not `MemoryLayout<T>.size`: libbpf rejects an options struct whose bytes
/// past the last field are not zero ("bpf_tc_hook has non-zero extra
/// bytes"), and Swift does not keep a struct's tail padding zeroed when it
/// copies the value. Declaring the size up to the last field tells libbpf
/// every field is there and leaves the padding out of its check.
@inline(__always)
func optionsSize<Options, Field>(_ lastField: KeyPath<Options, Field>) -> Int {
    MemoryLayout<Options>.offset(of: lastField)! + MemoryLayout<Field>.size
}
