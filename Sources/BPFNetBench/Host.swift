// SPDX-License-Identifier: Apache-2.0
//
// One variant's complete host: its own namespaces (NetLab), the phantom
// ports, the counting receiver, and the variant's filter. Every kernel change
// is made from inside the host's namespaces: iproute2 and iptables-restore
// run under nsenter, and bpfnet's dataplane is applied on a thread that
// entered the host namespace (its nft and ip children inherit that thread's
// namespace), so nothing reaches the root namespace.

import BPF
import BPFNetBenchShared
import BPFNetCore
import BPFNetDataplane
import BPFNetShared
import BPFObjects
import Foundation
import Logging
import NetLab
import SystemPackage

/// What a variant puts on a built host, for each N of the sweep.
protocol VariantFilter: AnyObject {
    /// Installs the variant's rules for a host with `links` links, replacing
    /// those of the previous N.
    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws
    /// Removes what the variant keeps outside the host's namespaces (pins,
    /// mounts). Never throws; the namespaces go with the topology.
    func tearDown(on host: BenchHost)
    /// Forgets the connections it tracks outside conntrack (bn_nat), before
    /// and after each burst of `--profile new`, as conntrack is flushed then.
    func forgetConnections(on host: BenchHost) throws
}

extension VariantFilter {
    func forgetConnections(on host: BenchHost) throws {}
}

/// The bridge alone.
final class NoFilter: VariantFilter {
    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {}
    func tearDown(on host: BenchHost) {}
}

/// Docker's ruleset with N links, loaded with iptables-nft-restore or
/// iptables-legacy-restore. Each backend has a fresh host namespace of its
/// own: with both in one namespace both hook sets would run.
final class DockerIptablesFilter: VariantFilter {
    enum Backend: String {
        case nft, legacy
        var restoreCommand: String { "iptables-\(rawValue)-restore" }
    }

    let backend: Backend
    /// Docker's ruleset with icc on and no links at any N: what br_netfilter,
    /// conntrack and Docker's fixed FORWARD rules cost on their own.
    let withoutLinks: Bool
    /// Ingress: N is published ports (Ingress.swift), not links.
    let direction: BenchDirection

    init(backend: Backend, withoutLinks: Bool = false, direction: BenchDirection = .containers) {
        self.backend = backend
        self.withoutLinks = withoutLinks
        self.direction = direction
    }

    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        let rules =
            direction == .ingress
            ? workload.ingressDockerRules(ports: links)
            : DockerRuleset.render(
                links: withoutLinks ? [] : workload.links(links),
                networks: workload.userNetworks.map { ($0.bridge, $0.address.network) }, icc: withoutLinks)
        do {
            // Replaces the filter and nat tables as a whole (no --noflush).
            try host.topology.run(
                in: TopologySpec.hostRole, [backend.restoreCommand], input: rules,
                timeout: .seconds(600))
        } catch {
            throw BenchError.runtime(
                "\(host.variant.name): loading Docker's rules for N=\(links) with "
                    + "\(backend.restoreCommand) failed: \(error)")
        }
    }

    func tearDown(on host: BenchHost) {}
}

/// bpfnet itself, loaded through the same `Dataplane.apply` as `bpfnet load`:
/// the eBPF backend (port hook, fast path on or off) or the nftables fallback,
/// with its state under a private pin path per topology.
final class BPFNetFilter: VariantFilter {
    enum Backend: Sendable {
        case bpf(portHook: PortHook, fastPath: Bool)
        case nftables
    }

    let backend: Backend
    /// Ingress: N is published ports and the policy is Ingress.swift's.
    let direction: BenchDirection
    /// Who translates published ports (ingress): netfilter, or the eBPF programs.
    let nat: NATMode
    private var dataplane: (any Dataplane)?
    private var pinPath: FilePath?
    private var connections: BPFMap<bpfnet_nat_key, bpfnet_nat_entry>?

