// SPDX-License-Identifier: Apache-2.0
//
// The eBPF backend: loads bpf/port.bpf.c and bpf/ext.bpf.c through libbpf,
// keeps the pinned maps in step with the policy (only the difference is
// written, additions before deletions), attaches the port program to every
// port of the bridge (known container or not) and the ext program to every
// external interface, and owns bpfnet's NAT table and the guard tables
// (GuardRuleset.swift, docs/security.md). Everything it puts into the kernel outlives the
// process: the maps are pinned, the attachments are netlink-owned, and the
// attachment list itself lives in a pinned map so `unload` can undo a crashed
// `load`.

import BPF
import BPFNetCore
import BPFNetShared
import BPFObjects
import Foundation
import Logging
import SystemPackage

public final class BPFDataplane: Dataplane {
    /// Where the maps are pinned unless `--pin-path` says otherwise.
    public static let defaultPinPath: FilePath = "/sys/fs/bpf/bpfnet"

    public let backend = Backend.bpf
    public let pinPath: FilePath
    private let logger: Logger
    /// Loaded once per process and reused, so an agent that applies a policy
    /// per Docker event does not reload programs each time.
    private var loaded: LoadedDataplane?
    /// The NAT table this process last installed, and the bridge ports it has
    /// verified (name → ifindex): an agent applies a policy per Docker event,
    /// and neither needs redoing when it did not change.
    private var lastNATRuleset: String?
    private var lastGuardRuleset: String?
    /// When this process last swept bn_nat: with --nat ebpf the sweep only
    /// tidies (the programs ignore expired entries), so an agent applying per
    /// Docker event sweeps at most once a minute, not on every event.
    private var lastNATSweep: ContinuousClock.Instant?
    private let peerRouteKeeper = PeerRouteKeeper()
    private var verifiedPorts: [String: UInt32] = [:]
    private var retiredOtherBackends = false
    /// This process has checked every interface's attachment and fast-path
    /// arrangement against the kernel (and filled its DEVMAP): later applies
    /// trust the records and only act on what is new or changed; a full
    /// resync (`forgetCachedState`) checks everything again.
    private var checkedEveryInterface = false
    /// What metrics scrapes reuse while nothing changes: the interfaces (until
    /// the kernel announces a change) and the policy maps as read at a config
    /// generation (every apply writes a new one; forgotten at every apply).
    private let scrapedInterfaces = InterfaceSnapshotCache()
    private var scrapedMapState: MapState?

    public init(pinPath: FilePath = BPFDataplane.defaultPinPath, logger: Logger = Logger(label: "bpfnet.bpf")) {
        self.pinPath = pinPath
        self.logger = logger
    }

    // MARK: apply

