// SPDX-License-Identifier: Apache-2.0
//
// Golden tests for the netfilter fallbacks' rule sets (no root): the rendered
// nftables transaction and iptables-restore input for a few policies are
// compared with files under Fixtures/fallback. After a deliberate change,
// regenerate them with BPFNET_UPDATE_GOLDENS=1 swift test --filter FallbackRulesetTests
// and review the diff.

import Foundation
import XCTest

@testable import BPFNetCore

enum FallbackSample {
    static let interfaces: [String: UInt32] = Sample.interfaces.merging(["vethapp": 14, "eth2": 15]) { a, _ in a }
    static let facts = HostFacts(bridgeIfindex: 3, bridgeAddress: Sample.bridgeAddress, interfaces: interfaces)
    static func name(_ index: UInt32) -> String? { interfaces.first { $0.value == index }?.key }

    static let app = Container(
        name: "app", ip: IPv4Address(172, 17, 0, 6), mac: MACAddress("02:42:ac:11:00:06")!,
        port: "vethapp")
    static let db = Container(
        name: "db", ip: IPv4Address(172, 17, 0, 4), mac: MACAddress("02:42:ac:11:00:04")!,
        port: "vethdb", exposed: [PortSpec(5432, .tcp), PortSpec(5433, .udp)],
        published: [
            PublishedPort(
                hostIP: IPv4Address(198, 51, 100, 1), hostPort: 15432,
                containerPort: 5432, proto: .tcp)
        ])

    /// Named policies the goldens cover.
    static let policies: [(name: String, policy: Policy)] = [
        // icc on: no link rules in force (they are compiled and recorded), a
        // published port, no allow-list, forward policy drop.
        (
            "icc-on",
            Policy(
                bridge: "docker0", icc: true, forwardPolicy: .drop,
                extInterfaces: [ExternalInterface(name: "eth0")],
                containers: [Sample.web, Sample.client], links: [Link(parent: "client", child: "web")])
        ),
        // icc off: links with TCP and UDP ports, an allow-list, published
        // ports on every address and on one host address.
        (
            "icc-off-allowlist",
            Policy(
                bridge: "docker0", icc: false, forwardPolicy: .drop,
                extInterfaces: [
                    ExternalInterface(
                        name: "eth0",
                        allowSources: [
                            IPv4CIDR("198.51.100.2/32")!, IPv4CIDR("203.0.113.0/24")!,
                        ],
                        // The /64 lies inside the /48: the nft interval set holds the /48 alone.
                        allowSourcesIPv6: [
                            IPv6CIDR("2001:db8:100::/48")!, IPv6CIDR("2001:db8:100:1::/64")!,
                            IPv6CIDR("2001:db8:2::5")!,
                        ])
                ],
                containers: [Sample.web, Sample.client, db, app],
                links: [Link(parent: "client", child: "web"), Link(parent: "app", child: "db")])
        ),
        // icc off, forward policy accept, two external interfaces, one without a list.
        (
            "icc-off-forward-accept",
            Policy(
                bridge: "docker0", icc: false, forwardPolicy: .accept,
                extInterfaces: [
                    ExternalInterface(name: "eth0", allowSources: [IPv4CIDR("198.51.100.2/32")!]),
                    ExternalInterface(name: "eth2"),
                ],
                containers: [Sample.web, Sample.client], links: [Link(parent: "client", child: "web")])
        ),
    ]

    static func netfilterPolicy(_ policy: Policy, unused: [String: String] = [:]) throws -> NetfilterPolicy {
        let state = try PolicyCompiler.compile(policy, facts: facts)
        return try NetfilterPolicy(state: state, bridge: policy.bridge, interfaceName: name(_:), unusedBackends: unused)
    }
}

final class FallbackRulesetTests: XCTestCase {
    static let goldens = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fallback")

