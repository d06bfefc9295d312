// SPDX-License-Identifier: Apache-2.0
//
// A Docker daemon in memory for the agent's tests: containers with addresses,
// links and ports, `docker run/stop/start/rm` that change them and emit the
// events a real daemon emits — in 20.10's order or in 29's — and the ways a
// daemon fails: going away, a broken stream, garbage lines, a 404 for a
// container removed a moment ago, an inspect that errors.

import BPFNetAgent
import BPFNetCore
import Foundation

@testable import DockerWatcher

final class ScriptedDocker: DockerSource, @unchecked Sendable {
    /// Which daemon's event order `stop`/`start`/`restart` follow (docs/docker.md, "Events").
    enum Flavor: Sendable {
        /// 20.10: die, disconnect, stop; connect before start.
        case v20
        /// 29.x: disconnect, stop, die; no legacy fields.
        case v29
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let hostDescription = "unix:///scripted/docker.sock"
    let flavor: Flavor
    private let lock = NSLock()
    private var containers: [String: DockerContainer] = [:]
    private var network = DockerBridgeNetwork(
        id: "net0", name: "bridge", subnet: IPv4CIDR("172.17.0.0/16"),
        gateway: IPv4Address("172.17.0.1"))
    /// User-defined bridge networks, in creation order.
    private var userNetworks: [DockerBridgeNetwork] = []
    private var info = DockerDaemonInfo(serverVersion: "20.10.24+dfsg1", ipv4Forwarding: true, bridgeNfIptables: false)
    private var reachable = true
    private var stream: AsyncThrowingStream<DockerEventItem, any Error>.Continuation?
    private var nextPid: Int32 = 1000
    private var nextID = 1
    private var inspectErrors: [String: DockerError] = [:]
    private var log: [String] = []
    private var connects: [ContinuousClock.Instant] = []

    init(flavor: Flavor = .v20) {
        self.flavor = flavor
    }

    // MARK: DockerSource

    func connect() async throws -> DockerDaemonIdentity {
        try lock.withLock {
            connects.append(ContinuousClock.now)
            log.append("connect")
            guard reachable else {
                throw DockerError.daemonUnreachable(host: hostDescription, reason: "No such file or directory")
            }
            return DockerDaemonIdentity(
                version: flavor == .v20 ? "20.10.24+dfsg1" : "29.7.2",
                apiVersion: flavor == .v20 ? DockerAPIVersion(1, 41) : DockerAPIVersion(1, 55))
        }
    }

    func info() async throws -> DockerDaemonInfo {
        try lock.withLock {
            try checkReachable()
            return info
        }
    }

    func bridgeNetwork() async throws -> DockerBridgeNetwork {
        try lock.withLock {
            try checkReachable()
            return network
        }
    }

    func bridgeNetworks() async throws -> [DockerBridgeNetwork] {
        try lock.withLock {
            try checkReachable()
            log.append("networks")
            return [network] + userNetworks
        }
    }

    func runningBridgeContainers() async throws -> [DockerContainerSummary] {
        try lock.withLock {
            try checkReachable()
            log.append("list")
            return containers.values.filter(\.isRunningOnANetwork).sorted { $0.id < $1.id }.map {
                DockerContainerSummary(
                    id: $0.id, name: $0.name, names: [$0.name], state: "running",
                    networkMode: $0.networkMode, bridgeIP: $0.bridge?.ip)
            }
        }
    }

    func inspectContainer(_ idOrName: String) async throws -> DockerContainer {
        try lock.withLock {
            try checkReachable()
            log.append("inspect \(idOrName)")
            if let error = inspectErrors[idOrName] { throw error }
            if let container = containers[idOrName] ?? containers.values.first(where: { $0.name == idOrName }) {
                return container
            }
            throw DockerError.httpStatus(
                request: "GET /v1.41/containers/\(idOrName)/json", status: 404,
                message: "No such container: \(idOrName)")
        }
    }

    func eventItems(since: Date) async throws -> AsyncThrowingStream<DockerEventItem, any Error> {
        try lock.withLock {
            try checkReachable()
            log.append("events")
            let (stream, continuation) = AsyncThrowingStream<DockerEventItem, any Error>.makeStream()
            self.stream?.finish()
            self.stream = continuation
            return stream
        }
    }

    private func checkReachable() throws {
        guard reachable else {
            throw DockerError.daemonUnreachable(host: hostDescription, reason: "Connection refused")
        }
    }

    // MARK: Looking at it

    var requests: [String] { lock.withLock { log } }
    var connectTimes: [ContinuousClock.Instant] { lock.withLock { connects } }
    var hasEventStream: Bool { lock.withLock { stream != nil } }

    func container(named name: String) -> DockerContainer? {
        lock.withLock { containers.values.first { $0.name == name } }
    }

    func id(of name: String) -> String { container(named: name)!.id }
    func ip(of name: String) -> IPv4Address { container(named: name)!.bridge!.ip }

    // MARK: Docker-like operations (state + events)

