// SPDX-License-Identifier: Apache-2.0
//
// Docker's two-host example (docs/policy.md, "Peers") in network namespaces,
// each host running its own bpfnet with its own pin path:
//
//   c1 172.17.0.2 ─ docker0 ─ host1 ─ uplink 192.168.7.1 ── r1 ══ r2 ── 192.168.8.1 uplink ─ host2 ─ docker0 ─ c2 172.18.0.2
//                              │                                                                          └ c3 172.18.0.3
//                              └ ext1 203.0.113.1 ── outside 203.0.113.66 (not a peer)
//
// r1 and r2 route between the hosts. A third host (host3: uplink 10.9.0.1,
// router r3, docker0 10.19.0.0/16 with c4 10.19.0.2) joins when asked for;
// every two routers then have a link of their own. The hosts know only the
// way to each other's uplink subnet; with `routingContainerSubnets` they also
// route the others' container subnets (as Docker's example has the operator
// do), otherwise bpfnet does it (`routes: true`). `bpfnet demo --hosts 2`
// shows the two-host matrix; PeersEndToEndTests probes the same hosts.

import BPFNetCore
import Foundation
import LinuxNet
import NetLab

/// Docker-like hosts that are each other's peers (two, or three), and an outside host.
public final class PeerHostsLab {
    /// One of the hosts: its namespaces and its bpfnet.
    public struct Host: Sendable {
        public let name: String
        public let topology: Topology
        public let bpfnet: String
        public let pinPath: String
        let directory: String

        /// Runs `bpfnet ARGS --pin-path PIN` in the host namespace; its stdout.
        @discardableResult
        public func bpfnet(_ arguments: [String]) throws -> String {
            try topology.run(
                in: TopologySpec.hostRole, [bpfnet] + arguments + ["--pin-path", pinPath], timeout: .seconds(60)
            ).stdout
        }

        /// Writes `yaml` and runs `bpfnet load --backend BACKEND` with it; returns what it logged.
        @discardableResult
        public func load(_ yaml: String, backend: String = "bpf") throws -> String {
            let file = directory + "/policy.yaml"
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            return try topology.run(
                in: TopologySpec.hostRole,
                [bpfnet, "load", "--backend", backend, "--config", file, "--pin-path", pinPath],
                timeout: .seconds(60)
            ).stderr
        }

        /// `bpfnet status --json`, decoded.
        public func status() throws -> DataplaneStatus {
            try JSONDecoder().decode(DataplaneStatus.self, from: Data(try bpfnet(["status", "--json"]).utf8))
        }

        /// bpfnet's routes in the host's main table, as `ip route` prints them.
        public func bpfnetRoutes() throws -> [String] {
            try topology.run(in: TopologySpec.hostRole, ["ip", "route", "show", "proto", "191"]).stdout
                .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        }
    }

    public static let tcpPort: UInt16 = 8000
    public static let udpPort: UInt16 = 5300
    public static let c1 = IPv4Address(172, 17, 0, 2)
    public static let c2 = IPv4Address(172, 18, 0, 2)
    public static let c3 = IPv4Address(172, 18, 0, 3)
    public static let c4 = IPv4Address(10, 19, 0, 2)
    public static let outside = IPv4Address(203, 0, 113, 66)
    /// Where host1's containers appear outside (masquerade).
    public static let host1Outside = IPv4Address(203, 0, 113, 1)
    /// An address of host2's container subnet the outside host claims.
    public static let spoofedPeerSource = IPv4Address(172, 18, 0, 66)

    /// How one host is built: its uplink (the router in front of it holds
    /// `.254` of the same /24), its docker0 subnet and containers.
    struct Plan {
        var name: String
        var uplink: String
        var router: String
        var containerSubnet: String
        var bridge: String
        var containers: [(String, IPv4Address)]

        var uplinkSubnet: String { IPv4InterfaceAddress(uplink)!.network.description }
        var address: String { String(uplink.prefix { $0 != "/" }) }
        var routerRole: String { "r" + name.dropFirst("host".count) }
    }

    static let plans = [
        Plan(
            name: "host1", uplink: "192.168.7.1/24", router: "192.168.7.254", containerSubnet: "172.17.0.0/16",
            bridge: "172.17.0.1/16", containers: [("c1", c1)]),
        Plan(
            name: "host2", uplink: "192.168.8.1/24", router: "192.168.8.254", containerSubnet: "172.18.0.0/16",
            bridge: "172.18.0.1/16", containers: [("c2", c2), ("c3", c3)]),
        Plan(
            name: "host3", uplink: "10.9.0.1/24", router: "10.9.0.254", containerSubnet: "10.19.0.0/16",
            bridge: "10.19.0.1/16", containers: [("c4", c4)]),
    ]

