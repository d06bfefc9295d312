// SPDX-License-Identifier: Apache-2.0
//
// What the XDP fast paths need from the interfaces around them, arranged as
// bpfnet attaches and undone as it detaches (docs/verdicts.md, "Fast path"):
//
// - A frame redirected by XDP to a container's port (the host-side veth)
//   is handed to the container's eth0 through veth's ndo_xdp_xmit, which only
//   delivers when that eth0 has NAPI; otherwise the kernel drops it silently
//   (xdp:xdp_redirect_err, err -95). bpfnet turns GRO on at the container's
//   eth0, which gives it NAPI, and only then marks the port NAPI in bn_fp_ifs
//   (the ext program's gate) and puts it into the port object's bn_fp_tx
//   DEVMAP (the XDP port hook's redirect map; not pinned, see port.bpf.c, so
//   every process that loads the objects fills its own from the records).
//   GRO rather than an XDP_PASS program on eth0: an XDP program there
//   would strip GSO from the host side of the pair, turn every skb the bridge
//   delivers into an xdp_buff first, limit the MTU, and take the container's
//   own XDP slot; GRO does none of that and only adds receive aggregation.
// - A veth hands an skb with a partial checksum (CHECKSUM_PARTIAL, what a
//   container's socket sends when the device offloads checksums) to XDP
//   without completing it; redirected as a frame, it arrives corrupt and the
//   receiver drops it. With the XDP port hook, bpfnet switches tx checksum
//   offload off at the container's eth0, so its frames carry full checksums
//   (FULL_CSUM). An ext interface is FULL_CSUM when it is no veth, or a veth
//   whose peer already computes checksums; bpfnet never changes the outside.
//   (tc's bpf_redirect_peer moves the skb itself and needs neither.)
//
// Each change is recorded in the pinned bn_fp_ifs map before it is made, so
// `unload`, even after a crashed `load`, reverts exactly what bpfnet changed.
// The veth peer lives in another network namespace: LinuxNet's
// VethPeerLocator finds it (rtnetlink's IFLA_LINK and IFLA_LINK_NETNSID), and
// its settings are changed with LinuxNet's Ethtool from a thread inside that
// namespace.

import BPF
import BPFNetCore
import BPFNetShared
import Foundation
import LinuxNet
import Logging
import SystemPackage

/// What one interface should have arranged.
struct FastPathRequirement: Hashable {
    enum Role: Hashable {
        /// A container's host-side veth: XDP redirect target (GRO at the peer);
        /// with `fullChecksum`, also an XDP redirect source (tx csum off at the peer).
        case containerPort(fullChecksum: Bool)
        /// An external interface: XDP redirect source when its frames carry full checksums.
        case external
    }

    var interface: String
    var role: Role
}

/// `struct bpfnet_fp_if` as Swift.
struct FastPathInterfaceRecord: Hashable {
    var flags: UInt32
    var peerIfindex: UInt32
    var mac: [UInt8]

    init(flags: UInt32 = 0, peerIfindex: UInt32 = 0, mac: [UInt8] = [0, 0, 0, 0, 0, 0]) {
        self.flags = flags
        self.peerIfindex = peerIfindex
        self.mac = mac
    }

    init(_ c: bpfnet_fp_if) {
        flags = c.flags
        peerIfindex = c.peer_ifindex
        mac = [c.mac.0, c.mac.1, c.mac.2, c.mac.3, c.mac.4, c.mac.5]
    }

    var cValue: bpfnet_fp_if {
        var c = bpfnet_fp_if()
        c.flags = flags
        c.peer_ifindex = peerIfindex
        let m = mac.count == 6 ? mac : [0, 0, 0, 0, 0, 0]
        c.mac = (m[0], m[1], m[2], m[3], m[4], m[5])
        return c
    }

    func has(_ flag: bpfnet_fp_if_flags) -> Bool { flags & flag.rawValue != 0 }
    mutating func set(_ flag: bpfnet_fp_if_flags, _ on: Bool) {
        if on { flags |= flag.rawValue } else { flags &= ~flag.rawValue }
    }
}

/// The pinned bn_fp_ifs map, the loaded port object's bn_fp_tx DEVMAP, and
/// the changes behind them.
struct FastPathInterfaces {
    let records: BPFMap<UInt32, bpfnet_fp_if>
    /// nil in a process that has not loaded the objects (`unload`): the map
    /// goes with the programs.
    /// The port object's and the ext object's DEVMAPs (each object has its
    /// own: see port.bpf.c); empty in a process that has not loaded them.
    let targets: [BPFMap<UInt32, UInt32>]
    let logger: Logger

