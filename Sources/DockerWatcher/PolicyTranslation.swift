// SPDX-License-Identifier: Apache-2.0
//
// Inspected containers → the policy model's containers and links (docs/policy.md).
// A link is in force only while parent and child both run on the default bridge: Docker
// 20.10 and 29 leave a stopped child's rules behind (and give them to whoever gets its IP
// next) and do not follow a restarted child to its new IP. Recomputing links from the
// containers that run now does neither.

import BPFNetCore

/// Finds a running container's bridge port (the host-side veth) from its `State.Pid`.
/// `LinuxBridgePortLookup` is the real one; tests inject their own.
public typealias BridgePortResolver = @Sendable (_ pid: Int32) async throws -> String

/// A container left out of the policy although it runs on the default bridge, and why.
public struct DockerSkippedContainer: Hashable, Sendable, CustomStringConvertible {
    public var id: String
    public var name: String
    public var reason: String

    public init(id: String, name: String, reason: String) {
        self.id = id
        self.name = name
        self.reason = reason
    }

    public var description: String { "\(name) (\(id.prefix(12))): \(reason)" }
}

/// What Docker says the policy's containers and links are, at one moment.
public struct DockerPolicySnapshot: Hashable, Sendable {
    /// Sorted by name.
    public var containers: [Container]
    /// Sorted by parent, child, alias.
    public var links: [Link]
    public var skipped: [DockerSkippedContainer]

    public init(containers: [Container] = [], links: [Link] = [], skipped: [DockerSkippedContainer] = []) {
        self.containers = containers
        self.links = links
        self.skipped = skipped
    }

    /// `policy` with its containers and links replaced by Docker's; every other setting kept.
    public func applied(to policy: Policy) -> Policy {
        var result = policy
        result.containers = containers
        result.links = links
        return result
    }
}

public enum DockerPolicyTranslator {
    /// Translates with known ports. `ports` maps container IDs to their host-side veth names;
    /// a running bridge container without an entry is skipped.
    public static func snapshot(of containers: [DockerContainer], ports: [String: String]) -> DockerPolicySnapshot {
        snapshot(of: containers) { container in
            if let port = ports[container.id] { return .found(port) }
            return .failed("host-side port unknown")
        }
    }

    /// Resolves each running bridge container's port from its pid (at most
    /// `maxConcurrentLookups` at a time), then translates. A container whose lookup fails is
    /// skipped with the lookup's error: it may have stopped meanwhile.
    public static func snapshot(
        of containers: [DockerContainer], resolvePort: @escaping BridgePortResolver,
        maxConcurrentLookups: Int = 8
    ) async -> DockerPolicySnapshot {
        let wanted = containers.filter { $0.isRunningOnDefaultBridge && $0.pid != nil && $0.bridge?.mac != nil }
        var ports: [String: PortLookup] = [:]
        await withTaskGroup(of: (String, PortLookup).self) { group in
            var next = wanted.makeIterator()
            func addNext() -> Bool {
                guard let container = next.next(), let pid = container.pid else { return false }
                group.addTask {
                    do {
                        return (container.id, .found(try await resolvePort(pid)))
                    } catch {
                        return (container.id, .failed("host-side port of pid \(pid) not found: \(error)"))
                    }
                }
                return true
            }
            for _ in 0..<max(1, maxConcurrentLookups) {
                if !addNext() { break }
            }
            while let (id, result) = await group.next() {
                ports[id] = result
                _ = addNext()
            }
        }
        return snapshot(of: containers) { ports[$0.id] ?? .failed("host-side port unknown") }
    }

    /// The links among `containers` that are in force: parent and child both running on the
    /// default bridge, the parent in the default bridge's network mode.
    public static func links(among containers: [DockerContainer]) -> [Link] {
        let running = containers.filter(\.isRunningOnDefaultBridge)
        return links(parents: running, childNames: Set(running.map(\.name)))
    }

    static func links(parents: [DockerContainer], childNames: Set<String>) -> [Link] {
        var result = Set<Link>()
        for parent in parents where parent.usesDefaultBridgeMode {
            for declaration in parent.links
            where declaration.child != parent.name && childNames.contains(declaration.child) {
                // The container whose inspect holds the entry is the parent, whatever the entry spells.
                result.insert(Link(parent: parent.name, child: declaration.child, alias: declaration.alias))
            }
        }
        return result.sorted { ($0.parent, $0.child, $0.alias ?? "") < ($1.parent, $1.child, $1.alias ?? "") }
    }

    private static func snapshot(
        of containers: [DockerContainer],
        port: (DockerContainer) -> PortLookup
    ) -> DockerPolicySnapshot {
        var included: [DockerContainer] = []
        var models: [Container] = []
        var skipped: [DockerSkippedContainer] = []
        var ipOwners: [IPv4Address: String] = [:]
        // Name order makes the outcome independent of the order Docker listed them in.
        for container in containers.sorted(by: { ($0.name, $0.id) < ($1.name, $1.id) })
        where container.isRunningOnDefaultBridge {
            func skip(_ reason: String) {
                skipped.append(DockerSkippedContainer(id: container.id, name: container.name, reason: reason))
            }
            guard let bridge = container.bridge else { continue }
            guard let mac = bridge.mac else {
                skip("no MAC address on the default bridge")
                continue
            }
            guard container.pid != nil else {
                skip("running without a State.Pid")
                continue
            }
            if let owner = ipOwners[bridge.ip] {
                // Two inspects taken at different moments; the next resync settles it.
                skip("\(bridge.ip) is already held by \(owner)")
                continue
            }
            let portName: String
            switch port(container) {
            case .found(let name): portName = name
            case .failed(let reason):
                skip(reason)
                continue
            }
            ipOwners[bridge.ip] = container.name
            included.append(container)
            models.append(
                Container(
                    name: container.name, ip: bridge.ip, mac: mac, port: portName,
                    exposed: container.exposedPorts, published: container.publishedPorts))
        }
        let links = links(parents: included, childNames: Set(included.map(\.name)))
        return DockerPolicySnapshot(containers: models, links: links, skipped: skipped)
    }
}

/// The outcome of finding one container's port.
enum PortLookup: Sendable {
    case found(String)
    case failed(String)
}
