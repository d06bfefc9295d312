// SPDX-License-Identifier: Apache-2.0
//
// The containers the agent follows and how it learns about them: Docker's
// inspect answer (a 404 is an answer too) and the container's bridge port on
// the host. A port lookup enters the container's network namespace, so what it
// found is kept per container and reused while the process and the endpoint
// stay the same. What is done with the tracked set (building the policy,
// applying it) is the agent's.

import BPFNetCore
import DockerWatcher
import Logging

/// Owned by the agent's actor and used only on it: its async methods run in
/// the caller's isolation, so it needs no lock and adds no hop.
final class ContainerTracker {
    /// One container's inspect: Docker's answer, or why there is none.
    enum Inspection: Sendable {
        case found(DockerContainer)
        /// 404: the container was removed meanwhile.
        case notFound
        /// Any other refusal; the session goes on.
        case failed(String)

        var isNotFound: Bool {
            if case .notFound = self { true } else { false }
        }
    }

    /// A container's bridge ports by network name, or why they are unknown.
    struct PortOutcome {
        var ports: [String: String] = [:]
        var problem: String?
    }

    struct PortLookupFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Ports found, with what they were found for: another process or other endpoints mean
    /// other veths.
    struct CachedPorts {
        var pid: Int32
        var endpoints: [String: String?]
        var ports: [String: String]
    }

    /// Containers running with an address on some network, by ID.
    private(set) var containers: [String: TrackedContainer] = [:]
    /// Bridge ports found, by container ID.
    private var portCache: [String: CachedPorts] = [:]

    private let docker: any DockerSource
    private let resolvePorts: EndpointPortResolver
    /// Inspects (and port lookups) in flight at once.
    private let concurrency: Int
    private let logger: Logger

    init(docker: any DockerSource, resolvePorts: @escaping EndpointPortResolver, concurrency: Int, logger: Logger) {
        self.docker = docker
        self.resolvePorts = resolvePorts
        self.concurrency = concurrency
        self.logger = logger
    }

