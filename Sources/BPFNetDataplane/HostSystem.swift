// SPDX-License-Identifier: Apache-2.0
//
// Facts about the host (the network namespace bpfnet runs in) that the pure
// policy compiler needs: interface indexes and the bridge's IPv4 address.
// Everything here reads the calling thread's network namespace.

import BPF
import BPFNetCore
import Foundation
import NetLab

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
        var interfaces: [String: UInt32] = [:]
        for name in policy.containers.map(\.port) + policy.extInterfaces.map(\.name) {
            interfaces[name] = interfaceIndex(name)
        }
        return HostFacts(bridgeIfindex: bridgeIndex, bridgeAddress: bridgeAddress, interfaces: interfaces)
    }

    /// Every container port must be a port of the bridge: attaching the port
    /// program to, say, the uplink by a typo would police the wrong traffic.
    public static func checkBridgePorts(_ bridge: String, _ containers: [Container]) throws(DataplaneError) {
        guard !containers.isEmpty else { return }
        let masters = bridgeMasters()
        let strays = containers.filter { masters[$0.port] != bridge }.map { container in
            "\(container.name): port \(container.port) is " + (masters[container.port].map { "a port of \($0)" } ?? "not a bridge port")
        }
        guard strays.isEmpty else {
            throw .badInput("containers must sit on bridge \(bridge): " + strays.joined(separator: "; "))
        }
    }

    /// Interface name → the name of its master (bridge), from `ip -j link`.
    /// (/sys/class/net would show the namespace sysfs was mounted in, not ours.)
    static func bridgeMasters() -> [String: String] {
        guard let result = try? ProcessRunner.runChecked(Command(["ip", "-j", "link", "show"], timeout: .seconds(10))),
              let links = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]]
        else { return [:] }
        var masters: [String: String] = [:]
        for link in links {
            if let name = link["ifname"] as? String, let master = link["master"] as? String { masters[name] = master }
        }
        return masters
    }

    /// The IPv4 addresses (with prefix) configured on each interface, from getifaddrs(3).
    public static func ipv4Addresses() -> [String: [(address: IPv4Address, prefix: IPv4CIDR)]] {
        var result: [String: [(address: IPv4Address, prefix: IPv4CIDR)]] = [:]
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return result }
        defer { freeifaddrs(head) }
        var cursor = head
        while let entry = cursor?.pointee {
            defer { cursor = entry.ifa_next }
            guard let addr = entry.ifa_addr, addr.pointee.sa_family == sa_family_t(AF_INET),
                  let mask = entry.ifa_netmask else { continue }
            let address = addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                IPv4Address(networkOrder: $0.pointee.sin_addr.s_addr)
            }
            let netmask = mask.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                UInt32(bigEndian: $0.pointee.sin_addr.s_addr)
            }
            let length = UInt8(netmask.nonzeroBitCount)
            guard let prefix = IPv4CIDR(address: address, prefixLength: length) else { continue }
            result[String(cString: entry.ifa_name), default: []].append((address, prefix))
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
