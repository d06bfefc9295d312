// SPDX-License-Identifier: Apache-2.0
//
// User-defined Docker networks end to end (root), the same probes through
// every backend: a host namespace with the default bridge and three more
// bridges (a network with icc on, one with icc off, an internal one), real
// TCP between their containers, to the host, and to an outside namespace
// that has no route back to any container subnet (so only masquerade gets
// an answer back). Reasons may differ between backends; verdicts may not.

import BPFNetCore
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

final class NetworksEndToEndTests: XCTestCase {
    private var topology: Topology!
    private var workDirectory: String!
    private var pinPath: String { workDirectory + "/pins" }

    /// docker0 (icc on): d1, d2; br-front (icc on): f1, f2; br-back (icc
    /// off): b1, b2; br-vault (internal): v1, v2; ext on ext0 with routes
    /// through the host to f2 and the internal subnet only (so an answer to
    /// d1, f1 or b1 comes back only when masqueraded, and v1 would be answered
    /// if its packets left).
    static let spec: TopologySpec = {
        func member(_ name: String, _ address: String, _ bridge: String?) -> ContainerSpec {
            ContainerSpec(name: name, address: IPv4Address(address)!, bridge: bridge)
        }
        var spec = TopologySpec(
            bridge: BridgeSpec(address: IPv4InterfaceAddress("10.88.0.1/24")!),
            containers: [
                member("d1", "10.88.0.2", nil), member("d2", "10.88.0.3", nil),
                member("f1", "10.91.0.2", "br-front"), member("f2", "10.91.0.3", "br-front"),
                member("b1", "10.92.0.2", "br-back"), member("b2", "10.92.0.3", "br-back"),
                member("v1", "10.93.0.2", "br-vault"), member("v2", "10.93.0.3", "br-vault"),
                // Ports no container of the policy owns (unknown ports of their network).
                member("fx", "10.91.0.9", "br-front"), member("bx", "10.92.0.9", "br-back"),
                member("vx", "10.93.0.9", "br-vault"),
            ],
            externals: [
                ExternalSpec(
                    name: "ext", hostInterface: "ext0", hostAddress: IPv4InterfaceAddress("198.51.100.1/24")!,
                    addresses: [IPv4InterfaceAddress("198.51.100.2/24")!], routeToBridge: false,
                    extraRoutes: [IPv4CIDR("10.91.0.3/32")!, IPv4CIDR("10.93.0.0/24")!])
            ])
        spec.networks = [
            BridgeSpec(name: "br-front", address: IPv4InterfaceAddress("10.91.0.1/24")!),
            BridgeSpec(name: "br-back", address: IPv4InterfaceAddress("10.92.0.1/24")!),
            BridgeSpec(name: "br-vault", address: IPv4InterfaceAddress("10.93.0.1/24")!),
        ]
        return spec
    }()

    /// Containers the policy does not name.
    static let unknown: Set<String> = ["fx", "bx", "vx"]

    static let networkNames = ["br-front": "front", "br-back": "back", "br-vault": "vault"]

    static func policy(forwardPolicy: ForwardPolicy) -> Policy {
        Policy(
            bridge: "docker0", icc: true, forwardPolicy: forwardPolicy,
            extInterfaces: [ExternalInterface(name: "ext0")],
            containers: spec.containers.filter { !unknown.contains($0.name) }.map { container in
                Container(
                    name: container.name, ip: container.address, mac: container.resolvedMAC,
                    port: container.resolvedHostInterface,
                    published: container.name == "f1"
                        ? [PublishedPort(hostPort: 8081, containerPort: 80, proto: .tcp)] : [],
                    network: container.bridge.flatMap { networkNames[$0] })
            },
            networks: [
                BridgeNetwork(name: "front", bridge: "br-front"),
                BridgeNetwork(name: "back", bridge: "br-back", icc: false),
                BridgeNetwork(name: "vault", bridge: "br-vault", internal: true),
            ])
    }

    /// (from, to, expected reachable, why) under `forwardPolicy`. `to` is a
    /// role, a bridge (its address: the host) or "ext:8081" (the published
    /// port on the host's ext0 address).
    static func cells(_ forwardPolicy: ForwardPolicy) -> [(from: String, to: String, allowed: Bool, why: String)] {
        fixedCells + [
            ("ext", "f2", forwardPolicy == .accept, "routed straight to a user-network container: forward policy"),
            ("ext", "v1", false, "nothing routed from outside reaches an internal network"),
        ]
    }

