// SPDX-License-Identifier: Apache-2.0
//
// What the agent asks of the host it runs on (the network namespace that
// holds Docker's bridge): does an interface exist, what address has the
// bridge, and are there traces of Docker's own firewall rules. A protocol so
// the agent's tests can run without root or interfaces.

import BPFNetCore
import BPFNetDataplane
import Foundation
import LinuxNet
import Synchronization

public protocol AgentHost: Sendable {
    /// Which of `names` are interfaces that exist right now (asked once per
    /// policy build, for every tracked container's port).
    func existingInterfaces(among names: [String]) -> Set<String>
    /// The first IPv4 address of `interface` with its prefix.
    func ipv4Address(of interface: String) -> IPv4InterfaceAddress?
    /// Signs that dockerd programs the firewall here (it runs, or ran, with
    /// `--iptables=true`): its chains would police container traffic next to
    /// bpfnet. Empty when there are none (or they cannot be looked at).
    func dockerFirewallTraces() -> [String]
    /// Interfaces joining a bridge as they do, for the agent to attach the
    /// port program at once; nil where the host cannot tell (the agent then
    /// attaches with its next apply, and the guard holds the port until then).
    func bridgePortEvents() -> AsyncStream<BridgePortEvent>?
    /// Docker's userland proxy processes visible from here (the agent shares
    /// the host's pid namespace with dockerd on a normal host).
    func dockerProxies() -> [DockerProxy]
    /// Whether the kernel publishes its BTF (/sys/kernel/btf/vmlinux).
    var hasKernelBTF: Bool { get }
}

extension AgentHost {
    public func bridgePortEvents() -> AsyncStream<BridgePortEvent>? { nil }
    public func dockerProxies() -> [DockerProxy] { [] }
    public var hasKernelBTF: Bool { true }
}

/// What the link monitor tells the agent.
public enum BridgePortEvent: Hashable, Sendable {
    /// `port` joined the bridge `bridge` (it was created as its port, or moved onto it).
    case joined(port: String, bridge: String)
    /// An interface the monitor had not seen appeared (an external
    /// interface the settings name may have come up).
    case appeared(name: String)
    /// Notifications were lost: any port may have joined.
    case lost
}

/// The host the process runs in.
public struct SystemAgentHost: AgentHost {
    public init() {}

    public func existingInterfaces(among names: [String]) -> Set<String> {
        HostSystem.existingInterfaces(among: names)
    }

    public func ipv4Address(of interface: String) -> IPv4InterfaceAddress? {
        HostSystem.ipv4Address(of: interface).flatMap {
            IPv4InterfaceAddress(address: $0.address, prefixLength: $0.prefix.prefixLength)
        }
    }

    /// Every docker-proxy process in /proc, from its command line.
    public func dockerProxies() -> [DockerProxy] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { $0.allSatisfy(\.isNumber) }.compactMap { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else {
                return nil
            }
            let arguments = data.split(separator: 0, omittingEmptySubsequences: false).map {
                String(decoding: $0, as: UTF8.self)
            }
            return DockerProxy(arguments: arguments)
        }
    }

    public var hasKernelBTF: Bool { FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") }

    /// Docker's iptables chains (20.10–29 iptables backend) and its nftables
    /// table (29's nftables backend) in this network namespace.
    public func dockerFirewallTraces() -> [String] {
        var traces: [String] = []
        if let result = try? ProcessRunner.run(Command(["iptables-save"], timeout: .seconds(10))), result.succeeded {
            let chains = result.stdout.split(separator: "\n")
                .filter { $0.hasPrefix(":DOCKER") }
                .compactMap { $0.dropFirst().split(separator: " ").first.map(String.init) }
            if !chains.isEmpty {
                traces.append("iptables has Docker's chains (\(Array(Set(chains)).sorted().joined(separator: ", ")))")
            }
        }
        if let result = try? ProcessRunner.run(Command(["nft", "list", "tables"], timeout: .seconds(10))),
            result.succeeded,
            result.stdout.contains("docker-bridges")
        {
            traces.append("nftables has Docker's table docker-bridges")
        }
        return traces
    }

    /// RTMGRP_LINK notifications, read on a thread of their own (a blocking
    /// read must not hold one of the cooperative pool's threads), reduced to
    /// the moments an interface gets a master.
    public func bridgePortEvents() -> AsyncStream<BridgePortEvent>? {
        guard let monitor = try? LinkMonitor() else { return nil }
        let (stream, continuation) = AsyncStream<BridgePortEvent>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let stopped = Mutex(false)
        continuation.onTermination = { _ in stopped.withLock { $0 = true } }
        let thread = Thread {
            var tracker = LinkChangeTracker()
            while !stopped.withLock({ $0 }) {
                let events: [LinkMonitor.Event]
                do {
                    events = try monitor.next(timeout: .milliseconds(500))
                } catch {
                    Thread.sleep(forTimeInterval: 0.5)
                    continue
                }
                for change in tracker.changes(from: events) {
                    switch change {
                    case .appeared(let name):
                        continuation.yield(.appeared(name: name))
                    case .joined(let port, let masterIndex):
                        var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
                        guard if_indextoname(UInt32(bitPattern: masterIndex), &name) != nil else { continue }
                        continuation.yield(.joined(port: port, bridge: String(cString: name)))
                    case .lost:
                        continuation.yield(.lost)
                    }
                }
            }
            continuation.finish()
        }
        thread.name = "bpfnet-links"
        thread.start()
        return stream
    }
}
