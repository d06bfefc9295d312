// SPDX-License-Identifier: Apache-2.0
//
// The sides of the comparison. Each variant is one entry in `BenchVariant.all`:
// a name, what it stands for, what the host namespace needs (br_netfilter,
// tools) and how to put its filter onto a built topology. A backend that
// arrives later (the nftables fallback, the fast path) becomes measurable by
// replacing its `.unavailable` entry with a filter factory; nothing else in
// the engine names variants.

import BPFNetCore
import Foundation

/// One side of the comparison, e.g. `docker-iptables-nft` or `bpfnet-tc`.
public struct BenchVariant: Sendable, Hashable, CustomStringConvertible {
    /// The name `--variants` takes and the report shows.
    public let name: String
    /// One line for `--help` and the chart's legend.
    public let summary: String
    /// nil when this build can measure it; otherwise why not.
    public let unavailableReason: String?
    /// `net.bridge.bridge-nf-call-iptables` in the host namespace: Docker
    /// needs it for icc=false; bpfnet does not (Docker runs with --iptables=false).
    let bridgeNetfilter: Bool
    /// Programs the variant runs in the host namespace (checked before anything is built).
    let tools: [String]
    /// Whether N is bounded by bpfnet's map sizes (BPFNET_MAX_LINK_RULES, ...).
    let usesBPFNetMaps: Bool
    /// Makes the filter for one topology.
    let makeFilter: @Sendable () -> any VariantFilter
    /// Measured only when named in `--variants` (explains a result; not a side of the comparison).
    public let isDiagnostic: Bool

    public var isAvailable: Bool { unavailableReason == nil }
    /// Whether it enforces the policy (drops traffic no link allows): every
    /// variant except the bare bridge and the empty-hook diagnostics.
    public var enforcesPolicy: Bool { name != BenchVariant.bridge.name && !isDiagnostic }
    public var description: String { name }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.name == rhs.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    init(name: String, summary: String, bridgeNetfilter: Bool = false, tools: [String] = [],
         usesBPFNetMaps: Bool = false, isDiagnostic: Bool = false,
         makeFilter: @escaping @Sendable () -> any VariantFilter) {
        self.name = name
        self.summary = summary
        self.unavailableReason = nil
        self.bridgeNetfilter = bridgeNetfilter
        self.tools = tools
        self.usesBPFNetMaps = usesBPFNetMaps
        self.isDiagnostic = isDiagnostic
        self.makeFilter = makeFilter
    }

    /// A variant the project names but this build cannot measure yet.
    static func unavailable(_ name: String, summary: String, reason: String) -> BenchVariant {
        BenchVariant(name: name, summary: summary, reason: reason)
    }

    private init(name: String, summary: String, reason: String) {
        self.name = name
        self.summary = summary
        self.unavailableReason = reason
        self.bridgeNetfilter = false
        self.tools = []
        self.usesBPFNetMaps = false
        self.isDiagnostic = false
        self.makeFilter = { preconditionFailure("\(name) is not available in this build") }
    }
}

extension BenchVariant {
    /// The reference every ratio is taken against.
    public static let bridge = BenchVariant(
        name: "bridge", summary: "Linux bridge only: no filtering, br_netfilter off") { NoFilter() }

    /// Every variant, in the order reports list them.
    public static let all: [BenchVariant] = [
        .bridge,
        BenchVariant(
            name: "docker-iptables-nft",
            summary: "Docker's FORWARD/DOCKER rules via iptables-nft, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-nft-restore"]) { DockerIptablesFilter(backend: .nft) },
        BenchVariant(
            name: "docker-iptables-legacy",
            summary: "Docker's FORWARD/DOCKER rules via iptables-legacy, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-legacy-restore"]) { DockerIptablesFilter(backend: .legacy) },
        .unavailable(
            "bpfnet-nftables", summary: "bpfnet's netfilter fallback (one nftables table)",
            reason: "the nftables fallback is not part of this build yet"),
        BenchVariant(
            name: "bpfnet-tc", summary: "bpfnet, port program on tc ingress (the default hook)",
            tools: ["nft"], usesBPFNetMaps: true) { BPFNetFilter(portHook: .tc) },
        BenchVariant(
            name: "bpfnet-xdp", summary: "bpfnet, port program on XDP (--port-hook xdp)",
            tools: ["nft"], usesBPFNetMaps: true) { BPFNetFilter(portHook: .xdp) },
        .unavailable(
            "bpfnet-fastpath", summary: "bpfnet delivering allowed traffic around the bridge",
            reason: "the fast path is not part of this build yet"),
        // What a hook costs with nothing in it: splits bpfnet's overhead over
        // the bridge into the hook's and the program's share.
        BenchVariant(
            name: "bridge-empty-tc", summary: "bridge + an empty tc program on every port (hook cost only)",
            isDiagnostic: true) { EmptyHookFilter(hook: .tc) },
        BenchVariant(
            name: "bridge-empty-xdp", summary: "bridge + an empty XDP program on every port (hook cost only)",
            isDiagnostic: true) { EmptyHookFilter(hook: .xdp) },
    ]

    /// The variants measured when `--variants` is not given.
    public static var defaultSelection: [BenchVariant] { all.filter { $0.isAvailable && !$0.isDiagnostic } }

    public static func named(_ name: String) -> BenchVariant? {
        all.first { $0.name == name }
    }

    /// Parses `--variants a,b,c`: unknown names and variants this build cannot
    /// measure are errors that list what would be accepted. `bridge` is
    /// always measured (every ratio is taken against it) and comes first;
    /// the rest keep the order of `all`.
    public static func select(_ names: [String]) throws(BenchError) -> [BenchVariant] {
        let wanted = names.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !wanted.isEmpty else {
            throw .badInput("--variants: name at least one variant; known: \(knownList)")
        }
        var unknown: [String] = []
        var unavailable: [String] = []
        for name in wanted {
            guard let variant = named(name) else { unknown.append("'\(name)'"); continue }
            if let reason = variant.unavailableReason { unavailable.append("\(name) (\(reason))") }
        }
        if !unknown.isEmpty {
            throw .badInput("--variants: unknown variant\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")); "
                + "known: \(knownList)")
        }
        if !unavailable.isEmpty {
            throw .badInput("--variants: not available in this build: \(unavailable.joined(separator: "; ")); "
                + "available: \(defaultSelection.map(\.name).joined(separator: ", "))")
        }
        let set = Set(wanted).union([bridge.name])
        return all.filter { set.contains($0.name) }
    }

    /// "bridge, docker-iptables-nft, ..., bpfnet-fastpath (not available in this build), ...".
    public static var knownList: String {
        all.map { $0.isAvailable ? $0.name : "\($0.name) (not available in this build)" }.joined(separator: ", ")
    }
}
