// SPDX-License-Identifier: Apache-2.0
//
// Finding a container's bridge port, the host-side end of its veth: the container's eth0 has
// an iflink (IFLA_LINK) that is the ifindex of its peer in the bridge's namespace, and that
// peer's name is the port. A container on several networks has one veth per network: each
// endpoint's is the interface inside whose MAC is the endpoint's (`endpointPorts`). Both are asked of the kernel over rtnetlink (LinuxNet's
// RouteNetlink). A netlink socket answers for the namespace it was created in, so each socket
// is created on a LinuxNet namespace thread that has entered the right namespace; the thread
// ends with the lookup and no thread of Swift's cooperative pool ever changes namespace. No
// subprocess: a full resync of 1,000 containers costs 1,000 thread starts, not 1,000 `nsenter`s.

#if os(Linux)
import BPFNetCore
import Foundation
import Glibc
import LinuxNet

/// A container's port on the bridge.
public struct BridgePort: Hashable, Sendable {
    /// The host-side veth's name, e.g. "veth3f2a1b0".
    public var name: String
    /// Its ifindex in the bridge's namespace.
    public var ifindex: Int32
    /// The device it is enslaved to (IFLA_MASTER), normally the bridge; nil when none.
    public var masterIfindex: Int32?
    /// The ifindex of the container's own end inside its namespace.
    public var containerIfindex: Int32

    public init(name: String, ifindex: Int32, masterIfindex: Int32?, containerIfindex: Int32) {
        self.name = name
        self.ifindex = ifindex
        self.masterIfindex = masterIfindex
        self.containerIfindex = containerIfindex
    }
}

public struct BridgePortLookupError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Looks up bridge ports from container pids. Needs CAP_SYS_ADMIN (setns) and runs as root
/// in the agent.
public struct LinuxBridgePortLookup: Sendable {
    /// The network namespace that holds the bridge, e.g. "/run/netns/NAME"; nil means the
    /// calling process's own (the agent runs in the host's namespace next to docker0).
    public var bridgeNamespace: String?
    /// The container's interface on the default bridge (Docker names it eth0).
    public var containerInterface: String

    public init(bridgeNamespace: String? = nil, containerInterface: String = "eth0") {
        self.bridgeNamespace = bridgeNamespace
        self.containerInterface = containerInterface
    }

    /// The closure form `DockerPolicyTranslator` takes.
    public var resolver: BridgePortResolver {
        let lookup = self
        return { pid in try await lookup.hostPort(forPID: pid) }
    }

    /// The closure form `DockerPolicyTranslator` and the agent take for containers on any
    /// number of networks: each endpoint's port found by its MAC.
    public var endpointResolver: EndpointPortResolver {
        let lookup = self
        return { pid, macs in try await lookup.endpointPorts(forPID: pid, macs: macs).mapValues(\.name) }
    }

    /// The ports of the container whose process is `pid`, by the MAC of its interface: for
    /// every veth in its namespace whose MAC is one of `macs` (Docker's endpoint MACs), the
    /// peer on the host. One namespace thread for all of them; a MAC not found is left out.
    public func endpointPorts(forPID pid: Int32, macs: [MACAddress]) async throws -> [MACAddress: BridgePort] {
        let lookup = self
        let wanted = Set(macs)
        do {
            return try await NamespaceThread.run(named: "bpfnet-netns") {
                try lookup.lookUpOnThisThread(pid: pid, macs: wanted)
            }
        } catch let error as LinuxNetError {
            throw BridgePortLookupError(error.description)
        }
    }

    /// The host-side veth name of the container whose process is `pid`.
    public func hostPort(forPID pid: Int32) async throws -> String {
        try await bridgePort(forPID: pid).name
    }

