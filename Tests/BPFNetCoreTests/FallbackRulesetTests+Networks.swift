// SPDX-License-Identifier: Apache-2.0
//
// The netfilter fallbacks with user-defined Docker networks (no root): the
// goldens `networks.{nft,iptables,ip6tables}` (regenerated with the other
// goldens: BPFNET_UPDATE_GOLDENS=1 swift test --filter FallbackRulesetTests)
// and what each rule set must hold for them.

import Foundation
import XCTest

@testable import BPFNetCore

extension FallbackSample {
    /// Three user-defined networks beside the default bridge: `front` (icc
    /// on, a published port, an unknown port), `back` (icc off, SNAT to a host
    /// address) and `vault` (internal: its published port is not published).
    static let networkInterfaces = interfaces.merging([
        "br-front": 20, "vethf1": 21, "vethf2": 22, "vethfx": 23, "br-back": 30, "vethb1": 31, "br-vault": 40,
        "vethv1": 41, "vethvx": 42,
    ]) { a, _ in a }
    static let networkFacts: HostFacts = {
        var facts = HostFacts(
            bridgeIfindex: 3, bridgeAddress: Sample.bridgeAddress, bridgeMAC: MACAddress("02:42:ac:11:00:01")!,
            interfaces: networkInterfaces)
        facts.networks = [
            "front": BridgeFacts(
                ifindex: 20, address: IPv4InterfaceAddress("10.10.0.1/24"), mac: MACAddress("02:42:0a:0a:00:01")!,
                ports: [21, 22, 23]),
            "back": BridgeFacts(
                ifindex: 30, address: IPv4InterfaceAddress("10.20.0.1/24"), mac: MACAddress("02:42:0a:14:00:01")!,
                ports: [31]),
            "vault": BridgeFacts(
                ifindex: 40, address: IPv4InterfaceAddress("10.30.0.1/24"), mac: MACAddress("02:42:0a:1e:00:01")!,
                ports: [41, 42]),
        ]
        return facts
    }()
    static func member(_ name: String, _ network: String, _ address: String, published: [PublishedPort] = [])
        -> Container
    {
        let ip = IPv4Address(address)!
        return Container(
            name: name, ip: ip, mac: MACAddress(dockerStyleFor: ip), port: "veth\(name)", published: published,
            network: network)
    }
    static let networksPolicy = Policy(
        bridge: "docker0", icc: false, forwardPolicy: .drop,
        extInterfaces: [ExternalInterface(name: "eth0", allowSources: [IPv4CIDR("198.51.100.2/32")!])],
        containers: [
            Sample.web, Sample.client,
            member(
                "f1", "front", "10.10.0.2", published: [PublishedPort(hostPort: 8081, containerPort: 80, proto: .tcp)]),
            member("f2", "front", "10.10.0.3"), member("b1", "back", "10.20.0.2"),
            member(
                "v1", "vault", "10.30.0.2", published: [PublishedPort(hostPort: 8082, containerPort: 80, proto: .tcp)]),
        ],
        links: [Link(parent: "client", child: "web")],
        networks: [
            BridgeNetwork(name: "front", bridge: "br-front"),
            BridgeNetwork(name: "back", bridge: "br-back", icc: false, hostIPv4: IPv4Address(198, 51, 100, 1)),
            BridgeNetwork(name: "vault", bridge: "br-vault", internal: true),
        ])

    static func networksNetfilterPolicy() throws -> NetfilterPolicy {
        let state = try PolicyCompiler.compile(networksPolicy, facts: networkFacts)
        var policy = try NetfilterPolicy(
            state: state, bridge: "docker0",
            interfaceName: { index in networkInterfaces.first { $0.value == index }?.key },
            networks: networksPolicy.networks)
        policy.unknownPorts = ["vethdx"]
        return policy
    }

}

extension FallbackRulesetTests {
    func testNetworkGoldens() throws {
        let policy = try FallbackSample.networksNetfilterPolicy()
        try assertGolden(
            NFTablesRuleset(policy: policy, bridgeMAC: MACAddress("02:42:ac:11:00:01")!).render(), "networks.nft")
        try assertGolden(IPTablesRuleset(policy: policy).render(), "networks.iptables")
        try assertGolden(IP6TablesRuleset(policy: policy).render(), "networks.ip6tables")
    }

    /// The compiled networks as the rule sets see them: each container's
    /// bridge, each network's unknown ports, no published port into an
    /// internal network, no masquerade out of one.
    func testTheNetfilterPolicyKnowsEveryNetwork() throws {
        let policy = try FallbackSample.networksNetfilterPolicy()
        XCTAssertEqual(policy.bridges, ["docker0", "br-front", "br-back", "br-vault"])
        XCTAssertEqual(
            Dictionary(uniqueKeysWithValues: policy.containers.map { ($0.name, $0.bridge ?? "docker0") }),
            [
                "web": "docker0", "client": "docker0", "f1": "br-front", "f2": "br-front", "b1": "br-back",
                "v1": "br-vault",
            ])
        XCTAssertEqual(policy.networks.map(\.unknownPorts), [["vethfx"], [], ["vethvx"]])
        XCTAssertEqual(policy.networks.map(\.masquerade), [true, true, false])
        XCTAssertEqual(policy.networks.map(\.subnet?.description), ["10.10.0.0/24", "10.20.0.0/24", "10.30.0.0/24"])
        XCTAssertEqual(policy.published.map(\.key.hostPort).sorted(), [8080, 8081], "vault's 8082 is not published")
        XCTAssertEqual(policy.gateways.map(\.description), ["172.17.0.1", "10.10.0.1", "10.20.0.1", "10.30.0.1"])
    }

