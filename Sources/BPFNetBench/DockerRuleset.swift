// SPDX-License-Identifier: Apache-2.0
//
// The iptables ruleset dockerd 20.10 leaves on a host with `--icc=false` and
// N legacy links (docs/docker.md, "The rules dockerd writes"), as
// iptables-restore input. Order is part of what is measured:
//
//   FORWARD: DOCKER-USER, DOCKER-ISOLATION-STAGE-1, the RELATED,ESTABLISHED
//   accept for docker0, -o docker0 -j DOCKER, the outgoing accept, and the
//   icc DROP appended last. DOCKER: one rule pair per (link, exposed port),
//   appended as the parents started.
//
// Each user-defined network (`--networks K`) adds, above docker0's (Docker
// inserts a newer network's rules before the older ones): four FORWARD rules,
// a DOCKER-ISOLATION-STAGE-1 rule that every forwarded packet is tested
// against, a STAGE-2 drop, and its masquerade. A packet between two docker0
// containers walks all of them before it reaches docker0's rules.
//
// A one-way UDP flow never becomes ESTABLISHED in conntrack, so every packet
// of it walks DOCKER until its pair: the cost of new connections and of
// unreplied datagrams (DNS queries, syslog, metrics). Replies and the rest of
// an established TCP connection leave at the conntrack rule instead.

import BPFNetCore
import BPFNetTestSupport

enum DockerRuleset {
    /// iptables-restore input for a host whose DOCKER chain holds `links`,
    /// with the user-defined networks `networks` (bridge, subnet; oldest first).
    /// `icc`: the daemon's --icc (the bench's comparison runs with it off, links
    /// then open the flows; on, dockerd writes no link rules at all).
    static func render(
        links: [BenchLink], networks: [(bridge: String, subnet: IPv4CIDR)] = [],
        bridge: String = BenchWorkload.bridgeName, subnet: IPv4CIDR = BenchWorkload.bridgeAddress.network,
        icc: Bool = false
    ) -> String {
        let newestFirst = Array(networks.reversed())
        var lines: [String] = []
        lines.reserveCapacity(40 + 2 * links.count + 8 * networks.count)
        lines += Docker2010Rules.filterHead(forwardPolicy: .drop)
        for network in newestFirst {
            // icc on (Docker's default for a network): its own traffic is accepted.
            lines += [
                "-A FORWARD -o \(network.bridge) -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A FORWARD -o \(network.bridge) -j DOCKER",
                "-A FORWARD -i \(network.bridge) ! -o \(network.bridge) -j ACCEPT",
                "-A FORWARD -i \(network.bridge) -o \(network.bridge) -j ACCEPT",
            ]
        }
        lines += [
            "-A FORWARD -o \(bridge) -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A FORWARD -o \(bridge) -j DOCKER",
            "-A FORWARD -i \(bridge) ! -o \(bridge) -j ACCEPT",
            // icc=false: appended after `-j DOCKER` (setIcc), so link rules come first.
            "-A FORWARD -i \(bridge) -o \(bridge) -j \(icc ? "ACCEPT" : "DROP")",
        ]
        for link in links where !icc {
            // iptables.go ChainInfo.Link(): the forward rule and its stateless reverse.
            lines.append(
                "-A DOCKER -s \(link.parentIP)/32 -d \(link.childIP)/32 -i \(bridge) -o \(bridge) "
                    + "-p udp -m udp --dport \(link.port) -j ACCEPT")
            lines.append(
                "-A DOCKER -s \(link.childIP)/32 -d \(link.parentIP)/32 -i \(bridge) -o \(bridge) "
                    + "-p udp -m udp --sport \(link.port) -j ACCEPT")
        }
        for network in newestFirst {
            lines.append(
                "-A DOCKER-ISOLATION-STAGE-1 -i \(network.bridge) ! -o \(network.bridge) -j DOCKER-ISOLATION-STAGE-2")
        }
        lines.append("-A DOCKER-ISOLATION-STAGE-1 -i \(bridge) ! -o \(bridge) -j DOCKER-ISOLATION-STAGE-2")
        lines.append("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
        for network in newestFirst { lines.append("-A DOCKER-ISOLATION-STAGE-2 -o \(network.bridge) -j DROP") }
        lines += [
            "-A DOCKER-ISOLATION-STAGE-2 -o \(bridge) -j DROP",
            "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
            "-A DOCKER-USER -j RETURN",
            "COMMIT",
        ]
        // nat as dockerd writes it; it sees only the first packet of a flow.
        lines += Docker2010Rules.natHead
        for network in newestFirst {
            lines.append("-A POSTROUTING -s \(network.subnet) ! -o \(network.bridge) -j MASQUERADE")
        }
        lines.append("-A POSTROUTING -s \(subnet) ! -o \(bridge) -j MASQUERADE")
        for network in newestFirst { lines.append("-A DOCKER -i \(network.bridge) -j RETURN") }
        lines += [
            "-A DOCKER -i \(bridge) -j RETURN",
            "COMMIT",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
