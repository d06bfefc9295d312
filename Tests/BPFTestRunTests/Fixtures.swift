// SPDX-License-Identifier: Apache-2.0
//
// The representative Docker host of the test-run suites, as a `Policy`
// compiled by `PolicyCompiler` (the control plane's own path), and the base
// test case that writes it and checks each frame's verdict and counters.
//
// Host: bridge docker0 10.88.0.1/24 (made-up ifindex 900); containers on
// made-up port ifindexes (only the maps hold them); ext interfaces ext0 (with
// an allow-list), ext1 (without) and ext2 (not an ext interface at all) are
// real veths of the private namespace, since the ext program's ingress
// ifindex must name a real device there.

import BPF
import BPFNetCore
import BPFNetDataplane
import BPFNetShared
import BPFNetTestSupport
import Foundation
import XCTest

enum Fixture {
    static let bridgeIfindex: UInt32 = 900
    static let bridge = IPv4InterfaceAddress(address: IPv4Address(10, 88, 0, 1), prefixLength: 24)!
    static let bridgeMAC = MACAddress(0x02, 0x42, 0x7f, 0x00, 0x00, 0x01)
    /// The host's address towards the outside; one published port is bound to it.
    static let hostAddress = IPv4Address(198, 51, 100, 1)
    /// Another address of the host, not bound by any published port.
    static let otherHostAddress = IPv4Address(198, 51, 100, 2)
    /// The MAC of the host's external interface and of the upstream router.
    static let hostMAC = MACAddress(0x02, 0x00, 0x5e, 0x00, 0x00, 0x01)
    static let routerMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)

    /// Peer host2 (10.18.0.0/16), which tests that add a route reach through
    /// ext1, and host3 (10.19.0.0/24), to which no test routes.
    static let peerHost = IPv4Address(10, 250, 0, 2)
    static let peers = [
        Peer(name: "host2", address: peerHost, subnets: [IPv4CIDR("10.18.0.0/16")!]),
        Peer(name: "host3", address: IPv4Address(10, 250, 0, 3), subnets: [IPv4CIDR("10.19.0.0/24")!]),
    ]

    static func container(
        _ name: String, _ address: IPv4Address, exposed: [PortSpec] = [],
        published: [PublishedPort] = []
    ) -> Container {
        Container(
            name: name, ip: address, mac: MACAddress(dockerStyleFor: address), port: "veth" + name,
            exposed: exposed, published: published)
    }

    /// Publishes 8080/tcp on every address and 8443/tcp on the host address.
    static let web = container(
        "web", IPv4Address(10, 88, 0, 2), exposed: [PortSpec(80)],
        published: [
            PublishedPort(hostPort: 8080, containerPort: 80),
            PublishedPort(hostIP: hostAddress, hostPort: 8443, containerPort: 443),
        ])
    /// A TCP, a UDP and an SCTP port (the link child); publishes 5353/udp.
    static let db = container(
        "db", IPv4Address(10, 88, 0, 3),
        exposed: [PortSpec(5432), PortSpec(53, .udp), PortSpec(9899, .sctp)],
        published: [PublishedPort(hostPort: 5353, containerPort: 53, proto: .udp)])
    /// The link parent; exposes nothing.
    static let app = container("app", IPv4Address(10, 88, 0, 4))
    /// Exposes the same ports as db and web but is linked to nobody.
    static let other = container(
        "other", IPv4Address(10, 88, 0, 5),
        exposed: [PortSpec(80), PortSpec(5432), PortSpec(53, .udp)])
    /// A container whose address lies outside the bridge subnet: inside the
    /// bridge only because it is a key of bn_containers.
    static let stray = container("stray", IPv4Address(172, 30, 0, 9), exposed: [PortSpec(80)])

    static let containers = [web, db, app, other, stray]
    /// app → db (5432/tcp, 53/udp, 9899/sctp) and app → web (80/tcp, 443/tcp from -p).
    static let links = [Link(parent: "app", child: "db", alias: "db"), Link(parent: "app", child: "web", alias: "web")]
    static let allowList = [IPv4CIDR("203.0.113.0/24")!, IPv4CIDR("198.51.100.128/25")!]
    static let allowListIPv6 = [IPv6CIDR("2001:db8:77::/48")!]

    /// Made-up port ifindexes: nothing but the maps ever sees them.
    static let portIndexes: [String: UInt32] = Dictionary(
        uniqueKeysWithValues: containers.enumerated().map {
            ($0.element.port, 1000 + UInt32($0.offset))
        })

    static func policy(icc: Bool, forward: ForwardPolicy, allowList: Bool = true) -> Policy {
        Policy(
            icc: icc, forwardPolicy: forward,
            extInterfaces: [
                ExternalInterface(
                    name: "ext0", allowSources: allowList ? Self.allowList : [],
                    allowSourcesIPv6: allowList ? Self.allowListIPv6 : []),
                ExternalInterface(name: "ext1"),
            ],
            containers: containers, links: links)
    }

    /// Two user-defined networks beside docker0: `front` (10.90.0.0/24, icc
    /// on, bridge ifindex 901) and `back` (10.91.0.0/24, internal, icc off,
    /// bridge ifindex 902), two containers each, and one port of `back` that
    /// no container claims (ifindex 1950).
    static let networks = [
        BridgeNetwork(name: "front", bridge: "br-front"),
        BridgeNetwork(name: "back", bridge: "br-back", icc: false, internal: true),
    ]
    static let networkFacts: [String: BridgeFacts] = [
        "front": BridgeFacts(
            ifindex: 901, address: IPv4InterfaceAddress(address: IPv4Address(10, 90, 0, 1), prefixLength: 24),
            mac: MACAddress(0x02, 0x42, 0x7f, 0x00, 0x00, 0x02)),
        "back": BridgeFacts(
            ifindex: 902, address: IPv4InterfaceAddress(address: IPv4Address(10, 91, 0, 1), prefixLength: 24),
            mac: MACAddress(0x02, 0x42, 0x7f, 0x00, 0x00, 0x03), ports: [1950]),
    ]

    static func onNetwork(_ container: Container, _ network: String) -> Container {
        var container = container
        container.network = network
        return container
    }

    /// `policy` with both user-defined networks and their containers; `front`
    /// publishes 7070/tcp, `back` (internal) would publish 7171/tcp.
    static func withNetworks(_ policy: Policy) -> Policy {
        var policy = policy
        policy.networks = networks
        policy.containers += [
            onNetwork(
                container(
                    "f1", IPv4Address(10, 90, 0, 2), exposed: [PortSpec(80)],
                    published: [PublishedPort(hostPort: 7070, containerPort: 80)]), "front"),
            onNetwork(container("f2", IPv4Address(10, 90, 0, 3), exposed: [PortSpec(5432)]), "front"),
            onNetwork(
                container(
                    "b1", IPv4Address(10, 91, 0, 2), exposed: [PortSpec(6379)],
                    published: [PublishedPort(hostPort: 7171, containerPort: 6379)]), "back"),
            onNetwork(container("b2", IPv4Address(10, 91, 0, 3)), "back"),
            // The same name on a second network: one endpoint per network.
            {
                var endpoint = onNetwork(container("web", IPv4Address(10, 90, 0, 4), exposed: [PortSpec(80)]), "front")
                endpoint.port = "vethweb-front"
                return endpoint
            }(),
        ]
        return policy
    }

    /// Dual stack: docker0 fd00:88::/64, front fd00:90::/64, back
    /// fd00:91::/64 (gateways ::1), and every container of those networks
    /// (not `stray`, outside docker0's subnet) its IPv4 address's last byte
    /// in its network's IPv6 subnet.
    static func dualStack(_ policy: Policy) -> Policy {
        var policy = policy
        let prefixes: [String?: UInt64] = [
            nil: 0xfd00_0088_0000_0000, "front": 0xfd00_0090_0000_0000, "back": 0xfd00_0091_0000_0000,
        ]
        policy.bridgeIPv6 = IPv6InterfaceAddress(address: IPv6Address(high: prefixes[nil]!, low: 1), prefixLength: 64)
        for index in policy.networks.indices {
            guard let high = prefixes[policy.networks[index].name] else { continue }
            policy.networks[index].ipv6 = IPv6InterfaceAddress(
                address: IPv6Address(high: high, low: 1), prefixLength: 64)
        }
        for index in policy.containers.indices where policy.containers[index].name != "stray" {
            let container = policy.containers[index]
            guard let high = prefixes[container.network] else { continue }
            policy.containers[index].ipv6 = IPv6Address(high: high, low: UInt64(container.ip.value & 0xFF))
        }
        return policy
    }

    /// Compiles `policy` with the namespace's real ext ifindexes and the made-up ones.
    static func compile(
        _ policy: Policy, namespace: PrivateNamespace,
        bridgeAddress: IPv4InterfaceAddress? = bridge
    ) throws -> MapState {
        var interfaces = portIndexes
        for name in ["ext0", "ext1", "ext2"] { interfaces[name] = namespace.indexes[name] }
        interfaces["docker0"] = bridgeIfindex
        for container in policy.containers where interfaces[container.port] == nil {
            interfaces[container.port] = 2000 + UInt32(interfaces.count)
        }
        var facts = HostFacts(bridgeIfindex: bridgeIfindex, bridgeAddress: bridgeAddress, interfaces: interfaces)
        facts.networks = networkFacts.filter { entry in policy.networks.contains { $0.name == entry.key } }
        return try PolicyCompiler.compile(policy, facts: facts)
    }
}