    /// The tracked containers by name.
    var byName: [String: TrackedContainer] {
        Dictionary(containers.values.map { ($0.container.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    // MARK: Asking Docker

    /// Inspects `ids` (at most `concurrency` at a time). A 404 is an answer;
    /// losing the daemon ends the session (throws).
    func inspect(_ ids: [String], isolation: isolated (any Actor)? = #isolation) async throws -> [String: Inspection] {
        let docker = self.docker
        return try await ids.concurrentMap(limit: concurrency) { id -> Inspection in
            do {
                return .found(try await docker.inspectContainer(id))
            } catch let error as DockerError where error.isNotFound {
                return .notFound
            } catch let error as DockerError where !Self.endsSession(error) {
                return .failed(error.description)
            }
        }
    }

    /// Errors after which the session cannot go on (the daemon is gone or the stream broke).
    static func endsSession(_ error: DockerError) -> Bool {
        switch error {
        case .daemonUnreachable, .transport, .timedOut, .eventStreamEnded: true
        case .invalidHost, .httpStatus, .decoding: false
        }
    }

    // MARK: Folding answers in

    /// Folds the inspect answers that events asked for into the tracked set.
    /// - Parameter quietNotFound: a 404 for a container never tracked is not worth a line.
    /// - Returns: whether an inspect failed (what was known of it is kept; a resync should look again).
    func take(
        _ inspected: [String: Inspection], quietNotFound: Bool = false,
        isolation: isolated (any Actor)? = #isolation
    ) async -> Bool {
        var running: [DockerContainer] = []
        var failed = false
        for (key, result) in inspected.sorted(by: { $0.key < $1.key }) {
            switch result {
            case .found(let container):
                if container.isRunningOnANetwork {
                    running.append(container)
                } else if let gone = containers.removeValue(forKey: container.id) {
                    logger.info("container \(gone.container.name) is no longer running on a network: its rules go")
                }
            case .notFound:
                if let gone = containers.removeValue(forKey: key) {
                    logger.info("container \(gone.container.name) is gone (inspect: 404): its rules go")
                } else if !quietNotFound {
                    let nothingToDo =
                        "container \(key.prefix(12)) was removed before it could be inspected (404); "
                        + "nothing to do"
                    logger.info("\(nothingToDo)")
                }
            case .failed(let reason):
                logger.warning("inspecting container \(key.prefix(12)) failed: \(reason); keeping what was known of it")
                failed = true
            }
        }
        for (container, lookup) in await lookUpPorts(running) {
            let before = containers[container.id]
            containers[container.id] = TrackedContainer(
                container: container, ports: lookup.ports,
                portProblem: lookup.problem)
            // What the decoder skipped (a link or port key it could not read), once per change.
            if !container.warnings.isEmpty && before?.container.warnings != container.warnings {
                logger.warning("container \(container.name): \(container.warnings.joined(separator: "; "))")
            }
            if before?.container.networks.mapValues(\.ip) != container.networks.mapValues(\.ip)
                || before?.ports != lookup.ports
            {
                let endpoints = container.networks.sorted { $0.key < $1.key }.map { network, endpoint in
                    "\(endpoint.ip) on port \(lookup.ports[network] ?? "?")"
                        + (network == dockerDefaultBridgeNetwork ? "" : " (network \(network))")
                }
                let problem = lookup.problem.map { " (\($0))" } ?? ""
                logger.info("container \(container.name) runs at \(endpoints.joined(separator: ", "))\(problem)")
            }
        }
        return failed
    }

    /// Replaces the tracked set with what a full resync found: the `listed`
    /// containers Docker answered for, plus what was known of those whose
    /// inspect failed (better the last good state than none).
    /// - Returns: the names of the containers no longer running.
    func replace(
        listed ids: [String], inspected: [String: Inspection],
        isolation: isolated (any Actor)? = #isolation
    ) async -> [String] {
        var fresh: [String: TrackedContainer] = [:]
        var running: [DockerContainer] = []
        for id in ids {
            switch inspected[id] {
            case .found(let container)?:
                if container.isRunningOnANetwork { running.append(container) }
            case .failed(let reason)?:
                if let known = containers[id] { fresh[id] = known }
                let kept =
                    "resync: inspecting container \(id.prefix(12)) failed: \(reason); "
                    + "keeping what was known of it"
                logger.warning("\(kept)")
            case .notFound?, nil:
                break
            }
        }
        for (container, lookup) in await lookUpPorts(running) {
            fresh[container.id] = TrackedContainer(
                container: container, ports: lookup.ports, portProblem: lookup.problem)
        }
        let dropped = Set(containers.keys).subtracting(fresh.keys).compactMap { containers[$0]?.container.name }
        containers = fresh
        return dropped
    }

    /// Forgets a container an event removed; a destroyed one's port too (its ID never comes back).
    func remove(_ id: String, destroyed: Bool) {
        if let gone = containers.removeValue(forKey: id) {
            logger.info("container \(gone.container.name) stopped or left its networks: its rules go")
        }
        if destroyed { portCache.removeValue(forKey: id) }
    }

    /// Forgets every port found: after a reconnect a veth found before may be another one now.
    func forgetPorts() {
        portCache.removeAll()
    }

    /// The children named by the links of `parentIDs` that are not tracked:
    /// their start may be among the events still to come, or lost.
    func untrackedChildren(of parentIDs: [String]) -> [String] {
        let names = Set(containers.values.map(\.container.name))
        return Set(parentIDs.compactMap { containers[$0] }.flatMap(\.container.links).map(\.child))
            .subtracting(names).sorted()
    }

    // MARK: Bridge ports

    /// Finds the bridge ports of each container (one lookup for all its endpoints, each
    /// port found by its endpoint's MAC), reusing what was found for the same process and
    /// endpoints; the rest are looked up `concurrency` at a time.
    private func lookUpPorts(
        _ running: [DockerContainer],
        isolation: isolated (any Actor)? = #isolation
    ) async -> [(DockerContainer, PortOutcome)] {
        var result: [(DockerContainer, PortOutcome)] = []
        var toResolve: [DockerContainer] = []
        for container in running {
            if let pid = container.pid, let cached = portCache[container.id], cached.pid == pid,
                cached.endpoints == container.networks.mapValues(\.endpointID)
            {
                result.append((container, PortOutcome(ports: cached.ports)))
            } else {
                toResolve.append(container)
            }
        }
        let resolvePorts = self.resolvePorts
        let wanted = Dictionary(
            toResolve.map { ($0.id, ($0.pid, $0.networks.values.compactMap(\.mac))) },
            uniquingKeysWith: { first, _ in first })
        let resolved = await toResolve.map(\.id).concurrentMap(limit: concurrency) {
            id -> Result<[MACAddress: String], any Error> in
            guard let (pid, macs) = wanted[id], let pid else {
                return .failure(PortLookupFailure(description: "running without a State.Pid"))
            }
            do { return .success(try await resolvePorts(pid, macs)) } catch { return .failure(error) }
        }
        for container in toResolve {
            switch resolved[container.id] {
            case .success(let byMAC)?:
                var ports: [String: String] = [:]
                for (network, endpoint) in container.networks {
                    if let mac = endpoint.mac, let port = byMAC[mac] { ports[network] = port }
                }
                if let pid = container.pid {
                    portCache[container.id] = CachedPorts(
                        pid: pid, endpoints: container.networks.mapValues(\.endpointID), ports: ports)
                }
                let problem = ports.isEmpty ? "bridge port not found: no veth with an endpoint's MAC" : nil
                result.append((container, PortOutcome(ports: ports, problem: problem)))
            case .failure(let error)?:
                portCache.removeValue(forKey: container.id)
                result.append((container, PortOutcome(problem: "bridge port not found: \(error)")))
            case nil:
                break
            }
        }
        return result
    }
}
