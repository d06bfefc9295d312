// SPDX-License-Identifier: Apache-2.0
//
// Options shared by several subcommands (docs/cli.md, "Common options").

import ArgumentParser
import BPFNetCore
import BPFNetDataplane
import SystemPackage

extension IPv4CIDR: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension SourcePrefix: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension ForwardPolicy: ExpressibleByArgument {}
extension PortHook: ExpressibleByArgument {}
extension NATMode: ExpressibleByArgument {}

/// `--fast-path on|off`.
enum Switch: String, CaseIterable, ExpressibleByArgument {
    case on, off
    var isOn: Bool { self == .on }
}

/// `--backend`: where the policy goes.
enum BackendChoice: String, CaseIterable, ExpressibleByArgument {
    /// eBPF, else the fallback, saying why.
    case auto
    case bpf
    case nftables
    case iptables
}

/// The policy options that override the policy file.
struct PolicyOptions: ParsableArguments {
    @Option(help: "The bridge the containers hang off (default from the file, else docker0).")
    var bridge: String?

    @Option(name: .customLong("ext-if"), help: "An external interface (repeatable); replaces the file's list.")
    var extInterfaces: [String] = []

    @Option(
        help: ArgumentHelp("Inter-container communication: true (Docker's default) or false.", valueName: "true|false"))
    var icc: Bool?

    @Option(
        name: .customLong("allow-source"),
        help: ArgumentHelp(
            "A source CIDR, IPv4 or IPv6, admitted on every external interface (repeatable).", valueName: "CIDR"))
    var allowSources: [SourcePrefix] = []

    @Option(
        name: .customLong("forward-policy"),
        help: ArgumentHelp(
            "Traffic routed straight at container addresses: drop (default) or accept.",
            valueName: "drop|accept"))
    var forwardPolicy: ForwardPolicy?

    @Option(
        name: .customLong("ip-forward"),
        help: ArgumentHelp("Turn net.ipv4.ip_forward on at load (default true).", valueName: "true|false"))
    var ipForward: Bool?

    @Option(
        name: .customLong("port-hook"),
        help: ArgumentHelp("Where the port program runs on bridge ports: tc (default) or xdp.", valueName: "tc|xdp"))
    var portHook: PortHook?

    @Option(
        name: .customLong("fast-path"),
        help: ArgumentHelp(
            "Deliver allowed traffic around the bridge and routed traffic around the host's stack "
                + "where possible: on (default) or off. Verdicts are the same either way.",
            valueName: "on|off"))
    var fastPath: Switch?

    @Option(
        name: .customLong("nat"),
        help: ArgumentHelp(
            "Who translates published ports: ebpf (the XDP program translates and delivers new connections itself; "
                + "netfilter's DNAT stays for what it leaves to the stack), netfilter, or auto (default: ebpf on the "
                + "eBPF backend with port hook tc and the fast path on, netfilter otherwise; docs/nat.md).",
            valueName: "auto|ebpf|netfilter"))
    var nat: NATMode?

    var overrides: PolicyOverrides {
        PolicyOverrides(
            bridge: bridge, icc: icc, ipForward: ipForward, forwardPolicy: forwardPolicy,
            portHook: portHook, extInterfaces: extInterfaces.isEmpty ? nil : extInterfaces,
            allowSources: allowSources.isEmpty ? nil : allowSources, fastPath: fastPath?.isOn, nat: nat)
    }
}

/// `--pin-path`: where the eBPF maps are pinned (and the agent's files live).
struct PinPathOption: ParsableArguments {
    @Option(name: .customLong("pin-path"), help: ArgumentHelp("Where the eBPF maps are pinned.", valueName: "DIR"))
    var pinPath: String = BPFDataplane.defaultPinPath.string

    func validate() throws {
        guard pinPath.hasPrefix("/") else {
            throw ValidationError(
                "--pin-path '\(pinPath)' must be an absolute directory path (e.g. /sys/fs/bpf/bpfnet)")
        }
    }
}

/// Which backend, and where its state lives.
struct DataplaneOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "auto (eBPF, else a netfilter fallback), bpf, nftables or iptables.",
            valueName: "auto|bpf|nftables|iptables"))
    var backend: BackendChoice = .auto

    @OptionGroup var pins: PinPathOption
    var pinPath: String { pins.pinPath }

    /// The dataplane to load into. `auto` tries eBPF and falls back to
    /// nftables, then iptables, recording why (shown by `status`).
    /// `BPFNET_IPTABLES=legacy|nft` picks the iptables binaries.
    func makeDataplane() throws -> Dataplane {
        let pins = FilePath(pinPath)
        switch backend {
        case .auto: return AutoDataplane(pinPath: pins)
        case .bpf: return BPFDataplane(pinPath: pins)
        case .nftables: return NFTablesDataplane(pinPath: pins)
        case .iptables: return IPTablesDataplane(pinPath: pins)
        }
    }

    /// The dataplane to read or unload: with `auto`, whichever backend is
    /// loaded (eBPF pins, bpfnet's nft filter table, bpfnet's iptables chains).
    func loadedDataplane() throws -> Dataplane {
        let pins = FilePath(pinPath)
        switch backend {
        case .auto: return try LoadedDataplaneFinder.loaded(pinPath: pins)
        case .iptables: return IPTablesDataplane(variant: LoadedBackends.iptablesVariant(), pinPath: pins)
        case .bpf, .nftables: return try makeDataplane()
        }
    }

    /// `unload`: with `auto`, every backend found; else the one named.
    func unload() throws {
        // Whatever the backend: an agent would put back what this removes.
        try AgentFiles(pinPath: FilePath(pinPath)).refuseUnloadWhileAgentRuns("unload")
        switch backend {
        case .auto: try LoadedDataplaneFinder.unloadAll(pinPath: FilePath(pinPath))
        default:
            try loadedDataplane().unload()
            try LoadedDataplaneFinder.removePeerRoutes()
        }
        AgentFiles(pinPath: FilePath(pinPath)).removeState()
    }
}
