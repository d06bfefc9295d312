// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet bench --profile cross-host` (docs/bench.md, "Cross-host"): Docker's
// two-host example, a container on host1 sending to a container on host2
// through both hosts' stacks, three ways:
//
//   host1 ns: docker0 172.17.0.1/16 ── sender 172.17.0.2 (live frames)
//             uplink 192.168.7.1 ═══ shared link ═══ uplink 192.168.7.2 :host2 ns
//   host2 ns: docker0 172.18.0.1/16 ── receiver 172.18.0.2 (the sink)
//
// Each host routes the other's container subnet via the other's uplink.
//
// - `bridge`: routing alone, no filter, no NAT (the reference);
// - `docker-forward-accept`: what Docker's documentation tells the operator
//   to do: dockerd 20.10's rules on both hosts (icc on), FORWARD policy
//   ACCEPT, br_netfilter on, and Docker's masquerade of 172.17.0.0/16 on
//   host1 (conntrack NAT on the first packet of each flow);
// - `bpfnet-peers` / `bpfnet-peers-fastpath`: bpfnet on both hosts, each the
//   other's peer, fast path off / on (docs/verdicts.md, "Cross-host").
//
// The shared link carries complete checksums (tx offload off at both ends, as
// a wire does) so that the ext fast path may take its frames; every variant
// runs on the same link.

import BPFNetCore
import BPFNetDataplane
import BPFNetTestSupport
import Foundation
import LinuxNet
import Logging
import NetLab
import SystemPackage

enum CrossHostWorkload {
    struct HostPlan {
        var name: String
        var bridge: IPv4InterfaceAddress
        var uplink: IPv4InterfaceAddress
        var uplinkMAC: MACAddress
        var container: (name: String, ip: IPv4Address)
    }

    static let host1 = HostPlan(
        name: "host1", bridge: IPv4InterfaceAddress("172.17.0.1/16")!,
        uplink: IPv4InterfaceAddress("192.168.7.1/24")!, uplinkMAC: MACAddress(0x02, 0, 0xc0, 0xa8, 0x07, 0x01),
        container: (BenchWorkload.senderName, IPv4Address(172, 17, 0, 2)))
    static let host2 = HostPlan(
        name: "host2", bridge: IPv4InterfaceAddress("172.18.0.1/16")!,
        uplink: IPv4InterfaceAddress("192.168.7.2/24")!, uplinkMAC: MACAddress(0x02, 0, 0xc0, 0xa8, 0x07, 0x02),
        container: (BenchWorkload.receiverName, IPv4Address(172, 18, 0, 2)))
    static let uplink = "uplink"
    /// A source on host1's subnet that is not the sender's: bpfnet's port
    /// program drops it (spoofed); routing and Docker deliver it.
    static let strangerIP = IPv4Address(172, 17, 255, 254)

    static func topologySpec(_ plan: HostPlan, bridgeNetfilter: Bool) -> TopologySpec {
        TopologySpec(
            bridge: BridgeSpec(name: BenchWorkload.bridgeName, address: plan.bridge),
            containers: [
                // GRO at the sender's bridge port: NAPI, without which live frames vanish.
                ContainerSpec(name: plan.container.name, address: plan.container.ip, hostSideGRO: true)
            ],
            ipForward: true, disableIPv6: true, bridgeNetfilter: bridgeNetfilter, staticNeighbours: true)
    }

    /// The shared link between the two host namespaces, addresses, static
    /// neighbours, routes to each other's container subnet, and complete
    /// checksums on the wire.
    static func connect(_ one: Topology, _ two: Topology) throws {
        let twoName = two.namespace(TopologySpec.hostRole).name
        try one.run(
            in: TopologySpec.hostRole,
            ["ip", "link", "add", uplink, "type", "veth", "peer", "name", uplink, "netns", twoName])
        for (topology, plan, other) in [(one, host1, host2), (two, host2, host1)] {
            try topology.ip(
                in: TopologySpec.hostRole,
                [
                    "link set \(uplink) address \(plan.uplinkMAC)",
                    "addr add \(plan.uplink) dev \(uplink)",
                    "link set \(uplink) up",
                    "neigh replace \(other.uplink.address) lladdr \(other.uplinkMAC) dev \(uplink) nud permanent",
                    "route add \(other.bridge.network) via \(other.uplink.address)",
                ])
            try topology.run(in: TopologySpec.hostRole, ["ethtool", "-K", uplink, "tx", "off"])
        }
    }

