// SPDX-License-Identifier: Apache-2.0
//
// Docker's bridge networks and inspected containers → the policy model's networks,
// containers (one per endpoint: a container on two bridge networks is two `Container`s of
// the same name) and links (docs/policy.md, docs/docker.md "Networks").
// A link is in force only while parent and child both run on the default bridge: Docker
// 20.10 and 29 leave a stopped child's rules behind (and give them to whoever gets its IP
// next) and do not follow a restarted child to its new IP. Recomputing links from the
// containers that run now does neither.

import BPFNetCore

/// Finds a running container's bridge port (the host-side veth of its eth0) from its
/// `State.Pid`: enough for a container on the default bridge alone.
public typealias BridgePortResolver = @Sendable (_ pid: Int32) async throws -> String

/// Finds a running container's ports on its networks from its `State.Pid`: for each MAC of
/// `macs`, the host-side veth whose peer in the container's namespace has that MAC (a
/// container on several networks has one interface per network). A MAC without a veth
/// (macvlan, gone meanwhile) is left out of the answer. `LinuxBridgePortLookup` is the real
/// one; tests inject their own.
public typealias EndpointPortResolver =
    @Sendable (_ pid: Int32, _ macs: [MACAddress]) async throws -> [MACAddress: String]

/// Adapts a one-interface resolver: a container with a single endpoint gets eth0's port;
/// one with several cannot be told apart by it, and fails.
public func endpointPortResolver(_ resolvePort: @escaping BridgePortResolver) -> EndpointPortResolver {
    { pid, macs in
        guard macs.count <= 1 else {
            throw PortResolverError("\(macs.count) endpoints: a container on several networks needs the MAC lookup")
        }
        let port = try await resolvePort(pid)
        return Dictionary(uniqueKeysWithValues: macs.map { ($0, port) })
    }
}

public struct PortResolverError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

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
    /// The user-defined bridge networks, sorted by name (the default bridge is `Policy.bridge`).
    public var networks: [BridgeNetwork]
    /// One per (container, bridge network) endpoint; sorted by name, then network
    /// (the default bridge first).
    public var containers: [Container]
    /// Sorted by parent, child, alias.
    public var links: [Link]
    public var skipped: [DockerSkippedContainer]
    /// The default bridge's IPv6 gateway and prefix (dockerd `--ipv6 --fixed-cidr-v6`), when
    /// the default bridge network was among those translated and has IPv6.
    public var bridgeIPv6: IPv6InterfaceAddress?

    public init(
        containers: [Container] = [], links: [Link] = [], skipped: [DockerSkippedContainer] = [],
        networks: [BridgeNetwork] = [], bridgeIPv6: IPv6InterfaceAddress? = nil
    ) {
        self.bridgeIPv6 = bridgeIPv6
        self.networks = networks
        self.containers = containers
        self.links = links
        self.skipped = skipped
    }

    /// `policy` with its networks, containers and links replaced by Docker's; every other
    /// setting kept.
    public func applied(to policy: Policy) -> Policy {
        var result = policy
        result.networks = networks
        result.containers = containers
        result.links = links
        result.bridgeIPv6 = bridgeIPv6
        return result
    }
}

public enum DockerPolicyTranslator {
    /// Translates with known default-bridge ports. `ports` maps container IDs to their
    /// host-side veth on the default bridge; endpoints on other networks are left out.
    public static func snapshot(of containers: [DockerContainer], ports: [String: String]) -> DockerPolicySnapshot {
        snapshot(
            of: containers, networks: [],
            endpointPorts: ports.mapValues { [dockerDefaultBridgeNetwork: $0] })
    }

    /// Translates with known ports on every network. `endpointPorts` maps container IDs to
    /// network names to host-side veths; an endpoint on a bridge network without an entry is
    /// skipped. `networks`: Docker's bridge networks (the default one may be among them);
    /// endpoints on other networks (host, macvlan, unknown) are left out silently.
    public static func snapshot(
        of containers: [DockerContainer], networks: [DockerBridgeNetwork],
        endpointPorts: [String: [String: String]]
    ) -> DockerPolicySnapshot {
        snapshot(of: containers, networks: networks) { container, network in
            if let port = endpointPorts[container.id]?[network] { return .found(port) }
            return .failed("host-side port unknown")
        }
    }

