// SPDX-License-Identifier: Apache-2.0
//
// Real namespaces, real traffic (root). Each test builds its own topology with
// names unique to this process, and tears it down even when it fails.

import BPFNetCore
import Foundation
import LinuxNet
import XCTest

@testable import NetLab

final class TopologyTests: XCTestCase {
    static let containers = ["web", "db", "client"]

    /// Three containers and one external with two source addresses
    /// (198.51.100.2 on the link, 203.0.113.2 routed back via it).
    func buildLab() throws -> (Topology, ProbeRunner) {
        let runner = try probeRunner()
        let topology = try Topology.build(.dockerLike(containers: Self.containers))
        addTeardownBlock { topology.teardown() }
        for name in Self.containers {
            try topology.startServer(in: name, tcp: [80, 5000], udp: [53], probe: runner)
        }
        try topology.startServer(in: "host", tcp: [8080], udp: [5353], probe: runner)
        try topology.startServer(in: "ext", tcp: [9000], udp: [9053], probe: runner)
        return (topology, runner)
    }

    func testFullReachabilityWithoutFiltering() throws {
        try requireRoot()
        let (lab, runner) = try buildLab()
        print("netlab: built \(lab.namespaces.count) namespaces in \(lab.buildDuration)")
        var probes: [Probe] = []
        for from in Self.containers {
            for to in Self.containers where to != from {
                probes += [
                    try lab.probe(from: from, to: to, .tcp(80)),
                    try lab.probe(from: from, to: to, .udp(53)),
                    try lab.probe(from: from, to: to, .icmp),
                ]
            }
            // Container → the bridge address (host-local, row 2).
            probes += [
                try lab.probe(from: from, to: "host", .tcp(8080)),
                try lab.probe(from: from, to: "host", .icmp),
            ]
        }
        let extLink = IPv4Address(198, 51, 100, 1)
        let secondSource = IPv4Address(203, 0, 113, 2)
        let web = try lab.address(of: "web")
        probes += [
            // External → the host's own addresses.
            try lab.probe(from: "ext", to: extLink, .tcp(8080)),
            try lab.probe(from: "ext", to: extLink, .udp(5353)),
            try lab.probe(from: "ext", to: extLink, .icmp),
            try lab.probe(from: "ext", to: "host", .tcp(8080)),
            // External → a container, routed by the host (ip_forward=1), from both sources.
            try lab.probe(from: "ext", to: web, .tcp(80)),
            try lab.probe(from: "ext", to: web, .tcp(80), sourceAddress: secondSource),
            try lab.probe(from: "ext", to: web, .udp(53), sourceAddress: secondSource),
            try lab.probe(from: "ext", to: web, .icmp, sourceAddress: secondSource),
            // Container → outside.
            try lab.probe(from: "client", to: "ext", .tcp(9000)),
            try lab.probe(from: "client", to: "ext", .udp(9053)),
            try lab.probe(from: "client", to: "ext", .icmp),
        ]
        let started = ContinuousClock.now
        let results = runner.run(probes)
        print("netlab: \(probes.count) probes in \(ContinuousClock.now - started)\n\(ReachabilityMatrix(results))")
        assertAll(results, are: .allowed)

        // The server saw the address the probe was sent from, on the address it was sent to.
        let fromSecond = results.first { $0.probe.sourceAddress == secondSource && $0.probe.kind == .tcp(80) }
        XCTAssertEqual(fromSecond?.peerSeen?.address, secondSource)
        XCTAssertEqual(fromSecond?.localSeen, IPv4Endpoint(web, 80))
        XCTAssertEqual(fromSecond?.server, "web")

        // Closed ports answer, and that is not "blocked".
        let closed = runner.run([
            try lab.probe(from: "client", to: "web", .tcp(81)),
            try lab.probe(from: "client", to: "web", .udp(54)),
        ])
        assertAll(closed, are: .refused)
    }

