// SPDX-License-Identifier: Apache-2.0
//
// What the Engine API says about containers, the default bridge and the daemon, reduced to
// the fields the policy needs (docs/docker.md, "The Engine API"). Decoding reads only fields that
// exist in API 1.41 (dockerd 20.10) and in API >= 1.52 (29.x): IP and MAC come from
// `NetworkSettings.Networks.bridge`, never from the top-level copies that 1.52 dropped.

import BPFNetCore

/// The name Docker gives the default bridge network (`GET /networks/bridge`, `Networks.bridge`).
public let dockerDefaultBridgeNetwork = "bridge"

/// A container's endpoint on the default bridge (`NetworkSettings.Networks.bridge`).
public struct DockerBridgeEndpoint: Hashable, Sendable {
    public var ip: IPv4Address
    public var prefixLength: Int?
    /// Docker 20.10 derives it from the IP (02:42:...); 29.x picks a random one.
    public var mac: MACAddress?
    public var gateway: IPv4Address?
    public var endpointID: String?
    public var networkID: String?
    /// `GlobalIPv6Address`, on a network with IPv6 (a bare address in 20.10 and 29.x).
    public var ipv6: IPv6Address?

    public init(
        ip: IPv4Address, prefixLength: Int? = nil, mac: MACAddress? = nil,
        gateway: IPv4Address? = nil, endpointID: String? = nil, networkID: String? = nil, ipv6: IPv6Address? = nil
    ) {
        self.ipv6 = ipv6
        self.ip = ip
        self.prefixLength = prefixLength
        self.mac = mac
        self.gateway = gateway
        self.endpointID = endpointID
        self.networkID = networkID
    }
}

/// One `HostConfig.Links` entry, `"/child:/parent/alias"`. It is found in the inspect of the
/// PARENT (the container that ran `--link child:alias`); its first element names the CHILD.
public struct DockerLinkDeclaration: Hashable, Sendable, CustomStringConvertible {
    public var child: String
    /// The parent as the entry spells it; it is the container whose inspect holds the entry.
    public var parent: String
    public var alias: String

    public init(child: String, parent: String, alias: String) {
        self.child = child
        self.parent = parent
        self.alias = alias
    }

    /// Parses `"/child:/parent/alias"`; nil when the entry does not have that shape.
    public init?(parsing entry: String) {
        let halves = entry.split(separator: ":", omittingEmptySubsequences: false)
        guard halves.count == 2 else { return nil }
        let childPath = halves[0].split(separator: "/", omittingEmptySubsequences: false)
        let aliasPath = halves[1].split(separator: "/", omittingEmptySubsequences: false)
        // "/child" splits into ["", "child"]; "/parent/alias" into ["", "parent", "alias"].
        guard childPath.count == 2, childPath[0].isEmpty, !childPath[1].isEmpty,
            aliasPath.count == 3, aliasPath[0].isEmpty, !aliasPath[1].isEmpty, !aliasPath[2].isEmpty
        else { return nil }
        self.init(child: String(childPath[1]), parent: String(aliasPath[1]), alias: String(aliasPath[2]))
    }

    public var description: String { "/\(child):/\(parent)/\(alias)" }
}

/// `GET /containers/{id}/json`, reduced to what the policy needs.
public struct DockerContainer: Hashable, Sendable {
    public var id: String
    /// `Name` without its leading slash.
    public var name: String
    /// `State.Running`; false when the daemon sent no `State`.
    public var running: Bool
    /// `State.Pid` while running (its `/proc/<pid>/ns/net` is the container's namespace); nil otherwise.
    public var pid: Int32?
    /// `HostConfig.NetworkMode`: "default" or "bridge" mean the default bridge.
    public var networkMode: String
    /// `NetworkSettings.Networks`: its endpoints with an IPv4 address, by network name, on
    /// networks of any driver (the translation keeps those on bridge networks).
    public var networks: [String: DockerBridgeEndpoint]
    /// `HostConfig.Links`: the links this container holds as the parent.
    public var links: [DockerLinkDeclaration]
    /// `Config.ExposedPorts` (includes every `-p` port), sorted.
    public var exposedPorts: [PortSpec]
    /// `NetworkSettings.Ports` (actual IPv4 bindings), else `HostConfig.PortBindings`; sorted.
    public var publishedPorts: [PublishedPort]
    /// Parts of the answer that were skipped (an unparsable port key, an odd link entry, ...).
    public var warnings: [String]