    /// Resolves each running default-bridge container's port from its pid (its eth0), then
    /// translates the default bridge alone.
    public static func snapshot(
        of containers: [DockerContainer], resolvePort: @escaping BridgePortResolver,
        maxConcurrentLookups: Int = 8
    ) async -> DockerPolicySnapshot {
        let onBridge = containers.map { container in
            var only = container
            only.networks = container.networks.filter { $0.key == dockerDefaultBridgeNetwork }
            return only
        }
        return await snapshot(
            of: onBridge, networks: [], resolvePorts: endpointPortResolver(resolvePort),
            maxConcurrentLookups: maxConcurrentLookups)
    }

    /// Resolves the ports of each running container's bridge-network endpoints (one lookup
    /// per container, at most `maxConcurrentLookups` at a time), then translates. An
    /// endpoint whose lookup fails is skipped with the lookup's error: the container may
    /// have stopped meanwhile.
    public static func snapshot(
        of containers: [DockerContainer], networks: [DockerBridgeNetwork],
        resolvePorts: @escaping EndpointPortResolver, maxConcurrentLookups: Int = 8
    ) async -> DockerPolicySnapshot {
        let known = bridgeNetworkNames(networks)
        var wanted: [(id: String, pid: Int32, macs: [MACAddress])] = []
        for container in containers where container.running {
            let macs = container.networks.filter { known.contains($0.key) }.values.compactMap(\.mac)
            if let pid = container.pid, !macs.isEmpty { wanted.append((container.id, pid, macs)) }
        }
        var found: [String: Result<[MACAddress: String], PortResolverError>] = [:]
        await withTaskGroup(of: (String, Result<[MACAddress: String], PortResolverError>).self) { group in
            var next = wanted.makeIterator()
            func addNext() -> Bool {
                guard let (id, pid, macs) = next.next() else { return false }
                group.addTask {
                    do {
                        return (id, .success(try await resolvePorts(pid, macs)))
                    } catch {
                        return (id, .failure(PortResolverError("host-side port of pid \(pid) not found: \(error)")))
                    }
                }
                return true
            }
            for _ in 0..<max(1, maxConcurrentLookups) {
                if !addNext() { break }
            }
            while let (id, result) = await group.next() {
                found[id] = result
                _ = addNext()
            }
        }
        return snapshot(of: containers, networks: networks) { container, network in
            switch found[container.id] {
            case .success(let ports)?:
                guard let mac = container.networks[network]?.mac, let port = ports[mac] else {
                    return .failed("no interface with its MAC in the container's namespace")
                }
                return .found(port)
            case .failure(let error)?: return .failed(error.description)
            case nil: return .failed("host-side port unknown")
            }
        }
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

    /// The network names whose endpoints the policy holds: the default bridge's and every
    /// bridge network's.
    public static func bridgeNetworkNames(_ networks: [DockerBridgeNetwork]) -> Set<String> {
        Set(networks.filter { ($0.driver ?? dockerBridgeDriver) == dockerBridgeDriver }.map(\.name))
            .union([dockerDefaultBridgeNetwork])
    }

    private static func snapshot(
        of containers: [DockerContainer], networks: [DockerBridgeNetwork],
        port: (DockerContainer, String) -> PortLookup
    ) -> DockerPolicySnapshot {
        let known = bridgeNetworkNames(networks)
        var userNetworks: [String: DockerBridgeNetwork] = [:]
        for network in networks where known.contains(network.name) && !network.isDefaultBridge {
            userNetworks[network.name] = userNetworks[network.name] ?? network
        }
        var onDefaultBridge: [DockerContainer] = []
        var models: [Container] = []
        var skipped: [DockerSkippedContainer] = []
        var ipOwners: [IPv4Address: String] = [:]
        var ipv6Owners: [IPv6Address: String] = [:]
        // Dual stack: each network's IPv6 gateway and prefix, nil for the IPv4-only ones.
        let bridgeIPv6 = networks.first { $0.isDefaultBridge }?.ipv6Gateway
        func ipv6Gateway(of network: String) -> IPv6InterfaceAddress? {
            network == dockerDefaultBridgeNetwork ? bridgeIPv6 : userNetworks[network]?.ipv6Gateway
        }
        // Name order makes the outcome independent of the order Docker listed them in.
        for container in containers.sorted(by: { ($0.name, $0.id) < ($1.name, $1.id) }) where container.running {
            let primary = container.primaryNetwork
            // The default bridge first, then the user-defined networks by name.
            let endpoints = container.networks.filter { known.contains($0.key) }.sorted {
                ($0.key == dockerDefaultBridgeNetwork ? "" : $0.key)
                    < ($1.key == dockerDefaultBridgeNetwork ? "" : $1.key)
            }
            for (network, endpoint) in endpoints {
                let isDefault = network == dockerDefaultBridgeNetwork
                func skip(_ reason: String) {
                    skipped.append(
                        DockerSkippedContainer(
                            id: container.id, name: container.name,
                            reason: isDefault ? reason : "on network \(network): \(reason)"))
                }
                if !isDefault, let id = endpoint.networkID, let expected = userNetworks[network]?.id, id != expected {
                    // A network removed and created again under the same name; the next event settles it.
                    skip("its endpoint is on network \(id.prefix(12)), not on \(expected.prefix(12))")
                    continue
                }
                guard let mac = endpoint.mac else {
                    skip("no MAC address on " + (isDefault ? "the default bridge" : "the network"))
                    continue
                }
                guard container.pid != nil else {
                    skip("running without a State.Pid")
                    continue
                }
                if let owner = ipOwners[endpoint.ip] {
                    // Two inspects taken at different moments; the next resync settles it.
                    skip("\(endpoint.ip) is already held by \(owner)")
                    continue
                }
                let portName: String
                switch port(container, network) {
                case .found(let name): portName = name
                case .failed(let reason):
                    skip(reason)
                    continue
                }
                ipOwners[endpoint.ip] = container.name
                if isDefault { onDefaultBridge.append(container) }
                // Its IPv6 address when the network has IPv6 and the address is one of its
                // subnet's (else the container is policed by IPv4 and MAC alone, and any IPv6
                // source it sends is refused as not its own).
                var ipv6: IPv6Address?
                if let address = endpoint.ipv6, let gateway = ipv6Gateway(of: network) {
                    if !gateway.network.contains(address) || address == gateway.address {
                        skipped.append(
                            DockerSkippedContainer(
                                id: container.id, name: container.name,
                                reason: "its IPv6 address \(address) is not a container address of \(gateway.network); "
                                    + "policed without it"))
                    } else if let owner = ipv6Owners[address] {
                        skipped.append(
                            DockerSkippedContainer(
                                id: container.id, name: container.name,
                                reason: "its IPv6 address \(address) is already held by \(owner); policed without it"))
                    } else {
                        ipv6Owners[address] = container.name
                        ipv6 = address
                    }
                }
                // Docker binds a container's published ports to one endpoint.
                models.append(
                    Container(
                        name: container.name, ip: endpoint.ip, mac: mac, port: portName,
                        exposed: container.exposedPorts,
                        published: network == primary ? container.publishedPorts : [],
                        network: isDefault ? nil : network, ipv6: ipv6))
            }
        }
        let links = links(parents: onDefaultBridge, childNames: Set(onDefaultBridge.map(\.name)))
        return DockerPolicySnapshot(
            containers: models, links: links, skipped: skipped,
            networks: userNetworks.values.sorted { $0.name < $1.name }.map(\.model), bridgeIPv6: bridgeIPv6)
    }
}

/// The outcome of finding one endpoint's port.
enum PortLookup: Sendable {
    case found(String)
    case failed(String)
}
