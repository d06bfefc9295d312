// SPDX-License-Identifier: Apache-2.0
//
// What a bench run measures, and everything that can be wrong with it,
// found before anything is built: errors name the value and what would be
// accepted, and bad input exits 2 (docs/bench.md).

import BPFNetShared
import Foundation
import LinuxNet
import NetLab

/// Failures of the bench, phrased for the operator.
public enum BenchError: Error, CustomStringConvertible, Equatable {
    /// The options or the machine cannot run this bench (exit code 2).
    case badInput(String)
    /// Something failed while building or measuring (exit code 1).
    case runtime(String)

    public var description: String {
        switch self {
        case .badInput(let message), .runtime(let message): message
        }
    }

    public var isBadInput: Bool {
        if case .badInput = self { return true }
        return false
    }
}

/// Where the packets come from.
public enum BenchProfile: String, Sendable, CaseIterable, Codable {
    /// BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: XDP_TX frames from
    /// the sender's eth0, ~110 ns of generator cost per packet.
    case live
    /// Real UDP sockets in the sender (sendmmsg): the skb path containers
    /// really use, ~1.8 µs of sender cost per packet that dilutes differences.
    case udp
    /// Live frames as `live`, but every flow was answered once by the
    /// receiver before measuring: conntrack holds it ESTABLISHED, which is
    /// Docker's FORWARD short-cut (the case that favours Docker).
    case established
    /// Live frames from a container on host1 to one on host2, routed through
    /// both hosts (Docker's two-host example; CrossHost.swift).
    case crossHost = "cross-host"
    /// `--direction ingress` only: every frame opens a new flow (a source
    /// address and port not seen since the host's conntrack table was last
    /// flushed): the first-packet cost, where Docker's nat and filter DOCKER
    /// chains are walked (Ingress.swift).
    case new

    public var summary: String {
        switch self {
        case .live: "XDP live frames (BPF_PROG_TEST_RUN, XDP_TX from the sender's eth0)"
        case .udp: "UDP sockets (sendmmsg in the sender's namespace)"
        case .established:
            "XDP live frames on flows the receiver answered once first (conntrack: ESTABLISHED)"
        case .crossHost: "XDP live frames from a container on host1 to one on host2, routed through both hosts"
        case .new: "frames through an AF_PACKET socket, each one a new flow (source address and port)"
        }
    }

    /// `summary`, for a run whose frames went through an AF_PACKET socket
    /// because the kernel refused XDP live frames (Generator.swift).
    public func summary(packetSocket: Bool) -> String {
        guard packetSocket else { return summary }
        switch self {
        case .live:
            return "frames through an AF_PACKET socket on the sender's eth0 (the kernel refused XDP live frames)"
        case .established:
            return "frames through an AF_PACKET socket (the kernel refused XDP live frames) on flows the receiver "
                + "answered once first (conntrack: ESTABLISHED)"
        case .crossHost:
            return "frames through an AF_PACKET socket (the kernel refused XDP live frames) from a container on "
                + "host1 to one on host2, routed through both hosts"
        case .udp, .new: return summary
        }
    }

    /// Whether the bench sends frames it builds itself (the live-frames
    /// generator, or the new-flow sender), sized by the previous burst.
    var usesGenerator: Bool { self != .udp }
}

/// Which way the measured traffic crosses the host.
public enum BenchDirection: String, Sendable, CaseIterable, Codable {
    /// From one container to another on the bridge (links; the default).
    case containers
    /// From an outside host to a published port: in on the external
    /// interface, DNAT to a container (Ingress.swift).
    case ingress

    /// The profiles a direction measures, the default first.
    public var profiles: [BenchProfile] {
        switch self {
        case .containers: [.live, .udp, .established, .crossHost]
        case .ingress: [.new, .established]
        }
    }
}

/// A bench run.
public struct BenchConfiguration: Sendable {
    /// Resolved variants; `bridge` first.
    public var variants: [BenchVariant]
    /// N values, ascending.
    public var links: [Int]
    public var flows: Int
    /// Docker bridge networks on every host, the default bridge included.
    public var networks: Int
    /// Measured rounds per N (a warm-up round comes on top).
    public var rounds: Int
    /// CPU time of one burst (one variant, one round), seconds.
    public var burstSeconds: Double
    public var profile: BenchProfile
    public var direction: BenchDirection
    /// The CPU the sending thread is pinned to (softirq work runs there too).
    public var cpu: Int
    /// Print a progress line on stderr (only when it is a terminal).
    public var showProgress: Bool

    public static let defaultLinks = [0, 100, 1000, 10000]
    public static let defaultRounds = 50
    /// Each live-frames call costs ~18 ms of wall time (a dispatcher update
    /// and an RCU sync); 0.5 s calls keep that below 4 % and it is not CPU
    /// time, so it does not enter ns/packet either way.
    public static let defaultBurstSeconds = 0.5