    init(_ backend: Backend, direction: BenchDirection = .containers, nat: NATMode = .netfilter) {
        self.backend = backend
        self.direction = direction
        self.nat = nat
    }

    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        let dataplane: any Dataplane
        if let existing = self.dataplane {
            dataplane = existing
        } else {
            let path = FilePath(host.workDirectory).appending("pins-\(host.variant.name)")
            // Recorded before the mount exists, so Ctrl-C during the first apply finds it.
            BenchSafetyNet.register(mount: path)
            pinPath = path
            let quiet = Logger(label: "bpfnet.bench") { _ in SwiftLogNoOpLogHandler() }
            switch backend {
            case .bpf: dataplane = BPFDataplane(pinPath: path, logger: quiet)
            case .nftables: dataplane = NFTablesDataplane(pinPath: path, logger: quiet)
            }
            self.dataplane = dataplane
        }
        let policy: Policy
        switch (backend, direction) {
        case (.bpf(let portHook, let fastPath), .containers):
            policy = workload.policy(links: links, portHook: portHook, fastPath: fastPath)
        case (.bpf(let portHook, let fastPath), .ingress):
            policy = workload.ingressPolicy(ports: links, portHook: portHook, fastPath: fastPath, nat: nat)
        case (.nftables, .containers):
            policy = workload.policy(links: links, portHook: .tc, fastPath: false)
        case (.nftables, .ingress):
            policy = workload.ingressPolicy(ports: links, portHook: .tc, fastPath: false)
        }
        do {
            try host.hostNamespace.run { try dataplane.apply(policy) }
        } catch {
            throw BenchError.runtime("\(host.variant.name): applying bpfnet's policy for N=\(links) failed: \(error)")
        }
    }

    /// Deletes every bn_nat entry (eBPF NAT only), so that a burst of new
    /// flows starts from an empty table, as conntrack's is flushed.
    func forgetConnections(on host: BenchHost) throws {
        guard nat == .ebpf, let pinPath else { return }
        if connections == nil {
            connections = try BPFMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_NAT)))
        }
        guard let connections else { return }
        let keys = try connections.entries().map(\.key)
        if !keys.isEmpty { _ = try connections.delete(keys: keys) }
    }

    func tearDown(on host: BenchHost) {
        connections = nil
        dataplane = nil  // closes the objects; attachments and tables vanish with the namespace
        guard let path = pinPath else { return }
        BenchSafetyNet.unmount(path)
        pinPath = nil
    }
}

/// Ingress's reference: the bridge and netfilter DNAT of every published
/// port, without any filter — bpfnet's NAT table alone (NATRuleset: one
/// nftables map lookup per new flow, whatever N), br_netfilter off. A
/// published port cannot be reached without NAT, so this is the floor of
/// today's path.
final class IngressNATFloorFilter: VariantFilter {
    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        let ruleset = NATRuleset(
            bridge: BenchWorkload.bridgeName, bridgeSubnet: BenchWorkload.bridgeAddress.network,
            published: workload.ingressPublished(ports: links))
        do {
            try host.topology.run(
                in: TopologySpec.hostRole, ["nft", "-f", "-"], input: ruleset.render(), timeout: .seconds(600))
        } catch {
            throw BenchError.runtime("\(host.variant.name): loading the NAT table for N=\(links) failed: \(error)")
        }
    }

    func tearDown(on host: BenchHost) {}
}