// MARK: - Frames

/// Someone on the outside, or an address only.
func endpoint(_ address: IPv4Address, mac: MACAddress = Fixture.routerMAC) -> Endpoint {
    Endpoint(mac: mac, ip: address)
}

let app = Endpoint(Fixture.app)
let db = Endpoint(Fixture.db)
let web = Endpoint(Fixture.web)
let other = Endpoint(Fixture.other)
let stray = Endpoint(Fixture.stray)
let bridgeEndpoint = Endpoint(mac: Fixture.bridgeMAC, ip: Fixture.bridge.address)
/// The host as the outside sees it (ext frames go to its MAC).
let host = Endpoint(mac: Fixture.hostMAC, ip: Fixture.hostAddress)
/// A source in ext0's allow-list, and one outside it.
let admitted = endpoint(IPv4Address(203, 0, 113, 5))
let refused = endpoint(IPv4Address(100, 64, 0, 9))

func tcp(
    _ s: Endpoint, _ d: Endpoint, _ sport: UInt16, _ dport: UInt16, flags: TCPFlags = .syn,
    vlans: [VLANTag] = []
) -> [UInt8] {
    PacketBuilder.tcpFrame(from: s, to: d, sourcePort: sport, destinationPort: dport, flags: flags, vlans: vlans)
}

