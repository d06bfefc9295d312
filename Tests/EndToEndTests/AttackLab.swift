// SPDX-License-Identifier: Apache-2.0
//
// AttackTests' and NetfilterOracleTests' harness: the demo host loaded with a
// bpfnet backend or with Docker 20.10's rules (Docker2010Rules), frames built
// and sent raw through AF_PACKET sockets from inside a namespace, and
// AF_PACKET listeners that report which frames arrived. One Python process (the machine has python3,
// and raw frames are a few lines there) enters each namespace with setns(2),
// opens every listener first, sends every frame, waits, and prints what each
// listener saw; each frame carries a unique marker in its payload.

import BPFNetCore
import BPFNetTestSupport
import DemoHost
import Foundation
import LinuxNet
import NetLab
import XCTest

/// The attacks of docs/security.md, by the backends that hold them.
enum Attack: CaseIterable {
    case unknownPort
    /// An unknown port forging the source address a link rule matches on.
    case unknownPortForgingALink
    case spoofing
    case arpSpoofing
    /// Frames to a container's MAC with an outside destination address.
    case poisonedNeighbour
    case stackedVLANs
    /// Routed at a container's unpublished port through an interface no policy names.
    case unlistedInterface
    /// The same at a port a container publishes, addressed to the container (not DNATed).
    case unlistedInterfaceToAPublishedContainerPort
    /// A container routed through its gateway to a container of another Docker network.
    case otherNetwork
    case ipv6
    /// IPv6 from outside to a port published on all addresses (docker-proxy's
    /// [::] socket) on an interface with an allow-list.
    case ipv6ToPublishedPort
}

/// Who sends: a container of the scenario, the hand-made port, or the second outside host.
enum Sender: Hashable {
    case container(String)
    case rogue
    case outside2
    /// The outside host of the scenario ("ext").
    case outside
}

/// What the Python side builds (JSON; nil fields are left out).
struct Frame: Encodable {
    /// "udp4", "tcp4" (a SYN), "icmp4" (an echo request), "udp6", "arp" (raw
    /// frames; the marker is the payload), or "socket-udp4", "socket-udp6",
    /// "socket-tcp6" (ordinary sockets: a datagram, or a connection that
    /// sends the marker once it is established).
    var kind: String
    var dstMAC: String?
    var srcMAC: String?
    var vlans: [Int]?
    var src: String?
    var dst: String?
    var sport: Int?
    var dport: Int?
    var op: Int?
    var senderMAC: String?
    var senderIP: String?
    var targetMAC: String?
    var targetIP: String?
    /// udp6: extension headers before UDP (0 hop-by-hop, 60 destination options), 8 bytes each.
    var extensionHeaders: [Int]?

    static func arp(
        op: Int, destinationMAC: String, sourceMAC: String, senderMAC: String, senderIP: IPv4Address,
        targetMAC: String, targetIP: IPv4Address
    ) -> Frame {
        Frame(
            kind: "arp", dstMAC: destinationMAC, srcMAC: sourceMAC, op: op, senderMAC: senderMAC,
            senderIP: "\(senderIP)", targetMAC: targetMAC, targetIP: "\(targetIP)")
    }

    static func socketUDP(to address: IPv4Address, port: Int) -> Frame {
        Frame(kind: "socket-udp4", dst: "\(address)", dport: port)
    }

    /// Through an IPv6 socket: "tcp" connects and sends, "udp" sends a
    /// datagram; from `source` (an address of the sender's) when given.
    static func socket6(_ proto: TransportProtocol, from source: String? = nil, to address: String, port: Int) -> Frame
    {
        Frame(kind: "socket-\(proto.rawValue)6", src: source, dst: address, dport: port)
    }
}

/// The counter a bpfnet backend counts a shot's frames under when it drops
/// them: a reason of `status` (docs/reasons.md) or "guard: COMMENT", a rule
/// of the eBPF backend's guard table. Reasons may differ between backends.
struct Counted {
    var byBackend: [String: String]

    /// The same reason on every bpfnet backend.
    static func everywhere(_ reason: String) -> Counted {
        Counted(byBackend: Dictionary(uniqueKeysWithValues: AttackLab.bpfnetBackends.map { ($0, reason) }))
    }

    static func by(bpf: String, nftables: String, iptables: String) -> Counted {
        Counted(byBackend: ["bpf": bpf, "nftables": nftables, "iptables": iptables])
    }