    public init(
        id: String, name: String, running: Bool, pid: Int32? = nil, networkMode: String = "default",
        bridge: DockerBridgeEndpoint? = nil, links: [DockerLinkDeclaration] = [],
        exposedPorts: [PortSpec] = [], publishedPorts: [PublishedPort] = [], warnings: [String] = [],
        networks: [String: DockerBridgeEndpoint] = [:]
    ) {
        self.id = id
        self.name = name
        self.running = running
        self.pid = pid
        self.networkMode = networkMode
        self.networks = networks
        if let bridge { self.networks[dockerDefaultBridgeNetwork] = bridge }
        self.links = links
        self.exposedPorts = exposedPorts
        self.publishedPorts = publishedPorts
        self.warnings = warnings
    }

    /// The endpoint on the default bridge (`NetworkSettings.Networks.bridge`), when the
    /// container has an IPv4 address there.
    public var bridge: DockerBridgeEndpoint? {
        get { networks[dockerDefaultBridgeNetwork] }
        set { networks[dockerDefaultBridgeNetwork] = newValue }
    }

    /// `HostConfig.NetworkMode` names the default bridge; only such containers hold legacy links.
    public var usesDefaultBridgeMode: Bool { Self.isDefaultBridgeMode(networkMode) }

    /// Running with an address on the default bridge.
    public var isRunningOnDefaultBridge: Bool { running && bridge != nil }

    /// Running with an address on some network: the containers the agent follows (the
    /// translation keeps the endpoints on bridge networks).
    public var isRunningOnANetwork: Bool { running && !networks.isEmpty }

    /// The network whose endpoint carries the published ports: the one `NetworkMode` names
    /// (the network the container was created on), else the default bridge, else the first
    /// by name. Docker binds a container's ports to one endpoint.
    public var primaryNetwork: String? {
        let mode = usesDefaultBridgeMode ? dockerDefaultBridgeNetwork : networkMode
        if networks[mode] != nil { return mode }
        if networks[dockerDefaultBridgeNetwork] != nil { return dockerDefaultBridgeNetwork }
        return networks.keys.min()
    }

    static func isDefaultBridgeMode(_ mode: String) -> Bool {
        mode == "default" || mode == dockerDefaultBridgeNetwork
    }
}

/// One entry of `GET /containers/json`.
public struct DockerContainerSummary: Hashable, Sendable {
    public var id: String
    /// The container's own name: the one entry of `Names` that is not a link alias ("/cc/b").
    public var name: String
    /// `Names` without leading slashes; link aliases appear as "parent/alias".
    public var names: [String]
    /// `State`: "running", "exited", ...
    public var state: String
    public var networkMode: String?
    /// `NetworkSettings.Networks.bridge.IPAddress`, when set.
    public var bridgeIP: IPv4Address?
    /// The networks (`NetworkSettings.Networks`) on which it has an IPv4 address, sorted.
    public var addressedNetworks: [String]

    public init(
        id: String, name: String, names: [String], state: String,
        networkMode: String? = nil, bridgeIP: IPv4Address? = nil, addressedNetworks: [String]? = nil
    ) {
        self.id = id
        self.name = name
        self.names = names
        self.state = state
        self.networkMode = networkMode
        self.bridgeIP = bridgeIP
        self.addressedNetworks = addressedNetworks ?? (bridgeIP == nil ? [] : [dockerDefaultBridgeNetwork])
    }
}

/// A container as `GET /networks/bridge` lists it.
public struct DockerNetworkEndpoint: Hashable, Sendable {
    public var name: String
    /// From `IPv4Address` ("172.17.0.2/16").
    public var ip: IPv4Address?
    public var prefixLength: Int?
    public var mac: MACAddress?

    public init(name: String, ip: IPv4Address? = nil, prefixLength: Int? = nil, mac: MACAddress? = nil) {
        self.name = name
        self.ip = ip
        self.prefixLength = prefixLength
        self.mac = mac
    }
}