    /// `variants` nil: every non-diagnostic one of the profile and direction.
    /// For ingress, variants are taken by name from `BenchVariant.ingress`
    /// (its `bridge` carries the NAT a published port needs).
    public init(
        variants: [BenchVariant]? = nil, links: [Int] = defaultLinks, flows: Int = 1,
        networks: Int = 1, rounds: Int = defaultRounds, burstSeconds: Double = defaultBurstSeconds,
        profile: BenchProfile = .live, direction: BenchDirection = .containers,
        cpu: Int? = nil, showProgress: Bool = true
    ) {
        let chosen = variants ?? BenchVariant.defaultSelection(for: profile, direction: direction)
        self.variants =
            direction == .ingress
            ? chosen.map { variant in BenchVariant.ingress.first { $0.name == variant.name } ?? variant } : chosen
        self.links = links
        self.flows = flows
        self.networks = networks
        self.rounds = rounds
        self.burstSeconds = burstSeconds
        self.profile = profile
        self.direction = direction
        self.cpu = cpu ?? BenchConfiguration.defaultCPU
        self.showProgress = showProgress
    }

    /// The last online CPU: on a 2-CPU machine CPU 1, leaving CPU 0 to the rest.
    public static var defaultCPU: Int { max(0, onlineCPUs - 1) }

    public static var onlineCPUs: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    public var workload: BenchWorkload {
        BenchWorkload(maxLinks: links.max() ?? 0, flows: flows, networks: networks)
    }