    /// Isolation needs the forward chain whatever the forward policy, with
    /// one set lookup for every pair of bridges.
    func testNFTablesIsolatesNetworksWithOneLookup() throws {
        var policy = try FallbackSample.networksNetfilterPolicy()
        policy.forwardAccept = true
        let table = NFTablesRuleset(policy: policy).renderIPTable()
        XCTAssertTrue(table.contains("chain forward {"), table)
        XCTAssertTrue(table.contains("iifname . oifname @isolated counter name \"network\" drop"), table)
        XCTAssertFalse(table.contains("counter name \"forward\" drop\n    }\n    chain ext_direct"), table)
        let isolated = table.components(separatedBy: "set isolated {")[1].components(separatedBy: "elements = {")[1]
            .components(separatedBy: "}")[0]
        XCTAssertEqual(isolated.components(separatedBy: " . ").count - 1, 4 * 3, isolated)
        // Without networks, no isolation set and (forward accept) no forward chain, as before.
        var single = try FallbackSample.netfilterPolicy(FallbackSample.policies[2].policy)
        single.forwardAccept = true
        let plain = NFTablesRuleset(policy: single).renderIPTable()
        XCTAssertFalse(plain.contains("isolated"), plain)
        XCTAssertFalse(plain.contains("chain forward"), plain)
    }

    /// nft keeps at most 128 characters of a table comment, however many
    /// networks (Docker names their bridges br-<12 hex digits>).
    func testTableCommentsStayShortWithManyNetworks() throws {
        var policy = try FallbackSample.networksNetfilterPolicy()
        policy.networks += (0..<20).map { index in
            NetfilterNetwork(name: "n\(index)", bridge: "br-0123456789\(index + 10)", address: nil)
        }
        let rules = NFTablesRuleset(policy: policy).render()
        for line in rules.split(separator: "\n") where line.trimmingCharacters(in: .whitespaces).hasPrefix("comment \"")
        {
            let text = line.trimmingCharacters(in: .whitespaces).dropFirst("comment \"".count).dropLast()
            XCTAssertLessThanOrEqual(text.utf8.count, 128, String(line))
        }
    }

    /// br_netfilter is needed as soon as any network has icc off, and
    /// ip6tables drops IPv6 between the containers of each such bridge.
    func testICCOffOnOneNetworkIsEnforcedForBridgedPackets() throws {
        var policy = try FallbackSample.networksNetfilterPolicy()
        policy.icc = true
        XCTAssertTrue(IPTablesRuleset.needsBridgeNetfilter(policy))
        let ip6 = IP6TablesRuleset(policy: policy).render()
        XCTAssertTrue(ip6.contains("-I FORWARD 2 -i br-back -o br-back -m comment --comment bpfnet:icc -j DROP"), ip6)
        XCTAssertFalse(ip6.contains("-i docker0 -o docker0"), ip6)
        // nftables: the default bridge's unknown ports follow its icc; a port
        // that joins any bridge later is held (like the eBPF guard holds it).
        let bridge = NFTablesRuleset(policy: policy).renderBridgeTable()
        XCTAssertTrue(bridge.contains("\"vethdx\" : accept"), bridge)
        XCTAssertTrue(bridge.contains("iifname != @ports goto port_unknown\n"), bridge)
        policy.networks = policy.networks.map { network in
            var network = network
            network.icc = true
            return network
        }
        XCTAssertFalse(IPTablesRuleset.needsBridgeNetfilter(policy))
    }

    /// Docker's internal-network rules need the subnet; a bridge without an
    /// address lets nothing out or in at all.
    func testAnInternalNetworkWithoutAnAddressIsClosed() throws {
        var policy = try FallbackSample.networksNetfilterPolicy()
        policy.networks[2].address = nil
        let rules = IPTablesRuleset(policy: policy).render()
        XCTAssertTrue(
            rules.contains(
                "-A DOCKER-ISOLATION-STAGE-1 -i br-vault ! -o br-vault -m comment --comment bpfnet:internal -j DROP"),
            rules)
        XCTAssertTrue(
            rules.contains(
                "-A DOCKER-ISOLATION-STAGE-1 -o br-vault ! -i br-vault -m comment --comment bpfnet:internal -j DROP"),
            rules)
    }
}