    public let hosts: [Host]
    public var host1: Host { hosts[0] }
    public var host2: Host { hosts[1] }
    public var host3: Host { hosts[2] }
    public let probeRunner: ProbeRunner
    private var closed = false

    /// Builds `hostCount` hosts (2 or 3), links their routers pairwise,
    /// routes, and starts servers (TCP `tcpPort`, UDP `udpPort`) in every
    /// container and the outside host (on host1's ext1).
    public init(hostCount: Int = 2, bpfnet: String? = nil, routingContainerSubnets: Bool = false) throws {
        precondition(hostCount == 2 || hostCount == 3, "two or three hosts")
        let binary = try bpfnet ?? DemoLab.locateBPFNet()
        probeRunner = try ProbeRunner()
        // rp_filter off, so that what drops a spoofed source is bpfnet and not the kernel.
        let sysctls = ["net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"]
        var made: [Host] = []
        do {
            for plan in Self.plans.prefix(hostCount) {
                var externals = [
                    ExternalSpec(
                        name: plan.routerRole, hostInterface: "uplink", hostAddress: IPv4InterfaceAddress(plan.uplink)!,
                        addresses: [IPv4InterfaceAddress(plan.router + "/24")!])
                ]
                if plan.name == "host1" {
                    externals.append(
                        ExternalSpec(
                            name: "outside", hostInterface: "ext1",
                            hostAddress: IPv4InterfaceAddress("203.0.113.1/24")!,
                            addresses: [IPv4InterfaceAddress("203.0.113.66/24")!]))
                }
                made.append(
                    try Self.makeHost(
                        plan.name,
                        TopologySpec(
                            bridge: BridgeSpec(address: IPv4InterfaceAddress(plan.bridge)!),
                            containers: plan.containers.map { ContainerSpec(name: $0.0, address: $0.1) },
                            externals: externals, hostSysctls: sysctls), bpfnet: binary))
            }
        } catch {
            made.forEach(Self.remove)
            throw error
        }
        hosts = made
        do {
            try connect(routingContainerSubnets: routingContainerSubnets)
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    private static func makeHost(_ name: String, _ spec: TopologySpec, bpfnet: String) throws -> Host {
        var template = Array("/tmp/bpfnet-\(name)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw NetLabError.invalidSpec(
                "cannot create a temporary directory under /tmp: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        do {
            let topology = try Topology.build(spec)
            return Host(
                name: name, topology: topology, bpfnet: bpfnet, pinPath: directory + "/pins", directory: directory)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    /// A link between every two routers, the routes of Docker's example, the servers.
    private func connect(routingContainerSubnets: Bool) throws {
        let plans = Array(Self.plans.prefix(hosts.count))
        for router in plans.map(\.routerRole) {
            let topology = hosts.first { $0.name == "host" + router.dropFirst() }!.topology
            try topology.run(in: router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            // The wire: frames reach the host with complete checksums, as off a
            // real NIC (a veth would pass a forwarded skb's partial checksum
            // on, and the ext fast path leaves such an interface alone).
            try topology.run(in: router, ["ethtool", "-K", "eth0", "tx", "off"])
        }
        var pair = 0
        for i in hosts.indices {
            for j in hosts.indices where j > i {
                // r_i's "to-r_j" and r_j's "to-r_i", 10.77.0.(4·pair + 1 and 2)/30.
                let (near, far) = (hosts[i].topology, hosts[j].topology)
                let (nearRouter, farRouter) = (plans[i].routerRole, plans[j].routerRole)
                let nearAddress = "10.77.0.\(4 * pair + 1)"
                let farAddress = "10.77.0.\(4 * pair + 2)"
                pair += 1
                try near.run(
                    in: nearRouter,
                    [
                        "ip", "link", "add", "to-\(farRouter)", "type", "veth", "peer", "name", "to-\(nearRouter)",
                        "netns", far.namespace(farRouter).name,
                    ])
                for (topology, router, other, address, otherAddress, otherPlan) in [
                    (near, nearRouter, farRouter, nearAddress, farAddress, plans[j]),
                    (far, farRouter, nearRouter, farAddress, nearAddress, plans[i]),
                ] {
                    try topology.run(in: router, ["ip", "addr", "add", address + "/30", "dev", "to-\(other)"])
                    try topology.run(in: router, ["ip", "link", "set", "to-\(other)", "up"])
                    for destination in [otherPlan.uplinkSubnet, otherPlan.containerSubnet] {
                        try topology.run(in: router, ["ip", "route", "add", destination, "via", otherAddress])
                    }
                }
            }
        }
        for (host, plan) in zip(hosts, plans) {
            for other in plans where other.name != plan.name {
                try host.topology.run(in: "host", ["ip", "route", "add", other.uplinkSubnet, "via", plan.router])
                if routingContainerSubnets {
                    try host.topology.run(
                        in: "host", ["ip", "route", "add", other.containerSubnet, "via", plan.router])
                }
            }
        }
        // The outside host claims an address of host2's container subnet too;
        // host1 routes that one address back to it, so that what stops its
        // traffic is bpfnet, not replies going astray to host2.
        try host1.topology.run(in: "outside", ["ip", "addr", "add", "\(Self.spoofedPeerSource)/32", "dev", "eth0"])
        try host1.topology.run(
            in: "host", ["ip", "route", "add", "\(Self.spoofedPeerSource)/32", "via", "\(Self.outside)"])
        try host1.topology.startServer(in: "outside", tcp: [Self.tcpPort], udp: [Self.udpPort], probe: probeRunner)
        for (host, plan) in zip(hosts, plans) {
            for (container, _) in plan.containers {
                try host.topology.startServer(
                    in: container, tcp: [Self.tcpPort], udp: [Self.udpPort], probe: probeRunner)
            }
        }
    }

    /// The `peers:` entry of a host's policy.
    public enum PeerEntry: Sendable {
        /// The lab's other hosts, with their container subnets, but those named.
        case otherHosts(except: Set<String> = [])
        /// No peers.
        case none
        /// Name, address and subnets ("172.18.0.0/16, 10.99.0.0/24").
        case custom(String, String, String)
    }

    /// One host's policy: docker0 with its containers, its uplink (and
    /// host1's ext1), its peers (`routes: true` unless told otherwise).
    public static func policy(
        for host: String, icc: Bool = true, peerPolicy: PeerPolicy = .icc, routes: Bool = true,
        peer: PeerEntry = .otherHosts(), hostCount: Int = 2, fastPath: Bool = true
    ) -> String {
        let plan = plans.first { $0.name == host }!
        let ext = host == "host1" ? ["uplink", "ext1"] : ["uplink"]
        var yaml = "bridge: docker0\nicc: \(icc)\nforwardPolicy: drop\npeerPolicy: \(peerPolicy.rawValue)\n"
        yaml += "fastPath: \(fastPath)\n"
        yaml += "extInterfaces: [\(ext.joined(separator: ", "))]\ncontainers:\n"
        for (name, address) in plan.containers {
            yaml +=
                "  - {name: \(name), ip: \(address), mac: \"\(MACAddress(dockerStyleFor: address))\", port: veth\(name)}\n"
        }
        let entries: [(String, String, String)] =
            switch peer {
            case .otherHosts(let except):
                plans.prefix(hostCount).filter { $0.name != host && !except.contains($0.name) }.map {
                    ($0.name, $0.address, $0.containerSubnet)
                }
            case .none: []
            case .custom(let name, let address, let subnets): [(name, address, subnets)]
            }
        if !entries.isEmpty { yaml += "peers:\n" }
        for (name, address, subnets) in entries {
            yaml += "  - {name: \(name), address: \(address), subnets: [\(subnets)], routes: \(routes)}\n"
        }
        return yaml
    }

    /// A probe from `from` (a role of `host`'s topology) to `address`.
    public func probe(
        on host: Host, from: String, to address: IPv4Address, _ kind: Probe.Kind, source: IPv4Address? = nil,
        label: String
    ) throws -> Probe {
        try host.topology.probe(from: from, to: address, kind, sourceAddress: source, label: label)
    }

    /// Unloads every host (best effort) and removes every namespace, mount and file made.
    public func close() {
        guard !closed else { return }
        closed = true
        hosts.forEach(Self.remove)
    }

    private static func remove(_ host: Host) {
        _ = try? host.bpfnet(["unload"])
        _ = try? ProcessRunner.run(Command(["umount", "-l", host.pinPath], timeout: .seconds(10)))
        _ = host.topology.teardown()
        try? FileManager.default.removeItem(atPath: host.directory)
    }
}
