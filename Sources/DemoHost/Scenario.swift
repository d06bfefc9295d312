// SPDX-License-Identifier: Apache-2.0
//
// The demo host: a Docker-like host in network namespaces with containers on
// the default bridge (links, exposed and published ports) and on a
// user-defined network with icc off, and one external network with an allowed
// and a non-allowed source. Each probe carries what the policy table
// (docs/policy.md) says should happen and the reason a drop is counted under,
// computed from where its ends are, so the same scenario drives `bpfnet demo`
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
    /// The reason (docs/reasons.md) a drop of it is counted under, when the
    /// policy drops it.
    public var dropReason: @Sendable (PolicySettings) -> String

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
        /// The user-defined network it is on; nil: the default bridge.
        public var network: String? = nil
    }

    /// A user-defined bridge network of the demo host.
    public struct Network: Sendable {
        public var name: String
        public var bridge: String
        public var address: IPv4InterfaceAddress
        /// `com.docker.network.bridge.enable_icc`: its own, whatever the default bridge's icc.
        public var icc: Bool
    }

    /// `docker network create -o com.docker.network.bridge.enable_icc=false backend`.
    public static let networks: [Network] = [
        Network(
            name: "backend", bridge: "br-backend",
            address: IPv4InterfaceAddress(address: IPv4Address(10, 89, 0, 1), prefixLength: 24)!, icc: false)
    ]

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
        // On `backend`: no links (Docker has none off the default bridge), icc off.
        Member(
            name: "api", address: IPv4Address(10, 89, 0, 2), exposed: [PortSpec(80)], published: [], network: "backend"),
        Member(
            name: "store", address: IPv4Address(10, 89, 0, 3), exposed: [PortSpec(5432)], published: [],
            network: "backend"),
    ]

    /// The containers on the default bridge.
    public static var defaultBridgeMembers: [Member] { members.filter { $0.network == nil } }

    public static let links: [Link] = [
        Link(parent: "client", child: "web", alias: "web"),
        Link(parent: "app", child: "db", alias: "db"),
    ]

    /// Every container and the external namespace listen on these.
    public static let tcpPorts: [UInt16] = [80, 5432, 7000, 9090]
    public static let udpPorts: [UInt16] = [53, 9999]

    public static func address(_ name: String) -> IPv4Address {
        member(name).address
    }

    static func member(_ name: String) -> Member { members.first { $0.name == name }! }

    static func network(_ name: String) -> Network { networks.first { $0.name == name }! }

    public static var topology: TopologySpec { topology(userNetworks: true) }

    /// The host; without `userNetworks`, the default bridge's containers alone.
    public static func topology(userNetworks: Bool) -> TopologySpec {
        var spec = TopologySpec(
            bridge: BridgeSpec(name: "docker0", address: bridgeAddress),
            containers: members(userNetworks: userNetworks).map { member in
                ContainerSpec(
                    name: member.name, address: member.address, bridge: member.network.map { network($0).bridge })
            },
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
        spec.networks = userNetworks ? networks.map { BridgeSpec(name: $0.bridge, address: $0.address) } : []
        return spec
    }

    /// Every container, or those of the default bridge only.
    public static func members(userNetworks: Bool) -> [Member] { userNetworks ? members : defaultBridgeMembers }

    /// The policy file contents for `settings` on a built topology.
    public static func policy(_ settings: PolicySettings, portHook: PortHook = .tc, userNetworks: Bool = true) -> Policy
    {
        Policy(
            bridge: "docker0", icc: settings.icc, ipForward: true, forwardPolicy: settings.forwardPolicy,
            portHook: portHook,
            extInterfaces: [
                ExternalInterface(
                    name: externalInterface,
                    allowSources: settings.allowList ? [IPv4CIDR(address: allowedSource, prefixLength: 32)!] : [])
            ],
            containers: members(userNetworks: userNetworks).map { member in
                Container(
                    name: member.name, ip: member.address, mac: MACAddress(dockerStyleFor: member.address),
                    port: "veth" + member.name, exposed: member.exposed, published: member.published,
                    network: member.network)
            },
            links: links,
            networks: userNetworks ? networks.map { BridgeNetwork(name: $0.name, bridge: $0.bridge, icc: $0.icc) } : [])
    }

    // MARK: probes

    /// A probe between two containers of the default bridge (its icc is
    /// bpfnet's setting), or one whose ends `between` places.
    private static func probe(
        _ from: String, _ to: String, _ kind: Probe.Kind, sport: UInt16? = nil,
        size: Int? = nil, rows: String,
        expected: @escaping @Sendable (PolicySettings) -> Bool,
        dropReason: @escaping @Sendable (PolicySettings) -> String = { _ in "icc" }
    ) -> ScenarioProbe {
        ScenarioProbe(
            from: from, sourceAddress: nil, fromLabel: from, to: address(to), toLabel: to, kind: kind,
            sourcePort: sport, size: size, rows: rows, expected: expected, dropReason: dropReason)
    }

    /// A probe between two containers without a link, its verdict from the
    /// networks they are on (docs/policy.md, "Networks"): on different
    /// networks dropped (`network`); on the same one, that network's icc
    /// (bpfnet's setting on the default bridge, the network's own elsewhere).
    static func between(_ from: String, _ to: String, _ kind: Probe.Kind) -> ScenarioProbe {
        let source = member(from).network
        let destination = member(to).network
        guard source == destination else {
            let names = "\(source ?? "bridge") → \(destination ?? "bridge")"
            return probe(
                from, to, kind, rows: "networks (\(names))", expected: { _ in false }, dropReason: { _ in "network" })
        }
        guard let name = source else { return probe(from, to, kind, rows: "3/6", expected: iccOnly) }
        let icc = network(name).icc
        return probe(from, to, kind, rows: "3/6 (\(name): icc \(icc ? "on" : "off"))", expected: { _ in icc })
    }

    private static func external(
        _ source: IPv4Address, _ to: IPv4Address, _ toLabel: String, _ kind: Probe.Kind,
        rows: String, expected: @escaping @Sendable (PolicySettings) -> Bool,
        dropReason: @escaping @Sendable (PolicySettings) -> String
    ) -> ScenarioProbe {
        ScenarioProbe(
            from: "ext", sourceAddress: source,
            fromLabel: source == allowedSource ? "ext(allowed)" : "ext(other)",
            to: to, toLabel: toLabel, kind: kind, sourcePort: nil, size: nil, rows: rows,
            expected: expected, dropReason: dropReason)
    }

    private static func host(_ from: String, _ gateway: IPv4Address, _ label: String, rows: String) -> ScenarioProbe {
        ScenarioProbe(
            from: from, sourceAddress: nil, fromLabel: from, to: gateway, toLabel: label, kind: .icmp,
            sourcePort: nil, size: nil, rows: rows, expected: always, dropReason: { _ in "none" })
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
        between("client", "web", .tcp(9090)),
        between("client", "web", .icmp),
        between("web", "client", .tcp(9090)),
        between("client", "db", .tcp(5432)),
        between("lone", "web", .tcp(80)),
        probe("lone", "web", .udp(53), size: 4000, rows: "3/6 (fragmented)", expected: iccOnly),
        // Docker's stateless reverse rule: the child may send from an exposed
        // source port to any port of its parent.
        probe("web", "client", .tcp(9090), sport: 80, rows: "5", expected: always),
        probe("db", "app", .udp(9999), sport: 5432, rows: "5/6 (5432 is tcp)", expected: iccOnly),
        probe("db", "app", .tcp(9090), sport: 5432, rows: "5", expected: always),
        // Between the networks, both ways, a link's port and a published one
        // included; and within backend, whose icc is off whatever bpfnet's is.
        between("client", "api", .tcp(80)),
        between("api", "web", .tcp(80)),
        between("api", "client", .icmp),
        between("lone", "store", .tcp(5432)),
        between("api", "store", .tcp(5432)),
        between("store", "api", .icmp),
        // To the host and out of it.
        host("lone", bridgeAddress.address, "host(docker0)", rows: "2"),
        host("api", networks[0].address.address, "host(br-backend)", rows: "2"),
        host("api", bridgeAddress.address, "host(docker0)", rows: "2 (another network's gateway is the host's)"),
        // Masqueraded out; the reply comes back from a non-allowed source to
        // host port 8080, which is also a published port: a reply must pass.
        ScenarioProbe(
            from: "lone", sourceAddress: nil, fromLabel: "lone", to: otherSource,
            toLabel: "ext(other)", kind: .tcp(7000), sourcePort: 8080, size: nil, rows: "7, 10",
            expected: always, dropReason: { _ in "none" }),
        ScenarioProbe(
            from: "api", sourceAddress: nil, fromLabel: "api", to: otherSource, toLabel: "ext(other)",
            kind: .tcp(7000), sourcePort: nil, size: nil, rows: "7 (backend masqueraded)", expected: always,
            dropReason: { _ in "none" }),
        // From outside: published ports through bpfnet's NAT.
        external(
            allowedSource, hostExternalAddress, "host", .tcp(8080), rows: "8", expected: always,
            dropReason: { _ in "source" }),
        external(
            otherSource, hostExternalAddress, "host", .tcp(8080), rows: "8", expected: { !$0.allowList },
            dropReason: { _ in "source" }),
        external(
            otherSource, hostExternalAddress, "host", .udp(5353), rows: "8", expected: { !$0.allowList },
            dropReason: { _ in "source" }),
        // From outside, straight at a container address (no DNAT).
        external(
            allowedSource, address("web"), "web", .tcp(80), rows: "9", expected: { $0.forwardPolicy == .accept },
            dropReason: { _ in "forward" }),
        external(
            otherSource, address("web"), "web", .tcp(80), rows: "9",
            expected: { $0.forwardPolicy == .accept && !$0.allowList },
            dropReason: { $0.forwardPolicy == .accept ? "source" : "forward" }),
        external(
            allowedSource, address("db"), "db", .icmp, rows: "9", expected: { $0.forwardPolicy == .accept },
            dropReason: { _ in "forward" }),
        // To the host itself, not a published port.
        external(
            otherSource, hostExternalAddress, "host", .icmp, rows: "11", expected: always,
            dropReason: { _ in "none" }),
    ]

    /// The probes, or those that stay on the default bridge, the host and the outside.
    public static func probes(userNetworks: Bool) -> [ScenarioProbe] {
        guard !userNetworks else { return probes }
        let onNetworks = Set(members.filter { $0.network != nil }.map(\.name))
        let gateways = Set(networks.map { "host(\($0.bridge))" })
        return probes.filter {
            !onNetworks.contains($0.fromLabel) && !onNetworks.contains($0.toLabel) && !gateways.contains($0.toLabel)
        }
    }

    /// Reasons each probe expected to be dropped under `settings` is counted
    /// under, with how many such probes: what the counters must at least show.
    public static func expectedDrops(_ settings: PolicySettings) -> [String: Int] {
        var result: [String: Int] = [:]
        for probe in probes where !probe.expected(settings) { result[probe.dropReason(settings), default: 0] += 1 }
        return result
    }
}