    /// `docker run -d --name NAME [--expose …] [-p …] [--link child:alias …]`.
    @discardableResult
    func run(
        _ name: String, exposed: [PortSpec] = [], published: [PublishedPort] = [],
        links: [(child: String, alias: String)] = [], network: String? = nil, silently: Bool = false
    ) -> String {
        let id: String = lock.withLock {
            let id = String(format: "%064x", nextID)
            nextID += 1
            let exposedAll = Array(Set(exposed + published.map { PortSpec($0.containerPort, $0.proto) })).sorted()
            containers[id] = DockerContainer(
                id: id, name: name, running: false, networkMode: network ?? "default",
                links: links.map { DockerLinkDeclaration(child: $0.child, parent: name, alias: $0.alias) },
                exposedPorts: exposedAll, publishedPorts: published)
            return id
        }
        start(name, silently: silently)
        return id
    }

    /// `docker start NAME`: lowest free address, a new pid, a new endpoint.
    func start(_ name: String, silently: Bool = false) {
        let id = self.id(of: name)
        let home: String = lock.withLock {
            var container = containers[id]!
            nextPid += 1
            container.running = true
            container.pid = nextPid
            let home = container.usesDefaultBridgeMode ? "bridge" : container.networkMode
            containers[id] = container
            attach(id, to: home)
            return home
        }
        if !silently {
            emit(network(.connect, id, network: home))
            emit(event(.start, id, name))
        }
    }

    /// Gives container `id` an endpoint on `networkName`: the lowest free address of its
    /// subnet (172.17/16 for the default bridge, 172.(18+k)/16 for the k-th user network).
    private func attach(_ id: String, to networkName: String) {
        let subnet = networkName == "bridge" ? network : userNetworks.first { $0.name == networkName }!
        let base = subnet.subnet!.address.value
        let used = Set(containers.values.flatMap(\.networks.values).map(\.ip))
        var host: UInt32 = 2
        while used.contains(IPv4Address(base | host)) { host += 1 }
        let ip = IPv4Address(base | host)
        let pid = containers[id]!.pid!
        containers[id]!.networks[networkName] = DockerBridgeEndpoint(
            ip: ip, prefixLength: 16, mac: MACAddress(dockerStyleFor: ip), gateway: subnet.gateway,
            endpointID: "ep\(pid)-\(networkName)", networkID: subnet.id)
    }

    /// `docker network create`; returns the network's ID. Its bridge is "br-" + the ID's first 12.
    @discardableResult
    func createNetwork(_ name: String, icc: Bool = true, internal: Bool = false, silently: Bool = false) -> String {
        let id: String = lock.withLock {
            let id = String(format: "%012x", 0xfeed_0000 + nextID) + String(repeating: "0", count: 52)
            nextID += 1
            let octet = UInt8(18 + userNetworks.count)
            userNetworks.append(
                DockerBridgeNetwork(
                    id: id, name: name, bridgeName: "br-" + id.prefix(12), iccEnabled: icc,
                    subnet: IPv4CIDR("172.\(octet).0.0/16"), gateway: IPv4Address(172, octet, 0, 1),
                    internal: `internal`))
            return id
        }
        if !silently { emit(networkEvent(.create, name)) }
        return id
    }

    func removeNetwork(_ name: String, silently: Bool = false) {
        lock.withLock { userNetworks.removeAll { $0.name == name } }
        if !silently { emit(networkEvent(.destroy, name)) }
    }

    func bridgeName(of networkName: String) -> String {
        lock.withLock { userNetworks.first { $0.name == networkName }!.bridgeName }
    }

    /// `docker network connect NETWORK NAME` on a running container.
    func connect(_ name: String, to networkName: String, silently: Bool = false) {
        let id = self.id(of: name)
        lock.withLock { attach(id, to: networkName) }
        if !silently { emit(network(.connect, id, network: networkName)) }
    }

    func disconnect(_ name: String, from networkName: String, silently: Bool = false) {
        let id = self.id(of: name)
        lock.withLock { _ = containers[id]!.networks.removeValue(forKey: networkName) }
        if !silently { emit(network(.disconnect, id, network: networkName)) }
    }

    func networkEvent(_ action: DockerEventAction, _ name: String, type: String = "bridge") -> DockerEvent {
        let id = lock.withLock { userNetworks.first { $0.name == name }?.id } ?? "gone-\(name)"
        return DockerEvent(
            type: .network, action: action, actorID: id, attributes: ["name": name, "type": type],
            timeNano: Int64((Date().timeIntervalSince1970 * 1e9).rounded()))
    }

    /// `docker stop NAME`, events in this daemon's order.
    func stop(_ name: String, silently: Bool = false) {
        let id = self.id(of: name)
        lock.withLock {
            containers[id]!.running = false
            containers[id]!.pid = nil
            containers[id]!.networks = [:]
        }
        guard !silently else { return }
        switch flavor {
        case .v20:
            emit(event(.other("kill"), id, name))
            emit(event(.die, id, name, ["exitCode": "137"]))
            emit(network(.disconnect, id))
            emit(event(.stop, id, name))
        case .v29:
            emit(event(.other("kill"), id, name))
            emit(network(.disconnect, id))
            emit(event(.stop, id, name))
            emit(event(.die, id, name, ["exitCode": "137"]))
        }
    }

