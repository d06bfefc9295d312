// SPDX-License-Identifier: Apache-2.0
//
// Facts about the host (the network namespace bpfnet runs in) that the pure
// policy compiler needs: interface indexes and the bridge's IPv4 address.
// Everything here reads the calling thread's network namespace, and runs on
// every apply: what lists every interface does so in one rtnetlink dump
// without statistics, never through a process or getifaddrs(3).

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

    /// The name of interface `index`, or nil when it does not exist (any more).
    public static func interfaceName(_ index: UInt32) -> String? {
        try? NetworkInterface.name(index: index)
    }

    /// Resolves what the compiler needs: the bridge (which must exist) with
    /// its IPv4 address, and the ifindex of every interface the policy names.
    /// Missing interfaces are reported by the compiler, all at once.
    public static func facts(for policy: Policy) throws(DataplaneError) -> HostFacts {
        guard let bridgeIndex = interfaceIndex(policy.bridge) else {
            throw .badInput("bridge \(policy.bridge): no such interface in this network namespace "
                + "— start dockerd (or create the bridge) first, or name another with --bridge")
        }
        let bridgeAddress = ipv4Address(of: policy.bridge).flatMap {
            IPv4InterfaceAddress(address: $0.address, prefixLength: $0.prefix.prefixLength)
        }
        // One RTM_GETLINK dump rather than an if_nametoindex(3) per port
        // (paid on every apply: ~24 ms against 30–40 ms at 1,000 containers);
        // per name only when the dump fails.
        let indexes = interfaceIndexes()
        var interfaces: [String: UInt32] = [:]
        for name in policy.containers.map(\.port) + policy.extInterfaces.map(\.name) {
            interfaces[name] = indexes.map { $0[name] } ?? interfaceIndex(name)
        }
        return HostFacts(bridgeIfindex: bridgeIndex, bridgeAddress: bridgeAddress, interfaces: interfaces)
    }

    /// Every interface of the namespace by name, from one RTM_GETLINK dump;
    /// nil when the dump fails.
    static func interfaceIndexes() -> [String: UInt32]? {
        guard let links = try? RouteNetlink().links() else { return nil }
        return Dictionary(links.map { ($0.name, UInt32(bitPattern: $0.index)) }, uniquingKeysWith: { first, _ in first })
    }

    /// Every container port must be a port of the bridge: attaching the port
    /// program to, say, the uplink by a typo would police the wrong traffic.
    public static func checkBridgePorts(_ bridge: String, _ containers: [Container]) throws(DataplaneError) {
        guard !containers.isEmpty else { return }
        let masters = bridgeMasters(of: containers.map(\.port))
        let strays = containers.filter { masters[$0.port] != bridge }.map { container in
            "\(container.name): port \(container.port) is " + (masters[container.port].map { "a port of \($0)" } ?? "not a bridge port")
        }
        guard strays.isEmpty else {
            throw .badInput("containers must sit on bridge \(bridge): " + strays.joined(separator: "; "))
        }
    }

    /// Interface name → the name of its master (bridge), as `ip link` shows
    /// them (IFLA_IFNAME, IFLA_MASTER), for `interfaces` (and, from a dump,
    /// others); empty when rtnetlink fails. (/sys/class/net would show the
    /// namespace sysfs was mounted in, not ours.)
    ///
    /// For a few interfaces (an agent's one new container) a request per name
    /// and per master: a dump lists every interface of the host, ~20 ms at
    /// 2,000 of them.
    static func bridgeMasters(of interfaces: [String]) -> [String: String] {
        guard let netlink = try? RouteNetlink() else { return [:] }
        if interfaces.count <= 16 {
            var masters: [String: String] = [:]
            for name in interfaces {
                guard let link = try? netlink.link(named: name), let master = link.master else { continue }
                masters[name] = (try? netlink.link(index: master))?.name ?? "if\(master)"
            }
            return masters
        }
        guard let links = try? netlink.links() else { return [:] }
        let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { first, _ in first })
        var masters: [String: String] = [:]
        for link in links {
            // `ip` names a master it cannot resolve "if<index>".
            if let master = link.master { masters[link.name] = names[master] ?? "if\(master)" }
        }
        return masters
    }

    /// The IPv4 addresses (with prefix) configured on each interface, named as
    /// getifaddrs(3) names them (the address's label: the interface's name, or
    /// an alias such as "docker0:1"), in the kernel's order, from one
    /// RTM_GETADDR dump. (getifaddrs itself first dumps every link with its
    /// statistics, ~35 ms at 2,000 interfaces.)
    public static func ipv4Addresses() -> [String: [(address: IPv4Address, prefix: IPv4CIDR)]] {
        var result: [String: [(address: IPv4Address, prefix: IPv4CIDR)]] = [:]
        guard let netlink = try? RouteNetlink(), let entries = try? netlink.addresses(family: AF_INET) else { return result }
        for entry in entries where entry.family == AF_INET {
            let bytes = entry.localAddress
            guard bytes.count == 4,
                  let name = entry.label ?? (try? netlink.link(index: entry.index))?.name else { continue }
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

    /// Reads /proc/sys/<path> (e.g. "net/ipv4/ip_forward"), trimmed; nil when absent.
    public static func sysctl(_ path: String) -> String? {
        (try? String(contentsOfFile: "/proc/sys/\(path)", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes /proc/sys/<path> in the current network namespace.
    public static func setSysctl(_ path: String, _ value: String) throws(DataplaneError) {
        guard let file = fopen("/proc/sys/\(path)", "w") else {
            throw DataplaneError.system("writing /proc/sys/\(path)", errno: errno)
        }
        defer { fclose(file) }
        guard fputs(value + "\n", file) >= 0, fflush(file) == 0 else {
            throw DataplaneError.system("writing \(value) to /proc/sys/\(path)", errno: errno)
        }
    }
}
