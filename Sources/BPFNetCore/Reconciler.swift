// SPDX-License-Identifier: Apache-2.0
//
// From the maps as they are to the maps as they should be, one map write at a
// time, in an order that never drops a packet that both the old and the new
// policy allow (docs/reconciler.md explains the order and its limits).

import BPFNetShared

/// Applies map writes; the eBPF backend implements it over the pinned maps,
/// `InMemoryMaps` for tests.
public protocol MapWriter {
    /// Inserts or replaces one entry (BPF_ANY).
    mutating func upsert(_ entry: MapEntry) throws
    /// Removes one entry; removing an absent entry is not an error.
    mutating func delete(_ key: MapKey) throws
}

extension MapWriter {
    public mutating func apply(_ change: MapChange) throws {
        switch change {
        case .upsert(let entry): try upsert(entry)
        case .delete(let key): try delete(key)
        }
    }

    /// Applies `changes` in order, stopping at the first error.
    public mutating func apply(_ changes: [MapChange]) throws {
        for change in changes { try apply(change) }
    }
}

/// Reads the policy maps back as raw C key/value bytes.
public protocol MapReader {
    /// Every entry of `kind`'s map. For `.config` the single ARRAY slot (key 0).
    func entries(of kind: MapKind) throws -> [(key: [UInt8], value: [UInt8])]
}

extension MapState {
    /// Rebuilds the state from what `reader` finds in the maps, so that the
    /// control plane diffs against what the kernel really holds.
    public init(reading reader: some MapReader) throws {
        self.init()
        for kind in MapKind.allCases {
            for (key, value) in try reader.entries(of: kind) {
                upsert(try MapEntry(kind: kind, key: key, value: value))
            }
        }
    }

    /// Rebuilds the state from C structs already read from the maps.
    public init(
        config: bpfnet_config,
        containers: [(key: UInt32, value: bpfnet_container)] = [],
        macs: [(key: bpfnet_mac_key, value: UInt32)] = [],
        links: [bpfnet_link_key] = [],
        published: [(key: bpfnet_published_key, value: bpfnet_published_value)] = [],
        extInterfaces: [(key: UInt32, value: bpfnet_ext_if)] = [],
        allowSources: [bpfnet_allow_key] = [],
        names: [(key: UInt32, value: bpfnet_container_name)] = [],
        ports: [(key: UInt32, value: bpfnet_port)] = [],
        networks: [(key: UInt32, value: bpfnet_network)] = [],
        subnets: [(key: bpfnet_subnet_key, value: bpfnet_subnet)] = [],
        peers: [(key: bpfnet_subnet_key, value: bpfnet_peer)] = []
    ) throws(MapDecodingError) {
        self.init(config: ConfigRecord(config))
        for (key, value) in containers { self.containers[IPv4Address(networkOrder: key)] = ContainerRecord(value) }
        for (key, value) in macs { self.macs[MACAddress(key)] = IPv4Address(networkOrder: value) }
        for key in links { self.links.insert(LinkRule(key)) }
        for (key, value) in published { self.published[PublishedKey(key)] = PublishedTarget(value) }
        for (key, value) in extInterfaces { self.extInterfaces[key] = ExtInterfaceRecord(value) }
        for key in allowSources {
            guard let source = AllowSource(key) else {
                throw MapDecodingError(
                    map: .allowSources, key: rawBytes(key),
                    message: "prefixlen \(key.prefixlen) is outside 32-64; bpfnet never writes such a key")
            }
            self.allowSources.insert(source)
        }
        for (key, value) in names { self.names[IPv4Address(networkOrder: key)] = ContainerNameRecord.name(value) }
        for (key, value) in ports { self.ports[key] = PortRecord(value) }
        for (key, value) in networks { self.networks[UInt16(truncatingIfNeeded: key)] = NetworkRecord(value) }
        for (key, value) in subnets {
            guard let prefix = IPv4CIDR(key) else {
                throw MapDecodingError(
                    map: .subnets, key: rawBytes(key),
                    message: "prefixlen \(key.prefixlen) is outside 0-32; bpfnet never writes such a key")
            }
            self.subnets[prefix] = SubnetRecord(value)
        }
        for (key, value) in peers {
            guard let prefix = IPv4CIDR(key) else {
                throw MapDecodingError(
                    map: .peers, key: rawBytes(key),
                    message: "prefixlen \(key.prefixlen) is outside 0-32; bpfnet never writes such a key")
            }
            self.peers[prefix] = IPv4Address(networkOrder: value.addr)
        }
    }