    func testFixedSourcePortsAndLargeUDP() throws {
        try requireRoot()
        let (lab, runner) = try buildLab()
        let client = try lab.address(of: "client")
        let web = try lab.address(of: "web")

        // The same fixed source port again and again (serialised, not refused by TIME_WAIT).
        let repeated = try (0..<4).map { _ in try lab.probe(from: "client", to: "web", .tcp(80), sourcePort: 5000) }
        let results = runner.run(repeated)
        assertAll(results, are: .allowed)
        for result in results { XCTAssertEqual(result.peerSeen, IPv4Endpoint(client, 5000)) }

        // Docker's reverse link rule: the child answers FROM its exposed port to any port of the parent.
        let reverse = runner.run(try lab.probe(from: "web", to: "client", .tcp(5000), sourcePort: 80))
        XCTAssertEqual(reverse.reachability, .allowed, "\(reverse)")
        XCTAssertEqual(reverse.peerSeen, IPv4Endpoint(web, 80))

        let udp = runner.run(try lab.probe(from: "client", to: "web", .udp(53), sourcePort: 5353))
        XCTAssertEqual(udp.peerSeen, IPv4Endpoint(client, 5353), "\(udp)")

        // 4000-byte datagrams are fragmented on the 1500-byte MTU both ways, bridged and routed.
        let large = runner.run([
            try lab.probe(from: "client", to: "db", .udp(53), size: 4000),
            try lab.probe(from: "ext", to: "web", .udp(53), size: 4000),
            try lab.probe(from: "client", to: "db", .udp(53), sourcePort: 53, size: 9000),
        ])
        assertAll(large, are: .allowed)
        XCTAssertEqual(large.map(\.bytesReceived), [4000, 4000, 9000])
    }

    func testBlockedTrafficIsReportedWithinTheTimeout() throws {
        try requireRoot()
        let (lab, runner) = try buildLab()
        let db = try lab.address(of: "db")
        let web = try lab.address(of: "web")
        let timeout = Duration.milliseconds(400)

        // Filtering inside the HOST namespace of this test only: bridged
        // traffic meets the bridge family (no br_netfilter here), routed
        // traffic the inet forward hook.
        try lab.run(
            in: "host", ["nft", "-f", "-"],
            input: """
                table bridge netlab_test {
                  chain forward {
                    type filter hook forward priority 0; policy accept;
                    ip daddr \(db) tcp dport 80 drop
                    ip daddr \(db) icmp type echo-request drop
                  }
                }
                table inet netlab_test {
                  chain forward {
                    type filter hook forward priority 0; policy accept;
                    ip daddr \(web) tcp dport 80 drop
                  }
                }
                """)
        let probes = [
            try lab.probe(from: "client", to: "db", .tcp(80), timeout: timeout),
            try lab.probe(from: "client", to: "db", .icmp, timeout: timeout),
            try lab.probe(from: "ext", to: "web", .tcp(80), timeout: timeout),
            try lab.probe(from: "client", to: "db", .udp(53), timeout: timeout),  // not filtered
            try lab.probe(from: "client", to: "web", .tcp(80), timeout: timeout),  // bridged, not routed
        ]
        let results = runner.run(probes)
        print("netlab: with nft drops\n\(ReachabilityMatrix(results))")
        assertAll(Array(results[0..<3]), are: .blocked)
        assertAll(Array(results[3...]), are: .allowed)
        for result in results[0..<3] {
            XCTAssertEqual(result.outcome, "timeout", "\(result)")
            XCTAssertLessThan(result.duration.milliseconds, timeout.milliseconds + 1500, "\(result)")
        }

        // A port that goes down is blocked as well.
        try lab.ip(in: "host", ["link set vethweb down"])
        let down = runner.run(try lab.probe(from: "client", to: "web", .tcp(80), timeout: timeout))
        XCTAssertEqual(down.reachability, .blocked, "\(down)")
    }

