// SPDX-License-Identifier: Apache-2.0
//
// Facts about the host (the network namespace bpfnet runs in) that the pure
// policy compiler needs: interface indexes and the bridge's IPv4 address.
// Everything here reads the calling thread's network namespace, and runs on
// every apply: the interfaces come from one rtnetlink dump per apply
// (InterfaceSnapshot), never from a process or getifaddrs(3).

import BPF
import BPFNetCore
import Foundation
import LinuxNet

/// What the dataplane learns from the system before it compiles a policy.
public enum HostSystem {
    /// The ifindex of `name`, or nil when there is no such interface.
    public static func interfaceIndex(_ name: String) -> UInt32? {
        try? NetworkInterface.index(named: name)
    }

    /// Which of `names` exist now: one RTM_GETLINK dump rather than an
    /// if_nametoindex(3) each (per name only if the dump fails).
    public static func existingInterfaces(among names: [String]) -> Set<String> {
        guard let interfaces = try? InterfaceSnapshot.take() else {
            return Set(names.filter { interfaceIndex($0) != nil })
        }
        return Set(names.filter { interfaces.index(of: $0) != nil })
    }

    /// The name of interface `index`, or nil when it does not exist (any more).
    public static func interfaceName(_ index: UInt32) -> String? {
        try? NetworkInterface.name(index: index)
    }

    /// What every backend's apply starts with: one look at the host's
    /// interfaces, the facts the compiler needs and the compiled map state.
    /// A policy the compiler rejects is bad input (exit code 2).
    static func compile(_ policy: Policy) throws(DataplaneError) -> CompiledPolicy {
        let interfaces = try InterfaceSnapshot.take()
        let facts = try facts(for: policy, interfaces: interfaces)
        do {
            return CompiledPolicy(
                interfaces: interfaces, facts: facts, state: try PolicyCompiler.compile(policy, facts: facts))
        } catch {
            throw .badInput(error.description)
        }
    }

    /// Resolves what the compiler needs: the bridge (which must exist) with
    /// its IPv4 address, and the ifindex of every interface the policy names.
    /// Missing interfaces are reported by the compiler, all at once.
    static func facts(for policy: Policy, interfaces: InterfaceSnapshot) throws(DataplaneError) -> HostFacts {
        guard let bridgeIndex = interfaces.index(of: policy.bridge) else {
            throw .badInput(
                "bridge \(policy.bridge): no such interface in this network namespace "
                    + "— start dockerd (or create the bridge) first, or name another with --bridge")
        }
        let addresses = ipv4Addresses()
        func address(of bridge: String) -> IPv4InterfaceAddress? {
            addresses[bridge]?.first.flatMap {
                IPv4InterfaceAddress(address: $0.address, prefixLength: $0.prefix.prefixLength)
            }
        }
        var indexes: [String: UInt32] = [:]
        for name in policy.containers.map(\.port) + policy.extInterfaces.map(\.name) {
            indexes[name] = interfaces.index(of: name)
        }
        var facts = HostFacts(
            bridgeIfindex: bridgeIndex, bridgeAddress: address(of: policy.bridge),
            bridgeMAC: interfaces.mac(of: bridgeIndex), interfaces: indexes)
        for network in policy.networks {
            guard let index = interfaces.index(of: network.bridge) else { continue }
            facts.networks[network.name] = BridgeFacts(
                ifindex: index, address: address(of: network.bridge), mac: interfaces.mac(of: index),
                ports: interfaces.ports(ofBridge: index).keys.sorted())
        }
        return facts
    }

    /// Every container port must be a port of the bridge: attaching the port
    /// program to, say, the uplink by a typo would police the wrong traffic.
    static func checkBridgePorts(
        _ policy: Policy, _ containers: [Container],
        interfaces: InterfaceSnapshot
    ) throws(DataplaneError) {
        let strays = containers.filter { interfaces.master(of: $0.port) != policy.network(of: $0)?.bridge }.map {
            container in
            "\(container.name): port \(container.port) is "
                + (interfaces.master(of: container.port).map { "a port of \($0)" } ?? "not a bridge port")
        }
        guard strays.isEmpty else {
            throw .badInput(
                "containers must sit on their network's bridge (\(policy.bridges.joined(separator: ", "))): "
                    + strays.joined(separator: "; "))
        }
    }

