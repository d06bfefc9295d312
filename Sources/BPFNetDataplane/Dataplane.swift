// SPDX-License-Identifier: Apache-2.0
//
// One protocol, several backends (swift-nio's split: the protocol and value
// types here, implementations beside it, an in-memory one for tests). Every
// backend enforces the same Policy with the same verdicts; they differ only
// in where the policy lives in the kernel.

import BPFNetCore
import Foundation

/// Where a dataplane keeps the policy.
public enum Backend: String, Sendable, CaseIterable, Codable {
    /// eBPF programs on the bridge ports and external interfaces (the default).
    case bpf
    /// One nftables table owned by bpfnet (fallback).
    case nftables
    /// Docker-shaped iptables chains (fallback for hosts without nft).
    case iptables
}

/// A place the policy can be enforced.
public protocol Dataplane: AnyObject {
    var backend: Backend { get }

    /// Makes the kernel enforce `policy`, replacing whatever this backend
    /// enforced before and changing only what differs. Either the whole policy
    /// is in force afterwards or the error says what is not.
    func apply(_ policy: Policy) throws

    /// What is in force now, read back from the kernel (works from another process).
    func status() throws -> DataplaneStatus

    /// Removes everything this backend put into the kernel. Succeeds when
    /// nothing is loaded, and after a crashed `apply`.
    func unload() throws

    /// Forgets what this process remembers of the kernel's state (to skip
    /// unchanged work on the next `apply`), so that the next `apply` checks
    /// and rewrites everything: repairs drift someone else caused.
    func forgetCachedState()
}

extension Dataplane {
    public func forgetCachedState() {}
}

/// Failures of the dataplane layer, each naming what failed and with which value.
public enum DataplaneError: Error, CustomStringConvertible, Equatable {
    /// The input names something the host does not have (exit code 2).
    case badInput(String)
    /// A system call failed.
    case system(String, errno: Int32)
    /// An external command (nft, iptables-restore, ip, ...) failed.
    case command(String, status: Int32, stderr: String)
    /// Anything else at run time, already phrased for the operator.
    case runtime(String)

    public var description: String {
        switch self {
        case .badInput(let message), .runtime(let message):
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
}