/// Ingress diagnostic: the reference plus an empty XDP program on ext0,
/// where bpfnet attaches its ext program: what the XDP hook costs on the
/// bench's veth (each skb becomes an xdp_buff first, copied when its
/// headroom is short), before any program does anything.
final class IngressEmptyXDPFilter: VariantFilter {
    private let nat = IngressNATFloorFilter()
    private var object: BPFObject?

    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        try nat.install(links: links, workload: workload, on: host)
        guard object == nil else { return }
        let object = try BPFObject(
            bytes: BPFObjects.selftest.bytes, name: "selftest", options: BPFObject.Options(pinMaps: false))
        try object.load()
        self.object = object
        let program = try object.program(named: "bpfnet_empty_xdp")
        try host.hostNamespace.run {
            let ifindex = try NetworkInterface.index(named: BenchWorkload.externalInterface)
            _ = try XDPAttachment.attach(program, ifindex: ifindex, mode: .native)
        }
    }

    func tearDown(on host: BenchHost) { object = nil }
}

/// The bridge with an empty program (bpf/selftest.bpf.c) on every container
/// port, where bpfnet attaches its port program: the cost of the hook alone.
final class EmptyHookFilter: VariantFilter {
    let hook: PortHook
    private var object: BPFObject?

    init(hook: PortHook) { self.hook = hook }

    func install(links: Int, workload: BenchWorkload, on host: BenchHost) throws {
        guard object == nil else { return }
        let object = try BPFObject(
            bytes: BPFObjects.selftest.bytes, name: "selftest",
            options: BPFObject.Options(pinMaps: false))
        try object.load()
        self.object = object
        let program = try object.program(named: hook == .tc ? "bpfnet_empty_tc" : "bpfnet_empty_xdp")
        let ports = [BenchWorkload.senderBridgePort, BenchWorkload.receiverBridgePort] + workload.phantoms.map(\.port)
        try host.hostNamespace.run {
            for port in ports {
                let ifindex = try NetworkInterface.index(named: port)
                if hook == .tc {
                    _ = try TCAttachment.attach(program, ifindex: ifindex, direction: .ingress)
                } else {
                    _ = try XDPAttachment.attach(program, ifindex: ifindex, mode: .native)
                }
            }
        }
    }

    func tearDown(on host: BenchHost) { object = nil }
}

/// The receiver's counter: bpf/bench_sink.bpf.c on tc ingress of its eth0.
final class Sink {
    private let object: BPFObject
    private let counter: BPFPerCPUMap<UInt32, UInt64>

    init(attachingIn receiver: NetworkNamespace) throws {
        object = try BPFObject(
            bytes: BPFObjects.bench_sink.bytes, name: "bench_sink",
            options: BPFObject.Options(pinMaps: false))
        try object.load()
        counter = try BPFPerCPUMap(object, name: BENCH_MAP_ID_SINK_COUNT.name)
        let program = try object.program(named: "bpfnet_sink_tc")
        _ = try receiver.run {
            try TCAttachment.attach(program, ifindex: NetworkInterface.index(named: "eth0"), direction: .ingress)
        }
    }

    /// Packets counted so far, summed over CPUs.
    func count() throws -> UInt64 {
        (try counter.lookup(0) ?? []).reduce(0, &+)
    }
}

/// One variant's topology with everything on it.
final class BenchHost {
    let variant: BenchVariant
    let topology: Topology
    let hostNamespace: NetworkNamespace
    let senderNamespace: NetworkNamespace
    let receiverNamespace: NetworkNamespace
    /// eth0 in the sender's namespace: where live frames enter. For ingress
    /// the sender is the external host (role "ext").
    let senderIfindex: UInt32
    let sink: Sink
    let filter: any VariantFilter
    /// Where the variant may keep files (bpfnet's pin directory).
    let workDirectory: String
    /// UDP profile: the sender's sockets, one per flow (created in its namespace).
    var udpSockets: [CInt] = []
    /// Cross-host profile: host2's topology (`topology` is host1's), where the receiver is.
    let peerTopology: Topology?

    /// Cross-host profile: both hosts with their plans, for the filters.
    var crossHostTopologies: [(Topology, CrossHostWorkload.HostPlan)] {
        guard let peerTopology else { return [] }
        return [(topology, CrossHostWorkload.host1), (peerTopology, CrossHostWorkload.host2)]
    }

