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

    /// `status()` for a metrics scrape, which may come every second: it may
    /// trust what this backend recorded instead of asking the kernel about
    /// each of a thousand ports.
    func statusForMetrics() throws -> DataplaneStatus

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
    public func statusForMetrics() throws -> DataplaneStatus { try status() }
}
