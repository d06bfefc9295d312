// SPDX-License-Identifier: Apache-2.0
//
// Docker's two-host example with peers (docs/policy.md, "Peers"), each host
// in namespaces of its own and running its own `bpfnet load` (its own pin
// path, a private bpffs there):
//
//   c1 172.17.0.2 ─ docker0 ─ host1 uplink 192.168.7.1 ── r1 ══ r2 ── 192.168.8.1 uplink host2 ─ docker0 ─ c2, c3 (172.18/16)
//                                                                                 ext1 203.0.113.1 ── evil 203.0.113.66
//
// r1 and r2 route between the hosts. evil is an outside host, not a peer,
// that sends with a source in host1's container subnet (172.17.0.66) to c2.
// Real TCP, UDP and ICMP: c1 → c2 passes with c1's own address (no
// masquerade), evil is dropped (peer-spoofed), icc=false on host2 drops c1's
// traffic (icc) unless peerPolicy allow.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class PeersEndToEndTests: XCTestCase {
    static let tcpPort: UInt16 = 8000
    static let udpPort: UInt16 = 5300
    let c1 = IPv4Address(172, 17, 0, 2)
    let c2 = IPv4Address(172, 18, 0, 2)
    let spoofed = IPv4Address(172, 17, 0, 66)

    /// One Docker-like host: docker0 with containers, an uplink to its router.
    struct Host {
        let topology: Topology
        let pinPath: String
        let directory: String
        let bpfnet: String

        @discardableResult
        func bpfnet(_ arguments: [String]) throws -> String {
            try topology.run(
                in: TopologySpec.hostRole, [bpfnet] + arguments + ["--pin-path", pinPath], timeout: .seconds(60)
            ).stdout
        }

        /// Writes `yaml` and runs `bpfnet load --backend bpf` with it; returns what it logged.
        @discardableResult
        func load(_ yaml: String) throws -> String {
            let file = directory + "/policy.yaml"
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            return try topology.run(
                in: TopologySpec.hostRole,
                [bpfnet, "load", "--backend", "bpf", "--config", file, "--pin-path", pinPath],
                timeout: .seconds(60)
            ).stderr
        }

        /// bpfnet's routes in the host's main table, as `ip route` prints them.
        func bpfnetRoutes() throws -> [String] {
            try topology.run(in: TopologySpec.hostRole, ["ip", "route", "show", "proto", "191"]).stdout
                .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        }

        func counter(_ program: String, _ reason: String) throws -> UInt64 {
            let output = try bpfnet(["status", "--json"])
            let status = try JSONDecoder().decode(DataplaneStatus.self, from: Data(output.utf8))
            return status.programCounters[program]?[reason]?.packets ?? 0
        }
    }

    func makeHost(_ spec: TopologySpec, bpfnet: String) throws -> Host {
        let topology = try Topology.build(spec)
        addTeardownBlock { topology.teardown() }
        var template = Array("/tmp/bpfnet-peers-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        let directory = String(cString: made)
        let host = Host(topology: topology, pinPath: directory + "/pins", directory: directory, bpfnet: bpfnet)
        // Unload (which unmounts the private bpffs) before the namespaces go.
        addTeardownBlock {
            _ = try? host.bpfnet(["unload"])
            try? FileManager.default.removeItem(atPath: directory)
        }
        return host
    }

    /// `yaml` of one host's policy: docker0, its uplinks, its containers and its one peer.
    func policy(
        containers: [(String, IPv4Address)], ext: [String], peer: (String, String, String)?, icc: Bool = true,
        peerPolicy: String = "icc", routes: Bool = false
    ) -> String {
        var yaml = "bridge: docker0\nicc: \(icc)\nforwardPolicy: drop\npeerPolicy: \(peerPolicy)\n"
        yaml += "extInterfaces: [\(ext.joined(separator: ", "))]\ncontainers:\n"
        for (name, address) in containers {
            yaml +=
                "  - {name: \(name), ip: \(address), mac: \"\(MACAddress(dockerStyleFor: address))\", port: veth\(name)}\n"
        }
        if let peer {
            yaml += "peers:\n  - {name: \(peer.0), address: \(peer.1), subnets: [\(peer.2)], routes: \(routes)}\n"
        }
        return yaml
    }

    /// Docker's two hosts behind their routers, as the file's header draws
    /// them, with servers in c1, c2 and c3. Each host routes the other's
    /// uplink subnet via its router; with `routingContainerSubnets` also the
    /// other's container subnet, as Docker's example has the operator do.
    func makeTwoHosts(runner: ProbeRunner, routingContainerSubnets: Bool = true) throws -> (Host, Host) {
        let binary = try DemoLab.locateBPFNet()
        // rp_filter off, so that what drops the spoofer is bpfnet and not the kernel.
        let sysctls = ["net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"]
        let host1 = try makeHost(
            TopologySpec(
                bridge: BridgeSpec(address: IPv4InterfaceAddress("172.17.0.1/16")!),
                containers: [ContainerSpec(name: "c1", address: c1)],
                externals: [
                    ExternalSpec(
                        name: "r1", hostInterface: "uplink", hostAddress: IPv4InterfaceAddress("192.168.7.1/24")!,
                        addresses: [IPv4InterfaceAddress("192.168.7.254/24")!])
                ], hostSysctls: sysctls), bpfnet: binary)
        let host2 = try makeHost(
            TopologySpec(
                bridge: BridgeSpec(address: IPv4InterfaceAddress("172.18.0.1/16")!),
                containers: [
                    ContainerSpec(name: "c2", address: c2),
                    ContainerSpec(name: "c3", address: IPv4Address(172, 18, 0, 3)),
                ],
                externals: [
                    ExternalSpec(
                        name: "r2", hostInterface: "uplink", hostAddress: IPv4InterfaceAddress("192.168.8.1/24")!,
                        addresses: [IPv4InterfaceAddress("192.168.8.254/24")!]),
                    ExternalSpec(
                        name: "evil", hostInterface: "ext1", hostAddress: IPv4InterfaceAddress("203.0.113.1/24")!,
                        addresses: [IPv4InterfaceAddress("203.0.113.66/24")!]),
                ], hostSysctls: sysctls), bpfnet: binary)
        let t1 = host1.topology
        let t2 = host2.topology

        // The link between the routers, and every route of Docker's example.
        try t1.run(
            in: "r1",
            ["ip", "link", "add", "rlink", "type", "veth", "peer", "name", "rlink", "netns", t2.namespace("r2").name])
        for (topology, router, address) in [(t1, "r1", "10.77.0.1/30"), (t2, "r2", "10.77.0.2/30")] {
            try topology.run(in: router, ["ip", "addr", "add", address, "dev", "rlink"])
            try topology.run(in: router, ["ip", "link", "set", "rlink", "up"])
            try topology.run(in: router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        }
        for destination in ["192.168.8.0/24", "172.18.0.0/16"] {
            try t1.run(in: "r1", ["ip", "route", "add", destination, "via", "10.77.0.2"])
            if routingContainerSubnets || destination.hasPrefix("192.") {
                try t1.run(in: "host", ["ip", "route", "add", destination, "via", "192.168.7.254"])
            }
        }
        for destination in ["192.168.7.0/24", "172.17.0.0/16"] {
            try t2.run(in: "r2", ["ip", "route", "add", destination, "via", "10.77.0.1"])
            if routingContainerSubnets || destination.hasPrefix("192.") {
                try t2.run(in: "host", ["ip", "route", "add", destination, "via", "192.168.8.254"])
            }
        }
        for (topology, role) in [(t1, "c1"), (t2, "c2"), (t2, "c3")] {
            try topology.startServer(in: role, tcp: [Self.tcpPort], udp: [Self.udpPort], probe: runner)
        }
        return (host1, host2)
    }

    let kinds: [Probe.Kind] = [.tcp(PeersEndToEndTests.tcpPort), .udp(PeersEndToEndTests.udpPort), .icmp]

    /// One probe from `from` in `topology` to c2.
    func probe(
        _ runner: ProbeRunner, _ topology: Topology, _ from: String, _ kind: Probe.Kind, source: IPv4Address? = nil
    ) throws -> ProbeResult {
        runner.run(
            try topology.probe(from: from, to: c2, kind, sourceAddress: source, label: "\(from) → c2 \(kind)"))
    }

    func testTwoHostsReachEachOthersContainersAndNobodyElseDoes() throws {
        try requireRootForEndToEnd("network namespaces, bpffs and eBPF programs on two simulated hosts")
        let runner = try ProbeRunner()
        let (host1, host2) = try makeTwoHosts(runner: runner)
        let t1 = host1.topology
        let t2 = host2.topology
        // The spoofer holds an address of host1's container subnet. host2 is
        // given a route back to it only so that a probe can tell whether its
        // traffic gets through (replies would otherwise go to host1).
        try t2.run(in: "evil", ["ip", "addr", "add", "\(spoofed)/32", "dev", "eth0"])
        try t2.run(in: "host", ["ip", "route", "add", "\(spoofed)/32", "via", "203.0.113.66"])

        func probe(_ topology: Topology, _ from: String, _ kind: Probe.Kind, source: IPv4Address? = nil)
            throws -> ProbeResult
        {
            try self.probe(runner, topology, from, kind, source: source)
        }

        // Before bpfnet: Docker's setup routes everything, the spoofer included.
        XCTAssertTrue(try probe(t2, "evil", .tcp(Self.tcpPort), source: spoofed).isAllowed, "routing works for evil")

        try host1.load(
            policy(containers: [("c1", c1)], ext: ["uplink"], peer: ("host2", "192.168.8.1", "172.18.0.0/16")))
        let host2Containers = [("c2", c2), ("c3", IPv4Address(172, 18, 0, 3))]
        try host2.load(
            policy(
                containers: host2Containers, ext: ["uplink", "ext1"], peer: ("host1", "192.168.7.1", "172.17.0.0/16")))
        // `status` names the peer, its address and subnets, and the peer policy.
        let status = try JSONDecoder().decode(
            DataplaneStatus.self, from: Data(try host1.bpfnet(["status", "--json"]).utf8))
        XCTAssertEqual(
            status.peers, [DataplaneStatus.Peer(name: "host2", address: "192.168.8.1", subnets: ["172.18.0.0/16"])])
        XCTAssertEqual(status.peerPolicy, "icc")
        XCTAssertTrue(try host1.bpfnet(["status"]).contains("peers (1, policy icc)"))

        // c1 → c2: allowed, with c1's own address (no masquerade on host1).
        for kind in kinds {
            let result = try probe(t1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "\(result)")
            if case .icmp = kind { continue }
            XCTAssertEqual(result.peerSeen?.address, c1, "c2 sees c1's own address: \(result)")
        }
        XCTAssertGreaterThan(try host2.counter("ext-xdp", "peer"), 0, "host2 admitted c1 as its peer's container")
        XCTAssertGreaterThan(try host1.counter("ext-xdp", "peer"), 0, "host1 admitted c2's replies the same way")

        // The spoofer: not from the route to host1 (another interface) → dropped.
        let spoofedBefore = try host2.counter("ext-xdp", "peer-spoofed")
        let evil = try probe(t2, "evil", .tcp(Self.tcpPort), source: spoofed)
        XCTAssertFalse(evil.isAllowed, "\(evil)")
        XCTAssertGreaterThan(try host2.counter("ext-xdp", "peer-spoofed"), spoofedBefore, "dropped as peer-spoofed")

        // icc=false on host2: cross-host traffic is inter-container traffic.
        try host2.load(
            policy(
                containers: host2Containers, ext: ["uplink", "ext1"], peer: ("host1", "192.168.7.1", "172.17.0.0/16"),
                icc: false))
        let iccBefore = try host2.counter("ext-xdp", "icc")
        for kind in kinds {
            let result = try probe(t1, "c1", kind)
            XCTAssertFalse(result.isAllowed, "icc off on host2: \(result)")
        }
        XCTAssertGreaterThanOrEqual(try host2.counter("ext-xdp", "icc") - iccBefore, 3, "one drop per probe at least")

        // ... unless peerPolicy allow.
        try host2.load(
            policy(
                containers: host2Containers, ext: ["uplink", "ext1"], peer: ("host1", "192.168.7.1", "172.17.0.0/16"),
                icc: false, peerPolicy: "allow"))
        for kind in kinds {
            let result = try probe(t1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "peerPolicy allow: \(result)")
        }
        XCTAssertFalse(try probe(t2, "evil", .udp(Self.udpPort), source: spoofed).isAllowed, "still not evil")
    }

    /// `routes: true`: the hosts know only the way to each other (the
    /// uplink subnets via the routers), and bpfnet routes the peer's container
    /// subnet that same way, under its own protocol number; a route the
    /// operator made is left alone, a peer removed takes its route along,
    /// `unload` removes the rest, and a peer this host cannot reach is refused.
    func testRoutesTrueRoutesThePeerSubnetsTheWayThePeerIsReached() throws {
        try requireRootForEndToEnd("network namespaces, bpffs, eBPF programs and routes on two simulated hosts")
        let runner = try ProbeRunner()
        let (host1, host2) = try makeTwoHosts(runner: runner, routingContainerSubnets: false)
        let t1 = host1.topology
        // The operator's own route to a subnet the peer also lists.
        try t1.run(in: "host", ["ip", "route", "add", "10.99.0.0/24", "via", "192.168.7.254", "proto", "static"])
        let host2Subnets = "172.18.0.0/16, 10.99.0.0/24"
        let host1Policy = policy(
            containers: [("c1", c1)], ext: ["uplink"], peer: ("host2", "192.168.8.1", host2Subnets), routes: true)

        XCTAssertFalse(try probe(runner, t1, "c1", .tcp(Self.tcpPort)).isAllowed, "no route to 172.18/16 before bpfnet")

        let logged = try host1.load(host1Policy)
        XCTAssertTrue(
            logged.contains("peer host2: 10.99.0.0/24 is routed already (via 192.168.7.254 dev uplink proto static)"),
            logged)
        try host2.load(
            policy(
                containers: [("c2", c2), ("c3", IPv4Address(172, 18, 0, 3))], ext: ["uplink"],
                peer: ("host1", "192.168.7.1", "172.17.0.0/16"), routes: true))
        // Via host1's router, as host1 reaches 192.168.8.1; the operator's route untouched.
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])
        XCTAssertEqual(try host2.bpfnetRoutes(), ["172.17.0.0/16 via 192.168.8.254 dev uplink"])
        XCTAssertTrue(
            try t1.run(in: "host", ["ip", "route", "show", "10.99.0.0/24"]).stdout.contains("proto static"))
        let status = try JSONDecoder().decode(
            DataplaneStatus.self, from: Data(try host1.bpfnet(["status", "--json"]).utf8))
        XCTAssertEqual(status.peers?.first?.routes, ["172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"])
        XCTAssertTrue(
            try host1.bpfnet(["status"]).contains("route 172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"))

        for kind in kinds {
            let result = try probe(runner, t1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "over bpfnet's routes: \(result)")
            if case .icmp = kind { continue }
            XCTAssertEqual(result.peerSeen?.address, c1, "c2 sees c1's own address: \(result)")
        }
        // Loading the same policy again changes nothing (and finds its route in place).
        try host1.load(host1Policy)
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])

        // A peer this host cannot reach: refused, naming it; what runs stays.
        XCTAssertThrowsError(
            try host1.load(
                policy(
                    containers: [("c1", c1)], ext: ["uplink"], peer: ("host9", "198.51.100.9", "172.29.0.0/16"),
                    routes: true))
        ) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "peer host9: routes: true, but this host has no route to the peer's address 198.51.100.9"),
                "\(error)")
        }
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])

        // The peer removed: its route goes, and c1 can no longer reach c2.
        try host1.load(policy(containers: [("c1", c1)], ext: ["uplink"], peer: nil))
        XCTAssertEqual(try host1.bpfnetRoutes(), [])
        XCTAssertFalse(try probe(runner, t1, "c1", .udp(Self.udpPort)).isAllowed, "no route without the peer")

        // Back, then unload: bpfnet's routes go, the operator's stays.
        try host1.load(host1Policy)
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])
        try host1.bpfnet(["unload"])
        XCTAssertEqual(try host1.bpfnetRoutes(), [])
        XCTAssertTrue(
            try t1.run(in: "host", ["ip", "route", "show", "10.99.0.0/24"]).stdout.contains("proto static"))
    }

    /// The netfilter fallbacks do not enforce peers yet: they refuse them.
    func testTheFallbacksRefusePeers() throws {
        try requireRootForEndToEnd("network namespaces, nft and iptables")
        let host = try makeHost(
            TopologySpec(
                bridge: BridgeSpec(address: IPv4InterfaceAddress("172.17.0.1/16")!),
                containers: [ContainerSpec(name: "c1", address: c1)]), bpfnet: try DemoLab.locateBPFNet())
        let file = host.directory + "/policy.yaml"
        try policy(containers: [("c1", c1)], ext: [], peer: ("host2", "192.168.8.1", "172.18.0.0/16"))
            .write(toFile: file, atomically: true, encoding: .utf8)
        for backend in ["nftables", "iptables"] {
            XCTAssertThrowsError(try host.bpfnet(["load", "--backend", backend, "--config", file])) { error in
                XCTAssertTrue(
                    "\(error)".contains("peers (host2) are enforced by the eBPF backend only"), "\(backend): \(error)")
            }
        }
    }
}
