// SPDX-License-Identifier: Apache-2.0
//
// Peer hosts (docs/policy.md, "Peers"): the policy file's `peers:` and
// `peerPolicy`, their validation, what the compiler writes, the reference
// model's rows 12 and 13, and the NAT table's masquerade exception.

import BPFNetTestSupport
import Foundation
import XCTest

@testable import BPFNetCore

final class PeerTests: XCTestCase {
    let host2 = Peer(name: "host2", address: IPv4Address(192, 168, 8, 1), subnets: [IPv4CIDR("172.18.0.0/16")!])

    // MARK: The policy file

    func testPeersAndPeerPolicyAreRead() throws {
        let policy = try PolicyFile.load(
            yaml: """
                peers:
                  - name: host2
                    address: 192.168.8.1
                    subnets: [172.18.0.0/16, 10.18.0.0/24]
                  - {name: host3, address: 192.168.9.1, subnets: 172.19.0.0/16, routes: true}
                peerPolicy: allow
                """, file: "p.yaml")
        XCTAssertEqual(
            policy.peers,
            [
                Peer(
                    name: "host2", address: IPv4Address(192, 168, 8, 1),
                    subnets: [IPv4CIDR("172.18.0.0/16")!, IPv4CIDR("10.18.0.0/24")!]),
                Peer(
                    name: "host3", address: IPv4Address(192, 168, 9, 1), subnets: [IPv4CIDR("172.19.0.0/16")!],
                    routes: true),
            ])
        XCTAssertFalse(policy.peers[0].routes, "the operator routes the subnets unless told otherwise")
        XCTAssertEqual(policy.peerPolicy, .allow)
        XCTAssertEqual(try PolicyFile.load(yaml: "icc: true\n", file: "d.yaml").peerPolicy, .icc, "the default")
    }

    /// A policy written down before `routes` existed (an agent's state file) still reads.
    func testAPeerWithoutRoutesDecodesAsOperatorRouted() throws {
        let peer = try JSONDecoder().decode(
            Peer.self, from: Data(#"{"name":"host2","address":"192.168.8.1","subnets":["172.18.0.0/16"]}"#.utf8))
        XCTAssertEqual(peer, host2)
        var routed = host2
        routed.routes = true
        XCTAssertEqual(try JSONDecoder().decode(Peer.self, from: JSONEncoder().encode(routed)), routed)
    }

    func testBpfnetRunSettingsMayDeclarePeers() throws {
        let settings = try PolicyFile.load(
            yaml: "peers:\n  - {name: host2, address: 192.168.8.1, subnets: [172.18.0.0/16]}\npeerPolicy: icc\n",
            file: "run.yaml", kind: .settingsOnly)
        XCTAssertEqual(settings.peers, [host2])
    }

    func testMistakesAreNamed() {
        let cases: [(String, String)] = [
            (
                "peers:\n  - {name: h, address: 192.168.8.1, subnets: [172.18.0.300/16]}\n",
                "p.yaml:2: peers[0].subnets[0]: '172.18.0.300/16' is not an IPv4 prefix"
            ),
            (
                "peers:\n  - {name: h, address: 192.168.8, subnets: [172.18.0.0/16]}\n",
                "peers[0].address: '192.168.8' is not an IPv4 address"
            ),
            ("peers:\n  - {name: h, address: 192.168.8.1}\n", "peers[0].subnets: required key 'subnets' is missing"),
            (
                "peers:\n  - {name: h, address: 192.168.8.1, subnet: [172.18.0.0/16]}\n",
                "unknown key 'subnet' (did you mean 'subnets'?)"
            ),
            ("peerPolicy: open\n", "peerPolicy: 'open' is not accepted; expected icc or allow"),
            (
                "peers:\n  - {name: h, address: 192.168.8.1, subnets: [172.18.0.0/16], routes: sometimes}\n",
                "peers[0].routes: 'sometimes' is not"
            ),
            (
                "peers:\n  - {name: h, address: 192.168.8.1, subnets: [172.18.0.0/16]}\n"
                    + "  - {name: h, address: 192.168.9.1, subnets: [172.19.0.0/16]}\n",
                "peers[1].name: 'h' is already the name of peers[0]"
            ),
            (
                "peers:\n  - {name: a, address: 192.168.8.1, subnets: [172.18.0.0/16]}\n"
                    + "  - {name: b, address: 192.168.9.1, subnets: [172.18.5.0/24]}\n",
                "peers[1].subnets[0]: 172.18.5.0/24 overlaps 172.18.0.0/16 of peers[0] 'a'"
            ),
            (
                "peers:\n  - {name: a, address: 192.168.8.1, subnets: [172.18.0.0/16]}\n"
                    + "  - {name: b, address: 192.168.8.1, subnets: [172.19.0.0/16]}\n",
                "peers[1].address: 192.168.8.1 is already the address of peers[0] 'a'"
            ),
            (
                "peers:\n  - {name: a, address: 172.18.0.1, subnets: [172.18.0.0/16]}\n",
                "peers[0].address: 172.18.0.1 lies in peers[0] 'a' (172.18.0.0/16)"
            ),
            (
                "peers:\n  - {name: a, address: 192.168.8.1, subnets: []}\n",
                "a peer needs at least one container subnet"
            ),
            ("peers:\n  - {name: a, address: 192.168.8.1, subnets: [0.0.0.0/0]}\n", "is wider than a /8"),
            (
                "containers:\n  - {name: web, ip: 172.18.0.2, mac: 02:42:ac:12:00:02, port: vethweb}\n"
                    + "peers:\n  - {name: a, address: 192.168.8.1, subnets: [172.18.0.0/16]}\n",
                "holds the address 172.18.0.2 of local container 'web'"
            ),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try PolicyFile.load(yaml: yaml, file: "p.yaml"), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "expected «\(expected)» in:\n\(error)")
            }
        }
    }