    /// `docker restart NAME`: stop's events, then start's, then `restart`.
    func restart(_ name: String) {
        stop(name)
        start(name)
        emit(event(.restart, id(of: name), name))
    }

    /// `docker rm NAME` (a stopped container).
    func remove(_ name: String, silently: Bool = false) {
        let id = self.id(of: name)
        lock.withLock { _ = containers.removeValue(forKey: id) }
        if !silently { emit(event(.destroy, id, name)) }
    }

    /// The next inspects of `idOrName` fail with `error` (nil: answer again).
    func failInspect(of idOrName: String, with error: DockerError?) {
        lock.withLock { inspectErrors[idOrName] = error }
    }

    func setBridge(name: String, icc: Bool = true) {
        lock.withLock {
            network.bridgeName = name
            network.iccEnabled = icc
        }
    }

    func setInfo(_ newInfo: DockerDaemonInfo) {
        lock.withLock { info = newInfo }
    }

    /// dockerd stops: the stream ends with an error, nothing answers.
    func goAway() {
        lock.withLock {
            reachable = false
            stream?.finish(
                throwing: DockerError.eventStreamEnded(host: hostDescription, reason: "the daemon closed the stream"))
            stream = nil
        }
    }

    /// dockerd is back.
    func comeBack() {
        lock.withLock { reachable = true }
    }

    /// The stream breaks but the daemon stays (a proxy hiccup).
    func breakStream() {
        lock.withLock {
            stream?.finish(throwing: DockerError.eventStreamEnded(host: hostDescription, reason: "connection reset"))
            stream = nil
        }
    }

    // MARK: Events

    func emit(_ event: DockerEvent) {
        lock.withLock { _ = stream?.yield(.event(event)) }
    }

    /// A raw line through the client's own decoder: recorded JSON, or garbage.
    func emit(line: String) {
        let item = decodeEventLine(.line(Array(line.utf8)))
        lock.withLock { _ = stream?.yield(item) }
    }

    func event(_ action: DockerEventAction, _ id: String, _ name: String, _ extra: [String: String] = [:])
        -> DockerEvent
    {
        DockerEvent(
            type: .container, action: action, actorID: id,
            attributes: ["name": name, "image": "bb:local"].merging(extra) { $1 },
            timeNano: Int64((Date().timeIntervalSince1970 * 1e9).rounded()))
    }

    func network(_ action: DockerEventAction, _ id: String, network: String = "bridge", type: String = "bridge")
        -> DockerEvent
    {
        // Docker's network events carry the network's ID.
        let networkID =
            network == "bridge" ? "net0" : lock.withLock { userNetworks.first { $0.name == network }?.id } ?? "gone"
        return DockerEvent(
            type: .network, action: action, actorID: networkID,
            attributes: ["container": id, "name": network, "type": type],
            timeNano: Int64((Date().timeIntervalSince1970 * 1e9).rounded()))
    }
}

/// The host in memory: every interface exists unless told otherwise.
final class FakeHost: AgentHost, @unchecked Sendable {
    private let lock = NSLock()
    private var missing: Set<String> = []
    private var traces: [String] = []

    func existingInterfaces(among names: [String]) -> Set<String> { lock.withLock { Set(names).subtracting(missing) } }
    func ipv4Address(of interface: String) -> IPv4InterfaceAddress? { IPv4InterfaceAddress("172.17.0.1/16") }
    func dockerFirewallTraces() -> [String] { lock.withLock { traces } }
    private var proxies: [DockerProxy] = []
    private var btf = true
    func dockerProxies() -> [DockerProxy] { lock.withLock { proxies } }
    var hasKernelBTF: Bool { lock.withLock { btf } }
    func setProxies(_ value: [DockerProxy]) { lock.withLock { proxies = value } }
    func setKernelBTF(_ value: Bool) { lock.withLock { btf = value } }

    /// The link monitor: what `join` sends, the agent reads.
    let portEvents = AsyncStream<BridgePortEvent>.makeStream(bufferingPolicy: .unbounded)
    func bridgePortEvents() -> AsyncStream<BridgePortEvent>? { portEvents.stream }
    func join(_ port: String, bridge: String = "docker0") {
        portEvents.continuation.yield(.joined(port: port, bridge: bridge))
    }
    func appear(_ name: String) { portEvents.continuation.yield(.appeared(name: name)) }

    func setMissing(_ names: Set<String>) { lock.withLock { missing = names } }
    func setTraces(_ value: [String]) { lock.withLock { traces = value } }
}

/// The port lookup in memory: pid N sits on "vethN" on the default bridge (172.17/16) and
/// on "vethNnK" on a network of 172.K/16 (the endpoint MACs are 02:42 and the address).
let fakePortResolver: EndpointPortResolver = { pid, macs in
    Dictionary(
        uniqueKeysWithValues: macs.map { mac in
            (mac, mac.bytes.2 == 172 && mac.bytes.3 == 17 ? "veth\(pid)" : "veth\(pid)n\(mac.bytes.3)")
        })
}
