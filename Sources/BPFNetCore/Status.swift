// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet status [--json]`: what the dataplane enforces, rebuilt from the maps
// (not from the policy file), so it shows what the kernel really does.

import BPFNetShared

/// The document `bpfnet status --json` prints. Keys are a stable interface
/// (docs/cli.md); new keys may be added, none removed or renamed.
public struct DataplaneStatus: Codable, Hashable, Sendable {
    public struct ExtInterface: Codable, Hashable, Sendable {
        public var name: String
        public var ifindex: UInt32
        /// Sorted; empty = every source.
        public var allowSources: [String]
        /// How the ext program is attached: "native" (in the driver) or
        /// "generic" (in the stack, after the skb is built: the driver has
        /// no XDP, and every packet costs more); nil when it is not attached
        /// (or the backend has no XDP).
        public var xdpMode: String?

        public init(name: String, ifindex: UInt32, allowSources: [String], xdpMode: String? = nil) {
            self.name = name
            self.ifindex = ifindex
            self.allowSources = allowSources
            self.xdpMode = xdpMode
        }

        /// The warning for an interface whose driver has no native XDP, nil otherwise.
        public var xdpModeWarning: String? {
            guard xdpMode == "generic" else { return nil }
            return "\(name): the driver has no native XDP, so the ext program runs in generic mode (after the "
                + "kernel has built an skb for each packet): the policy holds, but every packet costs more and the "
                + "ext fast path gains less"
        }
    }

    public struct Container: Codable, Hashable, Sendable {
        public var name: String
        public var ip: String
        public var mac: String
        /// The host-side veth.
        public var port: String
        public var portIfindex: UInt32
        /// Its IPv6 address on a dual-stack network; nil without one.
        public var ipv6: String?

        public init(name: String, ip: String, mac: String, port: String, portIfindex: UInt32, ipv6: String? = nil) {
            self.ipv6 = ipv6
            self.name = name
            self.ip = ip
            self.mac = mac
            self.port = port
            self.portIfindex = portIfindex
        }
    }

    public struct Link: Codable, Hashable, Sendable {
        public var parent: String
        public var child: String
        public var parentIP: String
        public var childIP: String
        /// "80/tcp", sorted by protocol then port.
        public var ports: [String]

        public init(parent: String, child: String, parentIP: String, childIP: String, ports: [String]) {
            self.parent = parent
            self.child = child
            self.parentIP = parentIP
            self.childIP = childIP
            self.ports = ports
        }
    }

    public struct Published: Codable, Hashable, Sendable {
        /// nil = every address.
        public var hostIP: String?
        public var hostPort: UInt16
        public var proto: String
        public var container: String
        public var containerIP: String
        public var containerPort: UInt16

        public init(
            hostIP: String?, hostPort: UInt16, proto: String, container: String, containerIP: String,
            containerPort: UInt16
        ) {
            self.hostIP = hostIP
            self.hostPort = hostPort
            self.proto = proto
            self.container = container
            self.containerIP = containerIP
            self.containerPort = containerPort
        }
    }

    public struct CounterValue: Codable, Hashable, Sendable {
        public var packets: UInt64
        public var bytes: UInt64

        public init(packets: UInt64 = 0, bytes: UInt64 = 0) {
            self.packets = packets
            self.bytes = bytes
        }
    }

    /// A port of the bridge as the eBPF backend sees it.
    public struct BridgePort: Codable, Hashable, Sendable {
        public var name: String
        public var ifindex: UInt32
        /// The container `bn_ports` names for the port; nil for an unknown port.
        public var container: String?
        /// "tc" or "xdp" while the port program is attached; nil when the
        /// port has no program (it should not: the guard holds it until the
        /// next apply attaches one).
        public var hook: String?

        public init(name: String, ifindex: UInt32, container: String?, hook: String?) {
            self.name = name
            self.ifindex = ifindex
            self.container = container
            self.hook = hook
        }
    }

