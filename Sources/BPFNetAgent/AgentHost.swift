// SPDX-License-Identifier: Apache-2.0
//
// What the agent asks of the host it runs on (the network namespace that
// holds Docker's bridge): does an interface exist, what address has the
// bridge, and are there traces of Docker's own firewall rules. A protocol so
// the agent's tests can run without root or interfaces.

import BPFNetCore
import BPFNetDataplane
import Foundation
import LinuxNet

public protocol AgentHost: Sendable {
    /// Which of `names` are interfaces that exist right now (asked once per
    /// policy build, for every tracked container's port).
    func existingInterfaces(among names: [String]) -> Set<String>
    /// The first IPv4 address of `interface` with its prefix.
    func ipv4Address(of interface: String) -> IPv4InterfaceAddress?
    /// Signs that dockerd programs the firewall here (it runs, or ran, with
    /// `--iptables=true`): its chains would police container traffic next to
    /// bpfnet. Empty when there are none (or they cannot be looked at).
    func dockerFirewallTraces() -> [String]
}

/// The host the process runs in.
public struct SystemAgentHost: AgentHost {
    public init() {}

    public func existingInterfaces(among names: [String]) -> Set<String> {
        HostSystem.existingInterfaces(among: names)
    }

    public func ipv4Address(of interface: String) -> IPv4InterfaceAddress? {
        HostSystem.ipv4Address(of: interface).flatMap {
            IPv4InterfaceAddress(address: $0.address, prefixLength: $0.prefix.prefixLength)
        }
    }

    /// Docker's iptables chains (20.10–29 iptables backend) and its nftables
    /// table (29's nftables backend) in this network namespace.
    public func dockerFirewallTraces() -> [String] {
        var traces: [String] = []
        if let result = try? ProcessRunner.run(Command(["iptables-save"], timeout: .seconds(10))), result.succeeded {
            let chains = result.stdout.split(separator: "\n")
                .filter { $0.hasPrefix(":DOCKER") }
                .compactMap { $0.dropFirst().split(separator: " ").first.map(String.init) }
            if !chains.isEmpty {
                traces.append("iptables has Docker's chains (\(Array(Set(chains)).sorted().joined(separator: ", ")))")
            }
        }
        if let result = try? ProcessRunner.run(Command(["nft", "list", "tables"], timeout: .seconds(10))),
            result.succeeded,
            result.stdout.contains("docker-bridges")
        {
            traces.append("nftables has Docker's table docker-bridges")
        }
        return traces
    }
}