func udp(
    _ s: Endpoint, _ d: Endpoint, _ sport: UInt16, _ dport: UInt16, vlans: [VLANTag] = [],
    payload: [UInt8] = []
) -> [UInt8] {
    PacketBuilder.udpFrame(from: s, to: d, sourcePort: sport, destinationPort: dport, vlans: vlans, payload: payload)
}

func sctp(_ s: Endpoint, _ d: Endpoint, _ sport: UInt16, _ dport: UInt16) -> [UInt8] {
    PacketBuilder.sctpFrame(from: s, to: d, sourcePort: sport, destinationPort: dport)
}

func icmp(_ s: Endpoint, _ d: Endpoint, vlans: [VLANTag] = []) -> [UInt8] {
    PacketBuilder.icmpEchoFrame(from: s, to: d, vlans: vlans)
}

/// An IPv4 packet of any protocol without ports (GRE 47 by default).
func raw(_ s: Endpoint, _ d: Endpoint, proto: UInt8 = 47) -> [UInt8] {
    PacketBuilder.ipv4Frame(
        EthernetHeader(destination: d.mac, source: s.mac), IPv4Header(source: s.ip, destination: d.ip),
        .raw(proto: proto), payload: Array(repeating: 0x5a, count: 16))
}

func arp(from s: Endpoint, target: IPv4Address, vlans: [VLANTag] = []) -> [UInt8] {
    PacketBuilder.arpFrame(
        EthernetHeader(
            destination: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), source: s.mac,
            vlans: vlans),
        senderMAC: s.mac, senderIP: s.ip, targetIP: target)
}

/// IPv6 to `mac`; to a multicast MAC, to the all-nodes address ff02::1 unless `destination` says otherwise.
func ipv6(
    to mac: MACAddress, from source: MACAddress = Fixture.app.mac, vlans: [VLANTag] = [],
    destination: [UInt8]? = nil
) -> [UInt8] {
    let allNodes: [UInt8] = [0xff, 0x02] + Array(repeating: 0, count: 13) + [1]
    return PacketBuilder.ipv6Frame(
        EthernetHeader(destination: mac, source: source, vlans: vlans),
        destination: destination ?? (mac.isMulticast ? allNodes : PacketBuilder.linkLocal2))
}

let q8021Q = VLANTag(vid: 100)
let q8021ad = VLANTag(vid: 200, tpid: EtherType.qinq)

// MARK: - The base test case

