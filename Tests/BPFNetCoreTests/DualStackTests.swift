// SPDX-License-Identifier: Apache-2.0
//
// Dual stack (docs/policy.md, "Dual stack"): the policy file's `bridgeIPv6`,
// networks' and containers' `ipv6`, their validation, what the compiler
// writes (bn_subnets6, bn_containers6, the IPV6 flag) and how the reconciler
// adds and removes it.

import BPFNetTestSupport
import Foundation
import XCTest

@testable import BPFNetCore

final class DualStackTests: XCTestCase {
    static let yaml = """
        bridgeIPv6: fd00:17::1/64
        networks:
          - {name: v6net, bridge: br-v6, icc: false, ipv6: fd00:30::1/64}
          - {name: v4net, bridge: br-v4}
        containers:
          - {name: web, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethweb, ipv6: "fd00:17::242:ac11:2"}
          - {name: b, ip: 10.30.0.2, mac: 02:42:0a:1e:00:02, port: vethb, network: v6net, ipv6: "fd00:30::2"}
          - {name: c, ip: 10.31.0.2, mac: 02:42:0a:1f:00:02, port: vethc, network: v4net}
        """

    static let facts: HostFacts = {
        var interfaces = Sample.interfaces
        interfaces["vethb"] = 20
        interfaces["vethc"] = 21
        var facts = HostFacts(bridgeIfindex: 3, bridgeAddress: Sample.bridgeAddress, interfaces: interfaces)
        facts.networks = [
            "v6net": BridgeFacts(ifindex: 30, address: IPv4InterfaceAddress("10.30.0.1/24")),
            "v4net": BridgeFacts(ifindex: 31, address: IPv4InterfaceAddress("10.31.0.1/24")),
        ]
        return facts
    }()

    func testTheFileNamesEachNetworksIPv6AndEachContainersAddress() throws {
        let policy = try PolicyFile.load(yaml: Self.yaml, file: "d.yaml")
        XCTAssertEqual(policy.bridgeIPv6, IPv6InterfaceAddress("fd00:17::1/64"))
        XCTAssertEqual(policy.networks.map(\.ipv6), [IPv6InterfaceAddress("fd00:30::1/64"), nil])
        XCTAssertEqual(
            policy.containers.map(\.ipv6), [IPv6Address("fd00:17::242:ac11:2"), IPv6Address("fd00:30::2"), nil])
        // The agent's state file round-trips it.
        XCTAssertEqual(try JSONDecoder().decode(Policy.self, from: JSONEncoder().encode(policy)), policy)
    }

    func testTheCompilerWritesSubnetsAddressesAndTheFlag() throws {
        let state = try PolicyCompiler.compile(try PolicyFile.load(yaml: Self.yaml, file: "d.yaml"), facts: Self.facts)
        XCTAssertTrue(state.config.flags.contains(.ipv6))
        XCTAssertEqual(
            state.subnets6,
            [
                IPv6CIDR("fd00:17::/64")!: Subnet6Record(network: 0, bridgeAddress: IPv6Address("fd00:17::1")!),
                IPv6CIDR("fd00:30::/64")!: Subnet6Record(network: 1, bridgeAddress: IPv6Address("fd00:30::1")!),
            ])
        XCTAssertEqual(
            state.containers6,
            [
                IPv6Address("fd00:17::242:ac11:2")!: ContainerRecord(
                    portIfindex: 10, mac: MACAddress("02:42:ac:11:00:02")!, network: 0),
                IPv6Address("fd00:30::2")!: ContainerRecord(
                    portIfindex: 20, mac: MACAddress("02:42:0a:1e:00:02")!, network: 1),
            ])
        for entry in state.entries where entry.kind == .subnets6 || entry.kind == .containers6 {
            XCTAssertEqual(try MapEntry(kind: entry.kind, key: entry.keyBytes, value: entry.valueBytes), entry)
        }
        // `status` shows each network's IPv6 subnet and each container's address.
        let status = DataplaneStatus(backend: "bpf", state: state, bridge: "docker0") { "if\($0)" }
        XCTAssertEqual(
            status.networks?.map { "\($0.name) \($0.subnet6 ?? "-")" },
            ["bridge fd00:17::/64", "v6net fd00:30::/64", "v4net -"])
        XCTAssertEqual(
            status.containers.map { "\($0.ip) \($0.ipv6 ?? "-")" },
            ["10.30.0.2 fd00:30::2", "10.31.0.2 -", "172.17.0.2 fd00:17::242:ac11:2"])
        // Without any IPv6 network, the programs never look.
        XCTAssertFalse(try PolicyCompiler.compile(Sample.policy, facts: Sample.facts).config.flags.contains(.ipv6))
    }