    /// A bridge network the policy holds: the default bridge (Docker's
    /// `bridge`) first, then the user-defined ones by bridge name.
    public struct Network: Codable, Hashable, Sendable {
        /// Docker's name ("bridge" for the default bridge); the bridge's name
        /// when the maps do not hold it (a bridge without an address).
        public var name: String
        public var bridge: String
        /// "172.18.0.0/16"; nil when the bridge had no IPv4 address.
        public var subnet: String?
        public var icc: Bool
        public var `internal`: Bool
        /// Whether its subnet is masqueraded (or SNATed) on the way out.
        public var masquerade: Bool
        /// Containers of the policy on this network.
        public var containers: Int
        /// eBPF backend: ports of its bridge with the port program attached
        /// (containers' and unknown ones); nil for the other backends.
        public var ports: Int?
        /// Dual stack: "fd00:30::/64"; nil without IPv6.
        public var subnet6: String?

        public init(
            name: String, bridge: String, subnet: String?, icc: Bool, internal: Bool, masquerade: Bool,
            containers: Int, ports: Int? = nil
        ) {
            self.name = name
            self.bridge = bridge
            self.subnet = subnet
            self.icc = icc
            self.internal = `internal`
            self.masquerade = masquerade
            self.containers = containers
            self.ports = ports
        }
    }

    /// A peer host (docs/policy.md, "Peers"): its address and container subnets.
    public struct Peer: Codable, Hashable, Sendable {
        /// The policy's name for it; nil when the maps do not hold one.
        public var name: String?
        public var address: String
        /// "172.18.0.0/16", sorted.
        public var subnets: [String]
        /// The routes bpfnet installed for them (`routes: true`), as
        /// "172.18.0.0/16 via 192.168.7.254 dev uplink proto 191"; nil when
        /// it installed none (the operator routes them) or was not asked.
        public var routes: [String]?

        public init(name: String?, address: String, subnets: [String], routes: [String]? = nil) {
            self.name = name
            self.address = address
            self.subnets = subnets
            self.routes = routes
        }
    }

    /// "bpf", "nftables", "iptables", "memory".
    public var backend: String
    /// The bridge's name ("docker0").
    public var bridge: String
    /// "172.17.0.1/16", or nil when the bridge had no IPv4 address.
    public var bridgeAddress: String?
    public var icc: Bool
    /// "drop" or "accept".
    public var forwardPolicy: String
    public var ipForward: Bool
    /// Whether a control plane has written a policy (`BPFNET_CFG_LOADED`).
    public var loaded: Bool
    public var generation: UInt32
    public var extInterfaces: [ExtInterface]
    public var containers: [Container]
    public var links: [Link]
    public var published: [Published]
    /// Every bridge network of the policy (the default bridge first), from
    /// `bn_networks`; nil for the netfilter backends, whose rules do not keep
    /// them apart for reading back.
    public var networks: [Network]?
    /// eBPF backend, when the policy has peers: each peer host (from
    /// `bn_peers`, by address), and `peerPolicy` ("icc" or "allow"). nil
    /// without peers (the netfilter fallbacks read them back from their rules).
    public var peers: [Peer]? = nil
    public var peerPolicy: String? = nil
    /// Reason name → packets, summed over programs and CPUs; every known reason
    /// is present (0 when nothing was counted).
    public var counters: [String: UInt64]
    /// Program name ("port-tc", "port-xdp", "ext-xdp") → reason name → packets
    /// and bytes; only non-zero counters.
    public var programCounters: [String: [String: CounterValue]]
    /// Whether the fast path is switched on (`BPFNET_CFG_FAST_PATH`); nil in
    /// documents of a bpfnet without one.
    public var fastPathEnabled: Bool?
    /// Program name → fast-path event ("hit", or why a packet took the normal
    /// path; docs/verdicts.md "Fast path") → packets; only non-zero counters.
    /// nil when the dataplane has no fast-path counters.
    public var fastPath: [String: [String: UInt64]]?
    /// Who translates published ports: "ebpf" or "netfilter" (docs/nat.md);
    /// nil in documents of a bpfnet without eBPF NAT.
    public var nat: String? = nil
    /// eBPF backend, `bpfnet status`: live eBPF NAT connections (with --nat
    /// netfilter, those still draining after a switch); nil in metrics scrapes.
    public var natConnections: Int? = nil
    /// `status --connections`: each live eBPF NAT connection.
    public var connections: [NATConnection]? = nil
    /// `bpfnet run` only: milliseconds from Docker's `start` event of the most
    /// recently started container to its rules being in the maps. Absent when
    /// no agent has synced a started container on this pin path.
    public var lastSyncLatencyMs: Double? = nil
    /// `bpfnet run` only: what the agent following Docker last reported. Absent
    /// when no agent has run on this pin path since the last `unload`.
    public var agent: Agent? = nil