    func testProbeErrorsAreNotBlocked() throws {
        try requireRoot()
        let (lab, runner) = try buildLab()
        // Binding an address the namespace does not have is our fault, not the network's.
        let result = runner.run(
            try lab.probe(from: "client", to: "web", .tcp(80), sourceAddress: IPv4Address(10, 77, 0, 1)))
        XCTAssertEqual(result.reachability, .error, "\(result)")
        XCTAssertThrowsError(try ProbeRunner(binary: "/nonexistent/bpfnet-probe")) { error in
            XCTAssert("\(error)".contains("BPFNET_PROBE"), "\(error)")
        }
    }

    func testTeardownLeavesNothingBehind() throws {
        try requireRoot()
        let runner = try probeRunner()
        let topology = try Topology.build(.dockerLike(containers: ["a", "b", "c", "d"]))
        let names = topology.namespaces.map(\.name)
        XCTAssertEqual(namespaces(withPrefix: topology.prefix + "-"), names.sorted())
        let server = try topology.startServer(in: "a", tcp: [80], probe: runner)
        XCTAssertTrue(processExists(server.pid))

        XCTAssertEqual(topology.teardown(), [])
        XCTAssertEqual(namespaces(withPrefix: topology.prefix + "-"), [])
        XCTAssertFalse(processExists(server.pid), "the server must be stopped before its namespace goes")
        XCTAssertEqual(topology.teardown(), [], "teardown is idempotent")
        XCTAssertTrue(topology.isTornDown)
        XCTAssertFalse(CleanupRegistry.shared.recordedNamespaces.contains { names.contains($0) })
    }

    func testFailedBuildLeavesNothingBehind() throws {
        try requireRoot()
        let before = ourNamespaces
        func assertFails(_ spec: TopologySpec, mentioning fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try Topology.build(spec), line: line) { error in
                XCTAssert("\(error)".contains(fragment), "\(error) should mention \(fragment)", line: line)
            }
            XCTAssertEqual(ourNamespaces, before, "a failed build must delete what it created", line: line)
        }
        // Fails in the sysctl step (namespaces exist by then).
        var spec = TopologySpec.dockerLike(containers: ["a", "b"])
        spec.hostSysctls = ["net.ipv4.netlab_no_such_setting": "1"]
        assertFails(spec, mentioning: "netlab_no_such_setting")

        // Fails in the host batch: ip refuses the bridge MTU.
        spec = .dockerLike(containers: ["a", "b"])
        spec.bridge.mtu = 50
        assertFails(spec, mentioning: "line 2")

        // Fails in the last step: a multicast MAC cannot be an interface address.
        spec = .dockerLike(containers: ["a", "b"])
        spec.containers[1].mac = MACAddress("01:00:5e:00:00:01")
        assertFails(spec, mentioning: "01:00:5e:00:00:01")