/// Loads the real objects on a private bpffs with a private namespace, and
/// checks frames: the exact return code, and that exactly the expected
/// reason counter of the program went up by one packet and the frame's bytes.
/// Every expectation is also put to the reference model.
class TestRunTestCase: XCTestCase {
    var rig: TestRunRig!
    var ext0: UInt32 { rig.namespace.index("ext0") }
    var ext1: UInt32 { rig.namespace.index("ext1") }
    var ext2: UInt32 { rig.namespace.index("ext2") }
    var loopback: UInt32 { rig.namespace.index("lo") }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try requireRoot("loads the port and ext programs, mounts a private bpffs and creates network namespaces")
        rig = try TestRunRig.make(in: self)
    }

    override func tearDown() {
        rig = nil
        super.tearDown()
    }

    /// Compiles the representative policy and writes it through the reconciler.
    @discardableResult
    func apply(
        icc: Bool, forward: ForwardPolicy, allowList: Bool = true,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> MapState {
        try rig.write(
            Fixture.compile(
                Fixture.policy(icc: icc, forward: forward, allowList: allowList),
                namespace: rig.namespace), file: file, line: line)
    }

    func slotName(_ slot: Int) -> String {
        let program = ProgramKind(rawValue: UInt32(slot / Reason.slotsPerProgram))
        let reason = Reason(rawValue: UInt32(slot % Reason.slotsPerProgram))
        return "\(program)/\(reason)"
    }

    /// Runs `frame` through `hook` and checks return code, counters and the model.
    func expect(
        _ hook: Hook, _ frame: [UInt8], _ expected: Verdict, _ label: String,
        sender: PortSender? = nil, conntrack: (FlowTuple) -> Bool = { _ in false },
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let context = "\(label) [\(hook), \(frame.count) bytes]"
        let model = rig.modelVerdict(hook, frame, sender: sender, conntrack: conntrack)
        XCTAssertEqual(
            model, expected, "\(context): the reference model says \(model)\n\(hexDump(frame))",
            file: file, line: line)
        do {
            let before = try rig.counters()
            let code: UInt32
            do {
                code = try rig.run(hook, frame, sender: sender)
            } catch let error as BPFError where error.errno == .invalidArgument && hook.testRunMayRefuse(frame) {
                // The kernel refused the test run itself (see `testRunMayRefuse`): nothing ran, nothing counted.
                XCTAssertEqual(
                    try rig.counters().map(\.packets), before.map(\.packets),
                    "\(context): refused by the kernel, yet a counter moved", file: file, line: line)
                return
            }
            let after = try rig.counters()
            XCTAssertEqual(
                hook.action(of: code), expected.action,
                "\(context): return code \(code), expected \(hook.returnCode(expected.action)) (\(expected))\n"
                    + hexDump(frame), file: file, line: line)
            let changed = after.indices.filter {
                after[$0].packets != before[$0].packets || after[$0].bytes != before[$0].bytes
            }
            let slot = hook.program.counterIndex(expected.reason)
            XCTAssertEqual(
                changed.map(slotName), [slotName(slot)],
                "\(context): counters that changed, expected only \(slotName(slot))\n\(hexDump(frame))",
                file: file, line: line)
            if changed == [slot] {
                XCTAssertEqual(
                    after[slot].packets &- before[slot].packets, 1, "\(context): packets", file: file, line: line)
                XCTAssertEqual(
                    after[slot].bytes &- before[slot].bytes, UInt64(frame.count), "\(context): bytes",
                    file: file, line: line)
            }
        } catch {
            XCTFail("\(context): \(error)\n\(hexDump(frame))", file: file, line: line)
        }
    }

    /// The port program at both hooks (tc without and with a context, XDP).
    func expectPort(
        _ frame: [UInt8], _ expected: Verdict, _ label: String, sender: PortSender? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for hook in Hook.portHooks { expect(hook, frame, expected, label, sender: sender, file: file, line: line) }
    }

    /// The ext program arriving on each of `ingress`.
    func expectExt(
        _ ingress: [UInt32], _ frame: [UInt8], _ expected: Verdict, _ label: String,
        conntrack: (FlowTuple) -> Bool = { _ in false },
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for index in ingress {
            expect(.ext(ingress: index), frame, expected, label, conntrack: conntrack, file: file, line: line)
        }
    }

    /// Every ingress interface: with an allow-list, without one, a device
    /// that is no ext interface, and loopback.
    var everyIngress: [UInt32] { [ext0, ext1, ext2, loopback] }
}
