// SPDX-License-Identifier: Apache-2.0
//
// Docker's two-host example with peers (docs/policy.md, "Peers") on
// TwoHostLab (its header draws the hosts): each host in namespaces of its
// own, running its own `bpfnet load` (its own pin path, a private bpffs
// there). Real TCP, UDP and ICMP: c1 → c2 passes with c1's own address (no
// masquerade), an outside host claiming host2's container subnet is dropped
// (peer-spoofed), icc=false on host2 drops c1's traffic (icc) unless
// peerPolicy allow; and with `routes: true` bpfnet routes the peer subnets.

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class PeersEndToEndTests: XCTestCase {
    let c1 = TwoHostLab.c1
    let c2 = TwoHostLab.c2
    let kinds: [Probe.Kind] = [.tcp(TwoHostLab.tcpPort), .udp(TwoHostLab.udpPort), .icmp]

    func makeLab(routingContainerSubnets: Bool) throws -> TwoHostLab {
        let lab = try TwoHostLab(routingContainerSubnets: routingContainerSubnets)
        addTeardownBlock { lab.close() }
        return lab
    }

    /// One probe from `from` on `host` to c2 (or `to`).
    func probe(
        _ lab: TwoHostLab, _ host: TwoHostLab.Host, _ from: String, _ kind: Probe.Kind, to: IPv4Address? = nil,
        source: IPv4Address? = nil
    ) throws -> ProbeResult {
        let destination = to ?? c2
        return lab.probeRunner.run(
            try lab.probe(
                on: host, from: from, to: destination, kind, source: source, label: "\(from) → \(destination) \(kind)"))
    }

    func counter(_ host: TwoHostLab.Host, _ program: String, _ reason: String) throws -> UInt64 {
        try host.status().programCounters[program]?[reason]?.packets ?? 0
    }

    func testTwoHostsReachEachOthersContainersAndNobodyElseDoes() throws {
        try requireRootForEndToEnd("network namespaces, bpffs and eBPF programs on two simulated hosts")
        // The operator routes the container subnets, as in Docker's example.
        let lab = try makeLab(routingContainerSubnets: true)
        let (host1, host2) = (lab.host1, lab.host2)
        let spoofed = TwoHostLab.spoofedPeerSource

        // Before bpfnet: Docker's setup routes everything, the spoofer included.
        XCTAssertTrue(
            try probe(lab, host1, "outside", .tcp(TwoHostLab.tcpPort), to: c1, source: spoofed).isAllowed,
            "routing works for the outside host")

        try host1.load(TwoHostLab.policy(for: "host1", routes: false))
        try host2.load(TwoHostLab.policy(for: "host2", routes: false))
        // `status` names the peer, its address and subnets, and the peer policy; no routes of bpfnet's.
        let status = try host1.status()
        XCTAssertEqual(
            status.peers, [DataplaneStatus.Peer(name: "host2", address: "192.168.8.1", subnets: ["172.18.0.0/16"])])
        XCTAssertEqual(status.peerPolicy, "icc")
        XCTAssertTrue(try host1.bpfnet(["status"]).contains("peers (1, policy icc)"))
        XCTAssertEqual(try host1.bpfnetRoutes(), [])

        // c1 → c2: allowed, with c1's own address (no masquerade on host1).
        for kind in kinds {
            let result = try probe(lab, host1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "\(result)")
            if case .icmp = kind { continue }
            XCTAssertEqual(result.peerSeen?.address, c1, "c2 sees c1's own address: \(result)")
        }
        XCTAssertGreaterThan(try counter(host2, "ext-xdp", "peer"), 0, "host2 admitted c1 as its peer's container")
        XCTAssertGreaterThan(try counter(host1, "ext-xdp", "peer"), 0, "host1 admitted c2's replies the same way")

        // The spoofer: not from the route to host2 (another interface) → dropped.
        let spoofedBefore = try counter(host1, "ext-xdp", "peer-spoofed")
        let evil = try probe(lab, host1, "outside", .tcp(TwoHostLab.tcpPort), to: c1, source: spoofed)
        XCTAssertFalse(evil.isAllowed, "\(evil)")
        XCTAssertGreaterThan(try counter(host1, "ext-xdp", "peer-spoofed"), spoofedBefore, "dropped as peer-spoofed")

        // icc=false on host2: cross-host traffic is inter-container traffic.
        try host2.load(TwoHostLab.policy(for: "host2", icc: false, routes: false))
        let iccBefore = try counter(host2, "ext-xdp", "icc")
        for kind in kinds {
            let result = try probe(lab, host1, "c1", kind)
            XCTAssertFalse(result.isAllowed, "icc off on host2: \(result)")
        }
        XCTAssertGreaterThanOrEqual(try counter(host2, "ext-xdp", "icc") - iccBefore, 3, "one drop per probe at least")

        // ... unless peerPolicy allow.
        try host2.load(TwoHostLab.policy(for: "host2", icc: false, peerPolicy: .allow, routes: false))
        for kind in kinds {
            let result = try probe(lab, host1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "peerPolicy allow: \(result)")
        }
        XCTAssertFalse(
            try probe(lab, host1, "outside", .udp(TwoHostLab.udpPort), to: c1, source: spoofed).isAllowed,
            "still not the spoofer")
    }

    /// `routes: true`: the hosts know only the way to each other (the
    /// uplink subnets via the routers), and bpfnet routes the peer's container
    /// subnet that same way, under its own protocol number; a route the
    /// operator made is left alone, a peer removed takes its route along,
    /// `unload` removes the rest, and a peer this host cannot reach is refused.
    func testRoutesTrueRoutesThePeerSubnetsTheWayThePeerIsReached() throws {
        try requireRootForEndToEnd("network namespaces, bpffs, eBPF programs and routes on two simulated hosts")
        let lab = try makeLab(routingContainerSubnets: false)
        let (host1, host2) = (lab.host1, lab.host2)
        let t1 = host1.topology
        // The operator's own route to a subnet the peer also lists.
        try t1.run(in: "host", ["ip", "route", "add", "10.99.0.0/24", "via", "192.168.7.254", "proto", "static"])
        let host1Policy = TwoHostLab.policy(
            for: "host1", peer: .custom("host2", "192.168.8.1", "172.18.0.0/16, 10.99.0.0/24"))

        XCTAssertFalse(
            try probe(lab, host1, "c1", .tcp(TwoHostLab.tcpPort)).isAllowed, "no route to 172.18/16 before bpfnet")

        let logged = try host1.load(host1Policy)
        XCTAssertTrue(
            logged.contains("peer host2: 10.99.0.0/24 is routed already (via 192.168.7.254 dev uplink proto static)"),
            logged)
        try host2.load(TwoHostLab.policy(for: "host2"))
        // Via host1's router, as host1 reaches 192.168.8.1; the operator's route untouched.
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])
        XCTAssertEqual(try host2.bpfnetRoutes(), ["172.17.0.0/16 via 192.168.8.254 dev uplink"])
        XCTAssertTrue(
            try t1.run(in: "host", ["ip", "route", "show", "10.99.0.0/24"]).stdout.contains("proto static"))
        XCTAssertEqual(
            try host1.status().peers?.first?.routes, ["172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"])
        XCTAssertTrue(
            try host1.bpfnet(["status"]).contains("route 172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"))

        for kind in kinds {
            let result = try probe(lab, host1, "c1", kind)
            XCTAssertTrue(result.isAllowed, "over bpfnet's routes: \(result)")
            if case .icmp = kind { continue }
            XCTAssertEqual(result.peerSeen?.address, c1, "c2 sees c1's own address: \(result)")
        }
        // Loading the same policy again changes nothing (and finds its route in place).
        try host1.load(host1Policy)
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])

        // A peer this host cannot reach: refused, naming it; what runs stays.
        XCTAssertThrowsError(
            try host1.load(TwoHostLab.policy(for: "host1", peer: .custom("host9", "198.51.100.9", "172.29.0.0/16")))
        ) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "peer host9: routes: true, but this host has no route to the peer's address 198.51.100.9"),
                "\(error)")
        }
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])

        // The peer removed: its route goes, and c1 can no longer reach c2.
        try host1.load(TwoHostLab.policy(for: "host1", peer: .none))
        XCTAssertEqual(try host1.bpfnetRoutes(), [])
        XCTAssertFalse(try probe(lab, host1, "c1", .udp(TwoHostLab.udpPort)).isAllowed, "no route without the peer")

        // Back, then unload: bpfnet's routes go, the operator's stays.
        try host1.load(host1Policy)
        XCTAssertEqual(try host1.bpfnetRoutes(), ["172.18.0.0/16 via 192.168.7.254 dev uplink"])
        try host1.bpfnet(["unload"])
        XCTAssertEqual(try host1.bpfnetRoutes(), [])
        XCTAssertTrue(
            try t1.run(in: "host", ["ip", "route", "show", "10.99.0.0/24"]).stdout.contains("proto static"))
    }

    /// `bpfnet demo --hosts 2` measures every cell of its matrix as the
    /// policy says, under each of its three settings, and lists its routes.
    func testTheTwoHostDemoMatchesThePolicy() throws {
        try requireRootForEndToEnd("network namespaces, bpffs and eBPF programs on two simulated hosts")
        let output = try ProcessRunner.runChecked(
            Command([try DemoLab.locateBPFNet(), "demo", "--hosts", "2", "--json"], timeout: .seconds(120)))
        let report = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        let matrix = try XCTUnwrap(report["matrix"] as? [[String: Any]])
        XCTAssertEqual(matrix.count, 3 * 8)
        XCTAssertTrue(
            matrix.allSatisfy { $0["matches"] as? Bool == true }, "\(matrix.filter { $0["matches"] as? Bool != true })")
        // Both directions of each expectation occur: allowed and blocked cells, every reason.
        let reasons = Set(matrix.compactMap { $0["reason"] as? String })
        XCTAssertEqual(reasons, ["icc", "forward", "peer-spoofed"])
        let routes = try XCTUnwrap(report["routes"] as? [String: [String]])
        XCTAssertEqual(routes["host1"], ["172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"])
        XCTAssertEqual(routes["host2"], ["172.17.0.0/16 via 192.168.8.254 dev uplink proto 191"])
    }

    /// The netfilter fallbacks do not enforce peers yet: they refuse them.
    func testTheFallbacksRefusePeers() throws {
        try requireRootForEndToEnd("network namespaces, nft and iptables")
        let lab = try makeLab(routingContainerSubnets: true)
        let file = NSTemporaryDirectory() + "/bpfnet-peers-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try TwoHostLab.policy(for: "host1", routes: false).write(toFile: file, atomically: true, encoding: .utf8)
        for backend in ["nftables", "iptables"] {
            XCTAssertThrowsError(try lab.host1.bpfnet(["load", "--backend", backend, "--config", file])) { error in
                XCTAssertTrue(
                    "\(error)".contains("peers (host2) are enforced by the eBPF backend only"), "\(backend): \(error)")
            }
        }
    }
}