    init(pinnedAt pinPath: FilePath, targets: [BPFMap<UInt32, UInt32>], logger: Logger) throws {
        records = try BPFMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_FP_IFS)))
        self.targets = targets
        self.logger = logger
    }

    /// What each interface has now, by ifindex.
    func current() throws -> [UInt32: FastPathInterfaceRecord] {
        var result: [UInt32: FastPathInterfaceRecord] = [:]
        for (key, value) in try records.entries() { result[key] = FastPathInterfaceRecord(value) }
        return result
    }

    /// Arranges what `desired` asks for and undoes it where it no longer does.
    /// Never throws for one interface that cannot be arranged: that interface
    /// simply is no fast-path source/target (the programs then take the
    /// normal path and count why); the problems are returned for the log.
    ///
    /// With `trustingRecords`, an interface whose record shows it arranged
    /// for the same role, with the same MAC and veth peer as `interfaces`
    /// (the apply's snapshot of the kernel) shows now, is left as it is: an agent applies once per Docker event,
    /// and asking every container's eth0 again (a thread into its namespace
    /// and ethtool ioctls per port) made each start cost ~0.3 s at 1,000
    /// containers. Without it (the first apply of a process, whose DEVMAP is
    /// still empty, and a repairing resync) every interface is checked.
    @discardableResult
    func reconcile(
        desired: [UInt32: FastPathRequirement], trustingRecords: Bool = false,
        interfaces: InterfaceSnapshot
    ) throws -> [String] {
        var problems: [String] = []
        let peers = VethPeerLocator()
        let existing = try current()
        for (ifindex, requirement) in desired.sorted(by: { $0.key < $1.key }) {
            let link = interfaces.link(ifindex)
            if trustingRecords, let previous = existing[ifindex], let link,
                Self.isArranged(previous, as: requirement.role, now: link)
            {
                continue
            }
            do {
                guard let link else { throw DataplaneError.notFound("no interface with index \(ifindex)") }
                try arrange(ifindex, link, requirement, previous: existing[ifindex], peers: peers)
            } catch {
                problems.append("\(requirement.interface): \(error)")
                logger.warning("fast path: \(requirement.interface) is no XDP fast-path endpoint: \(error)")
            }
        }
        for (ifindex, record) in existing.sorted(by: { $0.key < $1.key }) where desired[ifindex] == nil {
            do {
                try release(ifindex, record, peers: peers)
            } catch {
                problems.append("if\(ifindex): \(error)")
                logger.warning("fast path: undoing changes on if\(ifindex): \(error)")
            }
        }
        return problems
    }

    /// Undoes everything recorded (unload, or the fast path switched off).
    func releaseAll() throws {
        let peers = VethPeerLocator()
        var problems: [String] = []
        for (ifindex, record) in try current().sorted(by: { $0.key < $1.key }) {
            do { try release(ifindex, record, peers: peers) } catch { problems.append("if\(ifindex): \(error)") }
        }
        guard problems.isEmpty else {
            throw DataplaneError.runtime("fast path: could not undo every change: " + problems.joined(separator: "; "))
        }
    }

    /// Whether `record` shows the interface arranged for `role` and the
    /// kernel still reports the same device (MAC) with the same veth peer.
    static func isArranged(
        _ record: FastPathInterfaceRecord, as role: FastPathRequirement.Role,
        now link: RouteNetlink.Link
    ) -> Bool {
        guard record.mac == link.address, record.peerIfindex == UInt32(bitPattern: link.link ?? 0) else { return false }
        switch role {
        case .external:
            return true
        case .containerPort(let fullChecksum):
            return record.has(BPFNET_FP_IF_NAPI) && record.has(BPFNET_FP_IF_FULL_CSUM) == fullChecksum
        }
    }

    // MARK: one interface

    private func write(_ ifindex: UInt32, _ record: FastPathInterfaceRecord) throws {
        try records.update(ifindex, record.cValue)
    }

    private func arrange(
        _ ifindex: UInt32, _ link: RouteNetlink.Link, _ requirement: FastPathRequirement,
        previous: FastPathInterfaceRecord?, peers: VethPeerLocator
    ) throws {
        var record = previous ?? FastPathInterfaceRecord()
        record.mac = link.address.count == 6 ? link.address : record.mac

        switch requirement.role {
        case .external:
            // Never changed, only inspected: the far side of an ext_if is the outside.
            var full = true
            if Ethtool.driver(link.name) == "veth" {
                let peer = try peers.peer(of: link)
                full = try peer.ethtool { try !Ethtool.get(peer.name, .txChecksum) }
                record.peerIfindex = UInt32(peer.index)
            }
            record.set(BPFNET_FP_IF_FULL_CSUM, full)
            try write(ifindex, record)

        case .containerPort(let fullChecksum):
            let peer = try peers.peer(of: link)
            record.peerIfindex = UInt32(peer.index)
            // GRO at the peer (NAPI): recorded before it is changed.
            let groOn = try peer.ethtool { try Ethtool.get(peer.name, .gro) }
            if !groOn {
                record.set(BPFNET_FP_IF_SET_GRO, true)
                try write(ifindex, record)
                try peer.ethtool { try Ethtool.set(peer.name, .gro, true) }
            }
            let napi = try peer.ethtool { try Ethtool.get(peer.name, .gro) }
            // Tx checksum offload off at the peer, for the XDP port hook only.
            var full = false
            if fullChecksum {
                let offloading = try peer.ethtool { try Ethtool.get(peer.name, .txChecksum) }
                if offloading {
                    record.set(BPFNET_FP_IF_SET_TX_CSUM, true)
                    try write(ifindex, record)
                    try peer.ethtool { try Ethtool.set(peer.name, .txChecksum, false) }
                }
                full = try peer.ethtool { try !Ethtool.get(peer.name, .txChecksum) }
            } else if record.has(BPFNET_FP_IF_SET_TX_CSUM) {
                // The hook went back to tc: give the container its offload back.
                record.set(BPFNET_FP_IF_FULL_CSUM, false)
                try write(ifindex, record)
                try peer.ethtool { try Ethtool.set(peer.name, .txChecksum, true) }
                record.set(BPFNET_FP_IF_SET_TX_CSUM, false)
            }
            record.set(BPFNET_FP_IF_FULL_CSUM, full)
            record.set(BPFNET_FP_IF_NAPI, napi)
            try write(ifindex, record)
            // The DEVMAP entry last, and only with NAPI in place.
            if napi {
                for map in targets { try map.update(ifindex, ifindex) }
            } else {
                for map in targets { _ = try map.delete(ifindex) }
                throw DataplaneError.runtime("GRO did not turn on at \(peer.name) in the container's namespace")
            }
        }
    }

    /// Takes the interface out of the fast path, then reverts its peer.
    private func release(_ ifindex: UInt32, _ record: FastPathInterfaceRecord, peers: VethPeerLocator) throws {
        for map in targets { _ = try? map.delete(ifindex) }
        var remaining = record
        remaining.set(BPFNET_FP_IF_NAPI, false)
        remaining.set(BPFNET_FP_IF_FULL_CSUM, false)
        if remaining.flags != record.flags { try write(ifindex, remaining) }
        if record.has(BPFNET_FP_IF_SET_GRO) || record.has(BPFNET_FP_IF_SET_TX_CSUM),
            let link = try RouteNetlink().link(index: Int32(bitPattern: ifindex)),
            let peer = try? peers.peer(of: link)
        {
            // Only while it is still the same pair (a recycled ifindex is someone else's).
            if record.peerIfindex == 0 || UInt32(peer.index) == record.peerIfindex {
                // A container that stops takes its eth0 with it, often between
                // the lookup and the ioctl: a device that is gone has nothing to undo.
                func revert(_ feature: Ethtool.Feature, to on: Bool) throws {
                    do {
                        try peer.ethtool { try Ethtool.set(peer.name, feature, on) }
                    } catch DataplaneError.system(_, errno: ENODEV) {
                        logger.debug("fast path: \(peer.name) went away before \(feature.name) was restored")
                    }
                }
                if record.has(BPFNET_FP_IF_SET_GRO) { try revert(.gro, to: false) }
                if record.has(BPFNET_FP_IF_SET_TX_CSUM) { try revert(.txChecksum, to: true) }
            }
        }
        _ = try records.delete(ifindex)
    }
}

extension VethPeer {
    /// Runs ethtool calls inside the peer's namespace. A failed ioctl becomes
    /// a `DataplaneError.system`, as every other failed system call of the
    /// dataplane is (`release` looks for ENODEV in it).
    fileprivate func ethtool<Value>(_ body: () throws -> Value) throws -> Value {
        try namespace.run {
            do {
                return try body()
            } catch let error as LinuxNetError {
                throw DataplaneError.system(error.action, errno: error.errno)
            }
        }
    }
}