    func assertGolden(_ text: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = Self.goldens.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["BPFNET_UPDATE_GOLDENS"] == "1" {
            try FileManager.default.createDirectory(at: Self.goldens, withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        if expected != text {
            let expectedLines = expected.split(separator: "\n", omittingEmptySubsequences: false)
            let actualLines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let first =
                Array(zip(expectedLines, actualLines)).firstIndex { $0.0 != $0.1 }
                ?? min(expectedLines.count, actualLines.count)
            XCTFail(
                "\(name) differs from the golden at line \(first + 1):\n  golden:   "
                    + "\(first < expectedLines.count ? String(expectedLines[first]) : "<end>")\n  rendered: "
                    + "\(first < actualLines.count ? String(actualLines[first]) : "<end>")\n"
                    + "(BPFNET_UPDATE_GOLDENS=1 rewrites the goldens)", file: file, line: line)
        }
    }

    func testNFTablesGoldens() throws {
        for (name, policy) in FallbackSample.policies {
            let rules = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(policy))
            try assertGolden(rules.render(), "\(name).nft")
        }
    }

    func testIPTablesGoldens() throws {
        for (name, policy) in FallbackSample.policies {
            let rules = IPTablesRuleset(policy: try FallbackSample.netfilterPolicy(policy))
            try assertGolden(rules.render(), "\(name).iptables")
        }
    }

    func testIP6TablesGoldens() throws {
        for (name, policy) in FallbackSample.policies {
            let rules = IP6TablesRuleset(policy: try FallbackSample.netfilterPolicy(policy))
            try assertGolden(rules.render(), "\(name).ip6tables")
        }
    }

    func testEBTablesGoldens() throws {
        for (name, policy) in FallbackSample.policies {
            try assertGolden(
                EBTablesRuleset.render(try FallbackSample.netfilterPolicy(policy), current: ""), "\(name).ebtables")
        }
    }

    /// A second apply flushes bpfnet's chain instead of declaring it and adds
    /// no second jump; removal takes the jumps and the chain and nothing else.
    func testEBTablesReplacesAndRemovesOnlyItsOwnRules() throws {
        let saved = """
            # Generated by ebtables-save v1.8.9 (nf_tables)
            *filter
            :INPUT ACCEPT
            :FORWARD ACCEPT
            :OUTPUT ACCEPT
            :BPFNET-PORTS RETURN
            :OTHER ACCEPT
            -A INPUT -j BPFNET-PORTS
            -A FORWARD -j BPFNET-PORTS
            -A FORWARD -j OTHER
            -A BPFNET-PORTS -p ARP -i vethold -j DROP
            """
        let policy = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        let again = EBTablesRuleset.render(policy, current: saved).split(separator: "\n")
        XCTAssertEqual(Array(again.prefix(2)), ["*filter", "-F BPFNET-PORTS"])
        XCTAssertFalse(again.contains { $0.hasPrefix("-I ") || $0.hasPrefix(":") }, "\(again)")
        XCTAssertTrue(again.contains("-A BPFNET-PORTS -p 802_1Q -i vethweb -j DROP"), "\(again)")
        XCTAssertEqual(
            EBTablesRuleset.renderRemoval(current: saved),
            "*filter\n-D INPUT -j BPFNET-PORTS\n-D FORWARD -j BPFNET-PORTS\n-F BPFNET-PORTS\n-X BPFNET-PORTS\nCOMMIT\n")
        XCTAssertNil(EBTablesRuleset.renderRemoval(current: "*filter\n:INPUT ACCEPT\n-A FORWARD -j OTHER\n"))
        // icc on: ARP is checked, tags are left to the bridge (as the port program).
        let open = EBTablesRuleset.render(
            try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy), current: "")
        XCTAssertTrue(open.contains("--arp-ip-src"), open)
        XCTAssertFalse(open.contains("802_1Q"), open)
    }

    /// `ebtables-save -c`'s counters of bpfnet's DROP rules, under the port
    /// program's reasons; other chains, RETURN rules and other tables are not counted.
    func testEBTablesDropsCountAsSpoofedAndEncap() {
        let saved = """
            # Generated by ebtables-save v1.8.9 (nf_tables)
            *filter
            :INPUT ACCEPT
            :FORWARD ACCEPT
            :BPFNET-PORTS RETURN
            :OTHER ACCEPT
            [9:540] -A INPUT -j BPFNET-PORTS
            [3:180] -A BPFNET-PORTS -p ARP -i vethweb --arp-ip-src 10.88.0.2 --arp-mac-src 2:42:a:58:0:2 -j RETURN
            [4:168] -A BPFNET-PORTS -p ARP -i vethweb -j DROP
            [2:84] -A BPFNET-PORTS -p ARP -i vethdb -j DROP
            [5:350] -A BPFNET-PORTS -p 802_1Q -i vethweb -j DROP
            [1:70] -A BPFNET-PORTS -p 0x88a8 -o vethweb -j DROP
            [7:490] -A OTHER -p 802_1Q -j DROP
            *nat
            [8:480] -A BPFNET-PORTS -p ARP -i vethweb -j DROP
            """
        XCTAssertEqual(
            EBTablesRuleset.counters(fromSaveWithCounters: saved),
            ["spoofed": .init(packets: 6, bytes: 252), "encap": .init(packets: 6, bytes: 420)])
        XCTAssertEqual(EBTablesRuleset.counters(fromSaveWithCounters: ""), [:])
    }