    /// The state of the `bpfnet run` agent (its state file, see docs/agent.md).
    /// Every field but `running` is what the agent wrote last; a stopped agent's
    /// values stay until `bpfnet unload`.
    public struct Agent: Codable, Hashable, Sendable {
        /// Whether an agent holds the pin path's lock right now.
        public var running: Bool
        public var pid: Int32?
        /// The daemon it follows ("unix:///var/run/docker.sock").
        public var dockerHost: String
        /// Whether its event stream was open when it last wrote.
        public var connected: Bool
        /// "Docker/20.10.24+dfsg1 (linux)" and the API version it speaks.
        public var dockerServer: String?
        public var apiVersion: String?
        /// ISO 8601 times of the last applied change and the last full resync.
        public var lastSyncAt: String?
        public var lastSyncLatencyMs: Double?
        /// The container whose start `lastSyncLatencyMs` measured.
        public var lastSyncContainer: String?
        public var lastResyncAt: String?
        /// Duration of the last full resync (list, inspect, port lookups, apply).
        public var lastResyncMs: Double?
        public var lastResyncContainers: Int?
        public var resyncs: Int
        public var reconnects: Int
        public var eventsHandled: Int
        public var malformedEvents: Int
        /// Containers running on the bridge that the agent left out, with why.
        public var skippedContainers: [String]
        /// External interfaces the settings name that do not exist (yet): left
        /// out until they appear; nil when there are none.
        public var missingExtInterfaces: [String]?
        /// The last failure (Docker unreachable, an apply that failed); nil once it recovered.
        public var lastError: String?
        /// What the daemon and host checks found that lets something besides
        /// bpfnet decide about container traffic (Docker's own iptables rules,
        /// br_netfilter, the userland proxy) or keeps eBPF out (no BTF); nil
        /// when there is nothing to say.
        public var warnings: [String]?

        public init(
            running: Bool, pid: Int32? = nil, dockerHost: String, connected: Bool,
            dockerServer: String? = nil, apiVersion: String? = nil, lastSyncAt: String? = nil,
            lastSyncLatencyMs: Double? = nil, lastSyncContainer: String? = nil,
            lastResyncAt: String? = nil, lastResyncMs: Double? = nil, lastResyncContainers: Int? = nil,
            resyncs: Int = 0, reconnects: Int = 0, eventsHandled: Int = 0, malformedEvents: Int = 0,
            skippedContainers: [String] = [], lastError: String? = nil
        ) {
            self.running = running
            self.pid = pid
            self.dockerHost = dockerHost
            self.connected = connected
            self.dockerServer = dockerServer
            self.apiVersion = apiVersion
            self.lastSyncAt = lastSyncAt
            self.lastSyncLatencyMs = lastSyncLatencyMs
            self.lastSyncContainer = lastSyncContainer
            self.lastResyncAt = lastResyncAt
            self.lastResyncMs = lastResyncMs
            self.lastResyncContainers = lastResyncContainers
            self.resyncs = resyncs
            self.reconnects = reconnects
            self.eventsHandled = eventsHandled
            self.malformedEvents = malformedEvents
            self.skippedContainers = skippedContainers
            self.lastError = lastError
        }
    }
    /// eBPF backend: every port of the bridge, sorted by name, with its
    /// container and whether the port program is on it; nil for the others.
    public var bridgePorts: [BridgePort]?
    /// Backend name → why `--backend auto` did not use it ("bpf":
    /// "BPF_PROG_LOAD: Operation not permitted"); nil when auto was not asked
    /// or picked the first choice.
    public var unusedBackends: [String: String]?

