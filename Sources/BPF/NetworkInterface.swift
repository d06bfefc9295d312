// SPDX-License-Identifier: Apache-2.0
//
// Interface names and indexes, in the calling thread's network namespace.
//
// libbpf's tc and XDP calls, `if_nametoindex` and test runs with an ingress
// interface all act in the network namespace of the calling *thread*. To
// attach in another namespace, call them inside LinuxNet's
// `NetworkNamespace.run { ... }`, which runs the closure on a thread of its
// own inside that namespace and never moves the caller's thread:
//
//     let namespace = try NetworkNamespace(named: "bpftest-42-1")
//     let attachment = try namespace.run {
//         try TCAttachment.attach(program, ifindex: NetworkInterface.index(named: "veth0"))
//     }
//
// Programs, maps and pins are not tied to a network namespace: load once,
// attach in as many namespaces as needed. LinuxNet is re-exported so that
// this, the way the attach API is meant to be used, needs `import BPF` only
// (as swift-nio's NIO re-exports NIOCore).

import CLibBPF
@_exported import LinuxNet
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Interface name ↔ index, in the calling thread's network namespace.
public enum NetworkInterface {
    /// The index of the interface `name` (`if_nametoindex`).
    public static func index(named name: String) throws -> UInt32 {
        let index = if_nametoindex(name)
        if index != 0 { return index }
        let errno = Glibc.errno == 0 ? ENODEV : Glibc.errno
        throw BPFError(
            operation: "if_nametoindex(\(name))", action: "looking up interface \(name)",
            errno: Errno(rawValue: errno),
            hint: errno == ENODEV
                ? "there is no interface named \(name) in this network namespace (see `ip link`)" : nil)
    }

    /// The name of the interface with index `index` (`if_indextoname`).
    public static func name(index: UInt32) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buffer) != nil else {
            throw BPFError(
                operation: "if_indextoname(\(index))", action: "looking up interface index \(index)",
                errno: Errno(rawValue: Glibc.errno == 0 ? ENXIO : Glibc.errno),
                hint: "there is no interface with index \(index) in this network namespace")
        }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