    public func apply(_ policy: Policy) throws {
        scrapedMapState = nil
        // Everything that can be wrong with the input is found before the
        // kernel is touched, so a bad policy never leaves half a dataplane.
        let compiled = try HostSystem.compile(policy)
        let facts = compiled.facts
        let compiledState = compiled.state
        // Ports already verified by this process (same name, same ifindex) are
        // not listed again: an agent applies once per Docker event.
        let unverified = policy.containers.filter { container in
            facts.interfaceIndex(container.port).map { verifiedPorts[container.port] != $0 } ?? true
        }
        try HostSystem.checkBridgePorts(policy, unverified, interfaces: compiled.interfaces)
        try MapCapacity.check(compiledState)
        let peerRoutes = try peerRouteKeeper.plan(policy.peers)

        let dataplane = try loadedDataplane()
        let current = try MapState(reading: dataplane.maps)
        var desired = compiledState.keepingNetworkIDs(of: current)
        // Connections that are over leave bn_nat (one batch read). After a
        // switch to --nat netfilter, live eBPF NAT connections keep being
        // translated (new ones go to netfilter) until they are over too:
        // then every apply sweeps, as the drain flag depends on it.
        let now = ContinuousClock.now
        let sweepDue = policy.natInForce != .ebpf || lastNATSweep.map { now - $0 >= .seconds(60) } ?? true
        if sweepDue, let nat = try NATConnectionMap(pinnedAt: pinPath) {
            let live = try nat.deleteExpired()
            lastNATSweep = now
            if policy.natInForce != .ebpf && policy.portHook == .tc && live > 0 {
                desired.config.flags.insert(.natDrain)
            }
        }
        try MapCapacity.check(desired, replacing: current)
        let changes = current.changes(to: desired)
        do {
            var writer = dataplane.maps
            try writer.apply(changes)
        } catch {
            restore(dataplane.maps, to: current)
            throw error
        }
        logger.info("maps reconciled", metadata: ["changes": "\(changes.count)"])

        // Every port of the bridge gets the port program, whether or not the
        // policy knows its container: a port without a bn_ports entry is an
        // unknown port (docs/verdicts.md), never an unpoliced one.
        var bridgePorts = compiled.interfaces.ports(ofBridge: facts.bridgeIfindex)
        for network in facts.networks.values {
            bridgePorts.merge(compiled.interfaces.ports(ofBridge: network.ifindex)) { first, _ in first }
        }
        let attachments = Self.desiredAttachments(policy, facts: facts, bridgePorts: bridgePorts)
        do {
            try dataplane.attachments.reconcile(desired: attachments, trustingRecords: checkedEveryInterface)
        } catch {
            restore(dataplane.maps, to: current)
            throw error
        }
        // Once the ports have their program: they join the guard's set.
        let guardRuleset = GuardRuleset(
            bridge: policy.bridge, bridgeMAC: facts.bridgeMAC, icc: policy.icc,
            forwardAccept: policy.forwardPolicy == .accept,
            policedPorts: attachments.keys.filter { !$0.isExt }.map(\.ifindex),
            extInterfaces: attachments.keys.filter(\.isExt).map(\.ifindex),
            networks: policy.networks.map { ($0.bridge, $0.icc, facts.networks[$0.name]?.mac ?? .zero) }
        ).render()
        if guardRuleset != lastGuardRuleset {
            try GuardTable.apply(guardRuleset)
            lastGuardRuleset = guardRuleset
        }

        // After the maps (the fast-path flag goes on first and off first) and
        // the attachments: an interface that cannot be arranged is simply no
        // XDP fast-path endpoint, which the programs count; it fails nothing.
        let problems = try dataplane.fastPath.reconcile(
            desired: Self.desiredFastPath(policy, facts: facts),
            trustingRecords: checkedEveryInterface,
            interfaces: compiled.interfaces)
        checkedEveryInterface = true
        if !problems.isEmpty {
            logger.warning(
                "fast path: \(problems.count) interfaces take the normal path: \(problems.joined(separator: "; "))")
        }
        // An upgrade across a map layout change: the new programs now run on
        // every interface, so their maps may take the old pins' place.
        try dataplane.finishUpgrade(logger: logger)

        if policy.ipForward {
            // Docker's --ip-forward: on at load unless told otherwise; never turned off by us.
            try HostSystem.setSysctl("net/ipv4/ip_forward", "1")
        }
        let subnet = facts.bridgeAddress.flatMap { IPv4CIDR(address: $0.address, prefixLength: $0.prefixLength) }
        var natRuleset = NATRuleset(bridge: policy.bridge, bridgeSubnet: subnet, policy: policy.normalized())
        natRuleset.networks = policy.networks.map { network in
            NATRuleset.Network(
                bridge: network.bridge, subnet: facts.networks[network.name]?.address?.network,
                masquerade: network.masquerade && !network.internal, sourceAddress: network.hostIPv4)
        }
        natRuleset.peerSubnets = policy.peers.flatMap(\.subnets)
        let nat = natRuleset.render()
        // The table is bpfnet's alone; rewrite it only when its contents change
        // (or on this process's first apply, which also repairs a missing table).
        if nat != lastNATRuleset {
            try NATTable.apply(nat)
            lastNATRuleset = nat
        }
        // After the programs that judge peer traffic are in place; reconciled
        // with the kernel's table when the plan changes (and once per process).
        try peerRouteKeeper.reconcile(peerRoutes, logger: logger)
        for container in policy.containers {
            verifiedPorts[container.port] = facts.interfaceIndex(container.port)
        }
        // Switching from a netfilter fallback: its rules go once ours enforce
        // (once per process: an agent applies per event, the others stay gone).
        if !retiredOtherBackends {
            try NetfilterBackends.retireOthers(except: backend, pinPath: pinPath, logger: logger)
            retiredOtherBackends = true
        }
    }