    public init(
        backend: String, bridge: String, bridgeAddress: String? = nil, icc: Bool, forwardPolicy: String,
        ipForward: Bool, loaded: Bool = true, generation: UInt32 = 0, extInterfaces: [ExtInterface] = [],
        containers: [Container] = [], links: [Link] = [], published: [Published] = [],
        counters: [String: UInt64] = DataplaneStatus.zeroCounters,
        programCounters: [String: [String: CounterValue]] = [:]
    ) {
        self.backend = backend
        self.bridge = bridge
        self.bridgeAddress = bridgeAddress
        self.icc = icc
        self.forwardPolicy = forwardPolicy
        self.ipForward = ipForward
        self.loaded = loaded
        self.generation = generation
        self.extInterfaces = extInterfaces
        self.containers = containers
        self.links = links
        self.published = published
        self.counters = counters
        self.programCounters = programCounters
    }

    public static var zeroCounters: [String: UInt64] {
        Dictionary(uniqueKeysWithValues: Reason.allKnown.map { ($0.name, UInt64(0)) })
    }

    /// The policy part of the status, rebuilt from the maps.
    /// - Parameters:
    ///   - interfaceName: ifindex → name (nil when the interface is gone;
    ///     shown as "if<N>").
    ///   - bridge: the bridge's name when known; otherwise looked up by ifindex.
    public init(
        backend: String, state: MapState, bridge: String? = nil,
        interfaceName: (UInt32) -> String?
    ) {
        func ifname(_ index: UInt32) -> String { interfaceName(index) ?? "if\(index)" }
        func name(_ address: IPv4Address) -> String { state.names[address] ?? address.description }

        let config = state.config
        let extInterfaces = state.extInterfaces.keys.sorted().map { ifindex in
            ExtInterface(
                name: ifname(ifindex), ifindex: ifindex,
                allowSources: state.allowSources.filter { $0.ifindex == ifindex }.sorted().map(\.prefix.description)
                    + state.allowSources6.filter { $0.ifindex == ifindex }.sorted().map(\.prefix.description))
        }
        // A container's IPv6 address is the bn_containers6 entry of its port and MAC.
        var ipv6ByPort: [UInt32: IPv6Address] = [:]
        for (address, record) in state.containers6 where state.ports[record.portIfindex]?.mac == record.mac {
            ipv6ByPort[record.portIfindex] = address
        }
        let containers = state.containers.sorted { $0.key < $1.key }.map { address, record in
            Container(
                name: name(address), ip: address.description, mac: record.mac.description,
                port: ifname(record.portIfindex), portIfindex: record.portIfindex,
                ipv6: ipv6ByPort[record.portIfindex]?.description)
        }

        // A link is the set of forward rules from one parent to one child.
        var ports: [Pair: [(UInt8, UInt16)]] = [:]
        for rule in state.links where rule.direction == .forward {
            ports[Pair(parent: rule.source, child: rule.destination), default: []].append((rule.proto, rule.port))
        }
        let links = ports.keys.sorted().map { pair in
            Link(
                parent: name(pair.parent), child: name(pair.child), parentIP: pair.parent.description,
                childIP: pair.child.description,
                ports: ports[pair]!.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { proto, port in
                    "\(port)/\(TransportProtocol(number: proto)?.rawValue ?? String(proto))"
                })
        }
        let published = state.published.sorted { $0.key < $1.key }.map { key, target in
            Published(
                hostIP: key.hostAddress == .any ? nil : key.hostAddress.description, hostPort: key.hostPort,
                proto: TransportProtocol(number: key.proto)?.rawValue ?? String(key.proto),
                container: name(target.containerAddress), containerIP: target.containerAddress.description,
                containerPort: target.containerPort)
        }

        self.init(
            backend: backend, bridge: bridge ?? ifname(config.bridgeIfindex),
            bridgeAddress: config.bridgeInterfaceAddress?.description,
            icc: config.flags.contains(.icc),
            forwardPolicy: config.flags.contains(.forwardAccept)
                ? ForwardPolicy.accept.rawValue : ForwardPolicy.drop.rawValue,
            ipForward: config.flags.contains(.ipForward), loaded: config.flags.contains(.loaded),
            generation: config.generation, extInterfaces: extInterfaces, containers: containers,
            links: links, published: published)
        fastPathEnabled = config.flags.contains(.fastPath)
        nat = (config.flags.contains(.nat) ? NATMode.ebpf : NATMode.netfilter).rawValue
        networks = Self.networks(of: state, defaultBridge: self.bridge, ifname: ifname)
        if !state.peers.isEmpty {
            let subnetsByPeer = Dictionary(grouping: state.peers.keys) { state.peers[$0]! }
            peers = subnetsByPeer.keys.sorted().map { address in
                Peer(
                    name: state.names[address], address: address.description,
                    subnets: subnetsByPeer[address]!.sorted().map(\.description))
            }
            peerPolicy = config.flags.contains(.peerAllow) ? PeerPolicy.allow.rawValue : PeerPolicy.icc.rawValue
        }
    }