extension FallbackSample {
    /// The networks policy with two peers: host2 routed through eth0, host3
    /// through no interface at all (no route to it).
    static func peersNetfilterPolicy(peerPolicy: PeerPolicy = .icc) throws -> NetfilterPolicy {
        var source = networksPolicy
        source.peers = [
            Peer(name: "host2", address: IPv4Address(192, 168, 8, 1), subnets: [IPv4CIDR("172.18.0.0/16")!]),
            Peer(
                name: "host3", address: IPv4Address(10, 9, 0, 1),
                subnets: [IPv4CIDR("10.19.0.0/16")!, IPv4CIDR("10.119.0.0/24")!]),
        ]
        source.peerPolicy = peerPolicy
        let state = try PolicyCompiler.compile(source, facts: networkFacts)
        var policy = try NetfilterPolicy(
            state: state, bridge: "docker0",
            interfaceName: { index in networkInterfaces.first { $0.value == index }?.key },
            networks: source.networks)
        policy.peers = policy.peers.map { peer in
            var peer = peer
            peer.interface = peer.name == "host2" ? "eth0" : nil
            return peer
        }
        return policy
    }
}

extension FallbackRulesetTests {
    /// Peers (rows 12, 13) in both fallbacks: the goldens, and what the
    /// rules must say — a peer's subnet from its own way goes on to the
    /// destination network's internal flag and icc, from any other interface
    /// it is peer-spoofed, masquerade skips peer subnets, `peerPolicy: allow`
    /// has no icc step, and `status` reads the peers back.
    func testPeerGoldensAndRows() throws {
        let policy = try FallbackSample.peersNetfilterPolicy()
        XCTAssertEqual(policy.peers.map(\.name), ["host3", "host2"], "sorted by address")
        XCTAssertEqual(policy.peerInternalDestinations.map(\.description), ["10.30.0.0/24"])
        XCTAssertEqual(policy.peerICCOffDestinations.map(\.description), ["172.17.0.0/16", "10.20.0.0/24"])
        let nft = NFTablesRuleset(policy: policy, bridgeMAC: MACAddress("02:42:ac:11:00:01")!).render()
        let iptables = IPTablesRuleset(policy: policy).render()
        try assertGolden(nft, "peers.nft")
        try assertGolden(iptables, "peers.iptables")
        for line in [
            "ip saddr @peer_subnets goto ext_peer",
            "\"eth0\" . 172.18.0.0/16",
            "172.18.0.0/16 comment \"host2 192.168.8.1\"",
            "iifname . ip saddr != @peer_ways counter name \"peer-spoofed\" drop",
            "ip daddr @peer_icc_off goto ext_peer_icc",
        ] {
            XCTAssertTrue(nft.contains(line), line)
        }
        for line in [
            "-A BPFNET-EXT-eth0 -d 172.17.0.0/16 -m conntrack ! --ctstate DNAT -j BPFNET-WAY-eth0",
            "-A BPFNET-WAY-eth0 -s 172.18.0.0/16 -m comment --comment bpfnet -g BPFNET-PEER",
            "-A BPFNET-WAY-eth0 -s 10.19.0.0/16 -m comment --comment bpfnet:peer-spoofed -j DROP",
            "-A BPFNET-PEER -d 10.30.0.0/24 -m comment --comment bpfnet:internal -j DROP",
            "-A BPFNET-PEER -d 10.20.0.0/24 -m comment --comment bpfnet -g BPFNET-PEER-ICC",
            "-A BPFNET-PEER -m comment --comment bpfnet:peer -j ACCEPT",
            "-I POSTROUTING 1 -s 172.17.0.0/16 -d 10.19.0.0/16 -m comment --comment bpfnet -j RETURN",
        ] {
            XCTAssertTrue(iptables.contains(line), line)
        }
        XCTAssertTrue(policy.natRuleset.render().contains("172.18.0.0/16"), "no masquerade towards peers")

        let allow = try FallbackSample.peersNetfilterPolicy(peerPolicy: .allow)
        XCTAssertEqual(allow.peerICCOffDestinations, [])
        XCTAssertFalse(IPTablesRuleset(policy: allow).render().contains("-g BPFNET-PEER-ICC"))

        // iptables-save read back: the peers (without their ways) and the peer policy.
        for compiled in [policy, allow] {
            let save = IPTablesSave(parsing: Self.asSaved(IPTablesRuleset(policy: compiled).render()))
            let readBack = try XCTUnwrap(IPTablesRuleset.policy(from: save))
            XCTAssertEqual(
                readBack.peers,
                compiled.peers.map { NetfilterPeer(name: $0.name, address: $0.address, subnets: $0.subnets) })
            XCTAssertEqual(readBack.peerAllow, compiled.peerAllow)
            let status = readBack.status(backend: "iptables") { _ in 0 }
            XCTAssertEqual(status.peers?.map(\.name), ["host3", "host2"])
            XCTAssertEqual(
                status.peers?.first?.subnets,
                ["10.19.0.0/16", "10.119.0.0/24"].sorted {
                    IPv4CIDR($0)! < IPv4CIDR($1)!
                })
            XCTAssertEqual(status.peerPolicy, compiled.peerAllow ? "allow" : "icc")
        }
    }
}
