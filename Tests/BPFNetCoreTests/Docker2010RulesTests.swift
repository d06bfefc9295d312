// SPDX-License-Identifier: Apache-2.0
//
// Docker2010Rules against what a real dockerd 20.10.24 printed with
// iptables-save (docs/docker.md): a fresh daemon with no containers, and the
// rules a link and published ports add. The real-Docker suite compares the
// rendering with a live dockerd as well (DockerOracleTests).

import BPFNetCore
import BPFNetTestSupport
import XCTest

final class Docker2010RulesTests: XCTestCase {
    private let subnets = ["docker0": IPv4CIDR("172.17.0.0/16")!]

    private func container(_ name: String, _ last: UInt8, exposed: [PortSpec] = [], published: [PublishedPort] = [])
        -> Container
    {
        let address = IPv4Address(172, 17, 0, last)
        return Container(
            name: name, ip: address, mac: MACAddress(dockerStyleFor: address), port: "veth" + name, exposed: exposed,
            published: published)
    }

    /// `iptables-save` right after dockerd started (icc on, no containers).
    func testAFreshDaemonRendersExactlyWhatDockerdWrote() {
        let recorded = """
            *filter
            :INPUT ACCEPT [0:0]
            :FORWARD DROP [0:0]
            :OUTPUT ACCEPT [0:0]
            :DOCKER - [0:0]
            :DOCKER-ISOLATION-STAGE-1 - [0:0]
            :DOCKER-ISOLATION-STAGE-2 - [0:0]
            :DOCKER-USER - [0:0]
            -A FORWARD -j DOCKER-USER
            -A FORWARD -j DOCKER-ISOLATION-STAGE-1
            -A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
            -A FORWARD -o docker0 -j DOCKER
            -A FORWARD -i docker0 ! -o docker0 -j ACCEPT
            -A FORWARD -i docker0 -o docker0 -j ACCEPT
            -A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
            -A DOCKER-ISOLATION-STAGE-1 -j RETURN
            -A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
            -A DOCKER-ISOLATION-STAGE-2 -j RETURN
            -A DOCKER-USER -j RETURN
            COMMIT
            *nat
            :PREROUTING ACCEPT [0:0]
            :INPUT ACCEPT [0:0]
            :OUTPUT ACCEPT [0:0]
            :POSTROUTING ACCEPT [0:0]
            :DOCKER - [0:0]
            -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
            -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
            -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
            -A DOCKER -i docker0 -j RETURN
            COMMIT

            """
        XCTAssertEqual(Docker2010Rules.render(Policy(icc: true), subnets: subnets), recorded)
    }

    /// `--icc=false`, db (172.17.0.2) exposing 80/tcp and 53/udp linked from
    /// web (172.17.0.4), cb (172.17.0.3) publishing 8080→80 and 5353/udp.
    func testLinksAndPublishedPortsGiveDockerdsRules() {
        let policy = Policy(
            icc: false,
            containers: [
                container("db", 2, exposed: [PortSpec(80), PortSpec(53, .udp)]),
                container(
                    "cb", 3, exposed: [PortSpec(80), PortSpec(5353, .udp)],
                    published: [
                        PublishedPort(hostPort: 8080, containerPort: 80),
                        PublishedPort(hostPort: 5353, containerPort: 5353, proto: .udp),
                    ]),
                container("web", 4),
            ],
            links: [Link(parent: "web", child: "db", alias: "db")])
        let lines = Set(Docker2010Rules.render(policy, subnets: subnets).split(separator: "\n").map(String.init))
        for recorded in [
            "-A FORWARD -i docker0 -o docker0 -j DROP",
            "-A DOCKER -s 172.17.0.4/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A DOCKER -s 172.17.0.2/32 -d 172.17.0.4/32 -i docker0 -o docker0 -p tcp -m tcp --sport 80 -j ACCEPT",
            "-A DOCKER -s 172.17.0.4/32 -d 172.17.0.2/32 -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT",
            "-A DOCKER -s 172.17.0.2/32 -d 172.17.0.4/32 -i docker0 -o docker0 -p udp -m udp --sport 53 -j ACCEPT",
            "-A DOCKER -d 172.17.0.3/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A DOCKER -d 172.17.0.3/32 ! -i docker0 -o docker0 -p udp -m udp --dport 5353 -j ACCEPT",
            "-A POSTROUTING -s 172.17.0.3/32 -d 172.17.0.3/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
            "-A POSTROUTING -s 172.17.0.3/32 -d 172.17.0.3/32 -p udp -m udp --dport 5353 -j MASQUERADE",
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.3:80",
            "-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.3:5353",
        ] {
            XCTAssertTrue(lines.contains(recorded), recorded)
        }
        // cb has no link: exposing alone writes no rule.
        XCTAssertFalse(lines.contains { $0.contains("172.17.0.3/32 -i docker0") })
    }

    /// With icc on a link writes no rule (only /etc/hosts and environment variables).
    func testLinksWriteNothingWithICCOn() {
        let policy = Policy(
            icc: true, containers: [container("db", 2, exposed: [PortSpec(80)]), container("web", 4)],
            links: [Link(parent: "web", child: "db", alias: "db")])
        XCTAssertFalse(Docker2010Rules.render(policy, subnets: subnets).contains("-A DOCKER -s"))
    }
}