        // Rejected before anything is created.
        spec = .dockerLike(containers: ["a", "b"])
        spec.externals[0].addresses.append(IPv4InterfaceAddress("192.0.2.50/32")!)
        assertFails(spec, mentioning: "192.0.2.0/24")
    }

    func testBuildAndTeardownTiming() throws {
        try requireRoot()
        let before = ourNamespaces
        var builds: [Double] = []
        var teardowns: [Double] = []
        for _ in 0..<5 {
            let started = ContinuousClock.now
            let topology = try Topology.build(.dockerLike(containers: ["a", "b", "c", "d"]))
            let built = ContinuousClock.now
            topology.teardown()
            builds.append((built - started).milliseconds)
            teardowns.append((ContinuousClock.now - built).milliseconds)
        }
        builds.sort()
        teardowns.sort()
        print(
            "netlab timing (4 containers + 1 external, 6 namespaces, 5 runs): build median \(Int(builds[2])) ms "
                + "(min \(Int(builds[0])), max \(Int(builds[4]))), teardown median \(Int(teardowns[2])) ms "
                + "(min \(Int(teardowns[0])), max \(Int(teardowns[4])))")
        XCTAssertEqual(ourNamespaces, before)
        // Generous: the machine is shared, but hundreds of processes would blow this.
        XCTAssertLessThan(builds[2], 2000)
    }

    func testOptionalSettings() throws {
        try requireRoot()
        let runner = try probeRunner()
        var spec = TopologySpec.dockerLike(containers: ["web", "my-db"])
        spec.staticNeighbours = true
        spec.bridgeNetfilter = true
        spec.ipForward = false
        spec.containers[0].hostSideGRO = true
        spec.containers[1].containerSideGRO = true
        spec.bridge.mac = MACAddress("02:00:00:00:00:01")
        let lab = try Topology.build(spec)
        addTeardownBlock { lab.teardown() }
        func output(_ role: String, _ arguments: [String]) throws -> String {
            try lab.run(in: role, arguments).stdout
        }
        let web = try XCTUnwrap(lab.container("web"))
        let db = try XCTUnwrap(lab.container("my-db"))

        // Sysctls, read back inside each namespace.
        XCTAssertEqual(try output("host", ["sysctl", "-n", "net.ipv4.ip_forward"]), "0\n")
        func sysctl(_ key: String, in role: String) throws -> String {
            try Sysctl.read(key, in: lab.namespace(role))
        }
        XCTAssertEqual(try sysctl("net.ipv4.ip_forward", in: "host"), "0")
        XCTAssertEqual(try sysctl("net.ipv4.ip_forward", in: "web"), "0")
        XCTAssertEqual(try sysctl("net.ipv6.conf.all.disable_ipv6", in: "ext"), "1")
        // Its own (root) namespace is refused. A key that does not exist, so
        // that even a broken guard could not change anything here.
        XCTAssertThrowsError(
            try NamespaceSysctl.write([
                (
                    NetworkNamespace(unopenedPath: "/proc/self/ns/net"),
                    [("net.ipv4.netlab_no_such_setting", "0")]
                )
            ])
        ) { error in
            XCTAssert("\(error)".contains("refusing"), "\(error)")
        }
        XCTAssertEqual(try output("host", ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]), "1\n")
        XCTAssertEqual(try output("web", ["sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6"]), "1\n")

        // Static neighbours both ways and static FDB entries on the bridge.
        let webNeighbours = try output("web", ["ip", "neigh", "show", "dev", "eth0"])
        XCTAssert(webNeighbours.contains("\(db.address) lladdr \(db.resolvedMAC) PERMANENT"), webNeighbours)
        XCTAssert(
            webNeighbours.contains("\(spec.bridge.address.address) lladdr 02:00:00:00:00:01 PERMANENT"), webNeighbours)
        let hostNeighbours = try output("host", ["ip", "neigh", "show", "dev", "docker0"])
        XCTAssert(hostNeighbours.contains("\(web.address) lladdr \(web.resolvedMAC) PERMANENT"), hostNeighbours)
        let fdb = try output("host", ["bridge", "fdb", "show", "dev", "vethmy-db"])
        XCTAssert(fdb.contains("\(db.resolvedMAC) master docker0 static"), fdb)

        // GRO where asked for.
        XCTAssert(try output("host", ["ethtool", "-k", "vethweb"]).contains("generic-receive-offload: on"))
        XCTAssert(try output("my-db", ["ethtool", "-k", "eth0"]).contains("generic-receive-offload: on"))

        // Traffic: bridged works (br_netfilter with an empty ruleset passes it);
        // routing is off, so the external cannot reach a container.
        try lab.startServer(in: "my-db", tcp: [80], probe: runner)
        let results = runner.run([
            try lab.probe(from: "web", to: "my-db", .tcp(80)),
            try lab.probe(from: "ext", to: "my-db", .tcp(80), timeout: .milliseconds(300)),
        ])
        XCTAssertEqual(results.map(\.reachability), [.allowed, .blocked], "\(ReachabilityMatrix(results))")
    }
}