    /// The ext program's IPv6 rule (docs/verdicts.md, "Ext program"): on an
    /// interface with an allow-list, IPv6 TCP/UDP to a port published on all
    /// addresses is dropped (`source`) unless its source is in the list's
    /// IPv6 prefixes; ports published on one IPv4 address and interfaces
    /// without a list are left alone.
    func testNFTablesRefusesIPv6ToPortsPublishedOnAllAddresses() throws {
        // eth0 has a list; 8080/tcp is published on all addresses, 15432/tcp on 198.51.100.1 only.
        let listed = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy))
            .renderIP6Table()
        XCTAssertTrue(
            listed.contains("set allowlisted {\n        type ifname\n        elements = {\n            \"eth0\""),
            listed)
        XCTAssertTrue(listed.contains("            tcp . 8080\n"), listed)
        XCTAssertFalse(listed.contains("15432"), listed)
        XCTAssertTrue(
            listed.contains(
                "type filter hook prerouting priority mangle; policy accept;\n        iifname @allowlisted meta l4proto "
                    + "{ tcp, udp } meta l4proto . th dport @published_any iifname . ip6 saddr != @allow_src6 "
                    + "counter name \"source\" drop"), listed)
        XCTAssertTrue(
            listed.contains(
                "set allow_src6 {\n        type ifname . ipv6_addr\n        flags interval\n        elements = {\n"
                    + "            \"eth0\" . 2001:db8:2::5/128, \"eth0\" . 2001:db8:100::/48\n"), listed)
        // No list anywhere: the set is empty and nothing is dropped.
        let open = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy))
            .renderIP6Table()
        XCTAssertTrue(open.contains("set allowlisted {\n        type ifname\n    }"), open)
        // Two interfaces, only eth0 with a list.
        let two = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[2].policy))
            .renderIP6Table()
        let allowlisted = two.components(separatedBy: "set allowlisted {")[1].components(separatedBy: "}")[0]
        XCTAssertTrue(allowlisted.contains("\"eth0\""), two)
        XCTAssertFalse(allowlisted.contains("\"eth2\""), two)
        // The ip6 table goes with the others; the eBPF backend removes it with the bridge table.
        XCTAssertTrue(NFTablesRuleset.renderDelete().contains("delete table ip6 bpfnet"))
        XCTAssertTrue(NFTablesRuleset.renderDeleteFilterTables().contains("delete table ip6 bpfnet"))
        XCTAssertFalse(NFTablesRuleset.renderDeleteFilterTables().contains("delete table ip bpfnet"))
    }

    /// The same in ip6tables, and IPv6 between containers with icc off.
    func testIP6TablesRefusesIPv6ToPublishedPortsAndBetweenContainers() throws {
        let closed = IP6TablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy))
            .render()
        XCTAssertTrue(closed.contains("-I INPUT 1 -m comment --comment bpfnet -j BPFNET-EXT\n"), closed)
        XCTAssertTrue(closed.contains("-I FORWARD 1 -m comment --comment bpfnet -j BPFNET-EXT\n"), closed)
        XCTAssertTrue(
            closed.contains("-I FORWARD 2 -i docker0 -o docker0 -m comment --comment bpfnet:icc -j DROP\n"), closed)
        XCTAssertEqual(
            closed.split(separator: "\n").filter { $0.hasPrefix("-A BPFNET-EXT") || $0.hasPrefix("-A BPFNET-SRC") },
            [
                "-A BPFNET-EXT -i eth0 -p tcp -m tcp --dport 8080 -g BPFNET-SRC-eth0",
                "-A BPFNET-SRC-eth0 -s 2001:db8:2::5/128 -j RETURN",
                "-A BPFNET-SRC-eth0 -s 2001:db8:100::/48 -j RETURN",
                "-A BPFNET-SRC-eth0 -s 2001:db8:100:1::/64 -j RETURN",
                "-A BPFNET-SRC-eth0 -m comment --comment bpfnet:source -j DROP",
            ])
        XCTAssertTrue(closed.contains(":BPFNET-SRC-eth0 - [0:0]\n"), closed)
        let open = IP6TablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy))
            .render()
        XCTAssertFalse(open.contains("DROP"), "icc on, no allow-list: nothing to drop:\n\(open)")
        let two = IP6TablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[2].policy))
            .render()
        XCTAssertTrue(two.contains("-A BPFNET-EXT -i eth0 -p tcp"), two)
        XCTAssertFalse(two.contains("-i eth2"), two)
    }

    /// bpfnet's old IPv6 rules in INPUT and FORWARD are deleted before the
    /// new ones go in; other rules and chains stay; removal takes only bpfnet's.
    func testIP6TablesReplacesAndRemovesOnlyItsOwnRules() throws {
        let save = IPTablesSave(
            parsing: """
                *filter
                :INPUT ACCEPT [0:0]
                :FORWARD ACCEPT [0:0]
                :OUTPUT ACCEPT [0:0]
                :BPFNET-EXT - [0:0]
                :BPFNET-OLD - [0:0]
                :BPFNET-STATE - [0:0]
                :mine - [0:0]
                -A INPUT -m comment --comment bpfnet -j BPFNET-EXT
                -A INPUT -s 2001:db8::/32 -j mine
                -A FORWARD -m comment --comment bpfnet -j BPFNET-EXT
                -A FORWARD -i docker0 -o docker0 -m comment --comment bpfnet:icc -j DROP
                -A BPFNET-EXT -i eth0 -p tcp -m tcp --dport 8080 -m comment --comment bpfnet:source -j DROP
                -A BPFNET-STATE -m comment --comment "bpfnet ip6tables: bridge=docker0 icc=false" -j RETURN
                COMMIT

                """)
        XCTAssertTrue(IP6TablesRuleset.isLoaded(save))
        let policy = try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy)
        let text = IP6TablesRuleset(policy: policy, current: save).render()
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(
            Array(lines.prefix(10)),
            [
                "*filter", ":BPFNET-STATE - [0:0]", ":BPFNET-EXT - [0:0]",
                "-D INPUT -m comment --comment bpfnet -j BPFNET-EXT",
                "-D FORWARD -m comment --comment bpfnet -j BPFNET-EXT",
                "-D FORWARD -i docker0 -o docker0 -m comment --comment bpfnet:icc -j DROP",
                "-F BPFNET-OLD", "-X BPFNET-OLD",
                "-I INPUT 1 -m comment --comment bpfnet -j BPFNET-EXT",
                "-I FORWARD 1 -m comment --comment bpfnet -j BPFNET-EXT",
            ])
        XCTAssertFalse(text.contains("mine"), text)
        let removal = try XCTUnwrap(IP6TablesRuleset.renderRemoval(current: save))
        XCTAssertEqual(
            removal.split(separator: "\n").map(String.init),
            [
                "*filter",
                "-D INPUT -m comment --comment bpfnet -j BPFNET-EXT",
                "-D FORWARD -m comment --comment bpfnet -j BPFNET-EXT",
                "-D FORWARD -i docker0 -o docker0 -m comment --comment bpfnet:icc -j DROP",
                "-F BPFNET-EXT", "-F BPFNET-OLD", "-F BPFNET-STATE",
                "-X BPFNET-EXT", "-X BPFNET-OLD", "-X BPFNET-STATE",
                "COMMIT",
            ])
        XCTAssertNil(
            IP6TablesRuleset.renderRemoval(current: IPTablesSave(parsing: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")))
        // The IPv6 drops count under the reasons of the IPv4 ones.
        XCTAssertEqual(IPTablesRuleset.counters(from: save)["source"]?.packets, 0)
    }

    /// The NAT part of the nftables backend's ip table is the eBPF backend's NAT table, word for word.
    func testNATIsTheEBPFBackendsNAT() throws {
        let policy = FallbackSample.policies[1].policy
        let nat = NATRuleset(bridge: "docker0", bridgeSubnet: Sample.bridgeAddress.network, policy: policy.normalized())
        let rendered = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(policy)).render()
        XCTAssertTrue(rendered.contains(nat.renderBody()))
        XCTAssertTrue(rendered.contains("comment \"\(nat.comment)\""))
        XCTAssertEqual(
            nat.render(),
            """
            table ip bpfnet
            delete table ip bpfnet
            table ip bpfnet {
                comment "\(nat.comment)"
            \(nat.renderBody())
            }

            """)
    }

    func testNFTablesCountersCarryOver() throws {
        let policy = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        let rules = NFTablesRuleset(
            policy: policy,
            counters: [
                NFTablesRuleset.portProgram: ["icc": .init(packets: 7, bytes: 420)],
                NFTablesRuleset.extProgram: ["source": .init(packets: 3, bytes: 180)],
                NFTablesRuleset.ext6Program: ["source": .init(packets: 2, bytes: 160)],
            ])
        let text = rules.render()
        XCTAssertTrue(text.contains("counter icc { packets 7 bytes 420 }"))
        XCTAssertTrue(text.contains("counter source { packets 3 bytes 180 }"))
        XCTAssertTrue(rules.renderIP6Table().contains("counter source { packets 2 bytes 160 }"))
        XCTAssertTrue(text.contains("counter link { packets 0 bytes 0 }"))
    }

    /// The sender checks, unknown ports, frames to a container's MAC and
    /// interfaces the policy does not list (docs/security.md; AttackTests
    /// shows each with real frames).
    func testNFTablesHoldsTheAttacks() throws {
        let closed = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        let bridgeMAC = MACAddress("02:42:ac:11:00:01")!
        let text = NFTablesRuleset(policy: closed, bridgeMAC: bridgeMAC).render()
        for container in closed.containers {
            XCTAssertTrue(
                text.contains("\"\(container.port)\" . \(container.mac)"), "\(container.name)'s MAC:\n\(text)")
            XCTAssertTrue(text.contains("\"\(container.port)\" . \(container.ip)"), "\(container.name)'s address")
        }
        for rule in [
            "iifname != @ports goto port_unknown",
            "iifname . ether saddr != @port_macs counter name \"spoofed\" drop",
            "meta protocol ip iifname . ip saddr != @port_addrs counter name \"spoofed\" drop",
            "meta protocol arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 jump port_arp",
            "iifname . arp saddr ether != @port_macs counter name \"spoofed\" drop",
            "arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @port_addrs counter name \"spoofed\" drop",
            "meta protocol { ip, ip6, 8021q, 8021ad } ether daddr @macs counter name \"unknown-port\" drop",
            "ether daddr 02:42:ac:11:00:01 meta protocol ip ip daddr != 172.17.0.1 ip daddr @inside "
                + "counter name \"unknown-port\" drop",
            "ether daddr != @macs ip daddr 172.17.0.1 counter name \"host\" accept",
            "ether daddr != @macs ip daddr != @inside counter name \"outside\" accept",
            "type filter hook forward priority filter - 1; policy accept;",
            "oifname != \"docker0\" accept",
            "ct status dnat accept",
            "counter name \"forward\" drop\n    }\n    chain ext_direct",
        ] {
            XCTAssertTrue(text.contains(rule), "missing `\(rule)`:\n\(text)")
        }
        // Without the bridge's MAC, no rule for routed frames from unknown ports
        // (the hook sees every bridge's ports).
        XCTAssertFalse(NFTablesRuleset(policy: closed).render().contains("ip daddr != 172.17.0.1 ip daddr @inside"))

        // icc on: unknown ports pass, the sender checks stay.
        let open = NFTablesRuleset(
            policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy), bridgeMAC: bridgeMAC
        ).render()
        XCTAssertTrue(open.contains("iifname != @ports return"), open)
        XCTAssertFalse(open.contains("port_unknown"), open)
        XCTAssertTrue(open.contains("iifname . ether saddr != @port_macs counter name \"spoofed\" drop"), open)
        // Forward policy accept: no forward chain.
        let accept = NFTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[2].policy))
            .render()
        XCTAssertFalse(accept.contains("hook forward"), accept)
    }

    /// The sender checks with physdev (br_netfilter, icc off): a known
    /// port's packets carry its container's address and MAC, an unknown
    /// port reaches no container.
    func testIPTablesChecksWhoSentWhatComesFromTheBridge() throws {
        let closed = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        let text = IPTablesRuleset(policy: closed).render()
        XCTAssertTrue(text.contains("-I FORWARD 2 -m comment --comment bpfnet -i docker0 -j BPFNET-SENDER"), text)
        for container in closed.containers {
            let port = "-A BPFNET-SENDER -m physdev --physdev-in \(container.port)"
            XCTAssertTrue(
                text.contains("\(port) ! -s \(container.ip)/32 -m comment --comment bpfnet:spoofed -j DROP"), text)
            XCTAssertTrue(
                text.contains(
                    "\(port) -m mac ! --mac-source \(container.mac) -m comment --comment bpfnet:spoofed -j DROP"),
                text)
            XCTAssertTrue(text.contains("\(port) -m comment --comment bpfnet -j RETURN"), text)
        }
        XCTAssertTrue(
            text.contains(
                "-A BPFNET-SENDER -o docker0 -m physdev --physdev-is-in -m comment --comment bpfnet:unknown-port -j DROP"
                    + "\n-A BPFNET-SENDER -m comment --comment bpfnet -j RETURN"), text)
        let open = IPTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy))
            .render()
        XCTAssertFalse(open.contains("unknown-port"), "icc on: unknown ports pass:\n\(open)")
    }

    func testIPTablesDropsWhatAnUnlistedInterfaceRoutesToTheBridge() throws {
        let drop = IPTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy))
            .render()
        let forward = drop.split(separator: "\n").filter { $0.hasPrefix("-I FORWARD") }
        XCTAssertEqual(
            forward.last.map(String.init),
            "-I FORWARD \(forward.count) -o docker0 ! -i docker0 -m comment --comment bpfnet:forward -j DROP")
        // A published port only for what was DNATed to it.
        XCTAssertTrue(
            drop.contains(
                "-A DOCKER -d 172.17.0.4/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 5432 -m conntrack --ctstate DNAT "
                    + "-m comment --comment bpfnet -j ACCEPT"), drop)
        let accept = IPTablesRuleset(policy: try FallbackSample.netfilterPolicy(FallbackSample.policies[2].policy))
            .render()
        XCTAssertFalse(accept.contains("! -i docker0 -m comment --comment bpfnet:forward"), accept)
    }

    func testUnusedBackendsAreRecorded() throws {
        let policy = try FallbackSample.netfilterPolicy(
            FallbackSample.policies[0].policy,
            unused: ["bpf": "BPF_PROG_LOAD: Operation not permitted"])
        XCTAssertTrue(
            NFTablesRuleset(policy: policy).render()
                .contains("elements = { 1 comment \"bpf: BPF_PROG_LOAD: Operation not permitted\" }"))
        XCTAssertTrue(
            IPTablesRuleset(policy: policy).render()
                .contains(
                    "-A BPFNET-STATE -m comment --comment \"unused bpf: BPF_PROG_LOAD: Operation not permitted\" -j RETURN"
                ))
    }

    func testSettingsRoundTrip() throws {
        for (_, policy) in FallbackSample.policies {
            let compiled = try FallbackSample.netfilterPolicy(policy)
            let parsed = try XCTUnwrap(NetfilterPolicy.settings(from: compiled.settingsText))
            XCTAssertEqual(parsed.bridge, compiled.bridge)
            XCTAssertEqual(parsed.bridgeAddress, compiled.bridgeAddress)
            XCTAssertEqual(parsed.icc, compiled.icc)
            XCTAssertEqual(parsed.forwardAccept, compiled.forwardAccept)
            XCTAssertEqual(parsed.ipForward, compiled.ipForward)
        }
    }

    /// What iptables-save would print after the restore (our `-I FORWARD n`
    /// as `-A`, deletions gone), read back into the same policy.
    func testIPTablesReadBack() throws {
        for (name, policy) in FallbackSample.policies {
            let compiled = try FallbackSample.netfilterPolicy(policy, unused: ["bpf": "no BTF"])
            let save = IPTablesSave(parsing: Self.asSaved(IPTablesRuleset(policy: compiled).render()))
            XCTAssertTrue(IPTablesRuleset.isLoaded(save), name)
            let readBack = try XCTUnwrap(IPTablesRuleset.policy(from: save), name)
            var expected = compiled
            expected.links = compiled.links.filter { $0.direction != .pair }
            // The list's IPv6 part is in ip6tables (IP6TablesRuleset), not read back from iptables-save.
            expected.extInterfaces = compiled.extInterfaces.map {
                NetfilterExtInterface(name: $0.name, allowSources: $0.allowSources)
            }
            XCTAssertEqual(readBack, expected, name)
            XCTAssertEqual(
                readBack.status(backend: "iptables") { _ in 0 }, expected.status(backend: "iptables") { _ in 0 })
            // With ip6tables-save as well, the allow-lists' IPv6 parts come back too (`status` lists them).
            let save6 = IPTablesSave(parsing: Self.asSaved(IP6TablesRuleset(policy: compiled).render()))
            var expectedWithIPv6 = compiled
            expectedWithIPv6.links = expected.links
            XCTAssertEqual(IPTablesRuleset.policy(from: save, save6: save6), expectedWithIPv6, name)
        }
    }

    func testIPTablesReplacesItsOwnRulesOnly() throws {
        let compiled = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        let current = IPTablesSave(
            parsing: """
                *filter
                :INPUT ACCEPT [0:0]
                :FORWARD DROP [0:0]
                :OUTPUT ACCEPT [0:0]
                :BPFNET-EXT-eth9 - [0:0]
                :BPFNET-STATE - [0:0]
                :DOCKER - [0:0]
                :DOCKER-USER - [0:0]
                [5:300] -A FORWARD -m comment --comment bpfnet -j DOCKER-USER
                [0:0] -A FORWARD -i eth9 -m comment --comment bpfnet -j BPFNET-EXT-eth9
                [9:900] -A FORWARD -i virbr0 -j ACCEPT
                [0:0] -A DOCKER-USER -i eth0 ! -s 192.0.2.2/32 -j DROP
                [0:0] -A DOCKER-USER -j RETURN
                [0:0] -A BPFNET-STATE -m comment --comment "bpfnet iptables: bridge=docker0 icc=true forward-policy=drop ip-forward=true" -j RETURN
                COMMIT
                *nat
                :PREROUTING ACCEPT [0:0]
                :DOCKER - [0:0]
                [1:60] -A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment bpfnet -j DOCKER
                COMMIT

                """)
        let text = IPTablesRuleset(policy: compiled, current: current).render()
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("-D FORWARD -m comment --comment bpfnet -j DOCKER-USER"))
        XCTAssertTrue(lines.contains("-D FORWARD -i eth9 -m comment --comment bpfnet -j BPFNET-EXT-eth9"))
        XCTAssertTrue(
            lines.contains("-D PREROUTING -m addrtype --dst-type LOCAL -m comment --comment bpfnet -j DOCKER"))
        XCTAssertTrue(lines.contains("-X BPFNET-EXT-eth9"))
        // The operator's rules and DOCKER-USER are left alone; DOCKER-USER is not even declared (which would flush it).
        XCTAssertFalse(lines.contains { $0.contains("virbr0") })
        XCTAssertFalse(lines.contains(":DOCKER-USER - [0:0]"))
        XCTAssertFalse(lines.contains { $0.hasPrefix("-A DOCKER-USER") })
        XCTAssertEqual(
            lines.first { $0.hasPrefix("-I FORWARD 1 ") }, "-I FORWARD 1 -m comment --comment bpfnet -j DOCKER-USER")

        let removal = try XCTUnwrap(
            IPTablesRuleset.renderRemoval(current: current, changes: .init(createdUserChain: true)))
        let removed = removal.split(separator: "\n").map(String.init)
        XCTAssertFalse(
            removed.contains { $0.contains("DOCKER-USER") && !$0.hasPrefix("-D FORWARD") },
            "DOCKER-USER holds an operator's rule and must stay")
        XCTAssertFalse(removed.contains { $0.contains("virbr0") })
        XCTAssertTrue(removed.contains("-X DOCKER"))
        XCTAssertTrue(removed.contains("-X BPFNET-STATE"))
    }

    func testIPTablesLeavesForeignDockerChainsOnRemoval() throws {
        // A dockerd's own chains (no bpfnet state chain): nothing of them is removed.
        let docker = IPTablesSave(
            parsing: """
                *filter
                :FORWARD DROP [0:0]
                :DOCKER - [0:0]
                :DOCKER-USER - [0:0]
                -A FORWARD -j DOCKER-USER
                -A FORWARD -o docker0 -j DOCKER
                -A DOCKER-USER -j RETURN
                COMMIT

                """)
        XCTAssertFalse(IPTablesRuleset.isLoaded(docker))
        XCTAssertNil(IPTablesRuleset.renderRemoval(current: docker, changes: .init(createdUserChain: true)))
    }

    func testBridgeNetfilterOnlyWithICCOff() throws {
        XCTAssertFalse(
            IPTablesRuleset.needsBridgeNetfilter(try FallbackSample.netfilterPolicy(FallbackSample.policies[0].policy)))
        XCTAssertTrue(
            IPTablesRuleset.needsBridgeNetfilter(try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)))
    }

    /// Which of bridge-nf-call-iptables and -ip6tables bpfnet turned on is
    /// recorded in the state chain, to be turned off again.
    func testBridgeNetfilterChangesAreRecorded() throws {
        let compiled = try FallbackSample.netfilterPolicy(FallbackSample.policies[1].policy)
        for changes in [
            IPTablesRuleset.HostChanges(setBridgeNetfilter: true, setBridgeNetfilter6: true),
            IPTablesRuleset.HostChanges(setBridgeNetfilter6: true),
            IPTablesRuleset.HostChanges(),
        ] {
            let text = IPTablesRuleset(policy: compiled, changes: changes).render()
            let save = IPTablesSave(parsing: Self.asSaved(text))
            var expected = changes
            expected.createdUserChain = true
            XCTAssertEqual(IPTablesRuleset.recordedChanges(save), expected, text)
        }
    }

    func testNamesThatCannotBeWritten() {
        XCTAssertNil(NetfilterName.problem("veth1a2b@if3"))
        XCTAssertNotNil(NetfilterName.problem("eth\"0"))
        XCTAssertNotNil(NetfilterName.problem("eth#0"))
        XCTAssertNil(NetfilterName.problem("a+b"))
        XCTAssertEqual(
            NetfilterName.problem("veth+"),
            "interface 'veth+' ends in '+', which iptables reads as a wildcard for every name it begins")
        for bad in ["br\"0", "br'0", "br;0", "br{0}", "br$0", "br\\0", "br*"] {
            XCTAssertNotNil(NetfilterName.problem(bad), bad)
            XCTAssertTrue(
                Policy(bridge: bad).problems(bridgeAddress: nil).contains { $0.path == "bridge" },
                "the bridge is named in the NAT and guard tables of every backend: \(bad)")
        }
        XCTAssertEqual(NetfilterName.commentText("a \"quoted\" reason", limit: 127), "a ?quoted? reason")
        XCTAssertEqual(NetfilterName.commentText(String(repeating: "x", count: 200), limit: 20).count, 20)
    }

    func testSaveParserQuotesAndCounters() {
        let save = IPTablesSave(
            parsing: """
                *filter
                :FORWARD ACCEPT [0:0]
                [12:3400] -A FORWARD -i docker0 -o docker0 -m comment --comment "bpfnet:icc" -j DROP
                [1:2] -A FORWARD -m comment --comment "two words \\"quoted\\"" -j ACCEPT
                COMMIT

                """)
        let rules = save.table("filter").rules
        XCTAssertEqual(rules.count, 2)
        XCTAssertEqual(rules[0].reason, "icc")
        XCTAssertEqual(rules[0].packets, 12)
        XCTAssertEqual(rules[0].bytes, 3400)
        XCTAssertEqual(rules[1].comment, "two words \"quoted\"")
        XCTAssertFalse(rules[1].isOwn)
        XCTAssertEqual(IPTablesRuleset.counters(from: save)["icc"]?.packets, 12)
    }

    /// Turns restore input into what iptables-save prints afterwards.
    static func asSaved(_ restore: String) -> String {
        restore.split(separator: "\n").compactMap { line -> String? in
            if line.hasPrefix("-D ") || line.hasPrefix("-F ") || line.hasPrefix("-X ") { return nil }
            if line.hasPrefix("-I ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                return "-A \(parts[1]) \(parts[3])"
            }
            return String(line)
        }.joined(separator: "\n") + "\n"
    }
}