    /// Local subnets are known at load time, from the bridges' addresses.
    func testAPeerSubnetMayNotOverlapALocalNetwork() {
        var policy = Policy()
        policy.networks = [BridgeNetwork(name: "shop", bridge: "br-shop")]
        policy.peers = [
            Peer(name: "a", address: IPv4Address(192, 168, 8, 1), subnets: [IPv4CIDR("172.17.3.0/24")!]),
            Peer(name: "b", address: IPv4Address(10, 90, 0, 9), subnets: [IPv4CIDR("10.91.0.0/16")!]),
        ]
        let problems = policy.problems(
            bridgeAddress: Sample.bridgeAddress,
            networkAddresses: ["shop": IPv4InterfaceAddress("10.90.0.1/24")!])
        XCTAssertEqual(
            problems.map(\.description),
            [
                "peers[0].subnets[0]: 172.17.3.0/24 overlaps the subnet of docker0 (172.17.0.0/16); "
                    + "a peer's subnets are the other host's, never this one's",
                "peers[1].address: 10.90.0.9 lies in the subnet of network 'shop' (10.90.0.0/24); "
                    + "a peer's host address is outside every container subnet",
            ])
    }

    // MARK: The compiler

    func testTheCompilerWritesEverySubnetAndTheFlags() throws {
        var policy = Sample.policy
        XCTAssertFalse(try PolicyCompiler.compile(policy, facts: Sample.facts).config.flags.contains(.peers))
        policy.peers = [
            host2,
            Peer(
                name: "host3", address: IPv4Address(192, 168, 9, 1),
                subnets: [IPv4CIDR("172.19.0.0/16")!, IPv4CIDR("10.19.0.0/24")!]),
        ]
        var state = try PolicyCompiler.compile(policy, facts: Sample.facts)
        XCTAssertEqual(
            state.peers,
            [
                IPv4CIDR("172.18.0.0/16")!: IPv4Address(192, 168, 8, 1),
                IPv4CIDR("172.19.0.0/16")!: IPv4Address(192, 168, 9, 1),
                IPv4CIDR("10.19.0.0/24")!: IPv4Address(192, 168, 9, 1),
            ])
        XCTAssertTrue(state.config.flags.contains(.peers))
        XCTAssertFalse(state.config.flags.contains(.peerAllow))
        policy.peerPolicy = .allow
        state = try PolicyCompiler.compile(policy, facts: Sample.facts)
        XCTAssertTrue(state.config.flags.contains(.peerAllow))
        // Entries survive the trip through their bytes.
        for entry in state.entries where entry.kind == .peers {
            XCTAssertEqual(try MapEntry(kind: .peers, key: entry.keyBytes, value: entry.valueBytes), entry)
        }
        // `status` lists each peer by name and address with its subnets, and the peer policy.
        let status = DataplaneStatus(backend: "bpf", state: state, bridge: "docker0") { _ in nil }
        XCTAssertEqual(
            status.peers,
            [
                DataplaneStatus.Peer(name: "host2", address: "192.168.8.1", subnets: ["172.18.0.0/16"]),
                DataplaneStatus.Peer(
                    name: "host3", address: "192.168.9.1", subnets: ["10.19.0.0/24", "172.19.0.0/16"]),
            ])
        XCTAssertEqual(status.peerPolicy, "allow")
        XCTAssertNil(
            DataplaneStatus(backend: "bpf", state: try PolicyCompiler.compile(Sample.policy, facts: Sample.facts)) {
                _ in nil
            }.peers)
    }

