// SPDX-License-Identifier: Apache-2.0
//
// What the agent asks of Docker, as a protocol: `DockerClient` is the real
// one (Engine API over the unix socket); the agent's tests drive the agent
// with a scripted daemon in memory, so every event ordering, 404 and broken
// stream can be produced on purpose.

import DockerWatcher
import Foundation

/// Who answered when the agent connected.
public struct DockerDaemonIdentity: Hashable, Sendable {
    /// "20.10.24+dfsg1".
    public var version: String
    /// The API version requests use (after negotiation).
    public var apiVersion: DockerAPIVersion

    public init(version: String, apiVersion: DockerAPIVersion) {
        self.version = version
        self.apiVersion = apiVersion
    }
}

/// The Engine API calls the agent makes.
public protocol DockerSource: Sendable {
    /// "unix:///var/run/docker.sock", for messages.
    var hostDescription: String { get }
    /// Negotiates the API version (`/_ping`) and says who answered. Called on
    /// every (re)connect: the daemon may have been upgraded.
    func connect() async throws -> DockerDaemonIdentity
    /// `GET /info`.
    func info() async throws -> DockerDaemonInfo
    /// `GET /networks/bridge`.
    func bridgeNetwork() async throws -> DockerBridgeNetwork
    /// `GET /networks?filters={"driver":["bridge"]}`: every bridge network, the default
    /// one included.
    func bridgeNetworks() async throws -> [DockerBridgeNetwork]
    /// `GET /containers/json`: running containers with an address on some network.
    func runningBridgeContainers() async throws -> [DockerContainerSummary]
    /// `GET /containers/{id}/json`; a container that is gone throws a
    /// `DockerError` whose `isNotFound` is true.
    func inspectContainer(_ idOrName: String) async throws -> DockerContainer
    /// `GET /events?since=…` with `DockerEventFilters.bridgePolicy`, returned once
    /// the daemon has answered. It finishes (or throws) when the stream ends.
    func eventItems(since: Date) async throws -> AsyncThrowingStream<DockerEventItem, any Error>
}

extension DockerSource {
    /// A daemon that lists no networks has the default bridge alone.
    public func bridgeNetworks() async throws -> [DockerBridgeNetwork] {
        [try await bridgeNetwork()]
    }
}

extension DockerClient: DockerSource {
    public nonisolated var hostDescription: String { host.description }

    public func connect() async throws -> DockerDaemonIdentity {
        let apiVersion = try await negotiateAPIVersion()
        let version = try await version()
        return DockerDaemonIdentity(version: version.version, apiVersion: apiVersion)
    }

    public func runningBridgeContainers() async throws -> [DockerContainerSummary] {
        try await listContainers(filters: DockerClient.running).filter(\.isAddressed)
    }

    public func eventItems(since: Date) async throws -> AsyncThrowingStream<DockerEventItem, any Error> {
        let sequence = try await events(since: since, filters: .bridgePolicy)
        return AsyncThrowingStream { continuation in
            let pump = Task {
                do {
                    for try await item in sequence { continuation.yield(item) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in pump.cancel() }
        }
    }
}
