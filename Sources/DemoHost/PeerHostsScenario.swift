// SPDX-License-Identifier: Apache-2.0
//
// What `bpfnet demo --hosts 2` measures on PeerHostsLab: containers on peer
// hosts reaching each other with their own addresses, host1's container
// masqueraded towards the outside, the outside host held off (forward policy,
// and a peer's subnet claimed from the wrong interface), and host2's icc
// (with `peerPolicy: icc` and `allow`) applied to its peer's containers.

import BPFNetCore
import Foundation
import NetLab

/// One policy for both hosts: host1 keeps icc on; host2's icc and peer policy vary.
public struct TwoHostSettings: Hashable, Sendable, CustomStringConvertible, Codable {
    public var host2ICC: Bool
    public var host2PeerPolicy: PeerPolicy

    public init(host2ICC: Bool, host2PeerPolicy: PeerPolicy = .icc) {
        self.host2ICC = host2ICC
        self.host2PeerPolicy = host2PeerPolicy
    }

    public var description: String {
        "host2 icc=\(host2ICC), peerPolicy \(host2PeerPolicy.rawValue)"
    }

    /// The demo's three: icc on; icc off (peers' containers too); icc off with peers admitted.
    public static let demo = [
        TwoHostSettings(host2ICC: true), TwoHostSettings(host2ICC: false),
        TwoHostSettings(host2ICC: false, host2PeerPolicy: .allow),
    ]
}

/// One probe of the two-host matrix and what the policy says about it.
struct TwoHostCell {
    var fromLabel: String
    var host: KeyPath<PeerHostsLab, PeerHostsLab.Host>
    var role: String
    var toLabel: String
    var address: IPv4Address
    var kind: Probe.Kind
    var source: IPv4Address?
    /// The source address the destination must see when the probe gets through (TCP, UDP).
    var seenAs: IPv4Address
    /// The rows of docs/verdicts.md that decide it.
    var rows: String
    /// nil: allowed; otherwise the drop reason.
    var dropReason: (TwoHostSettings) -> String?

    var proto: String {
        switch kind {
        case .tcp: "tcp"
        case .udp: "udp"
        case .icmp: "icmp"
        }
    }

    var port: UInt16? {
        switch kind {
        case .tcp(let port), .udp(let port): port
        case .icmp: nil
        }
    }
}

extension PeerHostsLab {
    static var cells: [TwoHostCell] {
        let tcp = Probe.Kind.tcp(tcpPort)
        // host2 judges its peer's containers by its icc unless peerPolicy allow.
        let peerToHost2: (TwoHostSettings) -> String? = {
            $0.host2ICC || $0.host2PeerPolicy == .allow ? nil : "icc"
        }
        var cells: [TwoHostCell] = []
        for kind in [tcp, Probe.Kind.udp(udpPort), .icmp] {
            cells.append(
                TwoHostCell(
                    fromLabel: "c1@host1", host: \.host1, role: "c1", toLabel: "c2@host2", address: c2, kind: kind,
                    seenAs: c1, rows: "12", dropReason: peerToHost2))
        }
        cells += [
            TwoHostCell(
                fromLabel: "c2@host2", host: \.host2, role: "c2", toLabel: "c1@host1", address: c1, kind: tcp,
                seenAs: c2, rows: "12", dropReason: { _ in nil }),
            TwoHostCell(
                fromLabel: "c2@host2", host: \.host2, role: "c2", toLabel: "c3@host2", address: c3, kind: tcp,
                seenAs: c2, rows: "3/6", dropReason: { $0.host2ICC ? nil : "icc" }),
            TwoHostCell(
                fromLabel: "c1@host1", host: \.host1, role: "c1", toLabel: "outside", address: outside, kind: tcp,
                seenAs: host1Outside, rows: "7", dropReason: { _ in nil }),
            TwoHostCell(
                fromLabel: "outside", host: \.host1, role: "outside", toLabel: "c1@host1", address: c1, kind: tcp,
                seenAs: outside, rows: "9", dropReason: { _ in "forward" }),
            TwoHostCell(
                fromLabel: "outside as \(spoofedPeerSource)", host: \.host1, role: "outside", toLabel: "c1@host1",
                address: c1, kind: tcp, source: spoofedPeerSource, seenAs: spoofedPeerSource, rows: "13",
                dropReason: { _ in "peer-spoofed" }),
        ]
        return cells
    }

    /// Loads both hosts' policies for `settings`.
    public func load(_ settings: TwoHostSettings) throws {
        try host1.load(Self.policy(for: "host1"))
        try host2.load(
            Self.policy(for: "host2", icc: settings.host2ICC, peerPolicy: settings.host2PeerPolicy))
    }

    /// Every cell under `settings`, measured with real traffic. An allowed
    /// TCP/UDP probe whose destination saw another source than the policy
    /// says (no masquerade where there should be one, or one where there
    /// should not) is observed as "allowed as ADDRESS", which differs.
    public func measure(_ settings: TwoHostSettings) throws -> [MatrixEntry] {
        let cells = Self.cells
        let probes = try cells.map { cell in
            try self[keyPath: cell.host].topology.probe(
                from: cell.role, to: cell.address, cell.kind, sourceAddress: cell.source,
                label: "\(cell.fromLabel) → \(cell.toLabel)")
        }
        let results = probeRunner.run(probes)
        return zip(cells, results).map { cell, result in
            let reason = cell.dropReason(settings)
            var observed = result.reachability.rawValue
            if result.isAllowed, let seen = result.peerSeen?.address, seen != cell.seenAs {
                observed = "allowed as \(seen)"
            }
            var detail = result.detail
            if result.isAllowed, let seen = result.peerSeen?.address { detail = "seen as \(seen); " + detail }
            return MatrixEntry(
                from: cell.fromLabel, to: cell.toLabel, proto: cell.proto, port: cell.port,
                expected: reason == nil ? "allowed" : "blocked", observed: observed, sourcePort: nil, size: nil,
                rows: cell.rows, reason: reason, detail: detail)
        }
    }

    /// Both hosts' counters: program → reason → packets, summed.
    public func counters() throws -> [String: [String: UInt64]] {
        var result: [String: [String: UInt64]] = [:]
        for host in [host1, host2] {
            for (program, reasons) in try host.status().programCounters {
                for (reason, value) in reasons {
                    result["\(host.name) \(program)", default: [:]][reason, default: 0] += value.packets
                }
            }
        }
        return result
    }

    /// "HOST PROGRAM" → packets delivered by the fast path (event `hit`) so far.
    public func fastPathHits() throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for host in [host1, host2] {
            for (program, events) in try host.status().fastPath ?? [:] {
                if let hits = events["hit"], hits > 0 { result["\(host.name) \(program)"] = hits }
            }
        }
        return result
    }
}