    /// PEERS goes on before the first entry and off after the last; entries
    /// come and go; the result holds exactly the new state.
    func testTheReconcilerAddsAndRemovesPeers() throws {
        var policy = Sample.policy
        let before = try PolicyCompiler.compile(policy, facts: Sample.facts)
        policy.peers = [host2]
        let after = try PolicyCompiler.compile(policy, facts: Sample.facts)
        for (from, to) in [(before, after), (after, before)] {
            var state = from
            let changes = from.changes(to: to)
            var flagSeenWith = [Bool]()
            for change in changes {
                state.apply(change)
                if change.kind == .peers { flagSeenWith.append(state.config.flags.contains(.peers)) }
            }
            XCTAssertEqual(flagSeenWith, [true], "\(changes)")
            var expected = to
            expected.config.generation = state.config.generation
            XCTAssertEqual(state, expected)
        }
    }

    // MARK: The reference model (rows 12, 13)

    /// host1 of Docker's example: docker0 172.17.0.0/16, peer host2 with 172.18.0.0/16,
    /// reached over eth0 (ifindex 2) through a router with `routerMAC`.
    let routerMAC = MACAddress(0x52, 0x54, 0x00, 0x00, 0x08, 0x01)
    let strangerMAC = MACAddress(0x52, 0x54, 0x00, 0x00, 0x66, 0x66)

    func model(icc: Bool = true, peerPolicy: PeerPolicy = .icc, forward: ForwardPolicy = .drop) throws
        -> ReferenceDataplane
    {
        var policy = Sample.policy
        policy.icc = icc
        policy.forwardPolicy = forward
        policy.peers = [host2]
        policy.peerPolicy = peerPolicy
        return ReferenceDataplane(state: try PolicyCompiler.compile(policy, facts: Sample.facts))
    }

    func frame(from mac: MACAddress, _ source: IPv4Address, to container: Container, proto: UInt8 = 6) -> [UInt8] {
        let s = Endpoint(mac: mac, ip: source)
        let d = Endpoint(mac: Sample.bridgeMAC, ip: container.ip)
        switch proto {
        case 17: return PacketBuilder.udpFrame(from: s, to: d, sourcePort: 5000, destinationPort: 53)
        case 1: return PacketBuilder.icmpEchoFrame(from: s, to: d)
        default: return PacketBuilder.tcpFrame(from: s, to: d, sourcePort: 50000, destinationPort: 80)
        }
    }

    func route(_ peer: IPv4Address) -> PeerRoute? {
        peer == host2.address ? PeerRoute(ifindex: 2, neighbour: routerMAC) : nil
    }