    private init(
        variant: BenchVariant, topology: Topology, peerTopology: Topology? = nil, workDirectory: String,
        senderRole: String = BenchWorkload.senderName
    ) throws {
        self.variant = variant
        self.topology = topology
        self.peerTopology = peerTopology
        self.workDirectory = workDirectory
        func open(_ role: String, in topology: Topology) throws -> NetworkNamespace {
            try NetworkNamespace(path: topology.namespace(role).path)
        }
        hostNamespace = try open(TopologySpec.hostRole, in: topology)
        senderNamespace = try open(senderRole, in: topology)
        receiverNamespace = try open(BenchWorkload.receiverName, in: peerTopology ?? topology)
        senderIfindex = try senderNamespace.run { try NetworkInterface.index(named: "eth0") }
        sink = try Sink(attachingIn: receiverNamespace)
        filter = variant.makeFilter()
    }

    /// Builds the host of `variant`. On failure everything built so far is removed.
    static func build(
        _ variant: BenchVariant, workload: BenchWorkload, profile: BenchProfile,
        direction: BenchDirection = .containers, workDirectory: String
    ) throws -> BenchHost {
        if profile == .crossHost { return try buildCrossHost(variant, workDirectory: workDirectory) }
        let ingress = direction == .ingress
        let topology: Topology
        do {
            topology = try Topology.build(
                ingress
                    ? workload.ingressTopologySpec(bridgeNetfilter: variant.bridgeNetfilter)
                    : workload.topologySpec(bridgeNetfilter: variant.bridgeNetfilter))
        } catch {
            throw BenchError.runtime("\(variant.name): building the topology failed: \(error)")
        }
        do {
            let lines =
                workload.phantomPortLines() + workload.networkLines()
                + (ingress ? BenchWorkload.ingressHostLines() : [])
            if !lines.isEmpty { try topology.ip(in: TopologySpec.hostRole, lines) }
            if ingress {
                try topology.ip(in: BenchWorkload.externalName, BenchWorkload.ingressExternalLines())
                // Complete checksums on the ext link, as a wire carries them (the
                // eBPF NAT takes no frame a veth may deliver with a partial one);
                // every variant gets the same link.
                try topology.run(in: BenchWorkload.externalName, ["ethtool", "-K", "eth0", "tx", "off"])
                try topology.run(
                    in: TopologySpec.hostRole, ["ethtool", "-K", BenchWorkload.externalInterface, "tx", "off"])
            }
            return try BenchHost(
                variant: variant, topology: topology, workDirectory: workDirectory,
                senderRole: ingress ? BenchWorkload.externalName : BenchWorkload.senderName)
        } catch {
            topology.teardown()
            throw BenchError.runtime("\(variant.name): preparing the topology failed: \(error)")
        }
    }

    /// Both hosts of the cross-host profile, linked. On failure everything built so far is removed.
    private static func buildCrossHost(_ variant: BenchVariant, workDirectory: String) throws -> BenchHost {
        var built: [Topology] = []
        do {
            for plan in [CrossHostWorkload.host1, CrossHostWorkload.host2] {
                built.append(
                    try Topology.build(
                        CrossHostWorkload.topologySpec(plan, bridgeNetfilter: variant.bridgeNetfilter)))
            }
            try CrossHostWorkload.connect(built[0], built[1])
            return try BenchHost(
                variant: variant, topology: built[0], peerTopology: built[1], workDirectory: workDirectory)
        } catch {
            for topology in built { topology.teardown() }
            throw BenchError.runtime("\(variant.name): building the two cross-host hosts failed: \(error)")
        }
    }

    /// Removes the filter's outside state, the sockets and the namespaces.
    func tearDown() {
        filter.tearDown(on: self)
        for socket in udpSockets { close(socket) }
        udpSockets = []
        topology.teardown()
        peerTopology?.teardown()
    }
}