    /// Parses "0,100,1000,10000".
    public static func parseLinks(_ text: String) throws(BenchError) -> [Int] {
        var values: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let trimmed = part.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(trimmed) else {
                throw .badInput(
                    "--links '\(text)': '\(part)' is not a number of links; "
                        + "give non-negative integers separated by commas, e.g. 0,100,1000,10000")
            }
            values.append(value)
        }
        return Array(Set(values)).sorted()
    }

    /// Everything that can be checked before a namespace exists: values,
    /// map capacities, root, tools, br_netfilter.
    public func validate() throws(BenchError) {
        try validateValues()
        guard geteuid() == 0 else {
            throw .badInput(
                "bench must run as root: it builds network namespaces, loads eBPF programs and "
                    + "iptables rules in them (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF): sudo bpfnet bench ...")
        }
        try checkTools()
    }

    /// The options alone (no root, no tools needed).
    func validateValues() throws(BenchError) {
        guard !links.isEmpty else { throw .badInput("--links: give at least one N, e.g. 0,100,1000,10000") }
        guard direction.profiles.contains(profile) else {
            throw .badInput(
                "--direction \(direction.rawValue) measures --profile "
                    + direction.profiles.map(\.rawValue).joined(separator: "|") + ", not \(profile.rawValue)")
        }
        if direction == .ingress {
            try validateIngress()
            return
        }
        if profile == .crossHost {
            // Docker has no links across hosts: the cross-host bench has one N.
            guard links == [0], flows == 1, networks == 1 else {
                throw .badInput(
                    "--profile cross-host measures one flow between two hosts: --links, --flows and --networks "
                        + "do not apply (leave them out)")
            }
            let foreign = variants.filter { variant in !BenchVariant.crossHost.contains(variant) }
            guard foreign.isEmpty else {
                throw .badInput(
                    "--profile cross-host: \(foreign.map(\.name).joined(separator: ", ")) measure one host; "
                        + "known: \(BenchVariant.crossHost.map(\.name).joined(separator: ", "))")
            }
        }
        guard (1...BenchWorkload.maxFlows).contains(flows) else {
            throw .badInput(
                "--flows \(flows): use 1 to \(BenchWorkload.maxFlows) (each flow's source is a "
                    + "container with a bridge port of its own in every topology)")
        }
        guard (1...BenchWorkload.maxNetworks).contains(networks) else {
            throw .badInput(
                "--networks \(networks): use 1 (the default bridge alone) to \(BenchWorkload.maxNetworks) (each "
                    + "network is a bridge in every topology)")
        }
        guard rounds >= 1 else { throw .badInput("--rounds \(rounds): use at least 1 (50 or more for stable ratios)") }
        guard burstSeconds >= 0.001, burstSeconds <= 60 else {
            throw .badInput("--burst \(burstSeconds): use 0.001 to 60 seconds of CPU time per burst (default 0.5)")
        }
        guard cpu >= 0, cpu < Self.onlineCPUs else {
            throw .badInput("--cpu \(cpu): this machine has CPUs 0-\(Self.onlineCPUs - 1)")
        }
        if variants.contains(where: \.usesBPFNetMaps) {
            try checkMapCapacity()
        }
    }

    /// `--direction ingress`: N is published ports (each needs a host port
    /// and a slot in bpfnet's published-port map), one network, and `new`
    /// sends a fresh flow per frame (`--flows` does not apply).
    func validateIngress() throws(BenchError) {
        let foreign = variants.filter { variant in !BenchVariant.ingress.contains(variant) }
        guard foreign.isEmpty else {
            throw .badInput(
                "--direction ingress: \(foreign.map(\.name).joined(separator: ", ")) measure traffic between "
                    + "containers; known: \(BenchVariant.ingress.map(\.name).joined(separator: ", "))")
        }
        let maxN = links.max() ?? 0
        guard maxN <= BenchWorkload.maxPublishedPorts else {
            throw .badInput(
                "--ports \(maxN): bpfnet's published-port map holds \(BPFNET_MAX_PUBLISHED) ports "
                    + "(BPFNET_MAX_PUBLISHED) and the measured one comes on top, so N can be at most "
                    + "\(BenchWorkload.maxPublishedPorts)")
        }
        guard networks == 1 else {
            throw .badInput("--direction ingress measures the default bridge alone: --networks does not apply")
        }
        if profile == .new {
            guard flows == 1 else {
                throw .badInput(
                    "--profile new sends every frame from a new source: --flows does not apply (leave it out)")
            }
        } else {
            guard (1...BenchWorkload.maxFlows).contains(flows) else {
                throw .badInput(
                    "--flows \(flows): use 1 to \(BenchWorkload.maxFlows) established flows from the outside host")
            }
        }
        guard rounds >= 1 else { throw .badInput("--rounds \(rounds): use at least 1 (50 or more for stable ratios)") }
        guard burstSeconds >= 0.001, burstSeconds <= 60 else {
            throw .badInput("--burst \(burstSeconds): use 0.001 to 60 seconds of CPU time per burst (default 0.5)")
        }
        guard cpu >= 0, cpu < Self.onlineCPUs else {
            throw .badInput("--cpu \(cpu): this machine has CPUs 0-\(Self.onlineCPUs - 1)")
        }
    }

    /// bpfnet needs 4 link rules per link (forward, reverse, two fragment
    /// pairs) in bn_links, and one bn_containers entry per container.
    func checkMapCapacity() throws(BenchError) {
        let workload = self.workload
        let maxN = links.max() ?? 0
        let ruleCapacity = Int(BPFNET_MAX_LINK_RULES)
        let largestN = ruleCapacity / BenchWorkload.linkRulesPerLink - flows
        if workload.linkRules(forLinks: maxN) > ruleCapacity {
            throw .badInput(
                "--links \(maxN): bpfnet's link map holds \(ruleCapacity) rules (BPFNET_MAX_LINK_RULES) "
                    + "and each link with one exposed port needs \(BenchWorkload.linkRulesPerLink), so with \(flows) "
                    + "flow\(flows == 1 ? "" : "s") N can be at most \(largestN)")
        }
        let containerCapacity = Int(BPFNET_MAX_CONTAINERS)
        if workload.containerCount > containerCapacity {
            throw .badInput(
                "--links \(maxN) --flows \(flows) needs \(workload.containerCount) containers but "
                    + "bpfnet's container map holds \(containerCapacity) (BPFNET_MAX_CONTAINERS)")
        }
    }

    func checkTools() throws(BenchError) {
        var needed: [(tool: String, why: String)] = [
            ("ip", "iproute2 builds the namespaces"), ("nsenter", "runs commands inside them (util-linux)"),
        ]
        needed.append(("ethtool", "turns GRO on at the sender's bridge port, without which live frames vanish"))
        for variant in variants {
            for tool in variant.tools { needed.append((tool, "the \(variant.name) variant")) }
        }
        var missing: [String] = []
        for (tool, why) in needed where ProcessRunner.locate(tool) == nil {
            let entry = "\(tool) (\(why))"
            if !missing.contains(entry) { missing.append(entry) }
        }
        if !missing.isEmpty {
            throw .badInput(
                "missing tool\(missing.count == 1 ? "" : "s"): \(missing.joined(separator: "; ")) — "
                    + "install iproute2, util-linux, ethtool, iptables and nftables (scripts/setup.sh does), "
                    + "or leave the variant out with --variants")
        }
        if variants.contains(where: \.bridgeNetfilter),
            access("/proc/sys/net/bridge/bridge-nf-call-iptables", F_OK) != 0
        {
            throw .badInput(
                "the docker-iptables variants need br_netfilter (Docker loads it for --icc=false); "
                    + "it is not loaded: modprobe br_netfilter, or leave them out with --variants")
        }
    }
}