/// A bridge-driver network (`GET /networks/bridge`, `GET /networks?filters=driver=bridge`)
/// and its policy-relevant options (docs/docker.md, "Networks").
public struct DockerBridgeNetwork: Hashable, Sendable {
    public var id: String
    public var name: String
    public var driver: String?
    /// `Options["com.docker.network.bridge.name"]`; when the option is absent, "docker0" for
    /// the default bridge and "br-" + the first 12 characters of the ID for the others.
    public var bridgeName: String
    /// `Options["com.docker.network.bridge.enable_icc"]`; Docker's default (true) when absent.
    public var iccEnabled: Bool
    /// `Options["com.docker.network.bridge.enable_ip_masquerade"]`; true when absent.
    public var ipMasquerade: Bool
    /// The first IPv4 `IPAM.Config[].Subnet`.
    public var subnet: IPv4CIDR?
    /// That entry's `Gateway`; 20.10 leaves it out of the default bridge's IPAM config.
    public var gateway: IPv4Address?
    /// `Containers`, by container ID (empty in `GET /networks` lists).
    public var endpoints: [String: DockerNetworkEndpoint]
    /// `Internal` (`docker network create --internal`).
    public var `internal`: Bool
    /// `EnableIPv6`.
    public var enableIPv6: Bool
    /// The IPv6 `IPAM.Config[].Subnet` and its gateway (`Gateway`, or, as 20.10 leaves it
    /// out, the subnet's first address, which Docker gives the bridge), as the bridge
    /// carries it ("fd00:30::1/64"); nil without IPv6.
    public var ipv6Gateway: IPv6InterfaceAddress?
    /// `Options["com.docker.network.bridge.host_binding_ipv4"]`: the host address published
    /// ports bind to when `-p` names none (Docker reports the resulting `HostIp` in each
    /// container's port bindings); nil when absent or 0.0.0.0.
    public var hostBindingIPv4: IPv4Address?
    /// `Options["com.docker.network.host_ipv4"]`: the source address outbound traffic is
    /// SNATed to instead of masqueraded; nil when absent.
    public var hostIPv4: IPv4Address?
    public var warnings: [String]

    public init(
        id: String, name: String, driver: String? = "bridge", bridgeName: String = "docker0",
        iccEnabled: Bool = true, ipMasquerade: Bool = true, subnet: IPv4CIDR? = nil,
        gateway: IPv4Address? = nil, endpoints: [String: DockerNetworkEndpoint] = [:],
        internal: Bool = false, enableIPv6: Bool = false, hostBindingIPv4: IPv4Address? = nil,
        hostIPv4: IPv4Address? = nil, ipv6Gateway: IPv6InterfaceAddress? = nil, warnings: [String] = []
    ) {
        self.ipv6Gateway = ipv6Gateway
        self.internal = `internal`
        self.enableIPv6 = enableIPv6
        self.hostBindingIPv4 = hostBindingIPv4
        self.hostIPv4 = hostIPv4
        self.id = id
        self.name = name
        self.driver = driver
        self.bridgeName = bridgeName
        self.iccEnabled = iccEnabled
        self.ipMasquerade = ipMasquerade
        self.subnet = subnet
        self.gateway = gateway
        self.endpoints = endpoints
        self.warnings = warnings
    }
}

/// `GET /version`.
public struct DockerVersionInfo: Hashable, Sendable {
    public var version: String
    public var apiVersion: DockerAPIVersion?
    public var minAPIVersion: DockerAPIVersion?
    public var os: String?
    public var arch: String?
    public var kernelVersion: String?

    public init(
        version: String, apiVersion: DockerAPIVersion?, minAPIVersion: DockerAPIVersion? = nil,
        os: String? = nil, arch: String? = nil, kernelVersion: String? = nil
    ) {
        self.version = version
        self.apiVersion = apiVersion
        self.minAPIVersion = minAPIVersion
        self.os = os
        self.arch = arch
        self.kernelVersion = kernelVersion
    }
}

/// `GET /info`, the parts that bear on the dataplane.
public struct DockerDaemonInfo: Hashable, Sendable {
    public var serverVersion: String?
    /// The daemon's view of `net.ipv4.ip_forward`.
    public var ipv4Forwarding: Bool?
    /// `net.bridge.bridge-nf-call-iptables`: bridged traffic goes through iptables.
    public var bridgeNfIptables: Bool?
    public var bridgeNfIp6tables: Bool?
    public var dockerRootDir: String?

    public init(
        serverVersion: String? = nil, ipv4Forwarding: Bool? = nil, bridgeNfIptables: Bool? = nil,
        bridgeNfIp6tables: Bool? = nil, dockerRootDir: String? = nil
    ) {
        self.serverVersion = serverVersion
        self.ipv4Forwarding = ipv4Forwarding
        self.bridgeNfIptables = bridgeNfIptables
        self.bridgeNfIp6tables = bridgeNfIp6tables
        self.dockerRootDir = dockerRootDir
    }
}