    /// `bn_networks` as status rows: slot 0 is Docker's `bridge`, the others
    /// are named by the name the compiler keeps under their gateway.
    static func networks(of state: MapState, defaultBridge: String, ifname: (UInt32) -> String) -> [Network] {
        let rows = state.networks.map { slot, record in
            let bridge = slot == 0 ? defaultBridge : ifname(record.bridgeIfindex)
            let subnet =
                record.netmask == .any
                ? nil : IPv4CIDR(address: record.subnet, prefixLength: UInt8(record.netmask.value.nonzeroBitCount))
            let name =
                slot == 0
                ? "bridge" : (record.bridgeAddress == .any ? nil : state.names[record.bridgeAddress]) ?? bridge
            return (
                slot,
                Network(
                    name: name, bridge: bridge, subnet: subnet?.description, icc: record.flags.contains(.icc),
                    internal: record.flags.contains(.internal), masquerade: record.flags.contains(.masquerade),
                    containers: state.containers.values.count { $0.network == slot })
            )
        }
        var subnets6: [UInt16: IPv6CIDR] = [:]
        for (prefix, record) in state.subnets6 { subnets6[record.network] = prefix }
        return rows.sorted { ($0.0 == 0 ? 0 : 1, $0.1.bridge) < ($1.0 == 0 ? 0 : 1, $1.1.bridge) }.map { slot, row in
            var row = row
            row.subnet6 = subnets6[slot]?.description
            return row
        }
    }

    struct Pair: Hashable, Comparable {
        var parent: IPv4Address
        var child: IPv4Address
        static func < (lhs: Pair, rhs: Pair) -> Bool { (lhs.parent, lhs.child) < (rhs.parent, rhs.child) }
    }

    /// Fills `counters` and `programCounters` from `bn_counters` slots already
    /// summed over CPUs (index `BPFNET_COUNTER_INDEX(program, reason)`).
    public mutating func setCounters(slots: [bpfnet_counter]) {
        var totals = Self.zeroCounters
        var perProgram: [String: [String: CounterValue]] = [:]
        for program in ProgramKind.all {
            for raw in 0..<UInt32(Reason.slotsPerProgram) {
                let reason = Reason(rawValue: raw)
                let index = program.counterIndex(reason)
                guard index < slots.count else { continue }
                let slot = slots[index]
                guard slot.packets != 0 || slot.bytes != 0 else { continue }
                totals[reason.name, default: 0] += slot.packets
                perProgram[program.name, default: [:]][reason.name] = CounterValue(
                    packets: slot.packets, bytes: slot.bytes)
            }
        }
        counters = totals
        programCounters = perProgram
    }

    /// Fills `fastPath` from `bn_fp_counters` slots already summed over CPUs
    /// (index `BPFNET_FP_INDEX(program, event)`).
    public mutating func setFastPathCounters(slots: [bpfnet_counter]) {
        var perProgram: [String: [String: UInt64]] = [:]
        for program in ProgramKind.all {
            for raw in 0..<UInt32(FastPathEvent.slotsPerProgram) {
                let event = FastPathEvent(rawValue: raw)
                let index = program.fastPathIndex(event)
                guard index < slots.count, slots[index].packets != 0 else { continue }
                perProgram[program.name, default: [:]][event.name] = slots[index].packets
            }
        }
        fastPath = perProgram
    }

    /// Sums per-CPU values of `bn_counters` (one array of slots per CPU).
    public static func sumPerCPU(_ perCPU: [[bpfnet_counter]]) -> [bpfnet_counter] {
        var result = [bpfnet_counter](repeating: bpfnet_counter(), count: perCPU.map(\.count).max() ?? 0)
        for cpu in perCPU {
            for (index, slot) in cpu.enumerated() {
                result[index].packets &+= slot.packets
                result[index].bytes &+= slot.bytes
            }
        }
        return result
    }
}
