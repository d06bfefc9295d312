// SPDX-License-Identifier: Apache-2.0
//
// eBPF NAT for published ports (`--nat ebpf`, docs/nat.md) with real
// traffic on the demo host: 1,000 TCP connections and 100 UDP flows from the
// outside to published ports, all open at once, every byte echoed back, while
// the policy changes, a new `bpfnet load` process reloads the programs, --nat
// is switched to netfilter (live connections drain in eBPF, new ones go to
// netfilter) and back. The outside's interface sends complete checksums (as a
// wire does; NetLab turns its tx offload off), so the XDP program may redirect
// its frames.
// Hairpin (a container to a host address's published port) and the host's own
// connections keep going through netfilter.

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class NATEndToEndTests: XCTestCase {
    private static let tcpPort: UInt16 = 9000
    private static let udpPort: UInt16 = 9001

    private func makeLab() throws -> (DemoLab, Policy, String) {
        try requireRoot("eBPF NAT end to end: namespaces, programs and real connections")
        let lab = try DemoLab(userNetworks: false)
        var policy = Scenario.policy(
            PolicySettings(icc: true, allowList: true, forwardPolicy: .drop), userNetworks: false)
        let web = try XCTUnwrap(policy.containers.firstIndex { $0.name == "web" })
        policy.containers[web].published += [
            PublishedPort(hostPort: Self.tcpPort, containerPort: Self.tcpPort),
            PublishedPort(hostPort: Self.udpPort, containerPort: Self.udpPort, proto: .udp),
        ]
        var template = Array("/tmp/bpfnet-nat-XXXXXX".utf8CString)
        let work = String(cString: try XCTUnwrap(mkdtemp(&template)))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: work) }
        return (lab, policy, work)
    }

    func testConnectionsSurvivePolicyChangesReloadsAndNATSwitches() throws {
        let (lab, policy, work) = try makeLab()
        defer { lab.close() }
        try lab.load(policy, extraArguments: ["--nat", "ebpf"])
        try startEchoServer(lab)

        let phases = ["fresh", "policy", "reload", "drain", "back"]
        let client = try lab.topology.startProcess(
            in: "ext",
            [
                "python3", "-c", Self.echoClient, Scenario.hostExternalAddress.description,
                Scenario.allowedSource.description, "1000", "100", work,
            ] + phases, captureOutput: true)
        _ = try client.waitForLine(prefix: "CONNECTED", timeout: .seconds(60))
        var status = try lab.status()
        XCTAssertEqual(status.nat, "ebpf")
        // The very first SYN may find no neighbour entry for web yet: the
        // stack resolves it, and that connection stays with netfilter.
        XCTAssertGreaterThanOrEqual(status.natConnections ?? 0, 990, "the TCP connections are in bn_nat")

        func run(_ phase: String, line: UInt = #line) throws {
            FileManager.default.createFile(atPath: "\(work)/go-\(phase)", contents: nil)
            let done = try client.waitForLine(prefix: "DONE \(phase)", timeout: .seconds(90))
            XCTAssertTrue(done.hasSuffix(" 0"), "\(phase): \(done) (the last field counts failures)", line: line)
        }
        let hitsBefore = status.fastPath?["ext-xdp"]?["hit"] ?? 0
        try run("fresh")
        // A policy change: icc off (containers), the allow-list unchanged.
        var changed = policy
        changed.icc = false
        try lab.load(changed, extraArguments: ["--nat", "ebpf"])
        try run("policy")
        // A new process loads the programs again over the pinned state.
        try lab.load(changed, extraArguments: ["--nat", "ebpf"])
        try run("reload")
        status = try lab.status()
        XCTAssertGreaterThan(
            (status.fastPath?["ext-xdp"]?["hit"] ?? 0) - hitsBefore, 3 * 1100,
            "every exchange of the three phases went through the eBPF NAT")
        XCTAssertGreaterThan(status.fastPath?["port-tc"]?["hit"] ?? 0, 3 * 1100, "and so did every reply")

        // --nat netfilter: the live connections drain in eBPF, the phase's
        // new connections go to netfilter's DNAT.
        try lab.load(changed, extraArguments: ["--nat", "netfilter"])
        status = try lab.status()
        XCTAssertEqual(status.nat, "netfilter")
        XCTAssertGreaterThanOrEqual(status.natConnections ?? 0, 1090, "still translated while they last")
        try run("drain")
        try lab.load(changed, extraArguments: ["--nat", "ebpf"])
        try run("back")

        let result = try client.waitForLine(prefix: "RESULT", timeout: .seconds(30))
        let fields =
            try JSONSerialization.jsonObject(with: Data(result.dropFirst("RESULT ".count).utf8)) as? [String: Any]
        let sent = try XCTUnwrap(fields?["sent"] as? Int)
        XCTAssertEqual(fields?["echoed"] as? Int, sent, "every byte sent came back")
        XCTAssertGreaterThan(sent, 5 * 1000 * 1000, "5 phases × 1,000 connections × 1,000+ bytes")
        XCTAssertEqual(fields?["failures"] as? [String], [])

        // Listed by status --connections, as the operator sees them.
        let text = try lab.bpfnet(["status", "--connections"])
        XCTAssertTrue(text.contains("eBPF NAT connections"), text)
        XCTAssertTrue(text.contains("\(Scenario.hostExternalAddress):\(Self.tcpPort)"), text)
    }

    /// A container reaching a host address's published port (hairpin: Docker's
    /// userland proxy, running here as dockerd would start it) and the host's
    /// own connections (netfilter's output DNAT) work with --nat ebpf as
    /// without; the other source of the outside stays refused by the allow-list.
    func testHairpinHostAndRefusedSourcesWithEBPFNAT() throws {
        let (lab, policy, _) = try makeLab()
        defer { lab.close() }
        try lab.load(policy, extraArguments: ["--nat", "ebpf"])
        try startEchoServer(lab)
        let web = try XCTUnwrap(policy.containers.first { $0.name == "web" })
        _ = try lab.topology.startProcess(
            in: TopologySpec.hostRole,
            [
                // docker-proxy reports its start on fd 3, as dockerd hands it a pipe there.
                "sh", "-c",
                "exec docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port \(Self.tcpPort) -container-ip "
                    + "\(web.ip) -container-port \(Self.tcpPort) 3>/dev/null",
            ])
        var listening = false
        for _ in 0..<100 where !listening {
            let sockets = try lab.topology.run(in: TopologySpec.hostRole, ["ss", "-Hltn", "sport = :\(Self.tcpPort)"])
            listening = !sockets.stdout.isEmpty
            if !listening { usleep(50_000) }
        }
        XCTAssertTrue(listening, "docker-proxy listens on the published port")
        let target = Scenario.hostExternalAddress.description
        for (role, source) in [("client", "0.0.0.0"), (TopologySpec.hostRole, "0.0.0.0"), ("ext", "198.51.100.2")] {
            let output = try lab.topology.run(
                in: role, ["python3", "-c", Self.oneShot, target, "\(Self.tcpPort)", source], timeout: .seconds(20)
            ).stdout
            XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "echoed 4096", "\(role)")
        }
        let refused = Scenario.otherSource
        XCTAssertThrowsError(
            try lab.topology.run(
                in: "ext", ["python3", "-c", Self.oneShot, target, "\(Self.tcpPort)", refused.description],
                timeout: .seconds(20)), "a source off the allow-list")
        let status = try lab.status()
        XCTAssertGreaterThan(status.counters["source", default: 0], 0)
        XCTAssertGreaterThan(status.fastPath?["ext-xdp"]?["hit"] ?? 0, 0, "the outside's connection took the eBPF NAT")
    }

    /// A small question, a 3,000-byte UDP answer (a large DNS answer): web's
    /// own stack fragments it, and every fragment must leave translated to
    /// the published address and port (9053, not web's 9054), or the
    /// client's connected socket never sees the answer (the stack would
    /// masquerade the untranslated fragments with web's port).
    func testALargeUDPAnswerLeavesTranslatedInFragments() throws {
        var (lab, policy, _) = try makeLab()
        defer { lab.close() }
        let web = try XCTUnwrap(policy.containers.firstIndex { $0.name == "web" })
        policy.containers[web].published.append(PublishedPort(hostPort: 9053, containerPort: 9054, proto: .udp))
        try lab.load(policy)
        let server = try lab.topology.startProcess(
            in: "web", ["python3", "-c", Self.largeAnswerServer, "9054"], captureOutput: true)
        _ = try server.waitForLine(prefix: "LISTENING", timeout: .seconds(10))
        // The host knows web's MAC first: otherwise the first question takes
        // the stack (`no-neighbour`), and its flow netfilter.
        try lab.topology.ip(
            in: TopologySpec.hostRole,
            [
                "neigh replace \(policy.containers[web].ip) lladdr \(policy.containers[web].mac) dev \(policy.bridge) nud reachable"
            ])
        let before = try lab.status()
        let output = try lab.topology.run(
            in: "ext",
            [
                "python3", "-c", Self.questionClient, Scenario.hostExternalAddress.description, "9053",
                Scenario.allowedSource.description,
            ], timeout: .seconds(30)
        ).stdout
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "answers 5 of 3000 bytes")
        let after = try lab.status()
        XCTAssertEqual(after.nat, "ebpf")
        XCTAssertGreaterThanOrEqual(
            (after.fastPath?["port-tc"]?["hit"] ?? 0) - (before.fastPath?["port-tc"]?["hit"] ?? 0), 5 * 3,
            "every fragment of the five answers left through the port program (\(after.fastPath ?? [:]))")
    }

    /// Path MTU discovery across the eBPF NAT: "fragmentation needed" sent
    /// from the outside about a UDP reply (as a router with a smaller link
    /// would) reaches the container translated, whose stack then lowers its
    /// path MTU towards the client. Without the translation it reaches only
    /// the host, which has no such flow.
    func testFragmentationNeededFromTheOutsideReachesTheContainer() throws {
        let (lab, policy, _) = try makeLab()
        defer { lab.close() }
        try lab.load(policy, extraArguments: ["--nat", "ebpf"])
        try startEchoServer(lab)
        let client = Scenario.allowedSource.description
        func pathMTU() throws -> String {
            try lab.topology.run(in: "web", ["ip", "route", "get", client]).stdout
        }
        XCTAssertFalse(try pathMTU().contains("mtu 1400"))
        // The first datagram may find web's neighbour entry unresolved and
        // take the stack (whose conntrack would then translate the error
        // itself): an echo first, the error about the next flow only.
        for sendError in ["no", "yes"] {
            _ = try lab.topology.run(
                in: "ext",
                [
                    "python3", "-c", Self.fragmentationNeeded, Scenario.hostExternalAddress.description, client,
                    "\(Self.udpPort)", sendError,
                ],
                timeout: .seconds(20))
        }
        let hits = try lab.status().fastPath?["ext-xdp"]?["hit"] ?? 0
        XCTAssertGreaterThanOrEqual(hits, 2, "the flow's datagram and the error took the eBPF NAT")
        var lowered = false
        for _ in 0..<40 where !lowered {
            lowered = try pathMTU().contains("mtu 1400")
            if !lowered { usleep(50_000) }
        }
        let route = try pathMTU()
        XCTAssertTrue(lowered, "web's route to the client: \(route)")
    }

    /// The echo server in web, listening on the published ports' container ports.
    private func startEchoServer(_ lab: DemoLab) throws {
        let server = try lab.topology.startProcess(
            in: "web", ["python3", "-c", Self.echoServer, "\(Self.tcpPort)", "\(Self.udpPort)"], captureOutput: true)
        _ = try server.waitForLine(prefix: "LISTENING", timeout: .seconds(10))
    }

    // MARK: scripts

    /// Echoes every TCP connection and UDP datagram (argv: TCP port, UDP port).
    static let echoServer = """
        import asyncio, resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
        async def handle(reader, writer):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()
        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport
            def datagram_received(self, data, peer):
                self.transport.sendto(data, peer)
        async def main():
            server = await asyncio.start_server(handle, '0.0.0.0', int(sys.argv[1]), backlog=4096)
            await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=('0.0.0.0', int(sys.argv[2])))
            print('LISTENING', flush=True)
            async with server:
                await server.serve_forever()
        asyncio.run(main())
        """

    /// argv: target, source address, TCP connections, UDP flows, work
    /// directory, phases. Opens every connection, then for each phase waits
    /// for WORK/go-PHASE and exchanges a payload on every connection and flow
    /// (and on one new TCP connection), checking the echo byte for byte.
    static let echoClient = """
        import json, os, resource, socket, sys, time
        resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
        target, source, count, flows, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
        phases = sys.argv[6:]
        sent = echoed = 0
        failures = []
        def connect():
            s = socket.socket()
            s.settimeout(10)
            s.bind((source, 0))
            s.connect((target, 9000))
            return s
        def exchange(s, payload):
            s.sendall(payload)
            got = b''
            while len(got) < len(payload):
                chunk = s.recv(len(payload) - len(got))
                if not chunk:
                    raise OSError('closed by the peer')
                got += chunk
            if got != payload:
                raise OSError('echo differs')
            return len(got)
        connections = [connect() for _ in range(count)]
        datagrams = []
        for _ in range(flows):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(2)
            u.bind((source, 0))
            u.connect((target, 9001))
            datagrams.append(u)
        print('CONNECTED', count, flows, flush=True)
        for number, phase in enumerate(phases):
            while not os.path.exists(os.path.join(work, 'go-' + phase)):
                time.sleep(0.05)
            before = len(failures)
            for i, s in enumerate(connections):
                payload = bytes([(i + number) % 251]) * (1000 + i % 97)
                sent += len(payload)
                try:
                    echoed += exchange(s, payload)
                except OSError as error:
                    failures.append('%s tcp #%d: %s' % (phase, i, error))
            for i, u in enumerate(datagrams):
                payload = bytes([(i * 7 + number) % 251]) * (200 + i)
                sent += len(payload)
                try:
                    u.send(payload)
                    answer = u.recv(65536)
                    if answer != payload:
                        raise OSError('echo differs')
                    echoed += len(answer)
                except OSError as error:
                    failures.append('%s udp #%d: %s' % (phase, i, error))
            try:
                fresh = connect()
                payload = b'n' * 3000
                sent += len(payload)
                echoed += exchange(fresh, payload)
                fresh.close()
            except OSError as error:
                failures.append('%s new connection: %s' % (phase, error))
            print('DONE', phase, sent, echoed, len(failures) - before, flush=True)
        for s in connections + datagrams:
            s.close()
        print('RESULT', json.dumps({'sent': sent, 'echoed': echoed, 'failures': failures[:20]}), flush=True)
        """

    /// argv: target, source address, UDP port, yes|no. One datagram echoed,
    /// then (yes) an ICMP "fragmentation needed" (MTU 1400) about the echo, as
    /// a router between the two would send it, to the target.
    static let fragmentationNeeded = """
        import socket, struct, sys
        target, source, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        def checksum(data):
            total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            return ~total & 0xFFFF
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(3)
        u.bind((source, 0))
        u.connect((target, port))
        u.send(b'x' * 100)
        if u.recv(2048) != b'x' * 100:
            sys.exit('no echo')
        local = u.getsockname()[1]
        if sys.argv[4] != 'yes':
            sys.exit(0)
        inner = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 128, 0, 0x4000, 63, 17, 0,
                            socket.inet_aton(target), socket.inet_aton(source))
        inner = inner[:10] + struct.pack('!H', checksum(inner)) + inner[12:]
        quote = inner + struct.pack('!HHHH', port, local, 108, 0)
        icmp = struct.pack('!BBHHH', 3, 4, 0, 0, 1400) + quote
        icmp = icmp[:2] + struct.pack('!H', checksum(icmp)) + icmp[4:]
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        raw.bind((source, 0))
        raw.sendto(icmp, (target, 0))
        print('sent', local)
        """

    /// Answers every datagram with 3,000 bytes (argv: UDP port).
    static let largeAnswerServer = """
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('0.0.0.0', int(sys.argv[1])))
        print('LISTENING', flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(bytes(i % 251 for i in range(3000)), peer)
        """

    /// Five questions from a connected UDP socket (argv: address, port,
    /// source address); only answers from that address and port arrive.
    static let questionClient = """
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.bind((sys.argv[3], 0))
        s.connect((sys.argv[1], int(sys.argv[2])))
        expected = bytes(i % 251 for i in range(3000))
        good = 0
        for _ in range(5):
            s.send(b'question')
            try:
                good += s.recv(65536) == expected
            except socket.timeout:
                pass
        print('answers', good, 'of 3000 bytes')
        """

    /// argv: target, port, source address: one connection, 4 KiB echoed.
    static let oneShot = """
        import socket, sys
        s = socket.socket()
        s.settimeout(3)
        s.bind((sys.argv[3], 0))
        s.connect((sys.argv[1], int(sys.argv[2])))
        payload = b'h' * 4096
        s.sendall(payload)
        got = b''
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        print('echoed', len(got) if got == payload else -1)
        """
}
