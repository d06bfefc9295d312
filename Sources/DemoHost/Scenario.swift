// SPDX-License-Identifier: Apache-2.0
//
// The demo host: a Docker-like host in network namespaces with containers,
// links, exposed and published ports, and one external network with an
// allowed and a non-allowed source. Each probe carries what the policy table
// (docs/policy.md) says should happen, so the same scenario drives `bpfnet demo`
// and the end-to-end suites (for every backend).

import BPFNetCore
import NetLab

/// The policy knobs a scenario run varies.
public struct PolicySettings: Hashable, Sendable, CustomStringConvertible, Codable {
    public var icc: Bool
    /// Admit only `Scenario.allowedSource` on the external interface.
    public var allowList: Bool
    public var forwardPolicy: ForwardPolicy

    public init(icc: Bool, allowList: Bool = true, forwardPolicy: ForwardPolicy = .drop) {
        self.icc = icc
        self.allowList = allowList
        self.forwardPolicy = forwardPolicy
    }

    public var description: String {
        "icc=\(icc), allow-list \(allowList ? "on" : "off"), forward policy \(forwardPolicy.rawValue)"
    }
}

/// One probe and the verdict the policy table predicts for it.
public struct ScenarioProbe: Sendable {
    /// The role (namespace) the probe runs in.
    public var from: String
    /// Source address inside `from` (external namespaces have two).
    public var sourceAddress: IPv4Address?
    /// Name shown for the source, e.g. "ext(allowed)".
    public var fromLabel: String
    public var to: IPv4Address
    /// Name shown for the destination, e.g. "web" or "host:8080".
    public var toLabel: String
    public var kind: Probe.Kind
    public var sourcePort: UInt16?
    public var size: Int?
    /// The policy table row(s) that decide it.
    public var rows: String
    public var expected: @Sendable (PolicySettings) -> Bool

    public var proto: String {
        switch kind {
        case .tcp: "tcp"
        case .udp: "udp"
        case .icmp: "icmp"
        }
    }

    public var port: UInt16? {
        switch kind {
        case .tcp(let port), .udp(let port): port
        case .icmp: nil
        }
    }
}

/// The demo host's layout and its probes.
public enum Scenario {
    public static let bridgeAddress = IPv4InterfaceAddress(address: IPv4Address(10, 88, 0, 1), prefixLength: 24)!
    public static let hostExternalAddress = IPv4Address(198, 51, 100, 1)
    /// The source the allow-list admits.
    public static let allowedSource = IPv4Address(198, 51, 100, 2)
    /// A second address of the external network, not on the allow-list.
    public static let otherSource = IPv4Address(198, 51, 100, 3)
    public static let externalInterface = "ext0"

    public struct Member: Sendable {
        public var name: String
        public var address: IPv4Address
        public var exposed: [PortSpec]
        public var published: [PublishedPort]
    }

    /// web publishes 8080→80/tcp and 5353→53/udp; db exposes 5432; client
    /// links to web, app links to db; lone has no links at all.
    public static let members: [Member] = [
        Member(
            name: "web", address: IPv4Address(10, 88, 0, 2), exposed: [PortSpec(80), PortSpec(53, .udp)],
            published: [
                PublishedPort(hostPort: 8080, containerPort: 80),
                PublishedPort(hostPort: 5353, containerPort: 53, proto: .udp),
            ]),
        Member(name: "db", address: IPv4Address(10, 88, 0, 3), exposed: [PortSpec(5432)], published: []),
        Member(name: "client", address: IPv4Address(10, 88, 0, 4), exposed: [], published: []),
        Member(name: "app", address: IPv4Address(10, 88, 0, 5), exposed: [], published: []),
        Member(name: "lone", address: IPv4Address(10, 88, 0, 6), exposed: [], published: []),
    ]

    public static let links: [Link] = [
        Link(parent: "client", child: "web", alias: "web"),
        Link(parent: "app", child: "db", alias: "db"),
    ]

    /// Every container and the external namespace listen on these.
    public static let tcpPorts: [UInt16] = [80, 5432, 7000, 9090]
    public static let udpPorts: [UInt16] = [53, 9999]

    public static func address(_ name: String) -> IPv4Address {
        members.first { $0.name == name }!.address
    }

    public static var topology: TopologySpec {
        TopologySpec(
            bridge: BridgeSpec(name: "docker0", address: bridgeAddress),
            containers: members.map { ContainerSpec(name: $0.name, address: $0.address) },
            externals: [
                ExternalSpec(
                    name: "ext", hostInterface: externalInterface,
                    hostAddress: IPv4InterfaceAddress(address: hostExternalAddress, prefixLength: 24)!,
                    addresses: [
                        IPv4InterfaceAddress(address: allowedSource, prefixLength: 24)!,
                        IPv4InterfaceAddress(address: otherSource, prefixLength: 32)!,
                    ],
                    routeToBridge: true)
            ],
            ipForward: true)
    }

