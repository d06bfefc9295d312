// SPDX-License-Identifier: Apache-2.0
//
// Docker's two-host example (docs/policy.md, "Peers") in network namespaces,
// each host running its own bpfnet with its own pin path:
//
//   c1 172.17.0.2 ─ docker0 ─ host1 ─ uplink 192.168.7.1 ── r1 ══ r2 ── 192.168.8.1 uplink ─ host2 ─ docker0 ─ c2 172.18.0.2
//                              │                                                                          └ c3 172.18.0.3
//                              └ ext1 203.0.113.1 ── outside 203.0.113.66 (not a peer)
//
// r1 and r2 route between the hosts. The hosts know only the way to each
// other's uplink subnet; with `routingContainerSubnets` they also route the
// other's container subnet (as Docker's example has the operator do),
// otherwise bpfnet does it (`routes: true`). `bpfnet demo --hosts 2` shows
// the matrix; PeersEndToEndTests probes the same hosts.

import BPFNetCore
import Foundation
import LinuxNet
import NetLab

/// Two Docker-like hosts that are each other's peers, and an outside host.
public final class TwoHostLab {
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

        /// Writes `yaml` and runs `bpfnet load --backend bpf` with it; returns what it logged.
        @discardableResult
        public func load(_ yaml: String) throws -> String {
            let file = directory + "/policy.yaml"
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            return try topology.run(
                in: TopologySpec.hostRole,
                [bpfnet, "load", "--backend", "bpf", "--config", file, "--pin-path", pinPath],
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
    public static let outside = IPv4Address(203, 0, 113, 66)
    /// Where host1's containers appear outside (masquerade).
    public static let host1Outside = IPv4Address(203, 0, 113, 1)
    /// An address of host2's container subnet the outside host claims.
    public static let spoofedPeerSource = IPv4Address(172, 18, 0, 66)

    public let host1: Host
    public let host2: Host
    public let probeRunner: ProbeRunner
    private var closed = false

    /// Builds both hosts, the routers' link and the routes, and starts
    /// servers (TCP `tcpPort`, UDP `udpPort`) in c1, c2, c3 and the outside host.
    public init(bpfnet: String? = nil, routingContainerSubnets: Bool = false) throws {
        let binary = try bpfnet ?? DemoLab.locateBPFNet()
        probeRunner = try ProbeRunner()
        // rp_filter off, so that what drops a spoofed source is bpfnet and not the kernel.
        let sysctls = ["net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"]
        let made = try Self.makeHost(
            "host1",
            TopologySpec(
                bridge: BridgeSpec(address: IPv4InterfaceAddress("172.17.0.1/16")!),
                containers: [ContainerSpec(name: "c1", address: Self.c1)],
                externals: [
                    ExternalSpec(
                        name: "r1", hostInterface: "uplink", hostAddress: IPv4InterfaceAddress("192.168.7.1/24")!,
                        addresses: [IPv4InterfaceAddress("192.168.7.254/24")!]),
                    ExternalSpec(
                        name: "outside", hostInterface: "ext1", hostAddress: IPv4InterfaceAddress("203.0.113.1/24")!,
                        addresses: [IPv4InterfaceAddress("203.0.113.66/24")!]),
                ], hostSysctls: sysctls), bpfnet: binary)
        host1 = made
        do {
            host2 = try Self.makeHost(
                "host2",
                TopologySpec(
                    bridge: BridgeSpec(address: IPv4InterfaceAddress("172.18.0.1/16")!),
                    containers: [
                        ContainerSpec(name: "c2", address: Self.c2), ContainerSpec(name: "c3", address: Self.c3),
                    ],
                    externals: [
                        ExternalSpec(
                            name: "r2", hostInterface: "uplink", hostAddress: IPv4InterfaceAddress("192.168.8.1/24")!,
                            addresses: [IPv4InterfaceAddress("192.168.8.254/24")!])
                    ], hostSysctls: sysctls), bpfnet: binary)
        } catch {
            Self.remove(made)
            throw error
        }
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

    /// The link between the routers, the routes of Docker's example, the servers.
    private func connect(routingContainerSubnets: Bool) throws {
        let t1 = host1.topology
        let t2 = host2.topology
        try t1.run(
            in: "r1",
            ["ip", "link", "add", "rlink", "type", "veth", "peer", "name", "rlink", "netns", t2.namespace("r2").name])
        for (topology, router, address) in [(t1, "r1", "10.77.0.1/30"), (t2, "r2", "10.77.0.2/30")] {
            try topology.run(in: router, ["ip", "addr", "add", address, "dev", "rlink"])
            try topology.run(in: router, ["ip", "link", "set", "rlink", "up"])
            try topology.run(in: router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        }
        let ways = [
            (t1, "r1", "10.77.0.2", "192.168.7.254", "192.168.8.0/24", "172.18.0.0/16"),
            (t2, "r2", "10.77.0.1", "192.168.8.254", "192.168.7.0/24", "172.17.0.0/16"),
        ]
        for (topology, router, otherRouter, ownRouter, otherUplink, otherContainers) in ways {
            for destination in [otherUplink, otherContainers] {
                try topology.run(in: router, ["ip", "route", "add", destination, "via", otherRouter])
            }
            try topology.run(in: "host", ["ip", "route", "add", otherUplink, "via", ownRouter])
            if routingContainerSubnets {
                try topology.run(in: "host", ["ip", "route", "add", otherContainers, "via", ownRouter])
            }
        }
        // The outside host claims an address of host2's container subnet too;
        // host1 routes that one address back to it, so that what stops its
        // traffic is bpfnet, not replies going astray to host2.
        try t1.run(in: "outside", ["ip", "addr", "add", "\(Self.spoofedPeerSource)/32", "dev", "eth0"])
        try t1.run(in: "host", ["ip", "route", "add", "\(Self.spoofedPeerSource)/32", "via", "\(Self.outside)"])
        for (topology, role) in [(t1, "c1"), (t1, "outside"), (t2, "c2"), (t2, "c3")] {
            try topology.startServer(in: role, tcp: [Self.tcpPort], udp: [Self.udpPort], probe: probeRunner)
        }
    }

    /// One host's policy: docker0 with its containers, its uplink (and
    /// host1's ext1), the other host as its peer (`routes: true` unless the
    /// lab routes the container subnets itself).
    /// The `peers:` entry of a host's policy.
    public enum PeerEntry: Sendable {
        /// The other host, with its container subnet.
        case otherHost
        /// No peers.
        case none
        /// Name, address and subnets ("172.18.0.0/16, 10.99.0.0/24").
        case custom(String, String, String)
    }

    public static func policy(
        for host: String, icc: Bool = true, peerPolicy: PeerPolicy = .icc, routes: Bool = true,
        peer: PeerEntry = .otherHost
    ) -> String {
        let containers: [(String, IPv4Address)] = host == "host1" ? [("c1", c1)] : [("c2", c2), ("c3", c3)]
        let ext = host == "host1" ? ["uplink", "ext1"] : ["uplink"]
        let otherHost =
            host == "host1" ? ("host2", "192.168.8.1", "172.18.0.0/16") : ("host1", "192.168.7.1", "172.17.0.0/16")
        var yaml = "bridge: docker0\nicc: \(icc)\nforwardPolicy: drop\npeerPolicy: \(peerPolicy.rawValue)\n"
        yaml += "extInterfaces: [\(ext.joined(separator: ", "))]\ncontainers:\n"
        for (name, address) in containers {
            yaml +=
                "  - {name: \(name), ip: \(address), mac: \"\(MACAddress(dockerStyleFor: address))\", port: veth\(name)}\n"
        }
        let entry: (String, String, String)? =
            switch peer {
            case .otherHost: otherHost
            case .none: nil
            case .custom(let name, let address, let subnets): (name, address, subnets)
            }
        if let (name, address, subnets) = entry {
            yaml += "peers:\n  - {name: \(name), address: \(address), subnets: [\(subnets)], routes: \(routes)}\n"
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

    /// Unloads both hosts (best effort) and removes every namespace, mount and file made.
    public func close() {
        guard !closed else { return }
        closed = true
        Self.remove(host1)
        Self.remove(host2)
    }

    private static func remove(_ host: Host) {
        _ = try? host.bpfnet(["unload"])
        _ = try? ProcessRunner.run(Command(["umount", "-l", host.pinPath], timeout: .seconds(10)))
        _ = host.topology.teardown()
        try? FileManager.default.removeItem(atPath: host.directory)
    }
}
