// SPDX-License-Identifier: Apache-2.0
//
// The iptables rules dockerd 20.10 writes for a host (docs/docker.md, "The
// rules dockerd writes"), rendered from a bpfnet policy as iptables-restore
// input for the filter and nat tables. The tests load them into a namespace
// host (with br_netfilter) to measure what Docker itself lets through, next to
// bpfnet on the same host: the attack table of docs/security.md and the
// netfilter oracle of docs/verification.md. DockerOracleTests checks them
// against a live dockerd's iptables-save.
//
// What is rendered, in Docker's order:
//   filter FORWARD   DOCKER-USER, DOCKER-ISOLATION-STAGE-1, then per bridge
//                    (the newest network first, docker0 last): RELATED,
//                    ESTABLISHED accept, -j DOCKER, the outgoing accept, the
//                    icc ACCEPT or DROP; the policy is the policy's forward policy.
//          DOCKER    link pairs (only where the bridge's icc is off, as Docker),
//                    then one ACCEPT per published port (`! -i br -o br`).
//          DOCKER-USER  the documented source allow-list for each external
//                    interface that has one, under a RELATED,ESTABLISHED accept.
//   nat              PREROUTING/OUTPUT to DOCKER for local addresses, one DNAT per
//                    published port, masquerade per bridge subnet (SNAT with
//                    `hostIPv4`), the self-hairpin masquerade per published port.
// No ip6tables rules: 20.10 writes none without `--ipv6`. Docker's IPv6
// allow-list part does not exist, and docker-proxy is not started here.

import BPFNetCore

public enum Docker2010Rules {
    /// The filter table's start: its chains, and FORWARD's jumps to
    /// DOCKER-USER and DOCKER-ISOLATION-STAGE-1 (the bench's ruleset shares it).
    public static func filterHead(forwardPolicy: ForwardPolicy) -> [String] {
        [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD \(forwardPolicy == .drop ? "DROP" : "ACCEPT") [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            ":DOCKER - [0:0]",
            ":DOCKER-ISOLATION-STAGE-1 - [0:0]",
            ":DOCKER-ISOLATION-STAGE-2 - [0:0]",
            ":DOCKER-USER - [0:0]",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
        ]
    }

    /// The nat table's start: its chains, and local destinations sent to DOCKER.
    public static let natHead = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    ]