    /// The IPv4 addresses (with prefix) configured on each interface, named as
    /// getifaddrs(3) names them (the address's label: the interface's name, or
    /// an alias such as "docker0:1"), in the kernel's order, from one
    /// RTM_GETADDR dump. (getifaddrs itself first dumps every link with its
    /// statistics, ~35 ms at 2,000 interfaces.)
    public static func ipv4Addresses() -> [String: [(address: IPv4Address, prefix: IPv4CIDR)]] {
        var result: [String: [(address: IPv4Address, prefix: IPv4CIDR)]] = [:]
        guard let netlink = try? RouteNetlink(), let entries = try? netlink.addresses(family: AF_INET) else {
            return result
        }
        for entry in entries where entry.family == AF_INET {
            let bytes = entry.localAddress
            guard bytes.count == 4,
                let name = entry.label ?? (try? netlink.link(index: entry.index))?.name
            else { continue }
            let address = IPv4Address(bytes[0], bytes[1], bytes[2], bytes[3])
            guard let prefix = IPv4CIDR(address: address, prefixLength: min(entry.prefixLength, 32)) else { continue }
            result[name, default: []].append((address, prefix))
        }
        return result
    }

    /// The first IPv4 address of `interface` and its subnet.
    public static func ipv4Address(of interface: String) -> (address: IPv4Address, prefix: IPv4CIDR)? {
        ipv4Addresses()[interface]?.first
    }

    /// Writes /proc/sys/<path> (e.g. "net/ipv4/ip_forward") in the current network namespace.
    public static func setSysctl(_ path: String, _ value: String) throws(DataplaneError) {
        do {
            try Sysctl.write(path, value)
        } catch {
            throw .system(error.action, errno: error.errno)
        }
    }
}

/// A policy compiled against the host, with the interface snapshot it was compiled from.
struct CompiledPolicy {
    var interfaces: InterfaceSnapshot
    var facts: HostFacts
    var state: MapState
}

/// The interfaces as of the last look, dumped again only when the kernel has
/// announced a change (RTMGRP_LINK) since: a metrics scrape every second would
/// otherwise dump a thousand interfaces (~10 ms of CPU) to find that none
/// changed. The notification socket belongs to the namespace of the thread
/// that first asks, as the dump does.
final class InterfaceSnapshotCache {
    private var monitor: LinkMonitor?
    private var snapshot: InterfaceSnapshot?

    func current() throws(DataplaneError) -> InterfaceSnapshot {
        if monitor == nil { monitor = try? LinkMonitor() }
        // Drained before the dump, so a change after it stays queued for the next call.
        let changed: Bool?
        do {
            changed = try monitor?.drainPending()
        } catch {
            monitor = nil
            changed = nil
        }
        if let snapshot, changed == false { return snapshot }
        let fresh = try InterfaceSnapshot.take()
        snapshot = fresh
        return fresh
    }
}

/// Every interface of the namespace from one RTM_GETLINK dump (no statistics),
/// taken once per apply and read by each step that needs names, indexes,
/// masters, MACs or veth peers: one dump costs ~20 ms at 2,000 interfaces.
struct InterfaceSnapshot {
    private let byName: [String: RouteNetlink.Link]
    private let byIndex: [UInt32: RouteNetlink.Link]

    init(_ links: [RouteNetlink.Link]) {
        byName = Dictionary(links.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        byIndex = Dictionary(links.map { (UInt32(bitPattern: $0.index), $0) }, uniquingKeysWith: { first, _ in first })
    }

    static func take() throws(DataplaneError) -> InterfaceSnapshot {
        do {
            return InterfaceSnapshot(try RouteNetlink().links())
        } catch {
            throw .system("listing the network interfaces (RTM_GETLINK)", errno: error.errno)
        }
    }

    func index(of name: String) -> UInt32? {
        byName[name].map { UInt32(bitPattern: $0.index) }
    }

    func link(_ index: UInt32) -> RouteNetlink.Link? { byIndex[index] }

    /// The interface's MAC (`.zero` when it has none of six bytes).
    func mac(of index: UInt32) -> MACAddress {
        let hardware = byIndex[index]?.address ?? []
        guard hardware.count == 6 else { return .zero }
        return MACAddress(hardware[0], hardware[1], hardware[2], hardware[3], hardware[4], hardware[5])
    }

    /// Every port of the bridge with ifindex `bridge`, by ifindex.
    func ports(ofBridge bridge: UInt32) -> [UInt32: String] {
        var result: [UInt32: String] = [:]
        for (index, link) in byIndex where link.master.map({ UInt32(bitPattern: $0) }) == bridge {
            result[index] = link.name
        }
        return result
    }

    /// The name of `name`'s master (its bridge) as `ip link` shows it:
    /// "if<index>" when the master is not in the snapshot.
    func master(of name: String) -> String? {
        guard let master = byName[name]?.master else { return nil }
        return byIndex[UInt32(bitPattern: master)]?.name ?? "if\(master)"
    }
}
