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