    /// The policy file contents for `settings` on a built topology.
    public static func policy(_ settings: PolicySettings, portHook: PortHook = .tc) -> Policy {
        Policy(
            bridge: "docker0", icc: settings.icc, ipForward: true, forwardPolicy: settings.forwardPolicy,
            portHook: portHook,
            extInterfaces: [
                ExternalInterface(
                    name: externalInterface,
                    allowSources: settings.allowList ? [IPv4CIDR(address: allowedSource, prefixLength: 32)!] : [])
            ],
            containers: members.map { member in
                Container(
                    name: member.name, ip: member.address, mac: MACAddress(dockerStyleFor: member.address),
                    port: "veth" + member.name, exposed: member.exposed, published: member.published)
            },
            links: links)
    }

    // MARK: probes

    private static func probe(
        _ from: String, _ to: String, _ kind: Probe.Kind, sport: UInt16? = nil,
        size: Int? = nil, rows: String,
        expected: @escaping @Sendable (PolicySettings) -> Bool
    ) -> ScenarioProbe {
        ScenarioProbe(
            from: from, sourceAddress: nil, fromLabel: from, to: address(to), toLabel: to, kind: kind,
            sourcePort: sport, size: size, rows: rows, expected: expected)
    }

    private static func external(
        _ source: IPv4Address, _ to: IPv4Address, _ toLabel: String, _ kind: Probe.Kind,
        rows: String, expected: @escaping @Sendable (PolicySettings) -> Bool
    ) -> ScenarioProbe {
        ScenarioProbe(
            from: "ext", sourceAddress: source,
            fromLabel: source == allowedSource ? "ext(allowed)" : "ext(other)",
            to: to, toLabel: toLabel, kind: kind, sourcePort: nil, size: nil, rows: rows,
            expected: expected)
    }

    /// Allowed only when containers may talk freely.
    private static let iccOnly: @Sendable (PolicySettings) -> Bool = { $0.icc }
    private static let always: @Sendable (PolicySettings) -> Bool = { _ in true }

    public static let probes: [ScenarioProbe] = [
        // Links: the child's exposed ports, parent → child, TCP and UDP.
        probe("client", "web", .tcp(80), rows: "4", expected: always),
        probe("client", "web", .udp(53), rows: "4", expected: always),
        probe("client", "web", .udp(53), size: 4000, rows: "4 (fragmented)", expected: always),
        probe("app", "db", .tcp(5432), rows: "4", expected: always),
        // Not exposed, ICMP, or the wrong direction: icc decides.
        probe("client", "web", .tcp(9090), rows: "3/6", expected: iccOnly),
        probe("client", "web", .icmp, rows: "3/6", expected: iccOnly),
        probe("web", "client", .tcp(9090), rows: "3/6", expected: iccOnly),
        probe("client", "db", .tcp(5432), rows: "3/6", expected: iccOnly),
        probe("lone", "web", .tcp(80), rows: "3/6", expected: iccOnly),
        probe("lone", "web", .udp(53), size: 4000, rows: "3/6 (fragmented)", expected: iccOnly),
        // Docker's stateless reverse rule: the child may send from an exposed
        // source port to any port of its parent.
        probe("web", "client", .tcp(9090), sport: 80, rows: "5", expected: always),
        probe("db", "app", .udp(9999), sport: 5432, rows: "5/6 (5432 is tcp)", expected: iccOnly),
        probe("db", "app", .tcp(9090), sport: 5432, rows: "5", expected: always),
        // To the host and out of it.
        ScenarioProbe(
            from: "lone", sourceAddress: nil, fromLabel: "lone", to: bridgeAddress.address,
            toLabel: "host(docker0)", kind: .icmp, sourcePort: nil, size: nil, rows: "2", expected: always),
        // Masqueraded out; the reply comes back from a non-allowed source to
        // host port 8080, which is also a published port: a reply must pass.
        ScenarioProbe(
            from: "lone", sourceAddress: nil, fromLabel: "lone", to: otherSource,
            toLabel: "ext(other)", kind: .tcp(7000), sourcePort: 8080, size: nil, rows: "7, 10",
            expected: always),
        // From outside: published ports through bpfnet's NAT.
        external(allowedSource, hostExternalAddress, "host", .tcp(8080), rows: "8", expected: always),
        external(otherSource, hostExternalAddress, "host", .tcp(8080), rows: "8") { !$0.allowList },
        external(otherSource, hostExternalAddress, "host", .udp(5353), rows: "8") { !$0.allowList },
        // From outside, straight at a container address (no DNAT).
        external(allowedSource, address("web"), "web", .tcp(80), rows: "9") { $0.forwardPolicy == .accept },
        external(otherSource, address("web"), "web", .tcp(80), rows: "9") {
            $0.forwardPolicy == .accept && !$0.allowList
        },
        external(allowedSource, address("db"), "db", .icmp, rows: "9") { $0.forwardPolicy == .accept },
        // To the host itself, not a published port.
        external(otherSource, hostExternalAddress, "host", .icmp, rows: "11", expected: always),
    ]
}