    public func forgetCachedState() {
        lastNATRuleset = nil
        lastGuardRuleset = nil
        lastNATSweep = nil
        peerRouteKeeper.forget()
        verifiedPorts = [:]
        checkedEveryInterface = false
        retiredOtherBackends = false
    }

    /// Best effort: put the maps back as they were after a failed apply.
    private func restore(_ maps: PolicyMaps, to previous: MapState) {
        do {
            var writer = maps
            try writer.apply(try MapState(reading: maps).changes(to: previous))
        } catch {
            logger.error("could not restore the previous map contents: \(error)")
        }
    }

    static func desiredAttachments(
        _ policy: Policy, facts: HostFacts, bridgePorts: [UInt32: String] = [:]
    ) -> [AttachmentKey: AttachmentTarget] {
        var result: [AttachmentKey: AttachmentTarget] = [:]
        let portProgram: bpfnet_program = policy.portHook == .xdp ? BPFNET_PROG_PORT_XDP : BPFNET_PROG_PORT_TC
        for (ifindex, name) in bridgePorts {
            result[AttachmentKey(ifindex: ifindex, program: portProgram)] = AttachmentTarget(
                interface: name, optional: true)
        }
        for container in policy.containers {
            guard let ifindex = facts.interfaceIndex(container.port) else { continue }
            result[AttachmentKey(ifindex: ifindex, program: portProgram)] = AttachmentTarget(interface: container.port)
        }
        for ext in policy.extInterfaces {
            guard let ifindex = facts.interfaceIndex(ext.name) else { continue }
            result[AttachmentKey(ifindex: ifindex, program: BPFNET_PROG_EXT_XDP)] = AttachmentTarget(
                interface: ext.name)
        }
        return result
    }

    /// What the XDP fast paths need on each interface (FastPathInterfaces.swift).
    static func desiredFastPath(_ policy: Policy, facts: HostFacts) -> [UInt32: FastPathRequirement] {
        // eBPF NAT delivers through the same XDP redirect as the fast path.
        guard policy.fastPath || policy.natInForce == .ebpf else { return [:] }
        var result: [UInt32: FastPathRequirement] = [:]
        for container in policy.containers {
            guard let ifindex = facts.interfaceIndex(container.port) else { continue }
            result[ifindex] = FastPathRequirement(
                interface: container.port,
                role: .containerPort(fullChecksum: policy.portHook == .xdp))
        }
        for ext in policy.extInterfaces {
            guard let ifindex = facts.interfaceIndex(ext.name) else { continue }
            result[ifindex] = FastPathRequirement(interface: ext.name, role: .external)
        }
        return result
    }

    private func loadedDataplane() throws -> LoadedDataplane {
        if let loaded { return loaded }
        let dataplane = try LoadedDataplane.load(pinPath: pinPath, logger: logger)
        loaded = dataplane
        return dataplane
    }

    // MARK: status

    public func status() throws -> DataplaneStatus { try status(askingTheKernel: true) }

    public func statusForMetrics() throws -> DataplaneStatus { try status(askingTheKernel: false) }