    /// Subnets and addresses come and go with the policy; the result holds exactly the new state.
    func testTheReconcilerAddsAndRemovesIPv6() throws {
        let before = try PolicyCompiler.compile(Sample.policy, facts: Sample.facts)
        var policy = Sample.policy
        policy.bridgeIPv6 = IPv6InterfaceAddress("fd00:17::1/64")
        policy.containers[0].ipv6 = IPv6Address("fd00:17::2")
        let after = try PolicyCompiler.compile(policy, facts: Sample.facts)
        for (from, to) in [(before, after), (after, before)] {
            var state = from
            for change in from.changes(to: to) { state.apply(change) }
            var expected = to
            expected.config.generation = state.config.generation
            XCTAssertEqual(state, expected)
        }
    }

    func testMistakesAreNamed() {
        let container =
            "containers:\n  - {name: b, ip: 10.30.0.2, mac: 02:42:0a:1e:00:02, port: vethb, network: v6net, "
        let network = "networks:\n  - {name: v6net, bridge: br-v6, ipv6: fd00:30::1/64}\n"
        let cases: [(String, String)] = [
            ("bridgeIPv6: fd00:17::1\n", "d.yaml:1: bridgeIPv6: 'fd00:17::1' is not an IPv6 gateway address"),
            ("bridgeIPv6: fd00:17::/64\n", "is the subnet's own address"),
            ("bridgeIPv6: fe80::1/64\n", "cannot be a network's IPv6 gateway"),
            (
                "bridgeIPv6: fd00:30::1/48\n" + network,
                "networks[0].ipv6: the IPv6 subnet fd00:30::/64 overlaps fd00:30::/48 of bridgeIPv6"
            ),
            (network + container + "ipv6: fd00:31::2}\n", "outside its network's IPv6 subnet fd00:30::/64"),
            (network + container + "ipv6: fd00:30::1}\n", "is the network's IPv6 gateway"),
            (
                network + container + "ipv6: 'fd00:30::zz'}\n",
                "containers[0].ipv6: 'fd00:30::zz' is not an IPv6 address"
            ),
            (
                "containers:\n  - {name: w, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethw, ipv6: fd00:17::2}\n",
                "needs an IPv6 network, but the default bridge has no bridgeIPv6"
            ),
            (
                "bridgeIPv6: fd00:17::1/64\ncontainers:\n"
                    + "  - {name: w, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethw, ipv6: fd00:17::2}\n"
                    + "  - {name: x, ip: 172.17.0.3, mac: 02:42:ac:11:00:03, port: vethx, ipv6: fd00:17::2}\n",
                "containers[1].ipv6: fd00:17::2 is already the IPv6 address of containers[0] 'w'"
            ),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try PolicyFile.load(yaml: yaml, file: "d.yaml"), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "expected «\(expected)» in:\n\(error)")
            }
        }
        XCTAssertThrowsError(
            try PolicyFile.load(yaml: "bridgeIPv6: fd00:17::1/64\n", file: "run.yaml", kind: .settingsOnly)
        ) { error in
            XCTAssertTrue("\(error)".contains("takes networks, containers, links and the bridges' IPv6 from Docker"))
        }
    }
}

