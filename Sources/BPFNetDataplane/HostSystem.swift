// SPDX-License-Identifier: Apache-2.0
//
// Facts about the host (the network namespace bpfnet runs in) that the pure
// policy compiler needs: interface indexes and the bridge's IPv4 address.
// Everything here reads the calling thread's network namespace.

import BPFNetCore
import Foundation

/// What the dataplane learns from the system before it compiles a policy.
public enum HostSystem {
    /// The ifindex of `name`, or nil when there is no such interface.
    public static func interfaceIndex(_ name: String) -> UInt32? {
        let index = if_nametoindex(name)
        return index == 0 ? nil : index
    }

    /// The name of interface `index`, or nil when it does not exist (any more).
    public static func interfaceName(_ index: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buffer) != nil else { return nil }
        return String(cString: buffer)
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
        guard let file = fopen("/proc/sys/\(path)", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 256)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        return String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
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