    /// iptables-restore input (filter and nat, each whole: it replaces both
    /// tables) for `policy`'s host. `subnets` gives each bridge's subnet by bridge name.
    public static func render(_ policy: Policy, subnets: [String: IPv4CIDR]) -> String {
        struct Bridge {
            var name: String
            var network: String?
            var icc: Bool
            var `internal`: Bool
            var masquerade: Bool
            var hostIPv4: IPv4Address?
        }
        let defaultBridge = Bridge(
            name: policy.bridge, network: nil, icc: policy.icc, internal: false, masquerade: true, hostIPv4: nil)
        // Docker inserts a newer network's rules above the older ones: docker0's end up last.
        let bridges =
            policy.networks.reversed().map {
                Bridge(
                    name: $0.bridge, network: $0.name, icc: $0.icc, internal: $0.internal, masquerade: $0.masquerade,
                    hostIPv4: $0.hostIPv4)
            } + [defaultBridge]
        func bridge(of container: Container) -> Bridge {
            bridges.first { $0.network == container.network } ?? defaultBridge
        }

        var filter = filterHead(forwardPolicy: policy.forwardPolicy)
        for bridge in bridges {
            let br = bridge.name
            if !bridge.internal {
                filter += [
                    "-A FORWARD -o \(br) -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                    "-A FORWARD -o \(br) -j DOCKER",
                    "-A FORWARD -i \(br) ! -o \(br) -j ACCEPT",
                ]
            }
            filter.append("-A FORWARD -i \(br) -o \(br) -j \(bridge.icc ? "ACCEPT" : "DROP")")
        }
        // Links: created only when the default bridge's icc is off (docs/docker.md).
        let byName = Dictionary(
            policy.containers.filter { $0.network == nil }.map { ($0.name, $0) },
            uniquingKeysWith: { first, _ in first })
        if !policy.icc {
            let br = policy.bridge
            for link in policy.links {
                guard let parent = byName[link.parent], let child = byName[link.child] else { continue }
                for port in child.exposed {
                    let proto = port.proto.rawValue
                    filter += [
                        "-A DOCKER -s \(parent.ip)/32 -d \(child.ip)/32 -i \(br) -o \(br) "
                            + "-p \(proto) -m \(proto) --dport \(port.port) -j ACCEPT",
                        "-A DOCKER -s \(child.ip)/32 -d \(parent.ip)/32 -i \(br) -o \(br) "
                            + "-p \(proto) -m \(proto) --sport \(port.port) -j ACCEPT",
                    ]
                }
            }
        }
        for container in policy.containers where !bridge(of: container).internal {
            let br = bridge(of: container).name
            for published in container.published {
                let proto = published.proto.rawValue
                filter.append(
                    "-A DOCKER -d \(container.ip)/32 ! -i \(br) -o \(br) -p \(proto) -m \(proto) "
                        + "--dport \(published.containerPort) -j ACCEPT")
            }
        }
        for bridge in bridges {
            if bridge.internal, let subnet = subnets[bridge.name] {
                filter += [
                    "-A DOCKER-ISOLATION-STAGE-1 ! -s \(subnet) -o \(bridge.name) -j DROP",
                    "-A DOCKER-ISOLATION-STAGE-1 ! -d \(subnet) -i \(bridge.name) -j DROP",
                ]
            } else {
                filter.append(
                    "-A DOCKER-ISOLATION-STAGE-1 -i \(bridge.name) ! -o \(bridge.name) -j DOCKER-ISOLATION-STAGE-2")
            }
        }
        filter.append("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
        for bridge in bridges where !bridge.internal {
            filter.append("-A DOCKER-ISOLATION-STAGE-2 -o \(bridge.name) -j DROP")
        }
        filter.append("-A DOCKER-ISOLATION-STAGE-2 -j RETURN")
        // The documented source allow-list (docs/docker.md, "DOCKER-USER"):
        // replies to the containers' own connections first, then every other
        // packet entering on the interface from a source not on the list is dropped.
        let listed = policy.extInterfaces.filter { !$0.allowSources.isEmpty }
        if !listed.isEmpty {
            filter.append("-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        }
        for interface in listed {
            if interface.allowSources.count == 1 {
                // In iptables-save's order of options (`! -s` before `-i`), as the real-Docker suite compares it.
                filter.append("-A DOCKER-USER ! -s \(interface.allowSources[0]) -i \(interface.name) -j DROP")
            } else {
                // `! -s` takes one prefix: several become RETURNs and a DROP.
                for source in interface.allowSources {
                    filter.append("-A DOCKER-USER -s \(source) -i \(interface.name) -j RETURN")
                }
                filter.append("-A DOCKER-USER -i \(interface.name) -j DROP")
            }
        }
        filter += ["-A DOCKER-USER -j RETURN", "COMMIT"]

        var nat = natHead
        for bridge in bridges where !bridge.internal && bridge.masquerade {
            guard let subnet = subnets[bridge.name] else { continue }
            nat.append(
                "-A POSTROUTING -s \(subnet) ! -o \(bridge.name) -j "
                    + (bridge.hostIPv4.map { "SNAT --to-source \($0)" } ?? "MASQUERADE"))
        }
        for container in policy.containers where !bridge(of: container).internal {
            for published in container.published {
                let proto = published.proto.rawValue
                nat.append(
                    "-A POSTROUTING -s \(container.ip)/32 -d \(container.ip)/32 -p \(proto) -m \(proto) "
                        + "--dport \(published.containerPort) -j MASQUERADE")
            }
        }
        for bridge in bridges where !bridge.internal {
            nat.append("-A DOCKER -i \(bridge.name) -j RETURN")
        }
        for container in policy.containers where !bridge(of: container).internal {
            let br = bridge(of: container).name
            for published in container.published {
                let proto = published.proto.rawValue
                let address = published.hostIP.map { "-d \($0)/32 " } ?? ""
                nat.append(
                    "-A DOCKER \(address)! -i \(br) -p \(proto) -m \(proto) --dport \(published.hostPort) "
                        + "-j DNAT --to-destination \(container.ip):\(published.containerPort)")
            }
        }
        nat.append("COMMIT")
        return (filter + nat).joined(separator: "\n") + "\n"
    }
}