    static let fixedCells: [(from: String, to: String, allowed: Bool, why: String)] = [
        ("d1", "d2", true, "default bridge, icc on"),
        ("f1", "f2", true, "front: icc on"),
        ("b1", "b2", false, "back: icc off"),
        ("b2", "b1", false, "back: icc off"),
        ("v1", "v2", true, "vault: within the internal subnet"),
        ("f1", "b1", false, "front → back: isolation"),
        ("b1", "f1", false, "back → front: isolation"),
        ("d1", "f1", false, "default → front: isolation"),
        ("f1", "d1", false, "front → default: isolation"),
        ("f1", "v1", false, "front → vault: isolation, internal"),
        ("v1", "f1", false, "vault → front: isolation, internal"),
        ("d1", "b1", false, "default → back: isolation"),
        ("b1", "d1", false, "back → default: isolation"),
        ("b1", "v1", false, "back → vault: isolation, internal"),
        ("v1", "b1", false, "vault → back: isolation, internal"),
        ("d1", "v1", false, "default → vault: isolation, internal"),
        ("v1", "d1", false, "vault → default: isolation, internal"),
        ("f1", "br-back", true, "another network's gateway is a host address"),
        ("v1", "br-vault", true, "an internal network reaches its gateway"),
        ("v1", "ext", false, "internal: nothing outside its subnet"),
        ("d1", "ext", true, "default bridge masqueraded"),
        ("f1", "ext", true, "front masqueraded (ext has no route back)"),
        ("b1", "ext", true, "back masqueraded (ext has no route back)"),
        ("ext", "ext:8081", true, "front's published port"),
        ("fx", "f1", true, "an unknown port of front: icc on"),
        ("bx", "b1", false, "an unknown port of back: icc off"),
        ("bx", "ext", true, "an unknown port of back reaches the outside"),
        ("bx", "f1", false, "an unknown port of back: isolation"),
        ("vx", "v1", true, "an unknown port of vault: within the subnet"),
        ("vx", "ext", false, "an unknown port of vault: internal"),
    ]

    /// The counter `backend` counts a blocked cell (or a probe to the host's
    /// ext0 address) under. The verdicts agree; the reasons differ where the
    /// backends judge at different places (docs/fallback-networks.md): the
    /// nftables bridge table drops what leaves an icc-off network as `icc`,
    /// the iptables backend checks internal networks before isolation (as
    /// Docker), and forward policy drop is checked before `internal` except by iptables.
    static func reason(from: String, to: String, backend: String, forwardPolicy: ForwardPolicy) -> String {
        if from == "ext" {
            if to == "v1" { return forwardPolicy == .drop && backend != "iptables" ? "forward" : "internal" }
            return "forward"
        }
        // v1 and vx to the outside or the host's ext0 address.
        guard let target = to.first, to != "ext", to.count == 2 else { return "internal" }
        let source = from.first!
        if from == "bx" { return target == "b" || backend == "nftables" ? "unknown-port" : "network" }
        if source == target { return "icc" }
        switch backend {
        case "nftables": return source == "b" ? "icc" : "network"
        case "iptables": return source == "v" || target == "v" ? "internal" : "network"
        default: return "network"
        }
    }