    /// A 60-byte UDP frame from the sender (or `source`) to the receiver,
    /// addressed to host1's bridge: routed, as a container's traffic to
    /// another host is.
    static func frame(from source: IPv4Address = host1.container.ip) -> [UInt8] {
        let payloadBytes = BenchWorkload.packetBytes - 14 - 20 - 8
        let frame = PacketBuilder.udpFrame(
            from: Endpoint(mac: MACAddress(dockerStyleFor: host1.container.ip), ip: source),
            to: Endpoint(mac: MACAddress(dockerStyleFor: host1.bridge.address), ip: host2.container.ip),
            sourcePort: BenchWorkload.firstSourcePort, destinationPort: BenchWorkload.receiverPort,
            payload: Array(repeating: 0x62, count: payloadBytes))
        precondition(frame.count == BenchWorkload.packetBytes)
        return frame
    }

    /// bpfnet's policy on `plan`'s host: its container, the uplink as ext
    /// interface, the other host as its peer.
    static func policy(_ plan: HostPlan, fastPath: Bool) -> Policy {
        let other = plan.name == host1.name ? host2 : host1
        return Policy(
            bridge: BenchWorkload.bridgeName, icc: true, forwardPolicy: .drop,
            extInterfaces: [ExternalInterface(name: uplink)],
            containers: [container(plan)], fastPath: fastPath,
            peers: [Peer(name: other.name, address: other.uplink.address, subnets: [other.bridge.network])])
    }

    /// dockerd 20.10's iptables on `plan`'s host (icc on, its default) with
    /// the FORWARD policy ACCEPT that Docker's two-host example asks for.
    static func dockerRules(_ plan: HostPlan) -> String {
        Docker2010Rules.render(
            Policy(bridge: BenchWorkload.bridgeName, icc: true, forwardPolicy: .accept, containers: [container(plan)]),
            subnets: [BenchWorkload.bridgeName: plan.bridge.network])
    }

    private static func container(_ plan: HostPlan) -> Container {
        Container(
            name: plan.container.name, ip: plan.container.ip, mac: MACAddress(dockerStyleFor: plan.container.ip),
            port: "veth" + plan.container.name)
    }
}

/// Docker's rules with FORWARD ACCEPT on both hosts, via iptables-nft.
final class CrossHostDockerFilter: VariantFilter {
    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        for (topology, plan) in host.crossHostTopologies {
            do {
                try topology.run(
                    in: TopologySpec.hostRole, ["iptables-nft-restore"], input: CrossHostWorkload.dockerRules(plan))
            } catch {
                throw BenchError.runtime(
                    "\(host.variant.name): loading Docker's rules on \(plan.name) failed: \(error)")
            }
        }
    }

    func tearDown(on host: BenchHost) {}
}

/// bpfnet (eBPF, tc port hook) on both hosts, each with its own pin path.
final class CrossHostBPFNetFilter: VariantFilter {
    let fastPath: Bool
    private var dataplanes: [BPFDataplane] = []
    private var pinPaths: [FilePath] = []

    init(fastPath: Bool) { self.fastPath = fastPath }

    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        guard dataplanes.isEmpty else { return }  // the policy does not depend on N
        let quiet = Logger(label: "bpfnet.bench") { _ in SwiftLogNoOpLogHandler() }
        for (topology, plan) in host.crossHostTopologies {
            let path = FilePath(host.workDirectory).appending("pins-\(host.variant.name)-\(plan.name)")
            BenchSafetyNet.register(mount: path)
            pinPaths.append(path)
            let dataplane = BPFDataplane(pinPath: path, logger: quiet)
            dataplanes.append(dataplane)
            do {
                let namespace = try NetworkNamespace(path: topology.namespace(TopologySpec.hostRole).path)
                try namespace.run { try dataplane.apply(CrossHostWorkload.policy(plan, fastPath: fastPath)) }
            } catch {
                throw BenchError.runtime(
                    "\(host.variant.name): applying bpfnet's policy on \(plan.name) failed: \(error)")
            }
        }
    }

    func tearDown(on host: BenchHost) {
        dataplanes = []
        for path in pinPaths { BenchSafetyNet.unmount(path) }
        pinPaths = []
    }
}

extension BenchVariant {
    /// The variants of `--profile cross-host`; `bridge` is the reference there too.
    public static let crossHost: [BenchVariant] = [
        .bridge,
        BenchVariant(
            name: "docker-forward-accept",
            summary: "cross-host: Docker's rules (icc on) with FORWARD ACCEPT and its masquerade, iptables-nft, "
                + "br_netfilter on, on both hosts",
            bridgeNetfilter: true, tools: ["iptables-nft-restore"], enforcesPolicy: false
        ) { CrossHostDockerFilter() },
        BenchVariant(
            name: "bpfnet-peers", summary: "cross-host: bpfnet on both hosts, each the other's peer, fast path off",
            tools: ["nft"]
        ) { CrossHostBPFNetFilter(fastPath: false) },
        BenchVariant(
            name: "bpfnet-peers-fastpath",
            summary: "cross-host: bpfnet on both hosts, each the other's peer, cross-host fast path on",
            tools: ["nft"]
        ) { CrossHostBPFNetFilter(fastPath: true) },
    ]
}