    static let none = Counted(byBackend: [:])
}

/// One frame, where it is listened for, whether it must arrive there and,
/// when a bpfnet backend must stop it, the counter that shows it did.
struct Shot {
    var name: String
    var from: Sender
    /// A listener: a container's eth0, "host" (docker0), "ext" (the outside
    /// host's eth0), or a socket of the host (`AttackLab.hostSocket`).
    var to: String
    var frame: Frame
    var arrives: Bool
    var counted: Counted

    init(_ name: String, from: Sender, to: String, frame: Frame, arrives: Bool, counted: Counted = .none) {
        self.name = name
        self.from = from
        self.to = to
        self.frame = frame
        self.arrives = arrives
        self.counted = counted
    }
}

final class AttackLab {
    static let settings = PolicySettings(icc: false, allowList: true, forwardPolicy: .drop)
    /// bpfnet's backends, which must stop every attack.
    static let bpfnetBackends = ["bpf", "nftables", "iptables"]
    /// Docker 20.10's own rules for the same host (`Docker2010Rules`, with
    /// br_netfilter), measured against the Docker column of docs/security.md.
    static let docker = "docker"
    /// Every attack runs on each of these.
    static let backends = bpfnetBackends + [docker]
    static let hostListener = "host"
    static let rogueAddress = IPv4Address(10, 88, 0, 99)
    static let rogueMAC = MACAddress(dockerStyleFor: rogueAddress).description
    static let outside2HostAddress = IPv4Address(203, 0, 113, 1)
    static let outside2Address = IPv4Address(203, 0, 113, 2)

    /// Whether `backend` stops `attack`: every bpfnet backend stops every
    /// attack; Docker's rules stop those the Docker column of
    /// docs/security.md says they hold, and the tests show the others get through.
    static func stops(_ attack: Attack, on backend: String) -> Bool {
        guard backend == docker else { return true }
        switch attack {
        case .unknownPort, .poisonedNeighbour, .unlistedInterface, .otherNetwork: return true
        case .unknownPortForgingALink, .spoofing, .arpSpoofing, .stackedVLANs,
            .unlistedInterfaceToAPublishedContainerPort, .ipv6, .ipv6ToPublishedPort:
            return false
        }
    }

    /// Whether an attack frame arrives on `backend`.
    static func arrives(_ attack: Attack, on backend: String) -> Bool { !stops(attack, on: backend) }

    let demo: DemoLab
    let bridgeMAC: String
    private let script: String
    /// The backend `use` loaded the scenario's policy with.
    private var loaded: String?
    /// The backend of whatever is loaded now (by `use` or `load`).
    private var active: String?
    private var serial = 0
    /// Every datagram gets a source port of its own, so that no conntrack
    /// entry an earlier shot (or backend: br_netfilter tracks bridged flows)
    /// left behind can make it part of an established flow.
    private var sourcePort = 40000

    private func nextSourcePort() -> Int {
        sourcePort = sourcePort == 60000 ? 40001 : sourcePort + 1
        return sourcePort
    }

    init() throws {
        demo = try DemoLab()
        do {
            // `ip -br link`: "docker0 UP 02:42:0a:58:00:01 <…>" (nsenter does not remount /sys).
            let link = try demo.topology.run(in: TopologySpec.hostRole, ["ip", "-br", "link", "show", "docker0"])
                .stdout.split(separator: " ", omittingEmptySubsequences: true)
            guard link.count > 2, let mac = MACAddress(String(link[2])) else {
                throw NSError(
                    domain: "AttackLab", code: 1, userInfo: [NSLocalizedDescriptionKey: "docker0's MAC: \(link)"])
            }
            bridgeMAC = mac.description
            script = demo.pinPath + "-attack.py"
            try Self.python.write(toFile: script, atomically: true, encoding: .utf8)
            let names = [rogueNamespace, outside2Namespace]
            NetLab.addCleanupStep { for name in names { Self.deleteNamespace(name) } }
        } catch {
            demo.close()
            throw error
        }
    }

    func close() {
        for name in [rogueNamespace, outside2Namespace] { Self.deleteNamespace(name) }
        try? FileManager.default.removeItem(atPath: script)
        demo.close()
    }

    private static func deleteNamespace(_ name: String) {
        guard access("/run/netns/" + name, F_OK) == 0 else { return }
        _ = try? ProcessRunner.run(Command(["ip", "netns", "del", name], timeout: .seconds(10)))
    }

