// SPDX-License-Identifier: Apache-2.0
//
// The sides of the comparison. Each variant is one entry in `BenchVariant.all`:
// a name, what it stands for, what the host namespace needs (br_netfilter,
// tools) and how to put its filter onto a built topology; nothing else in the
// engine names variants.

import BPFNetCore
import Foundation

/// One side of the comparison, e.g. `docker-iptables-nft` or `bpfnet-tc`.
public struct BenchVariant: Sendable, Hashable, CustomStringConvertible {
    /// The name `--variants` takes and the report shows.
    public let name: String
    /// One line for `--help` and the chart's legend.
    public let summary: String
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

    /// Whether it enforces the policy (drops traffic no link allows, or a
    /// forged source): by default every variant except the bare bridge and
    /// the diagnostics.
    public let enforcesPolicy: Bool
    public var description: String { name }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.name == rhs.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    init(
        name: String, summary: String, bridgeNetfilter: Bool = false, tools: [String] = [],
        usesBPFNetMaps: Bool = false, isDiagnostic: Bool = false, enforcesPolicy: Bool? = nil,
        makeFilter: @escaping @Sendable () -> any VariantFilter
    ) {
        self.name = name
        self.summary = summary
        self.bridgeNetfilter = bridgeNetfilter
        self.tools = tools
        self.usesBPFNetMaps = usesBPFNetMaps
        self.isDiagnostic = isDiagnostic
        self.enforcesPolicy = enforcesPolicy ?? (name != "bridge" && !isDiagnostic)
        self.makeFilter = makeFilter
    }
}

extension BenchVariant {
    /// The reference every ratio is taken against.
    public static let bridge = BenchVariant(
        name: "bridge", summary: "Linux bridge only: no filtering, br_netfilter off"
    ) { NoFilter() }

    /// Every variant, in the order reports list them.
    public static let all: [BenchVariant] = [
        .bridge,
        BenchVariant(
            name: "docker-iptables-nft",
            summary: "Docker's FORWARD/DOCKER rules via iptables-nft, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-nft-restore"]
        ) { DockerIptablesFilter(backend: .nft) },
        // Docker's cost before any link: br_netfilter, conntrack and the
        // fixed FORWARD rules, icc on (so the flows pass without links).
        BenchVariant(
            name: "docker-nolinks",
            summary: "Docker's rules with icc on and no links at any N (br_netfilter, conntrack and the fixed "
                + "FORWARD rules only), iptables-nft",
            bridgeNetfilter: true, tools: ["iptables-nft-restore"], isDiagnostic: true
        ) { DockerIptablesFilter(backend: .nft, withoutLinks: true) },
        BenchVariant(
            name: "docker-iptables-legacy",
            summary: "Docker's FORWARD/DOCKER rules via iptables-legacy, br_netfilter on",
            bridgeNetfilter: true, tools: ["iptables-legacy-restore"]
        ) { DockerIptablesFilter(backend: .legacy) },
        BenchVariant(
            name: "bpfnet-nftables", summary: "bpfnet's netfilter fallback (bridge + ip nftables tables)",
            tools: ["nft"]
        ) { BPFNetFilter(.nftables) },
        BenchVariant(
            name: "bpfnet-tc", summary: "bpfnet, port program on tc ingress (the default hook), fast path off",
            tools: ["nft"], usesBPFNetMaps: true
        ) { BPFNetFilter(.bpf(portHook: .tc, fastPath: false)) },
        BenchVariant(
            name: "bpfnet-xdp", summary: "bpfnet, port program on XDP (--port-hook xdp), fast path off",
            tools: ["nft"], usesBPFNetMaps: true
        ) { BPFNetFilter(.bpf(portHook: .xdp, fastPath: false)) },
        BenchVariant(
            name: "bpfnet-fastpath", summary: "bpfnet (tc hook) delivering allowed traffic around the bridge",
            tools: ["nft"], usesBPFNetMaps: true
        ) { BPFNetFilter(.bpf(portHook: .tc, fastPath: true)) },
        BenchVariant(
            name: "bpfnet-fastpath-xdp", summary: "bpfnet (XDP hook) with the DEVMAP fast path around the bridge",
            tools: ["nft"], usesBPFNetMaps: true, isDiagnostic: true
        ) { BPFNetFilter(.bpf(portHook: .xdp, fastPath: true)) },
        // What a hook costs with nothing in it: splits bpfnet's overhead over
        // the bridge into the hook's and the program's share.
        BenchVariant(
            name: "bridge-empty-tc", summary: "bridge + an empty tc program on every port (hook cost only)",
            isDiagnostic: true
        ) { EmptyHookFilter(hook: .tc) },
        BenchVariant(
            name: "bridge-empty-xdp", summary: "bridge + an empty XDP program on every port (hook cost only)",
            isDiagnostic: true
        ) { EmptyHookFilter(hook: .xdp) },
    ]

    /// The variants measured when `--variants` is not given.
    public static var defaultSelection: [BenchVariant] { all.filter { !$0.isDiagnostic } }

    /// The variants a profile measures: the cross-host profile and the
    /// ingress direction have their own.
    public static func available(
        for profile: BenchProfile, direction: BenchDirection = .containers
    ) -> [BenchVariant] {
        if direction == .ingress { return ingress }
        return profile == .crossHost ? crossHost : all
    }

    public static func defaultSelection(
        for profile: BenchProfile, direction: BenchDirection = .containers
    ) -> [BenchVariant] {
        available(for: profile, direction: direction).filter { !$0.isDiagnostic }
    }

    public static func named(_ name: String) -> BenchVariant? {
        all.first { $0.name == name } ?? crossHost.first { $0.name == name }
    }

    /// Parses `--variants a,b,c`: unknown names are an error that lists what
    /// would be accepted. `bridge` is
    /// always measured (every ratio is taken against it) and comes first;
    /// the rest keep the order of `all`.
    public static func select(
        _ names: [String], profile: BenchProfile = .live, direction: BenchDirection = .containers
    ) throws(BenchError) -> [BenchVariant] {
        let available = available(for: profile, direction: direction)
        let known = available.map(\.name).joined(separator: ", ")
        let scope = direction == .ingress ? "--direction ingress" : "--profile \(profile.rawValue)"
        let wanted = names.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !wanted.isEmpty else {
            throw .badInput("--variants: name at least one variant; known for \(scope): \(known)")
        }
        let unknown = wanted.filter { name in !available.contains { $0.name == name } }.map { "'\($0)'" }
        if !unknown.isEmpty {
            throw .badInput(
                "--variants: unknown variant\(unknown.count == 1 ? "" : "s") \(unknown.joined(separator: ", ")) "
                    + "for \(scope); known: \(known)")
        }
        let set = Set(wanted).union([bridge.name])
        return available.filter { set.contains($0.name) }
    }

    /// "bridge, docker-iptables-nft, ...".
    public static var knownList: String {
        all.map(\.name).joined(separator: ", ")
    }
}