    override func setUpWithError() throws {
        try requireRootForEndToEnd()
        var template = Array("/tmp/bpfnet-networks-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw NetLabError.invalidSpec("mkdtemp failed") }
        workDirectory = String(cString: made)
        topology = try Topology.build(Self.spec)
        let probe = try ProbeRunner()
        for role in Self.spec.containers.map(\.name) + ["ext", TopologySpec.hostRole] {
            try topology.startServer(in: role, tcp: [80], probe: probe)
        }
    }

    override func tearDown() {
        if let topology, let workDirectory {
            _ = try? bpfnet(["unload"])
            _ = try? ProcessRunner.run(Command(["umount", "-l", workDirectory + "/pins"], timeout: .seconds(10)))
            _ = topology.teardown()
            try? FileManager.default.removeItem(atPath: workDirectory)
        }
        topology = nil
    }

    @discardableResult
    private func bpfnet(_ arguments: [String]) throws -> String {
        try topology.run(
            in: TopologySpec.hostRole, [try DemoLab.locateBPFNet()] + arguments + ["--pin-path", pinPath],
            timeout: .seconds(60)
        ).stdout
    }

    private func status() throws -> DataplaneStatus {
        try JSONDecoder().decode(DataplaneStatus.self, from: Data(try bpfnet(["status", "--json"]).utf8))
    }

    /// `ipv6`: container name → IPv6 address, for a dual-stack policy (front
    /// fd00:91::/64, back fd00:92::/64, vault fd00:93::/64).
    private func load(backend: String, forwardPolicy: ForwardPolicy, ipv6: [String: String] = [:]) throws {
        let file = workDirectory + "/policy.json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var policy = Self.policy(forwardPolicy: forwardPolicy)
        if !ipv6.isEmpty {
            for index in policy.networks.indices {
                let prefix = ["front": "fd00:91::1/64", "back": "fd00:92::1/64", "vault": "fd00:93::1/64"][
                    policy.networks[index].name]
                policy.networks[index].ipv6 = prefix.flatMap { IPv6InterfaceAddress($0) }
            }
            for index in policy.containers.indices {
                policy.containers[index].ipv6 = ipv6[policy.containers[index].name].flatMap { IPv6Address($0) }
            }
        }
        try encoder.encode(policy).write(to: URL(fileURLWithPath: file))
        try bpfnet(["load", "--config", file, "--backend", backend])
    }

    /// Every cell, measured: "from → to: observed (expected …)" for the wrong
    /// ones; the blocked ones must show up in their drop counters.
    private func wrongCells(_ forwardPolicy: ForwardPolicy, backend: String) throws -> [String] {
        let cells = Self.cells(forwardPolicy)
        let probes = try cells.map { cell throws(NetLabError) in
            if cell.to == "ext:8081" {
                return try topology.probe(
                    from: cell.from, to: IPv4Address(198, 51, 100, 1), .tcp(8081), label: "ext → 198.51.100.1:8081")
            }
            if let network = Self.spec.networks.first(where: { $0.name == cell.to }) {
                return try topology.probe(
                    from: cell.from, to: network.address.address, .tcp(80), label: "\(cell.from) → \(cell.to)")
            }
            return try topology.probe(from: cell.from, to: cell.to, .tcp(80))
        }
        let before = try status().counters
        let results = try ProbeRunner().run(probes)
        var blocked: [String: Int] = [:]
        for cell in cells where !cell.allowed {
            blocked[
                Self.reason(from: cell.from, to: cell.to, backend: backend, forwardPolicy: forwardPolicy), default: 0] +=
                1
        }
        assertDropsCounted(
            blocked, before: before, after: try status().counters, "\(backend), forward policy \(forwardPolicy)")
        var wrong: [String] = []
        for (cell, result) in zip(cells, results) {
            let allowed = result.reachability == .allowed
            if allowed != cell.allowed {
                wrong.append(
                    "\(cell.from) → \(cell.to): \(result.reachability) (expected \(cell.allowed ? "allowed" : "blocked"): "
                        + "\(cell.why)) — \(result.detail)")
            }
            // Outbound to ext is answered only when masqueraded to the host's ext0 address.
            if allowed && cell.to == "ext", let peer = result.peerSeen {
                if peer.address != IPv4Address(198, 51, 100, 1) {
                    wrong.append("\(cell.from) → ext: ext saw \(peer), not the host's address")
                }
            }
        }
        return wrong
    }

    private func check(backend: String) throws {
        for forwardPolicy in [ForwardPolicy.drop, .accept] {
            try check(backend: backend, forwardPolicy: forwardPolicy)
        }
    }

    @discardableResult
    private func check(backend: String, forwardPolicy: ForwardPolicy) throws -> DataplaneStatus {
        try load(backend: backend, forwardPolicy: forwardPolicy)
        let wrong = try wrongCells(forwardPolicy, backend: backend)
        XCTAssert(
            wrong.isEmpty,
            "\(backend), forward policy \(forwardPolicy): \(wrong.count) of \(Self.cells(forwardPolicy).count) cells differ:\n"
                + wrong.joined(separator: "\n"))
        // A container that routes its neighbour through the gateway (back into the same bridge):
        // that network's icc decides, whatever the forward policy, as under Docker (`-i br -o br`).
        // The eBPF backend's guard once dropped it on a network with icc on under forward policy drop.
        let routes = [("f1", "10.91.0.3/32 via 10.91.0.1"), ("b1", "10.92.0.3/32 via 10.92.0.1")]
        for (role, route) in routes { try topology.ip(in: role, ["route add \(route)"]) }
        let routed = try ProbeRunner().run([
            try topology.probe(from: "f1", to: "f2", .tcp(80)), try topology.probe(from: "b1", to: "b2", .tcp(80)),
        ])
        for (role, route) in routes { try topology.ip(in: role, ["route del \(route)"]) }
        XCTAssertEqual(routed[0].reachability, .allowed, "\(backend) \(forwardPolicy): f1 → f2 through the gateway")
        XCTAssertEqual(routed[1].reachability, .blocked, "\(backend) \(forwardPolicy): b1 → b2 through the gateway")

        // An internal network to the host's address on ext0 (not a bridge's): dropped by every backend
        // (the iptables backend's BPFNET-INTERNAL chain in INPUT), vx too (an unknown port of vault).
        let hostAddress = IPv4Address(198, 51, 100, 1)
        let before = try status().counters
        let results = try ProbeRunner().run([
            try topology.probe(from: "v1", to: hostAddress, .tcp(80)),
            try topology.probe(from: "vx", to: hostAddress, .tcp(80)),
        ])
        for result in results {
            XCTAssertEqual(result.reachability, .blocked, "\(backend): \(result)")
        }
        let status = try status()
        assertDropsCounted(
            ["internal": 2], before: before, after: status.counters, "\(backend): to the host's ext0 address")
        XCTAssertEqual(status.backend, backend)
        XCTAssertEqual(status.containers.count, Self.spec.containers.count - Self.unknown.count, "\(backend)")
        if backend == "bpf" {
            // Every network with its containers and the ports holding the program (unknown ones included).
            XCTAssertEqual(
                status.networks,
                [
                    .init(
                        name: "bridge", bridge: "docker0", subnet: "10.88.0.0/24", icc: true, internal: false,
                        masquerade: true, containers: 2, ports: 2),
                    .init(
                        name: "back", bridge: "br-back", subnet: "10.92.0.0/24", icc: false, internal: false,
                        masquerade: true, containers: 2, ports: 3),
                    .init(
                        name: "front", bridge: "br-front", subnet: "10.91.0.0/24", icc: true, internal: false,
                        masquerade: true, containers: 2, ports: 3),
                    .init(
                        name: "vault", bridge: "br-vault", subnet: "10.93.0.0/24", icc: true, internal: true,
                        masquerade: false, containers: 2, ports: 3),
                ])
            let text = try bpfnet(["status"])
            XCTAssertTrue(text.contains("networks (4)"), text)
            XCTAssertTrue(
                text.split(separator: "\n").contains { $0.hasPrefix("  vault ") && $0.contains("10.93.0.0/24") }, text)
        } else {
            XCTAssertNil(status.networks, "\(backend): the netfilter backends do not read networks back")
        }
        return status
    }

    func testEBPF() throws { try check(backend: "bpf") }

    /// Ports that join a bridge after the load (no apply since). On back
    /// (icc off) one reaches no container on every backend (eBPF: the guard;
    /// nftables: port_unknown; iptables: BPFNET-SENDER's physdev rule; the
    /// container's answer is dropped by its own icc as well) and still reaches
    /// the outside. On front (icc on) one is held from the containers by the
    /// eBPF guard and by nftables, which cannot tell the bridge of a port it
    /// has not seen; iptables, which can, lets it in as front's icc says
    /// (docs/fallback-networks.md, "Where the backends differ").
    func testAPortThatJoinsAfterTheLoadIsHeld() throws {
        for (index, backend) in ["bpf", "nftables", "iptables"].enumerated() {
            try load(backend: backend, forwardPolicy: .drop)
            let back = try latePort("lb\(index)", bridge: "br-back", address: "10.92.0.20/24")
            let front = try latePort("lf\(index)", bridge: "br-front", address: "10.91.0.20/24")
            defer {
                for (namespace, port) in [back, front] {
                    _ = try? topology.ip(in: TopologySpec.hostRole, ["link del \(port)"])
                    _ = try? ProcessRunner.run(Command(["ip", "netns", "del", namespace.name]))
                }
            }
            let results = try ProbeRunner().run([
                Probe(from: back.0, to: IPv4Address(10, 92, 0, 2), .tcp(80), label: "late on back → b1"),
                Probe(from: back.0, to: IPv4Address(198, 51, 100, 2), .tcp(80), label: "late on back → ext"),
                Probe(from: front.0, to: IPv4Address(10, 91, 0, 2), .tcp(80), label: "late on front → f1"),
            ])
            XCTAssertEqual(results[0].reachability, .blocked, "\(backend): \(results[0])")
            XCTAssertEqual(results[1].reachability, .allowed, "\(backend): \(results[1])")
            XCTAssertEqual(
                results[2].reachability, backend == "iptables" ? .allowed : .blocked, "\(backend): \(results[2])")
        }
    }

    /// A namespace (not the topology's) on a new port `veth<name>` of `bridge`.
    private func latePort(_ name: String, bridge: String, address: String) throws -> (NetworkNamespace, String) {
        let namespace = NetworkNamespace(unopenedNamed: "\(topology.prefix)-\(name)")
        let port = "veth\(name)"
        try ProcessRunner.runChecked(Command(["ip", "netns", "add", namespace.name]))
        let gateway = IPv4InterfaceAddress(address)!.network.address.value + 1
        try topology.ip(
            in: TopologySpec.hostRole,
            [
                "link add \(port) type veth peer name eth0 netns \(namespace.name)",
                "link set \(port) master \(bridge)", "link set \(port) up",
            ])
        try ProcessRunner.runChecked(
            namespace.command(
                ["ip", "-batch", "-"],
                input: "link set lo up\naddr add \(address) dev eth0\nlink set eth0 up\n"
                    + "route add default via \(IPv4Address(gateway))\n"))
        return (namespace, port)
    }

    /// IPv6 between containers: within front (icc on) it passes, within back
    /// (icc off) it is refused, on every backend: with the addresses in a
    /// dual-stack policy (a container's IPv6 source must be its own); for
    /// iptables, ip6tables' -i br-back -o br-back DROP.
    func testIPv6BetweenContainersFollowsEachNetworksICC() throws {
        let addresses = ["f1": "fd00:91::2", "f2": "fd00:91::3", "b1": "fd00:92::2", "b2": "fd00:92::3"]
        for (role, address) in addresses {
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])
            try topology.ip(in: role, ["addr add \(address)/64 dev eth0 nodad"])
        }
        let server = """
            import socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind(("::", 9999))
            print("ready", flush=True)
            while True:
                data, peer = s.recvfrom(100)
                s.sendto(data, peer)
            """
        for role in ["f2", "b2"] {
            let process = try topology.startProcess(in: role, ["python3", "-c", server], captureOutput: true)
            _ = try process.waitForLine(prefix: "ready", timeout: .seconds(10))
        }
        let client = """
            import socket, sys
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(b"bpfnet", (sys.argv[1], 9999))
            try:
                s.recvfrom(100)
                print("allowed")
            except socket.timeout:
                print("blocked")
            """
        // Control: before any load, IPv6 passes within back.
        let before = try topology.run(in: "b1", ["python3", "-c", client, addresses["b2"]!]).stdout
        XCTAssertEqual(before.trimmingCharacters(in: .whitespacesAndNewlines), "allowed", "b1 → b2 without bpfnet")
        for backend in ["bpf", "nftables", "iptables"] {
            try load(backend: backend, forwardPolicy: .drop, ipv6: addresses)
            for (from, to, allowed) in [("f1", "f2", true), ("b1", "b2", false)] {
                // Neighbour entries from an earlier backend would spare the discovery.
                try topology.ip(in: from, ["neigh flush dev eth0"])
                let output = try topology.run(in: from, ["python3", "-c", client, addresses[to]!]).stdout
                XCTAssertEqual(
                    output.trimmingCharacters(in: .whitespacesAndNewlines), allowed ? "allowed" : "blocked",
                    "\(backend): \(from) → \(to) over IPv6")
            }
        }
    }

    /// Dual stack with real traffic, on every backend: front, back and vault
    /// get IPv6 subnets (their bridges the gateways ::1), the outside host
    /// 2001:db8:1::2 routes them through the host (IPv6 is routed, not NAT'd).
    /// Under forward policy drop the outside reaches no container, yet every
    /// container's own UDP and TCP flows to it are answered (the replies are
    /// row 10: conntrack tracks IPv6 because of the guard's ip6 table);
    /// isolation and internal hold over IPv6; with forward accept the outside
    /// reaches front's containers, still not the internal vault.
    func testDualStackOnEveryBackend() throws {
        let addresses = ["f1": "fd00:91::2", "f2": "fd00:91::3", "b1": "fd00:92::2", "v1": "fd00:93::2"]
        let host = TopologySpec.hostRole
        try topology.run(in: host, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
        try topology.run(in: host, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        for (bridge, gateway) in [("br-front", "fd00:91::1"), ("br-back", "fd00:92::1"), ("br-vault", "fd00:93::1")] {
            try topology.run(in: host, ["sysctl", "-qw", "net.ipv6.conf.\(bridge).disable_ipv6=0"])
            try topology.ip(in: host, ["addr add \(gateway)/64 dev \(bridge) nodad"])
        }
        try topology.run(in: host, ["sysctl", "-qw", "net.ipv6.conf.ext0.disable_ipv6=0"])
        try topology.ip(in: host, ["addr add 2001:db8:1::1/64 dev ext0 nodad"])
        for (role, address) in addresses {
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
            try topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])
            let gateway = address.replacingOccurrences(of: #"::\d+$"#, with: "::1", options: .regularExpression)
            try topology.ip(in: role, ["addr add \(address)/64 dev eth0 nodad", "route add default via \(gateway)"])
        }
        try topology.run(in: "ext", ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
        try topology.run(in: "ext", ["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"])
        try topology.ip(
            in: "ext",
            ["addr add 2001:db8:1::2/64 dev eth0 nodad"]
                + ["fd00:91::/64", "fd00:92::/64", "fd00:93::/64"].map { "route add \($0) via 2001:db8:1::1" })
        // UDP and TCP echo on [::]:9999 in the outside host and in f1, b1, f2.
        let server = """
            import socket, threading
            def udp():
                s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                s.bind(("::", 9999))
                while True:
                    data, peer = s.recvfrom(100)
                    s.sendto(data, peer)
            def tcp():
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("::", 9999))
                s.listen(8)
                while True:
                    c, _ = s.accept()
                    c.sendall(c.recv(100))
                    c.close()
            threading.Thread(target=udp, daemon=True).start()
            print("ready", flush=True)
            tcp()
            """
        for role in ["ext", "f1", "f2", "b1"] {
            let process = try topology.startProcess(in: role, ["python3", "-c", server], captureOutput: true)
            _ = try process.waitForLine(prefix: "ready", timeout: .seconds(10))
        }
        let client = """
            import socket, sys
            kind = socket.SOCK_DGRAM if sys.argv[2] == "udp" else socket.SOCK_STREAM
            s = socket.socket(socket.AF_INET6, kind)
            s.settimeout(2)
            try:
                if kind == socket.SOCK_STREAM:
                    s.connect((sys.argv[1], 9999))
                    s.sendall(b"bpfnet")
                else:
                    s.sendto(b"bpfnet", (sys.argv[1], 9999))
                print("allowed" if s.recv(100) == b"bpfnet" else "garbled")
            except OSError:
                print("blocked")
            """
        let topology = self.topology!
        let probe = { (from: String, to: String, proto: String) throws -> String in
            try topology.run(in: from, ["python3", "-c", client, to, proto]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let outside = "2001:db8:1::2"
        // Control: without bpfnet the outside reaches front directly.
        XCTAssertEqual(try probe("ext", addresses["f1"]!, "udp"), "allowed", "ext → f1 without bpfnet")

        for backend in ["bpf", "nftables", "iptables"] {
            try checkDualStack(backend: backend, addresses: addresses, outside: outside, probe: probe)
        }
    }

    private func checkDualStack(
        backend: String, addresses: [String: String], outside: String, probe: (String, String, String) throws -> String
    ) throws {
        try load(backend: backend, forwardPolicy: .drop, ipv6: addresses)
        let before = try status().counters
        let cells: [(from: String, to: String, proto: String, expected: String, why: String)] = [
            ("f1", outside, "udp", "allowed", "a container's own UDP flow out; the reply is row 10"),
            ("f1", outside, "tcp", "allowed", "a container's own TCP connection out"),
            ("b1", outside, "tcp", "allowed", "back is not internal"),
            ("f1", addresses["f2"]!, "udp", "allowed", "front has icc on"),
            ("ext", addresses["f1"]!, "udp", "blocked", "forward policy drop"),
            ("ext", addresses["f1"]!, "tcp", "blocked", "forward policy drop"),
            ("f1", addresses["b1"]!, "udp", "blocked", "isolation between networks"),
            ("v1", outside, "udp", "blocked", "vault is internal"),
        ]
        for cell in cells {
            XCTAssertEqual(
                try probe(cell.from, cell.to, cell.proto), cell.expected,
                "\(backend): \(cell.from) → \(cell.to) \(cell.proto) over IPv6: \(cell.why)")
        }
        let after = try status().counters
        // iptables accepts replies by conntrack state without counting them.
        for reason in ["forward", "network", "internal"] + (backend == "iptables" ? [] : ["reply"]) {
            XCTAssertGreaterThan(
                after[reason, default: 0], before[reason, default: 0], "\(backend): counter \(reason)")
        }
        XCTAssertEqual(
            after["spoofed", default: 0], before["spoofed", default: 0], "\(backend): every source was its container's")
        // A forged source: f1 sends as f2.
        let forged = try topology.run(
            in: "f1",
            [
                "python3", "-c",
                "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
                    + "s.setsockopt(socket.IPPROTO_IPV6, 75, 1); s.bind((\"\(addresses["f2"]!)\", 0)); "
                    + "s.sendto(b'x', (\"\(outside)\", 9999))",
            ])
        XCTAssertTrue(forged.succeeded, forged.stderr)
        XCTAssertGreaterThan(
            try status().counters["spoofed", default: 0], after["spoofed", default: 0], "\(backend): f1 sending as f2")

        try load(backend: backend, forwardPolicy: .accept, ipv6: addresses)
        XCTAssertEqual(try probe("ext", addresses["f1"]!, "tcp"), "allowed", "\(backend): forward accept: ext → f1")
        XCTAssertEqual(
            try probe("ext", addresses["v1"]!, "udp"), "blocked", "\(backend): never into an internal network")
    }

    /// iptables-legacy (x_tables), as on a host without nf_tables.
    func testIPTablesLegacy() throws {
        setenv("BPFNET_IPTABLES", "legacy", 1)
        defer { unsetenv("BPFNET_IPTABLES") }
        try check(backend: "iptables", forwardPolicy: .drop)
    }

    /// Switching between backends with networks: each takes over from the
    /// previous one (its programs on every bridge's ports, its tables and
    /// chains), the probes still pass, and all report the same policy.
    func testSwitchingBackends() throws {
        var statuses: [String: DataplaneStatus] = [:]
        for backend in ["bpf", "nftables", "iptables", "bpf", "iptables", "nftables", "bpf"] {
            statuses[backend] = try check(backend: backend, forwardPolicy: .drop)
        }
        XCTAssertEqual(statuses["nftables"]?.policyOnly, statuses["bpf"]?.policyOnly)
        XCTAssertEqual(statuses["iptables"]?.policyOnly, statuses["bpf"]?.policyOnly)
        try bpfnet(["unload"])
        let tables = try topology.run(in: TopologySpec.hostRole, ["nft", "list", "tables"]).stdout
        XCTAssertFalse(tables.contains("bpfnet"), tables)
        let chains = try topology.run(in: TopologySpec.hostRole, ["iptables-save"]).stdout
        XCTAssertFalse(chains.contains("BPFNET") || chains.contains("DOCKER"), chains)
        for port in Self.spec.containers.map(\.resolvedHostInterface) {
            let filters = try topology.run(in: TopologySpec.hostRole, ["tc", "filter", "show", "dev", port, "ingress"])
            XCTAssertEqual(filters.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "", port)
        }
    }

    func testNFTables() throws { try check(backend: "nftables") }

    func testIPTables() throws { try check(backend: "iptables") }
}