    /// Loads the scenario's icc=false policy with `backend`, unless it is loaded already.
    func use(_ backend: String, fresh: Bool = false) throws {
        guard fresh || loaded != backend else { return }
        loaded = nil
        var policy = Scenario.policy(Self.settings, userNetworks: demo.userNetworks)
        for index in policy.extInterfaces.indices {
            policy.extInterfaces[index].allowSourcesIPv6 = [Self.listedPrefix6]
        }
        try load(policy, on: backend)
        loaded = backend
    }

    /// Loads `policy` with `backend` (a bpfnet backend, or Docker's rules), in
    /// place of whatever was loaded.
    func load(_ policy: Policy, on backend: String) throws {
        let previous = active
        active = nil
        if previous == Self.docker { try removeDockerRules() }
        if backend == Self.docker {
            if previous != nil { try demo.unload() }
            try loadDockerRules(policy)
        } else {
            try demo.load(policy, extraArguments: ["--backend", backend])
        }
        active = backend
    }

    /// The bridges' subnets, for Docker's masquerade rules.
    private static var subnets: [String: IPv4CIDR] {
        var subnets = ["docker0": Scenario.bridgeAddress.network]
        for network in Scenario.networks { subnets[network.bridge] = network.address.network }
        return subnets
    }

    /// What dockerd 20.10 and the documented DOCKER-USER allow-list write for
    /// `policy` on the demo host, with br_netfilter on for the host's bridges
    /// as dockerd turns it on. (Docker's allow-list has no IPv6 part.)
    private func loadDockerRules(_ policy: Policy) throws {
        let rules = Docker2010Rules.render(policy, subnets: Self.subnets)
        try demo.topology.run(in: TopologySpec.hostRole, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
        try demo.topology.run(in: TopologySpec.hostRole, ["iptables-restore"], input: rules)
    }

    /// Empty filter and nat tables again, FORWARD accepting as the lab built it.
    private func removeDockerRules() throws {
        let empty = [
            "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT",
            "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]", "COMMIT",
        ]
        try demo.topology.run(
            in: TopologySpec.hostRole, ["iptables-restore"], input: empty.joined(separator: "\n") + "\n")
    }

    func mac(_ container: String) -> String {
        MACAddress(dockerStyleFor: Scenario.address(container)).description
    }

    // MARK: frames

    /// A UDP datagram from `sender`'s MAC (or `sourceMAC`) to a container's
    /// MAC (or `destinationMAC`), in `vlans` tags.
    func udp(
        from sender: Sender, source: IPv4Address, to destination: IPv4Address, port: Int,
        destinationMAC: String? = nil, sourceMAC: String? = nil, vlans: [Int] = []
    ) -> Frame {
        let container = Scenario.members.first { $0.address == destination }
        return Frame(
            kind: "udp4", dstMAC: destinationMAC ?? container.map { mac($0.name) } ?? bridgeMAC,
            srcMAC: sourceMAC ?? senderMAC(sender), vlans: vlans.isEmpty ? nil : vlans, src: "\(source)",
            dst: "\(destination)", sport: nextSourcePort(), dport: port)
    }

    func udp6(
        from sender: Sender, source: String, to destination: String, port: Int = 9999, destinationMAC: String,
        sourceMAC: String? = nil, extensionHeaders: [Int] = []
    ) -> Frame {
        Frame(
            kind: "udp6", dstMAC: destinationMAC, srcMAC: sourceMAC ?? senderMAC(sender), src: source,
            dst: destination, sport: nextSourcePort(), dport: port,
            extensionHeaders: extensionHeaders.isEmpty ? nil : extensionHeaders)
    }

    /// An interface's MAC in a role's namespace (`ip -br link`).
    func linkMAC(in role: String, _ device: String) throws -> String {
        let fields = try demo.topology.run(in: role, ["ip", "-br", "link", "show", device]).stdout
            .split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 2, let mac = MACAddress(String(fields[2])) else {
            throw NSError(
                domain: "AttackLab", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(device)'s MAC: \(fields)"])
        }
        return mac.description
    }

    private func senderMAC(_ sender: Sender) -> String {
        switch sender {
        case .container(let name): mac(name)
        case .rogue: Self.rogueMAC
        case .outside2, .outside: "00:00:00:00:00:00"
        }
    }

    // MARK: sending and listening

    /// A listening socket of the host namespace on `[::]:port` (what
    /// docker-proxy opens for a port published on all addresses), as a Shot's `to`.
    static func hostSocket(_ proto: TransportProtocol, _ port: Int) -> String {
        "host [::]:\(port)/\(proto.rawValue)"
    }

    private struct Spec: Encodable {
        struct Listener: Encodable {
            var name: String
            var ns: String
            /// "packet" (an AF_PACKET socket on `iface`), "tcp6" or "udp6" (a socket on [::]:port).
            var kind: String = "packet"
            var iface: String?
            var port: Int?
        }
        struct Send: Encodable {
            var ns: String
            var iface: String
            var marker: String
            var frame: Frame
        }
        var listen: [Listener]
        var send: [Send]
        var wait: Double
        /// Each frame is sent `copies` times, `gap` seconds apart.
        var copies: Int
        var gap: Double
        /// A namespace whose conntrack table is emptied before the first frame.
        var flush: String?
    }

    /// Sends every shot (in order, twice each), listens on every shot's
    /// listener, and asserts that each arrived exactly when it should. On a
    /// bpfnet backend every shot it stops must also be counted: each shot's
    /// counter rises by at least its two copies (a timeout alone is no proof of a drop).
    func check(_ context: String, _ shots: [Shot], file: StaticString = #filePath, line: UInt = #line) throws {
        var listeners: [String] = []
        for shot in shots where !listeners.contains(shot.to) { listeners.append(shot.to) }
        let copies = 2
        // counter → the shots that must raise it, on the loaded bpfnet backend.
        var expected: [String: [String]] = [:]
        if let backend = active, Self.bpfnetBackends.contains(backend) {
            for shot in shots where !shot.arrives {
                guard let counter = shot.counted.byBackend[backend] else {
                    XCTFail("\(context): \(shot.name) names no counter for \(backend)", file: file, line: line)
                    continue
                }
                expected[counter, default: []].append(shot.name)
            }
        }
        let before = expected.isEmpty ? [:] : try dropCounters()
        let arrivals = try exchange(shots.map { ($0.from, $0.frame) }, listeners: listeners, copies: copies)
        if !expected.isEmpty {
            let after = try dropCounters()
            for (counter, names) in expected.sorted(by: { $0.key < $1.key }) {
                let rose = after[counter, default: 0] - min(after[counter, default: 0], before[counter, default: 0])
                XCTAssertGreaterThanOrEqual(
                    rose, UInt64(copies * names.count),
                    "\(context): `\(counter)` rose by \(rose) for \(names.count) shots sent \(copies) times: "
                        + names.joined(separator: "; "), file: file, line: line)
            }
        }
        for (shot, arrived) in zip(shots, arrivals) {
            let count = arrived[shot.to] ?? 0
            XCTAssertEqual(
                count > 0, shot.arrives,
                "\(context): \(shot.name): \(shot.arrives ? "did not arrive" : "arrived (\(count) copies)") "
                    + "at \(shot.to)", file: file, line: line)
        }
    }

    /// The loaded bpfnet backend's counters (`status`, by reason) and, as
    /// "guard: COMMENT", those of the guard's nftables rules (the eBPF backend's).
    func dropCounters() throws -> [String: UInt64] {
        var counters = try demo.status().counters
        for family in ["bridge", "ip"] {
            guard
                let listing = try? demo.topology.run(
                    in: TopologySpec.hostRole, ["nft", "list", "table", family, GuardRuleset.tableName]
                ).stdout
            else { continue }
            for line in listing.split(separator: "\n") {
                guard let packets = line.firstMatch(of: #/counter packets (\d+) /#),
                    let comment = line.firstMatch(of: #/comment "([^"]*)"/#)
                else { continue }
                counters["guard: \(comment.1)", default: 0] += UInt64(packets.1) ?? 0
            }
        }
        return counters
    }

    /// Opens `listeners`, sends each frame (`copies` times, `gap` seconds
    /// apart) from its sender's eth0, waits, and returns for each frame how
    /// many copies each listener saw (listeners that saw none are left out).
    func exchange(
        _ frames: [(from: Sender, frame: Frame)], listeners: [String], copies: Int = 2, gap: Double = 0.01,
        wait: Double = 0.5, flushingHostConntrack: Bool = false
    ) throws -> [[String: Int]] {
        let markers = frames.map { _ in
            serial += 1
            return Array("bpfnet-attack-\(getpid())-\(serial)-".utf8).map { String(format: "%02x", $0) }.joined()
        }
        let spec = Spec(
            listen: listeners.map { name in
                if let socket = Self.hostSockets.first(where: { Self.hostSocket($0.0, $0.1) == name }) {
                    return Spec.Listener(
                        name: name, ns: demo.topology.host.path, kind: "\(socket.0.rawValue)6", port: socket.1)
                }
                return name == Self.hostListener
                    ? Spec.Listener(name: name, ns: demo.topology.host.path, iface: "docker0")
                    : Spec.Listener(name: name, ns: demo.topology.namespace(name).path, iface: "eth0")
            },
            send: zip(frames, markers).map { entry, marker in
                Spec.Send(ns: namespacePath(entry.from), iface: "eth0", marker: marker, frame: entry.frame)
            },
            wait: wait, copies: copies, gap: gap, flush: flushingHostConntrack ? demo.topology.host.path : nil)
        let input = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        let timeout = Duration.seconds(30 + Int(Double(frames.count * copies) * (gap + 0.001)))
        let output = try ProcessRunner.runChecked(Command(["python3", script], input: input, timeout: timeout))
            .stdout
        let seen = try JSONDecoder().decode([String: [String: Int]].self, from: Data(output.utf8))
        return markers.map { marker in
            var arrived: [String: Int] = [:]
            for (listener, counts) in seen { if let count = counts[marker] { arrived[listener] = count } }
            return arrived
        }
    }

    private func namespacePath(_ sender: Sender) -> String {
        switch sender {
        case .container(let name): demo.topology.namespace(name).path
        case .rogue: "/run/netns/" + rogueNamespace
        case .outside2: "/run/netns/" + outside2Namespace
        case .outside: demo.topology.namespace("ext").path
        }
    }

    /// The host sockets a Shot can name (`hostSocket`).
    static var hostSockets: [(TransportProtocol, Int)] {
        [(.tcp, 8080), (.udp, 5353), (.tcp, 7001), (.udp, 9998)]
    }

    // MARK: extra interfaces

    private var rogueNamespace: String { demo.topology.prefix + "-rogue" }
    private var outside2Namespace: String { demo.topology.prefix + "-outside2" }

    /// vethrogue on docker0, its far end in the rogue namespace (10.88.0.99),
    /// not in the policy.
    func addRoguePort() throws {
        if access("/run/netns/" + rogueNamespace, F_OK) != 0 {
            try ProcessRunner.runChecked(Command(["ip", "netns", "add", rogueNamespace]))
        }
        try demo.topology.ip(
            in: TopologySpec.hostRole,
            [
                "link add vethrogue type veth peer name eth0 netns \(rogueNamespace)",
                "link set vethrogue master docker0",
                "link set vethrogue up",
            ])
        try Self.ip(
            in: rogueNamespace,
            [
                "link set lo up",
                "link set eth0 address \(Self.rogueMAC)",
                "addr add \(Self.rogueAddress)/24 dev eth0",
                "link set eth0 up",
            ])
    }

    func removeRoguePort() {
        _ = try? demo.topology.run(in: TopologySpec.hostRole, ["ip", "link", "del", "vethrogue"])
    }

    /// ext2 (203.0.113.1/24) ↔ outside2 (203.0.113.2/24), which routes the
    /// bridge's subnet through the host. The policy does not list ext2.
    func addSecondOutside() throws {
        try ProcessRunner.runChecked(Command(["ip", "netns", "add", outside2Namespace]))
        try demo.topology.ip(
            in: TopologySpec.hostRole,
            [
                "link add ext2 type veth peer name eth0 netns \(outside2Namespace)",
                "addr add \(Self.outside2HostAddress)/24 dev ext2",
                "link set ext2 up",
            ])
        try Self.ip(
            in: outside2Namespace,
            [
                "link set lo up",
                "addr add \(Self.outside2Address)/24 dev eth0",
                "link set eth0 up",
                "route add \(Scenario.bridgeAddress.network) via \(Self.outside2HostAddress) dev eth0",
            ])
    }

    /// iproute2 batch lines in a namespace of the harness's own.
    private static func ip(in namespace: String, _ lines: [String]) throws {
        try ProcessRunner.runChecked(
            Command(["ip", "-n", namespace, "-batch", "-"], input: lines.joined(separator: "\n") + "\n"))
    }

    func removeSecondOutside() {
        Self.deleteNamespace(outside2Namespace)
    }

    /// IPv6 on the external network (the lab has IPv6 off everywhere):
    /// ext0 is 2001:db8:1::1/64, the outside host's eth0 2001:db8:1::2/64
    /// (not in the allow-list) and 2001:db8:1::101/64 (in it).
    static let hostExternalAddress6 = "2001:db8:1::1"
    static let outsideAddress6 = "2001:db8:1::2"
    static let listedOutsideAddress6 = "2001:db8:1::101"
    /// The allow-list's IPv6 part on the external interface.
    static let listedPrefix6 = IPv6CIDR("2001:db8:1::100/120")!

    func addExternalIPv6() throws {
        for (role, device, address) in [
            (TopologySpec.hostRole, Scenario.externalInterface, Self.hostExternalAddress6),
            ("ext", "eth0", Self.outsideAddress6),
        ] {
            for name in ["lo", device] {
                try demo.topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.\(name).disable_ipv6=0"])
            }
            try demo.topology.ip(in: role, ["addr add \(address)/64 dev \(device) nodad"])
        }
        try demo.topology.ip(in: "ext", ["addr add \(Self.listedOutsideAddress6)/64 dev eth0 nodad"])
    }

    func removeExternalIPv6() {
        for (role, device) in [(TopologySpec.hostRole, Scenario.externalInterface), ("ext", "eth0")] {
            for name in ["lo", device] {
                _ = try? demo.topology.run(in: role, ["sysctl", "-qw", "net.ipv6.conf.\(name).disable_ipv6=1"])
            }
        }
    }

    // MARK: the Python side

    static let python = #"""
        import ctypes, json, os, select, socket, struct, sys, time

        libc = ctypes.CDLL(None, use_errno=True)
        SO_RCVBUFFORCE = 33


        def enter(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:
                    raise OSError(ctypes.get_errno(), "setns " + path)
            finally:
                os.close(fd)


        def mac(text):
            return bytes.fromhex(text.replace(":", ""))


        def checksum(data):
            if len(data) % 2:
                data += b"\0"
            total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            return ~total & 0xFFFF


        def ethernet(f, ethertype, payload):
            header = mac(f["dstMAC"]) + mac(f["srcMAC"])
            for vid in f.get("vlans", []):
                header += struct.pack("!HH", 0x8100, vid)
            return header + struct.pack("!H", ethertype) + payload


        def udp(f, src, dst, marker, v6):
            length = 8 + len(marker)
            segment = struct.pack("!HHHH", f["sport"], f["dport"], length, 0) + marker
            if v6:
                pseudo = src + dst + struct.pack("!I3xB", length, 17)
            else:
                pseudo = src + dst + struct.pack("!BBH", 0, 17, length)
            value = checksum(pseudo + segment) or 0xFFFF
            return segment[:6] + struct.pack("!H", value) + segment[8:]


        def build(f, marker):
            kind = f["kind"]
            if kind in ("udp4", "tcp4", "icmp4"):
                src, dst = socket.inet_aton(f["src"]), socket.inet_aton(f["dst"])
                if kind == "udp4":
                    proto, segment = 17, udp(f, src, dst, marker, False)
                elif kind == "tcp4":
                    # A SYN carrying the marker (as TCP Fast Open would).
                    proto = 6
                    segment = struct.pack("!HHIIBBHHH", f["sport"], f["dport"], 1, 0, 0x50, 0x02, 64240, 0, 0)
                    segment += marker
                    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
                    segment = segment[:16] + struct.pack("!H", checksum(pseudo + segment)) + segment[18:]
                else:
                    # An echo request, its identifier the source port.
                    proto = 1
                    segment = struct.pack("!BBHHH", 8, 0, 0, f["sport"], 1) + marker
                    segment = segment[:2] + struct.pack("!H", checksum(segment)) + segment[4:]
                header = struct.pack(
                    "!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 0x1234, 0x4000, 64, proto, 0, src, dst)
                header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
                return ethernet(f, 0x0800, header + segment)
            if kind == "udp6":
                src = socket.inet_pton(socket.AF_INET6, f["src"])
                dst = socket.inet_pton(socket.AF_INET6, f["dst"])
                segment = udp(f, src, dst, marker, True)
                kinds = f.get("extensionHeaders", [])
                chain = b""
                for index, kind in enumerate(kinds):
                    following = kinds[index + 1] if index + 1 < len(kinds) else 17
                    # next header, length 0 (8 bytes), PadN option of 4 bytes
                    chain += struct.pack("!BBBB4x", following, 0, 1, 4)
                first = kinds[0] if kinds else 17
                header = struct.pack("!IHBB", 0x60000000, len(chain) + len(segment), first, 64) + src + dst
                return ethernet(f, 0x86DD, header + chain + segment)
            if kind == "arp":
                body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, f["op"])
                body += mac(f["senderMAC"]) + socket.inet_aton(f["senderIP"])
                body += mac(f["targetMAC"]) + socket.inet_aton(f["targetIP"])
                # The marker trails the ARP body, where padding would be.
                return ethernet(f, 0x0806, body + marker)
            raise ValueError("unknown frame kind " + kind)


        def listen(entry):
            kind = entry.get("kind", "packet")
            if kind == "packet":
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
                # Room for every frame of a batch: they are read after the last one is sent.
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
                sock.bind((entry["iface"], 0))
            else:
                sock = socket.socket(
                    socket.AF_INET6, socket.SOCK_STREAM if kind == "tcp6" else socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("::", entry["port"]))
                if kind == "tcp6":
                    sock.listen(16)
            sock.setblocking(False)
            return sock


        def send_socket(frame, marker):
            if frame["kind"] == "socket-udp4":
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.sendto(marker, (frame["dst"], frame["dport"]))
            elif frame["kind"] == "socket-udp6":
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                if "src" in frame:
                    sock.bind((frame["src"], 0))
                sock.sendto(marker, (frame["dst"], frame["dport"]))
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                if "src" in frame:
                    sock.bind((frame["src"], 0))
                sock.settimeout(0.5)
                try:
                    sock.connect((frame["dst"], frame["dport"]))
                    sock.sendall(marker)
                except OSError:
                    pass  # not established: the marker is not sent
            sock.close()


        def flush_conntrack(path):
            """Empties the conntrack table of a namespace (ctnetlink IPCTNL_MSG_CT_DELETE, no filter)."""
            enter(path)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
            try:
                for family in (socket.AF_INET, socket.AF_INET6):
                    body = struct.pack("!BBH", family, 0, 0)
                    sock.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 0x1 | 0x4, 1, 0) + body)
                    reply = sock.recv(4096)
                    error = struct.unpack("=i", reply[16:20])[0]
                    if error not in (0, -2):  # ENOENT: nothing to delete
                        raise OSError(-error, "conntrack flush")
            finally:
                sock.close()


        def main():
            spec = json.load(sys.stdin)
            if spec.get("flush"):
                flush_conntrack(spec["flush"])
            listeners = []
            for entry in spec["listen"]:
                enter(entry["ns"])
                listeners.append((entry["name"], entry.get("kind", "packet"), listen(entry)))
            markers = [bytes.fromhex(s["marker"]) for s in spec["send"]]
            # One raw socket per (namespace, interface): it stays in the namespace it was opened in.
            raw = {}
            for entry, marker in zip(spec["send"], markers):
                frame = entry["frame"]
                for _ in range(spec["copies"]):
                    if frame["kind"].startswith("socket-"):
                        enter(entry["ns"])
                        send_socket(frame, marker)
                    else:
                        key = (entry["ns"], entry["iface"])
                        if key not in raw:
                            enter(entry["ns"])
                            raw[key] = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                            raw[key].bind((entry["iface"], 0))
                        raw[key].send(build(frame, marker))
                    time.sleep(spec["gap"])
            seen = {name: {} for name, _, _ in listeners}
            # Accepted connections are read like the other sockets.
            readers = [(name, kind, sock) for name, kind, sock in listeners]
            deadline = time.monotonic() + spec["wait"]
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select([s for _, _, s in readers], [], [], left)
                for name, kind, sock in list(readers):
                    if sock not in ready:
                        continue
                    while True:
                        try:
                            if kind == "tcp6":
                                connection, _ = sock.accept()
                                connection.setblocking(False)
                                readers.append((name, "stream", connection))
                                continue
                            data, address = sock.recvfrom(65536)
                        except BlockingIOError:
                            break
                        if kind == "packet" and address[2] == socket.PACKET_OUTGOING:
                            continue
                        if not data:
                            readers.remove((name, kind, sock))
                            break
                        for marker in markers:
                            if marker in data:
                                seen[name][marker.hex()] = seen[name].get(marker.hex(), 0) + 1
            json.dump(seen, sys.stdout)


        main()

        """#
}