    /// Reads the state back from the pins.
    /// - Parameter askingTheKernel: whether each bridge port's attachment is
    ///   checked with the kernel (one netlink query per port). Without it, a
    ///   port counts as attached when bn_attach records bpfnet's program there:
    ///   the record is written by the apply that attached it, and every full
    ///   resync asks the kernel and repairs what someone else removed. A
    ///   metrics scrape at 1,000 ports reads it that way (the queries made it
    ///   cost 4–5 % of a core at one scrape per second). It also reuses
    ///   the interfaces and the policy maps it read last while they have not
    ///   changed.
    public func status(askingTheKernel: Bool) throws -> DataplaneStatus {
        try status(askingTheKernel: askingTheKernel, includingConnections: false)
    }

    /// `status --connections`: the status with every live eBPF NAT connection.
    public func statusWithConnections() throws -> DataplaneStatus {
        try status(askingTheKernel: true, includingConnections: true)
    }

    private func status(askingTheKernel: Bool, includingConnections: Bool) throws -> DataplaneStatus {
        guard isLoaded else {
            throw DataplaneError.notFound(
                "bpf: nothing is loaded at \(pinPath) — run `bpfnet load --config FILE` first")
        }
        let maps = try PolicyMaps(pinnedAt: pinPath)
        let state: MapState
        if !askingTheKernel, let cached = scrapedMapState, try Self.generation(in: maps) == cached.config.generation {
            state = cached
        } else {
            state = try MapState(reading: maps)
            if !askingTheKernel { scrapedMapState = state }
        }
        let counters = try CounterReader(pinnedAt: pinPath).read()
        // One look at the interfaces and the attachment records serves every part.
        let interfaces = askingTheKernel ? try InterfaceSnapshot.take() : try scrapedInterfaces.current()
        let records = try AttachmentRecords(pinnedAt: pinPath).all()
        var status = DataplaneStatus(backend: backend.rawValue, state: state) { interfaces.link($0)?.name }
        status.setCounters(slots: counters)
        if let fastPath = try CounterReader(
            pinnedAt: pinPath, map: BPFNET_MAP_ID_FP_COUNTERS,
            slots: ProgramKind.fastPathSlots)
        {
            status.setFastPathCounters(slots: try fastPath.read())
        }
        // Not for metrics scrapes: pairing 65,536 connections each second would cost more than the rest.
        if askingTheKernel, let nat = try NATConnectionMap(pinnedAt: pinPath) {
            let table = try nat.read()
            status.natConnections = table.connections.count
            if includingConnections { status.connections = table.connections }
        }
        status.addAgentState(from: AgentFiles(pinPath: pinPath))
        let attachments = PortAttachments(records: records, askingTheKernel: askingTheKernel)
        status.bridgePorts = Self.bridgePorts(state: state, interfaces: interfaces, attachments: attachments)
        Self.countAttachedPorts(in: &status, state: state, interfaces: interfaces, attachments: attachments)
        Self.addXDPModes(to: &status, records: records)
        if askingTheKernel { PeerRoutes.addInstalledRoutes(to: &status) { interfaces.link($0)?.name } }
        return status
    }

    /// The config generation in the maps: every apply writes the next one.
    private static func generation(in maps: PolicyMaps) throws -> UInt32? {
        guard let (key, value) = try maps.entries(of: .config).first,
            case .config(let record) = try MapEntry(kind: .config, key: key, value: value)
        else { return nil }
        return record.generation
    }

    /// Which hook of a bridge port holds the port program: bn_attach's
    /// record, confirmed with the kernel when asked to.
    struct PortAttachments {
        let records: [AttachmentKey: AttachmentRecord]
        let askingTheKernel: Bool

        func hook(_ ifindex: UInt32) -> String? {
            [(BPFNET_PROG_PORT_TC, "tc"), (BPFNET_PROG_PORT_XDP, "xdp")].first { program, _ in
                let key = AttachmentKey(ifindex: ifindex, program: program)
                guard let record = records[key] else { return false }
                return !askingTheKernel || Attacher.attachedID(key) == record.programID
            }?.1
        }
    }

