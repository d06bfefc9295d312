// SPDX-License-Identifier: Apache-2.0
//
// What the agent checks about the daemon on every (re)connect: settings of
// Docker's that bpfnet ignores or that let other rules police the bridge next
// to bpfnet. None stops the agent; each is logged once per process.

import BPFNetCore
import DockerWatcher

enum DaemonChecks {
    /// The warnings for what the daemon and the host say, in a fixed order.
    /// - Parameters:
    ///   - settings: the policy settings, the bridge already Docker's.
    ///   - info: `GET /info`, nil when it could not be read.
    ///   - firewallTraces: signs of Docker's own iptables or nftables rules (`AgentHost.dockerFirewallTraces`).
    ///   - bridgeAddress: the bridge interface's address, asked only when Docker reports a subnet.
    static func warnings(
        network: DockerBridgeNetwork, settings: Policy, info: DockerDaemonInfo?,
        firewallTraces traces: [String],
        bridgeAddress: @autoclosure () -> IPv4InterfaceAddress?
    ) -> [String] {
        var warnings: [String] = []
        if !network.iccEnabled {
            warnings.append(
                "Docker's default bridge has enable_icc=false (dockerd --icc=false). bpfnet ignores "
                    + "Docker's setting — bpfnet's own icc (\(settings.icc)) decides — and dockerd accepts --icc=false "
                    + "only with --iptables=true, so Docker's iptables rules police this bridge as well: run dockerd "
                    + "with --iptables=false")
        }
        if !traces.isEmpty {
            warnings.append(
                "\(traces.joined(separator: "; ")): dockerd runs (or ran) with --iptables=true, and its "
                    + "rules (FORWARD policy, icc, links) police container traffic next to bpfnet. Run dockerd with "
                    + "--iptables=false so that bpfnet alone decides")
        }
        if info?.bridgeNfIptables == true {
            warnings.append(
                "the daemon reports BridgeNfIptables (net.bridge.bridge-nf-call-iptables=1): bridged "
                    + "container traffic also passes netfilter's FORWARD hook, so any iptables/nftables forward rules on "
                    + "this host (Docker's included" + (traces.isEmpty ? ", none found now" : "")
                    + ") decide as well as bpfnet")
        }
        if let subnet = network.subnet, let address = bridgeAddress(), address.network != subnet {
            warnings.append(
                "Docker's default bridge subnet is \(subnet) (GET /networks/bridge) but \(settings.bridge) "
                    + "has \(address); bpfnet uses the interface's address")
        }
        return warnings
    }
}

/// One docker-proxy process: Docker's userland proxy for one published port
/// (dockerd `--userland-proxy=true`, the default).
public struct DockerProxy: Hashable, Sendable, CustomStringConvertible {
    public var proto: String
    public var hostIP: String
    public var hostPort: Int
    public var containerIP: String
    public var containerPort: Int

    public init(proto: String, hostIP: String, hostPort: Int, containerIP: String, containerPort: Int) {
        self.proto = proto
        self.hostIP = hostIP
        self.hostPort = hostPort
        self.containerIP = containerIP
        self.containerPort = containerPort
    }

    /// Parses a docker-proxy command line (`docker-proxy -proto tcp -host-ip
    /// 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80`);
    /// nil for any other process or an incomplete one.
    public init?(arguments: [String]) {
        guard let program = arguments.first, program.split(separator: "/").last == "docker-proxy" else { return nil }
        var options: [String: String] = [:]
        var index = 1
        while index + 1 < arguments.count {
            if arguments[index].hasPrefix("-") {
                options[String(arguments[index].drop { $0 == "-" })] = arguments[index + 1]
                index += 2
            } else {
                index += 1
            }
        }
        guard let proto = options["proto"], let hostIP = options["host-ip"],
            let hostPort = options["host-port"].flatMap({ Int($0) }), let containerIP = options["container-ip"],
            let containerPort = options["container-port"].flatMap({ Int($0) })
        else { return nil }
        self.init(
            proto: proto, hostIP: hostIP, hostPort: hostPort, containerIP: containerIP, containerPort: containerPort)
    }

    public var description: String { "\(hostIP):\(hostPort)→\(containerIP):\(containerPort)/\(proto)" }
}

extension DaemonChecks {
    /// The warning for Docker's userland proxy, nil when no docker-proxy
    /// process forwards to a container; names at most five of them.
    static func proxyWarning(_ proxies: [DockerProxy]) -> String? {
        guard !proxies.isEmpty else { return nil }
        let sorted = proxies.map(\.description).sorted()
        let shown = sorted.prefix(5).joined(separator: ", ") + (sorted.count > 5 ? ", …" : "")
        return
            "dockerd runs its userland proxy (--userland-proxy=true, the default): \(proxies.count) docker-proxy "
            + "processes listen on published ports (\(shown)). A connection the proxy carries reaches the container "
            + "from the bridge's own address: the container sees the host as its client, and a container that "
            + "connects to a host address's published port reaches another container (on any network) whatever "
            + "icc says, as with Docker's own rules. Clients from outside are still checked against the allow-list "
            + "on the external interface before the proxy. Run dockerd with --userland-proxy=false so that "
            + "bpfnet's DNAT is the only path and containers see their clients' addresses"
    }

    /// The warning for a kernel without BTF, nil when it has it.
    static func btfWarning(hasKernelBTF: Bool) -> String? {
        hasKernelBTF
            ? nil
            : "the kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing): the eBPF programs call the "
                + "conntrack kfuncs, which need it, so `--backend auto` falls back to netfilter (`bpfnet status` "
                + "says which backend runs and why)"
    }
}