extension DualStackTests {
    /// The dataplane keeps each network in the slot it has (keepingNetworkIDs):
    /// the IPv6 subnets and addresses must follow their network there, or a
    /// network created later would judge another's IPv6 as its own (found
    /// with docker-compose, which creates a project's networks one by one).
    func testIPv6EntriesFollowTheirNetworksKeptSlot() throws {
        let front = BridgeNetwork(name: "front", bridge: "br-front", ipv6: IPv6InterfaceAddress("fd00:52::1/64"))
        let back = BridgeNetwork(name: "back", bridge: "br-back", ipv6: IPv6InterfaceAddress("fd00:53::1/64"))
        var interfaces = Sample.interfaces
        interfaces["vethapi"] = 40
        var facts = HostFacts(bridgeIfindex: 3, bridgeAddress: Sample.bridgeAddress, interfaces: interfaces)
        facts.networks = [
            "front": BridgeFacts(ifindex: 31, address: IPv4InterfaceAddress("10.52.0.1/24")),
            "back": BridgeFacts(ifindex: 30, address: IPv4InterfaceAddress("10.53.0.1/24")),
        ]
        // front alone first (slot 1), then back joins and sorts before it.
        let first = try PolicyCompiler.compile(Policy(networks: [front]), facts: facts)
        let api = Container(
            name: "api", ip: IPv4Address("10.53.0.2")!, mac: MACAddress("02:42:0a:35:00:02")!, port: "vethapi",
            network: "back", ipv6: IPv6Address("fd00:53::2"))
        let second = try PolicyCompiler.compile(Policy(containers: [api], networks: [back, front]), facts: facts)
            .keepingNetworkIDs(of: first)
        let slot = { (bridge: UInt32) in second.networks.first { $0.value.bridgeIfindex == bridge }!.key }
        XCTAssertEqual(slot(31), 1, "front keeps its slot")
        XCTAssertEqual(second.subnets6[IPv6CIDR("fd00:52::/64")!]?.network, slot(31))
        XCTAssertEqual(second.subnets6[IPv6CIDR("fd00:53::/64")!]?.network, slot(30))
        XCTAssertEqual(second.containers6[IPv6Address("fd00:53::2")!]?.network, slot(30))
        XCTAssertEqual(second.containers[api.ip]?.network, slot(30))
    }
}

extension DualStackTests {
    /// The fallbacks' dual-stack rules, as text (the end-to-end suite runs them).
    func testTheFallbacksRenderTheDualStackRules() throws {
        let policy = try PolicyFile.load(yaml: Self.yaml, file: "d.yaml")
        let state = try PolicyCompiler.compile(policy, facts: Self.facts)
        let names: [UInt32: String] = [3: "docker0", 10: "vethweb", 20: "vethb", 21: "vethc", 30: "br-v6", 31: "br-v4"]
        let netfilter = try NetfilterPolicy(
            state: state, bridge: "docker0", interfaceName: { names[$0] }, networks: policy.networks)
        XCTAssertEqual(netfilter.bridgeIPv6, IPv6InterfaceAddress("fd00:17::1/64"))
        XCTAssertEqual(netfilter.networks.map(\.ipv6), [IPv6InterfaceAddress("fd00:30::1/64"), nil])
        XCTAssertEqual(
            netfilter.containers.compactMap(\.ipv6).map(\.description), ["fd00:30::2", "fd00:17::242:ac11:2"])

        let nft = NFTablesRuleset(policy: netfilter)
        let bridge = nft.renderBridgeTable()
        for line in [
            #"meta protocol ip6 ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @port_addrs6 counter name "spoofed" drop"#,
            #"ip6 daddr @subnets6 iifname . ip6 daddr != @port_nets6 counter name "network" drop"#,
            #""vethb" . fd00:30::/64"#,
        ] {
            XCTAssertTrue(bridge.contains(line), "bridge table lacks «\(line)»:\n\(bridge)")
        }
        let ip6 = nft.renderIP6Table()
        for line in [
            "iifname @ext_ifs ip6 daddr @subnets6 ip6 daddr != @gateways6 goto ext_direct6",
            "goto ext_refused6_forward",
            #"meta l4proto ipv6-icmp ct state related counter name "related" accept"#,
            #"iifname . oifname @isolated counter name "network" drop"#,
        ] {
            XCTAssertTrue(ip6.contains(line), "ip6 table lacks «\(line)»:\n\(ip6)")
        }
        let ip6tables = IP6TablesRuleset(policy: netfilter).render()
        for line in [
            "-I FORWARD 2 -i docker0 -m comment --comment bpfnet -j BPFNET-SENDER6",
            "-i br-v6 -o br-v4 -m comment --comment bpfnet:network -j DROP",
            "-o br-v6 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment bpfnet -j ACCEPT",
            "-o br-v6 ! -i br-v6 -m comment --comment bpfnet:forward -j DROP",
            "-A BPFNET-SENDER6 -m physdev --physdev-in vethb -s fd00:30::2/128 -j RETURN",
            "-A BPFNET-SENDER6 -m physdev --physdev-in vethc -m comment --comment bpfnet:spoofed -j DROP",
        ] {
            XCTAssertTrue(ip6tables.contains(line), "ip6tables input lacks «\(line)»:\n\(ip6tables)")
        }
    }
}