    /// Fills each network's `ports`: the ports of its bridge now that hold
    /// the port program.
    static func countAttachedPorts(
        in status: inout DataplaneStatus, state: MapState, interfaces: InterfaceSnapshot,
        attachments: PortAttachments
    ) {
        guard let networks = status.networks, !networks.isEmpty else { return }
        var bridges: [String: UInt32] = [:]
        for (slot, record) in state.networks {
            let name = slot == 0 ? status.bridge : interfaces.link(record.bridgeIfindex)?.name
            if let name { bridges[name] = record.bridgeIfindex }
        }
        // The default bridge's ports were just judged for `bridgePorts`.
        let judged = Dictionary(uniqueKeysWithValues: status.bridgePorts?.map { ($0.ifindex, $0.hook != nil) } ?? [])
        status.networks = networks.map { network in
            var network = network
            let ports: [UInt32] = bridges[network.bridge].map { Array(interfaces.ports(ofBridge: $0).keys) } ?? []
            network.ports = ports.count { judged[$0] ?? (attachments.hook($0) != nil) }
            return network
        }
    }

    /// Every port of the bridge now, with its container and the hook its
    /// program is attached on.
    static func bridgePorts(
        state: MapState, interfaces: InterfaceSnapshot, attachments: PortAttachments
    ) -> [DataplaneStatus.BridgePort] {
        interfaces.ports(ofBridge: state.config.bridgeIfindex).map { ifindex, name in
            let container = state.ports[ifindex].map { state.names[$0.address] ?? $0.address.description }
            return DataplaneStatus.BridgePort(
                name: name, ifindex: ifindex, container: container, hook: attachments.hook(ifindex))
        }.sorted { $0.name < $1.name }
    }

    /// Fills each external interface's `xdpMode`: the mode the kernel holds
    /// the ext program in, when it is the program bn_attach records there.
    static func addXDPModes(to status: inout DataplaneStatus, records: [AttachmentKey: AttachmentRecord]) {
        for index in status.extInterfaces.indices {
            let key = AttachmentKey(ifindex: status.extInterfaces[index].ifindex, program: BPFNET_PROG_EXT_XDP)
            guard let record = records[key], let attached = try? XDPAttachment.query(ifindex: key.ifindex),
                attached.programID == record.programID
            else { continue }
            status.extInterfaces[index].xdpMode = attached.mode.description
        }
    }

    /// Whether a dataplane is pinned at `pinPath`.
    public var isLoaded: Bool { BPFRetirement.isLoaded(pinPath: pinPath) }

    // MARK: unload

    public func unload() throws {
        // An agent would put back what this removes, into maps nobody sees.
        let agentFiles = AgentFiles(pinPath: pinPath)
        try agentFiles.refuseUnloadWhileAgentRuns(backend.rawValue)
        let problems = BPFRetirement.tearDown(pinPath: pinPath, removingNATTable: true, logger: logger)
        loaded = nil
        if problems.isEmpty { agentFiles.removeState() }
        guard problems.isEmpty else {
            throw DataplaneError.runtime("bpf: unload incomplete: " + problems.joined(separator: "; "))
        }
    }
}

/// The objects loaded into the kernel with their maps pinned under one directory.
public final class LoadedDataplane {
    public let port: BPFObject
    public let ext: BPFObject
    public let maps: PolicyMaps
    public let counters: BPFPerCPUMap<UInt32, bpfnet_counter>
    let attachments: AttachmentManager
    let fastPath: FastPathInterfaces

    public var portTC: BPFProgram { get throws { try port.program(named: "bpfnet_port_tc") } }
    public var portXDP: BPFProgram { get throws { try port.program(named: "bpfnet_port_xdp") } }
    public var extXDP: BPFProgram { get throws { try ext.program(named: "bpfnet_ext_xdp") } }