    /// The writes that turn `self` (what the maps hold) into `desired`, and
    /// nothing else. Empty when the two hold the same policy (the config's
    /// generation is not compared). See `Reconciler`.
    public func changes(to desired: MapState) -> [MapChange] {
        Reconciler.changes(from: self, to: desired)
    }
}

/// Orders map writes so that no packet allowed both before and after a change
/// is dropped in between, and no packet dropped both before and after passes
/// in between (docs/reconciler.md).
///
/// Every map entry and config flag pushes the verdicts one way only: links,
/// allow-list entries, ICC and FORWARD_ACCEPT only ever let more through;
/// containers, MACs and published ports (they make packets subject to policy)
/// and an ext interface's ALLOWLIST flag only ever hold more back. A write
/// either *relaxes* (adds something of the first kind, removes something of
/// the second) or *tightens*. While only relaxing writes have been made, the
/// maps allow at least what the old policy allowed; once every relaxing write
/// is done, they allow at least what the new policy allows, and tightening
/// writes never go below it. So: relaxing writes first, tightening ones last.
/// The only tightening that comes early is switching FORWARD_ACCEPT off (and
/// the only relaxing one that comes late is switching it on) because the
/// allow-lists decide whom it admits; see steps 3 and 6.
///
/// 1. `config`: the old record with the relaxing flags of the new policy on
///    (ICC; FORWARD_ACCEPT too unless the allow-lists narrow, see 6); each
///    changed `networks` record likewise (icc on, internal off);
/// 2. relaxing: upserts of `links`, `names` and `ports`; deletes of `published`,
///    `containers`, `macs`;
/// 3. `config` with FORWARD_ACCEPT off, when the new policy switches it off
///    (and the bridge subnet stays): before any allow-list admits more, so that
///    a source that neither policy admits never reaches a container in between;
/// 4. allow-lists relax: upserts of `allow_src` and of `ext_ifs` whose list
///    stops being enforced; deletes of `ext_ifs`;
/// 5. allow-lists tighten: upserts of `ext_ifs` that start enforcing their list
///    (its entries exist since 4); deletes of `allow_src`;
/// 6. `config` with FORWARD_ACCEPT on, when step 1 held it back because the new
///    allow-lists admit fewer sources than the old ones;
/// 7. tightening: upserts of `macs`, `containers`, `published`;
/// 8. the new `networks` records, then `config`, the new record, `generation`
///    bumped (icc goes off only once the link rules are in place), then the
///    deletes of `networks`;
/// 9. deletes of `links`, `names` and `ports`.
///
/// `subnets` entries make traffic to a network isolated: their upserts
/// tighten (7), their deletes relax (2).
///
/// A `ports` entry is judged by the frames of its own container, the only
/// ones it lets through: for them it only allows (their links apply). Frames
/// that claim another identity are dropped as soon as the entry exists.
///
/// Not hitless: a change of the bridge's address or subnet (one config write
/// whose effect is not one-directional), and a port that changes container.
public enum Reconciler {
    public static func changes(from current: MapState, to desired: MapState) -> [MapChange] {
        var relaxing: [MapChange] = []  // step 2
        var allowListsRelax: [MapChange] = []  // step 4
        var allowListsTighten: [MapChange] = []  // step 5
        var tightening: [MapChange] = []  // step 7
        var lateDeletes: [MapChange] = []  // step 9

        // Links: presence only allows.
        for rule in desired.links.subtracting(current.links).sorted() { relaxing.append(.upsert(.link(rule))) }
        // Names: no effect on verdicts; written early so that status can name new containers.
        for (address, name) in desired.names.filter({ current.names[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            relaxing.append(.upsert(.name(address, name)))
        }
        // Ports: for the frames of the port's own container (the only ones a
        // correct entry lets through), an entry only allows (links).
        for (ifindex, record) in desired.ports.filter({ current.ports[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            relaxing.append(.upsert(.port(ifindex: ifindex, record)))
        }
        // Removing what makes packets subject to policy only allows.
        for key in current.published.keys.filter({ desired.published[$0] == nil }).sorted() {
            relaxing.append(.delete(.published(key)))
        }
        for address in current.containers.keys.filter({ desired.containers[$0] == nil }).sorted() {
            relaxing.append(.delete(.container(address)))
        }
        for mac in current.macs.keys.filter({ desired.macs[$0] == nil }).sorted() {
            relaxing.append(.delete(.mac(mac)))
        }

        // Allow-list entries: presence only allows.
        for source in desired.allowSources.subtracting(current.allowSources).sorted() {
            allowListsRelax.append(.upsert(.allowSource(source)))
        }
        for source in desired.allowSources6.subtracting(current.allowSources6).sorted() {
            allowListsRelax.append(.upsert(.allowSource6(source)))
        }
        // Ext interfaces: enforcing the allow-list holds back, not enforcing it allows.
        for (ifindex, record) in desired.extInterfaces.filter({ current.extInterfaces[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            let enforcedBefore = current.extInterfaces[ifindex]?.flags.contains(.allowList) ?? false
            let change = MapChange.upsert(.extInterface(ifindex: ifindex, record))
            if record.flags.contains(.allowList) && !enforcedBefore {
                allowListsTighten.append(change)
            } else {
                allowListsRelax.append(change)
            }
        }
        for ifindex in current.extInterfaces.keys.filter({ desired.extInterfaces[$0] == nil }).sorted() {
            allowListsRelax.append(.delete(.extInterface(ifindex)))
        }
        // After the interfaces that start enforcing their list (step 5).
        for source in current.allowSources.subtracting(desired.allowSources).sorted() {
            allowListsTighten.append(.delete(.allowSource(source)))
        }
        for source in current.allowSources6.subtracting(desired.allowSources6).sorted() {
            allowListsTighten.append(.delete(.allowSource6(source)))
        }

        // Adding it holds back (replacing a value changes nothing the programs look at).
        for (mac, address) in desired.macs.filter({ current.macs[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.mac(mac, address)))
        }
        for (address, record) in desired.containers.filter({ current.containers[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.container(address, record)))
        }
        for (key, target) in desired.published.filter({ current.published[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.published(key, target)))
        }

        for rule in current.links.subtracting(desired.links).sorted() { lateDeletes.append(.delete(.link(rule))) }
        for address in current.names.keys.filter({ desired.names[$0] == nil }).sorted() {
            lateDeletes.append(.delete(.name(address)))
        }
        for ifindex in current.ports.keys.filter({ desired.ports[$0] == nil }).sorted() {
            lateDeletes.append(.delete(.port(ifindex)))
        }

        // Networks, as the config is written: first the old record with the
        // new one's relaxing flags (icc on, internal off), with the config of
        // step 1; the new record with the config of step 8; records of
        // networks that are gone right after it, before their ports go.
        var networksEarly: [MapChange] = []
        var networksFinal: [MapChange] = []
        var networksGone: [MapChange] = []
        for (id, record) in desired.networks.filter({ current.networks[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            let old = current.networks[id] ?? NetworkRecord()
            let interim = Self.relaxed(old, towards: record)
            if interim != old { networksEarly.append(.upsert(.network(id, interim))) }
            if interim != record { networksFinal.append(.upsert(.network(id, record))) }
        }
        for id in current.networks.keys.filter({ desired.networks[$0] == nil }).sorted() {
            networksGone.append(.delete(.network(id)))
        }
        // Subnets make traffic to them isolated: adding holds back, removing allows.
        for prefix in current.subnets.keys.filter({ desired.subnets[$0] == nil }).sorted() {
            relaxing.append(.delete(.subnet(prefix)))
        }
        for (prefix, record) in desired.subnets.filter({ current.subnets[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.subnet(prefix, record)))
        }
        // A peer subnet entry decides its sources alone (peer subnets never
        // overlap), so each packet sees the old entry or the new one; the
        // PEERS flag goes on first and off last (ConfigFlags.relaxing).
        for prefix in current.peers.keys.filter({ desired.peers[$0] == nil }).sorted() {
            relaxing.append(.delete(.peer(prefix)))
        }
        for (prefix, address) in desired.peers.filter({ current.peers[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.peer(prefix, address: address)))
        }

        // IPv6 subnets and container addresses, as their IPv4 counterparts:
        // adding makes traffic to them subject to policy (holds back),
        // removing allows. A bn_containers6 entry also admits its own
        // container's source, but only once the port's entry names the
        // container (relaxing, step 2), so it cannot admit a stranger.
        for prefix in current.subnets6.keys.filter({ desired.subnets6[$0] == nil }).sorted() {
            relaxing.append(.delete(.subnet6(prefix)))
        }
        for (prefix, record) in desired.subnets6.filter({ current.subnets6[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.subnet6(prefix, record)))
        }
        for address in current.containers6.keys.filter({ desired.containers6[$0] == nil }).sorted() {
            relaxing.append(.delete(.container6(address)))
        }
        for (address, record) in desired.containers6.filter({ current.containers6[$0.key] != $0.value })
            .sorted(by: { $0.key < $1.key })
        {
            tightening.append(.upsert(.container6(address, record)))
        }

        let entriesChange =
            !(relaxing.isEmpty && allowListsRelax.isEmpty && allowListsTighten.isEmpty
            && tightening.isEmpty && lateDeletes.isEmpty && networksEarly.isEmpty && networksFinal.isEmpty
            && networksGone.isEmpty)
        guard entriesChange || !current.config.samePolicy(as: desired.config) else { return [] }

        var result: [MapChange] = []
        let turnedOn = desired.config.flags.intersection(ConfigFlags.relaxing).subtracting(current.config.flags)
        // Step 3 relies on "container address" meaning the same before and after.
        let sameBridge =
            current.config.bridgeAddress == desired.config.bridgeAddress
            && current.config.bridgeSubnet == desired.config.bridgeSubnet
            && current.config.bridgeNetmask == desired.config.bridgeNetmask
        let forwardAcceptOff =
            sameBridge && current.config.flags.contains(.forwardAccept)
            && !desired.config.flags.contains(.forwardAccept)
        var interim = current.config
        interim.flags.formUnion(turnedOn)
        let holdForwardAccept = turnedOn.contains(.forwardAccept) && allowListsNarrow(from: current, to: desired)
        if holdForwardAccept { interim.flags.remove(.forwardAccept) }
        if interim != current.config { result.append(.upsert(.config(interim))) }  // 1.
        result += networksEarly
        result += relaxing  // 2.
        if forwardAcceptOff && !(allowListsRelax.isEmpty && tightening.isEmpty) {  // 3.
            interim.flags.remove(.forwardAccept)
            result.append(.upsert(.config(interim)))
        }
        result += allowListsRelax  // 4.
        result += allowListsTighten  // 5.
        if holdForwardAccept {  // 6.
            interim.flags.insert(.forwardAccept)
            result.append(.upsert(.config(interim)))
        }
        result += tightening  // 7.
        result += networksFinal  // 8.
        var final = desired.config
        final.generation = current.config.generation &+ 1
        result.append(.upsert(.config(final)))
        result += networksGone
        result += lateDeletes  // 9.
        return result
    }

    /// `old` with what of `new` only lets more through: icc on, internal off.
    static func relaxed(_ old: NetworkRecord, towards new: NetworkRecord) -> NetworkRecord {
        var widened = old
        widened.flags.formUnion(new.flags.intersection(.icc))
        widened.flags.subtract(NetworkFlags.internal.subtracting(new.flags))
        return widened
    }

    /// True when some source that `current` admits on some interface is
    /// refused there by `desired` (an allow-list appears or loses a prefix).
    static func allowListsNarrow(from current: MapState, to desired: MapState) -> Bool {
        let interfaces = Set(current.extInterfaces.keys).union(desired.extInterfaces.keys)
        for ifindex in interfaces {
            // The new admits all: nothing narrows.
            guard desired.extInterfaces[ifindex]?.flags.contains(.allowList) ?? false else { continue }
            // The old admitted all: the new list narrows it.
            guard current.extInterfaces[ifindex]?.flags.contains(.allowList) ?? false else { return true }
            let newPrefixes = desired.allowSources.filter { $0.ifindex == ifindex }.map(\.prefix)
            for old in current.allowSources where old.ifindex == ifindex {
                let covered = newPrefixes.contains {
                    $0.prefixLength <= old.prefix.prefixLength && $0.contains(old.prefix.address)
                }
                if !covered { return true }
            }
        }
        return false
    }
}

/// The policy maps in memory: a `MapWriter` and `MapReader` for tests, which
/// records every write and can run a check after each one.
public final class InMemoryMaps: MapWriter, MapReader {
    public private(set) var state: MapState
    public private(set) var log: [MapChange] = []
    /// Called after every write with the state it produced; throwing fails the write.
    public var afterEachWrite: ((MapState, MapChange) throws -> Void)?

    public init(state: MapState = .empty) { self.state = state }

    public func upsert(_ entry: MapEntry) throws {
        state.upsert(entry)
        try record(.upsert(entry))
    }

    public func delete(_ key: MapKey) throws {
        state.delete(key)
        try record(.delete(key))
    }

    private func record(_ change: MapChange) throws {
        log.append(change)
        try afterEachWrite?(state, change)
    }

    public func entries(of kind: MapKind) throws -> [(key: [UInt8], value: [UInt8])] {
        state.entries.filter { $0.kind == kind }.map { ($0.keyBytes, $0.valueBytes) }
    }
}