    public func bridgePort(forPID pid: Int32) async throws -> BridgePort {
        let lookup = self
        do {
            return try await NamespaceThread.run(named: "bpfnet-netns") { try lookup.lookUpOnThisThread(pid: pid) }
        } catch let error as LinuxNetError {
            // rtnetlink ("netlink socket: Permission denied"), or no thread to run on.
            throw BridgePortLookupError(error.description)
        }
    }

    /// Runs on a namespace thread of its own, which it leaves in the container's namespace.
    private func lookUpOnThisThread(pid: Int32) throws -> BridgePort {
        if let bridgeNamespace {
            try enterNetworkNamespace(bridgeNamespace, what: "the bridge's namespace")
        }
        let hostSocket = try RouteNetlink()
        try enterNetworkNamespace("/proc/\(pid)/ns/net", what: "the namespace of pid \(pid)")
        let containerSocket = try RouteNetlink()

        guard let inner = try containerSocket.link(named: containerInterface) else {
            throw BridgePortLookupError("no interface \(containerInterface) in the network namespace of pid \(pid)")
        }
        guard let peer = inner.link, peer != 0, peer != inner.index else {
            throw BridgePortLookupError("\(containerInterface) in the namespace of pid \(pid) has no peer (not a veth)")
        }
        let searchedNamespace = bridgeNamespace ?? "the host's namespace"
        guard let outer = try hostSocket.link(index: peer) else {
            throw BridgePortLookupError(
                "the peer of \(containerInterface) of pid \(pid) (ifindex \(peer)) is not in \(searchedNamespace)")
        }
        // Another namespace may hold an interface with the same ifindex: check it points back.
        guard outer.link == inner.index else {
            throw BridgePortLookupError(
                "ifindex \(peer) in \(searchedNamespace) is \(outer.name), which is not the peer of \(containerInterface) of pid \(pid)"
            )
        }
        return BridgePort(
            name: outer.name, ifindex: outer.index, masterIfindex: outer.master,
            containerIfindex: inner.index)
    }
}

extension LinuxBridgePortLookup {
    /// Runs on a namespace thread of its own, which it leaves in the container's namespace.
    fileprivate func lookUpOnThisThread(pid: Int32, macs: Set<MACAddress>) throws -> [MACAddress: BridgePort] {
        if let bridgeNamespace {
            try enterNetworkNamespace(bridgeNamespace, what: "the bridge's namespace")
        }
        let hostSocket = try RouteNetlink()
        try enterNetworkNamespace("/proc/\(pid)/ns/net", what: "the namespace of pid \(pid)")
        let containerSocket = try RouteNetlink()
        var result: [MACAddress: BridgePort] = [:]
        for inner in try containerSocket.links() {
            guard inner.address.count == 6, let peer = inner.link, peer != 0, peer != inner.index else { continue }
            let a = inner.address
            let mac = MACAddress(a[0], a[1], a[2], a[3], a[4], a[5])
            guard macs.contains(mac), let outer = try hostSocket.link(index: peer),
                // Another namespace may hold an interface with the same ifindex: check it points back.
                outer.link == inner.index
            else { continue }
            result[mac] = BridgePort(
                name: outer.name, ifindex: outer.index, masterIfindex: outer.master, containerIfindex: inner.index)
        }
        return result
    }
}

// MARK: - entering namespaces, in this lookup's words

private func enterNetworkNamespace(_ path: String, what: String) throws {
    let namespace: NetworkNamespace
    do throws(LinuxNetError) {
        namespace = try NetworkNamespace(path: path)
    } catch {
        let hint = error.errno == ENOENT ? " (the process is gone)" : ""
        throw BridgePortLookupError("opening \(path), \(what): \(errnoText(error.errno))\(hint)")
    }
    do throws(LinuxNetError) {
        try NamespaceThread.enter(namespace)
    } catch {
        let hint = error.errno == EPERM ? " — run as root (CAP_SYS_ADMIN)" : ""
        throw BridgePortLookupError("setns into \(path), \(what): \(errnoText(error.errno))\(hint)")
    }
}
#endif