    private init(port: BPFObject, ext: BPFObject, pinPath: FilePath, logger: Logger) throws {
        self.port = port
        self.ext = ext
        maps = try PolicyMaps(pinnedAt: pinPath)
        counters = try BPFPerCPUMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_COUNTERS)))
        fastPath = try FastPathInterfaces(
            pinnedAt: pinPath,
            targets: [
                BPFMap(port.map(named: MapKind.name(of: BPFNET_MAP_ID_FP_TX))),
                BPFMap(ext.map(named: MapKind.name(of: BPFNET_MAP_ID_FP_TX))),
            ], logger: logger)
        attachments = try AttachmentManager(
            records: AttachmentRecords(pinnedAt: pinPath),
            programs: [
                BPFNET_PROG_PORT_TC: port.program(named: "bpfnet_port_tc"),
                BPFNET_PROG_PORT_XDP: port.program(named: "bpfnet_port_xdp"),
                BPFNET_PROG_EXT_XDP: ext.program(named: "bpfnet_ext_xdp"),
            ],
            logger: logger)
    }

    /// Loads both objects with their maps pinned (or reused) under `pinPath`,
    /// mounting a bpffs there first if the directory is not on one. When the
    /// pins there were made by a version with another map layout, the new
    /// maps are pinned in the staging directory instead (MapUpgrade.swift)
    /// and `stagingPath` says where; `finishUpgrade` moves them over once
    /// the programs are attached.
    public static func load(pinPath: FilePath, logger: Logger = Logger(label: "bpfnet.bpf")) throws -> LoadedDataplane {
        // A directory inside an existing bpffs, or a private bpffs mounted on
        // it (a host without /sys/fs/bpf mounted, a test's temporary directory).
        _ = try BPFFileSystem.ensureMounted(at: pinPath)
        func open(pinRoot: FilePath) throws -> (port: BPFObject, ext: BPFObject) {
            let options = BPFObject.Options(pinRoot: pinRoot)
            return (
                try BPFObject(bytes: BPFObjects.port.bytes, name: "port", options: options),
                try BPFObject(bytes: BPFObjects.ext.bytes, name: "ext", options: options)
            )
        }
        var objects = try open(pinRoot: pinPath)
        let changes = MapUpgrade.layoutChanges(of: [objects.port, objects.ext], pinnedAt: pinPath)
        guard !changes.isEmpty else {
            // Leftovers of an upgrade that failed half-way and was not retried.
            try MapUpgrade.removeStaging(pinPath: pinPath)
            try objects.port.load()
            try objects.ext.load()
            return try LoadedDataplane(port: objects.port, ext: objects.ext, pinPath: pinPath, logger: logger)
        }
        logger.notice(
            """
            upgrade: the maps pinned at \(pinPath) have another layout (\(changes.joined(separator: "; "))): \
            building new maps beside them; the programs now attached keep policing until the new ones replace them
            """)
        let staging = try MapUpgrade.prepareStaging(pinPath: pinPath)
        objects = try open(pinRoot: staging)
        try objects.port.load()
        try objects.ext.load()
        for problem in MapUpgrade.carryRecords(from: pinPath, to: staging) { logger.warning("upgrade: \(problem)") }
        let dataplane = try LoadedDataplane(port: objects.port, ext: objects.ext, pinPath: staging, logger: logger)
        dataplane.upgrade = (staging: staging, pinPath: pinPath)
        return dataplane
    }

    /// Set while the maps live in the staging directory: the pins to move
    /// once every interface runs the new programs.
    private(set) var upgrade: (staging: FilePath, pinPath: FilePath)?

    /// The directory the maps are pinned in until `finishUpgrade`, if any.
    public var stagingPath: FilePath? { upgrade?.staging }

    /// After the first complete apply: the new maps take the old pins' place.
    func finishUpgrade(logger: Logger) throws {
        guard let upgrade else { return }
        try MapUpgrade.promote(staging: upgrade.staging, into: upgrade.pinPath, logger: logger)
        self.upgrade = nil
        logger.notice("upgrade: every interface runs the new programs; their maps are pinned at \(upgrade.pinPath)")
    }
}