    func testRow12PeerContainersPassByIcc() throws {
        let peerContainer = IPv4Address(172, 18, 0, 2)
        for proto: UInt8 in [6, 17, 1] {
            let bytes = frame(from: routerMAC, peerContainer, to: Sample.web, proto: proto)
            XCTAssertEqual(
                try model(icc: true).extVerdict(frame: bytes, ingressIfindex: 2, routeToPeer: route), .pass(.peer))
            XCTAssertEqual(
                try model(icc: false).extVerdict(frame: bytes, ingressIfindex: 2, routeToPeer: route), .drop(.icc))
            XCTAssertEqual(
                try model(icc: false, peerPolicy: .allow).extVerdict(
                    frame: bytes, ingressIfindex: 2, routeToPeer: route), .pass(.peer))
        }
        // The forward policy and the allow-list (eth0 admits neither 172.18/16) do not apply.
        let bytes = frame(from: routerMAC, peerContainer, to: Sample.web)
        XCTAssertEqual(
            try model(forward: .accept).extVerdict(frame: bytes, ingressIfindex: 2, routeToPeer: route), .pass(.peer))
        // A reply conntrack knows still passes where icc drops it (row 10).
        XCTAssertEqual(
            try model(icc: false).extVerdict(
                frame: bytes, ingressIfindex: 2, isConntrackReply: { _ in true }, routeToPeer: route), .pass(.reply))
    }

    func testRow13ASourceThatDoesNotComeFromThePeerIsDropped() throws {
        let spoofed = IPv4Address(172, 18, 0, 66)
        let open = try model(icc: true, peerPolicy: .allow, forward: .accept)
        let cases: [(String, [UInt8], UInt32, (IPv4Address) -> PeerRoute?)] = [
            ("another L2 source", frame(from: strangerMAC, spoofed, to: Sample.web), 2, route),
            ("another interface", frame(from: routerMAC, spoofed, to: Sample.web), 4, route),
            ("no route to the peer", frame(from: routerMAC, spoofed, to: Sample.web), 2, { _ in nil }),
        ]
        for (label, bytes, ingress, routes) in cases {
            XCTAssertEqual(
                open.extVerdict(frame: bytes, ingressIfindex: ingress, routeToPeer: routes), .drop(.peerSpoofed), label)
            XCTAssertEqual(
                open.extVerdict(
                    frame: bytes, ingressIfindex: ingress, isConntrackReply: { _ in true }, routeToPeer: routes),
                .drop(.peerSpoofed), "\(label): never taken for a reply")
        }
        // Not to a container: rows 8-11 as before (the host's own address here).
        let toHost = PacketBuilder.tcpFrame(
            from: Endpoint(mac: strangerMAC, ip: spoofed), to: Sample.gateway, sourcePort: 1, destinationPort: 22)
        XCTAssertEqual(open.extVerdict(frame: toHost, ingressIfindex: 2, routeToPeer: route), .pass(.local))
        // Without peers, a peer-subnet source is any outside source (row 9).
        let without = ReferenceDataplane(state: Sample.state())
        XCTAssertEqual(
            without.extVerdict(frame: frame(from: routerMAC, spoofed, to: Sample.web), ingressIfindex: 2),
            .drop(.forward))
    }

    // MARK: NAT

    func testMasqueradeSkipsPeerSubnets() {
        var nat = NATRuleset(bridge: "docker0", bridgeSubnet: IPv4CIDR("172.17.0.0/16"), published: [])
        XCTAssertFalse(nat.render().contains("return"))
        nat.peerSubnets = [IPv4CIDR("172.19.0.0/16")!, IPv4CIDR("172.18.0.0/16")!, IPv4CIDR("172.18.0.0/16")!]
        let rendered = nat.render()
        let exception = rendered.range(of: "ip daddr { 172.18.0.0/16, 172.19.0.0/16 } return")
        let masquerade = rendered.range(of: "ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade")
        XCTAssertNotNil(exception, rendered)
        XCTAssertNotNil(masquerade, rendered)
        if let exception, let masquerade {
            XCTAssertLessThan(exception.lowerBound, masquerade.lowerBound, "the exception comes first")
        }
    }
}
