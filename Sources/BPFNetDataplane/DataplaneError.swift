// SPDX-License-Identifier: Apache-2.0
//
// The dataplane layer's one error type. Its cases say what kind of failure it
// is, for callers that decide on it (fall back to another backend, retry, tell
// the operator what to do); the message reads the same whatever the case.
// Only `badInput` is the operator's fault: exit code 2, every other case 1.

import BPF
import BPFNetCore
import Foundation
import LinuxNet

/// Failures of the dataplane layer, each naming what failed and with which value.
public enum DataplaneError: Error, CustomStringConvertible, Equatable {
    /// The input is wrong: a policy the host cannot take, an interface it
    /// does not have (exit code 2).
    case badInput(String)
    /// Something the operation needs does not exist: pinned maps, a table, a
    /// chain, an interface, a program to run.
    case notFound(String)
    /// A map is full.
    case noSpace(String)
    /// Missing privileges.
    case permission(String)
    /// Something else holds what is needed: another program attached, a table
    /// or chain that is someone else's, an agent keeping the dataplane.
    case busy(String)
    /// A system call failed.
    case system(String, errno: Int32)
    /// An external command (nft, iptables-restore, ip, ...) failed.
    case command(String, status: Int32, stderr: String)
    /// Anything else at run time, already phrased for the operator.
    case runtime(String)

    /// `message`, which describes `error`, as the case for what kind of
    /// failure `error` is: the classes of BPFError, LinuxNetError and
    /// DataplaneError carry over, anything else is `.runtime`.
    public init(_ message: String, classifying error: any Error) {
        let kind: Kind? =
            switch error {
            case let error as BPFError:
                error.isPermission
                    ? .permission
                    : error.isNoSpace
                        ? .noSpace
                        : error.isNotFound || error.errno == .operationNotSupportedByDevice
                            ? .notFound
                            : error.isExists || error.errno == .resourceBusy ? .busy : nil
            case let error as LinuxNetError: Kind(errno: error.errno)
            case let error as DataplaneError: error.kind
            default: nil
            }
        switch kind {
        case .notFound: self = .notFound(message)
        case .noSpace: self = .noSpace(message)
        case .permission: self = .permission(message)
        case .busy: self = .busy(message)
        case nil: self = .runtime(message)
        }
    }

    public var description: String {
        switch self {
        case .badInput(let message), .notFound(let message), .noSpace(let message), .permission(let message),
            .busy(let message), .runtime(let message):
            return message
        case .system(let what, let code):
            let hint = code == EPERM || code == EACCES ? " — run as root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN)" : ""
            return "\(what): \(String(cString: strerror(code)))\(hint)"
        case .command(let command, let status, let stderr):
            let detail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            return "\(command) exited with status \(status)" + (detail.isEmpty ? "" : ": \(detail)")
        }
    }

    /// Whether the operator gave bad input (exit 2) rather than the system failing (exit 1).
    public var isBadInput: Bool {
        if case .badInput = self { return true }
        return false
    }

    /// Something does not exist: `.notFound`, or a system call that said ENOENT or ENODEV.
    public var isNotFound: Bool { kind == .notFound }
    /// A map is full: `.noSpace`, or a system call that said ENOSPC or E2BIG.
    public var isNoSpace: Bool { kind == .noSpace }
    /// Missing privileges: `.permission`, or a system call that said EPERM or EACCES.
    public var isPermission: Bool { kind == .permission }
    /// Held by something else: `.busy`, or a system call that said EBUSY or EEXIST.
    public var isBusy: Bool { kind == .busy }

    /// The classes callers branch on, for the cases that have one.
    private enum Kind {
        case notFound, noSpace, permission, busy

        init?(errno code: Int32) {
            switch code {
            case ENOENT, ENODEV: self = .notFound
            case ENOSPC, E2BIG: self = .noSpace
            case EPERM, EACCES: self = .permission
            case EBUSY, EEXIST: self = .busy
            default: return nil
            }
        }
    }

    private var kind: Kind? {
        switch self {
        case .notFound: .notFound
        case .noSpace: .noSpace
        case .permission: .permission
        case .busy: .busy
        case .system(_, let code): Kind(errno: code)
        case .badInput, .command, .runtime: nil
        }
    }
}
