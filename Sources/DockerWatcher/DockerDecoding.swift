// SPDX-License-Identifier: Apache-2.0
//
// JSON → DockerContainer, DockerBridgeNetwork, ... Raw mirrors of the Engine API's JSON (DockerRawJSON.swift) hold
// every field as optional (absent and null mean the same), so any daemon version decodes; the
// conversions then validate what the policy depends on. A value that is present but wrong
// (an IP that is not an IPv4 address, a string where a number belongs) fails with
// `DockerError.decoding` naming its JSON path; parts that only narrow the policy when skipped
// (an odd port key, a link entry of another shape) become warnings on the result.

import BPFNetCore
import Foundation

// MARK: - Entry points

extension DockerContainer {
    /// Decodes `GET /containers/{id}/json`.
    public init(inspectJSON data: Data) throws {
        let raw = try decodeJSON(RawInspect.self, from: data, what: "container inspect")
        try self.init(raw: raw)
    }
}

extension DockerContainerSummary {
    /// Decodes `GET /containers/json`.
    public static func list(fromJSON data: Data) throws -> [DockerContainerSummary] {
        let raw = try decodeJSON([RawSummary].self, from: data, what: "container list")
        return try raw.enumerated().map { index, entry in try DockerContainerSummary(raw: entry, index: index) }
    }
}

extension DockerBridgeNetwork {
    /// Decodes `GET /networks/bridge` (or any bridge-driver network).
    public init(json data: Data) throws {
        let raw = try decodeJSON(RawNetwork.self, from: data, what: "network inspect")
        try self.init(raw: raw)
    }
}

extension DockerVersionInfo {
    /// Decodes `GET /version`.
    public init(json data: Data) throws {
        let raw = try decodeJSON(RawVersion.self, from: data, what: "version")
        guard let version = raw.version else {
            throw DockerError.decoding(what: "version", field: "Version", reason: "missing")
        }
        self.init(
            version: version,
            apiVersion: raw.apiVersion.flatMap { DockerAPIVersion($0) },
            minAPIVersion: raw.minAPIVersion.flatMap { DockerAPIVersion($0) },
            os: raw.os, arch: raw.arch, kernelVersion: raw.kernelVersion)
    }
}

extension DockerDaemonInfo {
    /// Decodes `GET /info`.
    public init(json data: Data) throws {
        let raw = try decodeJSON(RawInfo.self, from: data, what: "info")
        self.init(
            serverVersion: raw.serverVersion, ipv4Forwarding: raw.ipv4Forwarding,
            bridgeNfIptables: raw.bridgeNfIptables, bridgeNfIp6tables: raw.bridgeNfIp6tables,
            dockerRootDir: raw.dockerRootDir)
    }
}

/// The daemon's `{"message": "..."}` error body; nil when the body is not that.
func dockerErrorMessage(from data: Data) -> String? {
    struct RawMessage: Decodable { var message: String? }
    return (try? JSONDecoder().decode(RawMessage.self, from: data))?.message
}

// MARK: - Decoding errors with JSON paths

func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data, what: String) throws -> T {
    do {
        return try JSONDecoder().decode(T.self, from: data)
    } catch let error as DecodingError {
        throw DockerError(decoding: error, what: what)
    } catch {
        throw DockerError.decoding(what: what, field: "", reason: "\(error)")
    }
}

extension DockerError {
    init(decoding error: DecodingError, what: String) {
        switch error {
        case .typeMismatch(let type, let context):
            self = .decoding(what: what, field: jsonPath(context.codingPath), reason: "expected \(jsonTypeName(type))")
        case .valueNotFound(let type, let context):
            self = .decoding(
                what: what, field: jsonPath(context.codingPath), reason: "null where \(jsonTypeName(type)) is required")
        case .keyNotFound(let key, let context):
            self = .decoding(what: what, field: jsonPath(context.codingPath + [key]), reason: "missing")
        case .dataCorrupted(let context):
            var reason = context.debugDescription
            if let underlying = context.underlyingError {
                reason += " (\(underlying.localizedDescription))"
            }
            self = .decoding(what: what, field: jsonPath(context.codingPath), reason: reason)
        @unknown default:
            self = .decoding(what: what, field: "", reason: "\(error)")
        }
    }
}

/// "NetworkSettings.Networks.bridge.IPAddress", "[2].Names[0]".
func jsonPath(_ path: [any CodingKey]) -> String {
    var text = ""
    for key in path {
        if let index = key.intValue, key.stringValue.hasPrefix("Index ") || key.stringValue == String(index) {
            text += "[\(index)]"
        } else {
            text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
        }
    }
    return text
}

private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Bool.Type: return "a boolean"
    case is Int.Type, is Int64.Type, is Int32.Type, is UInt64.Type: return "a number"
    default:
        let name = String(describing: type)
        if name.hasPrefix("Dictionary") { return "an object" }
        if name.hasPrefix("Array") { return "an array" }
        return name
    }
}

// MARK: - Conversions

extension DockerContainer {
    init(raw: RawInspect) throws {
        let what = "container inspect"
        guard let id = raw.id, !id.isEmpty else {
            throw DockerError.decoding(what: what, field: "Id", reason: "missing")
        }
        guard let rawName = raw.name, !rawName.isEmpty else {
            throw DockerError.decoding(what: what, field: "Name", reason: "missing (container \(id))")
        }
        var warnings: [String] = []
        let name = rawName.hasPrefix("/") ? String(rawName.dropFirst()) : rawName

        let running: Bool
        if let state = raw.state {
            running = state.running ?? (state.status == "running")
        } else {
            running = false
            warnings.append("no State: taken as not running")
        }
        var pid: Int32?
        if running, let rawPid = raw.state?.pid {
            guard let value = Int32(exactly: rawPid), value > 0 else {
                throw DockerError.decoding(what: what, field: "State.Pid", reason: "\(rawPid) is not a process id")
            }
            pid = value
        }

        let networkMode: String
        if let mode = raw.hostConfig?.networkMode, !mode.isEmpty {
            networkMode = mode
        } else {
            networkMode = "default"
            warnings.append("no HostConfig.NetworkMode: taken as \"default\"")
        }

        // Every network's endpoint; one without an IPv4 address (host, none, a stopped
        // container's) is no endpoint of the policy.
        var networks: [String: DockerBridgeEndpoint] = [:]
        for (network, endpoint) in raw.networkSettings?.networks ?? [:] {
            guard let endpoint else { continue }
            networks[network] = try DockerBridgeEndpoint(
                raw: endpoint, field: "NetworkSettings.Networks.\(network)",
                what: what, warnings: &warnings)
        }

        var links: [DockerLinkDeclaration] = []
        for (index, entry) in (raw.hostConfig?.links ?? []).enumerated() {
            guard let link = DockerLinkDeclaration(parsing: entry) else {
                warnings.append("HostConfig.Links[\(index)]: '\(entry)' is not /child:/parent/alias; skipped")
                continue
            }
            if link.parent != name {
                warnings.append(
                    "HostConfig.Links[\(index)]: '\(entry)' names parent '\(link.parent)', held by '\(name)'")
            }
            links.append(link)
        }

        var exposed = Set<PortSpec>()
        for key in (raw.config?.exposedPorts ?? [:]).keys {
            guard let ports = parsePortKey(key) else {
                warnings.append("Config.ExposedPorts: '\(key)' is not PORT[-PORT]/PROTO; skipped")
                continue
            }
            exposed.formUnion(ports)
        }

        var published = parsePublishedPorts(
            raw.networkSettings?.ports, field: "NetworkSettings.Ports", warnings: &warnings)
        if published.isEmpty {
            published = parsePublishedPorts(
                raw.hostConfig?.portBindings, field: "HostConfig.PortBindings", warnings: &warnings)
        }

        self.init(
            id: id, name: name, running: running, pid: pid, networkMode: networkMode,
            links: links, exposedPorts: exposed.sorted(), publishedPorts: published, warnings: warnings,
            networks: networks)
    }
}

extension DockerBridgeEndpoint {
    /// nil when the endpoint has no IPv4 address (a stopped container keeps an empty one).
    init?(raw: RawEndpointSettings, field: String, what: String, warnings: inout [String]) throws {
        guard let ipText = raw.ipAddress, !ipText.isEmpty else { return nil }
        guard let ip = IPv4Address(ipText) else {
            throw DockerError.decoding(
                what: what, field: "\(field).IPAddress", reason: "'\(ipText)' is not an IPv4 address")
        }
        var mac: MACAddress?
        if let macText = raw.macAddress, !macText.isEmpty {
            guard let parsed = MACAddress(macText) else {
                throw DockerError.decoding(
                    what: what, field: "\(field).MacAddress", reason: "'\(macText)' is not a MAC address")
            }
            mac = parsed
        }
        var gateway: IPv4Address?
        if let gatewayText = raw.gateway, !gatewayText.isEmpty {
            gateway = IPv4Address(gatewayText)
            if gateway == nil { warnings.append("\(field).Gateway: '\(gatewayText)' is not an IPv4 address; ignored") }
        }
        var ipv6: IPv6Address?
        if let text = raw.globalIPv6Address, !text.isEmpty {
            ipv6 = IPv6Address(text)
            if ipv6 == nil {
                warnings.append("\(field).GlobalIPv6Address: '\(text)' is not an IPv6 address; ignored")
            }
        }
        self.init(
            ip: ip, prefixLength: raw.ipPrefixLen, mac: mac, gateway: gateway,
            endpointID: raw.endpointID.flatMap { $0.isEmpty ? nil : $0 },
            networkID: raw.networkID.flatMap { $0.isEmpty ? nil : $0 }, ipv6: ipv6)
    }
}

/// "80/tcp" → [80/tcp]; "8000-8002/udp" → three ports (older daemons keep ranges as keys).
func parsePortKey(_ key: String) -> [PortSpec]? {
    if let single = PortSpec(key) { return [single] }
    let parts = key.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count <= 2 else { return nil }
    let bounds = parts[0].split(separator: "-", omittingEmptySubsequences: false)
    guard bounds.count == 2, let low = UInt16(bounds[0]), let high = UInt16(bounds[1]),
        low != 0, low <= high
    else { return nil }
    var proto = TransportProtocol.tcp
    if parts.count == 2 {
        guard let parsed = TransportProtocol(rawValue: parts[1].lowercased()) else { return nil }
        proto = parsed
    }
    return (low...high).map { PortSpec($0, proto) }
}

/// Host bindings of one port map, IPv4 only: the bridge is IPv4, so "::" bindings do not
/// concern it. "" and "0.0.0.0" mean every host address.
func parsePublishedPorts(_ map: RawPortMap?, field: String, warnings: inout [String]) -> [PublishedPort] {
    guard let map else { return [] }
    var result = Set<PublishedPort>()
    for (key, bindings) in map {
        guard let bindings, !bindings.isEmpty else { continue }
        guard let containerPorts = parsePortKey(key), containerPorts.count == 1,
            let containerPort = containerPorts.first
        else {
            warnings.append("\(field): '\(key)' is not PORT/PROTO; its bindings are skipped")
            continue
        }
        for binding in bindings {
            let hostIPText = binding.hostIP ?? ""
            if hostIPText.contains(":") { continue }  // IPv6 binding
            var hostIP: IPv4Address?
            if !hostIPText.isEmpty, hostIPText != "0.0.0.0" {
                guard let parsed = IPv4Address(hostIPText) else {
                    warnings.append("\(field).\(key): HostIp '\(hostIPText)' is not an address; binding skipped")
                    continue
                }
                hostIP = parsed
            }
            let hostPortText = binding.hostPort ?? ""
            // An empty HostPort asks for an ephemeral port: only NetworkSettings.Ports knows which.
            if hostPortText.isEmpty || hostPortText == "0" { continue }
            guard let hostPort = UInt16(hostPortText) else {
                warnings.append("\(field).\(key): HostPort '\(hostPortText)' is not a port; binding skipped")
                continue
            }
            result.insert(
                PublishedPort(
                    hostIP: hostIP, hostPort: hostPort,
                    containerPort: containerPort.port, proto: containerPort.proto))
        }
    }
    return result.sorted {
        ($0.proto, $0.hostPort, $0.containerPort, $0.hostIP?.value ?? 0)
            < ($1.proto, $1.hostPort, $1.containerPort, $1.hostIP?.value ?? 0)
    }
}

extension DockerContainerSummary {
    init(raw: RawSummary, index: Int) throws {
        let what = "container list"
        guard let id = raw.id, !id.isEmpty else {
            throw DockerError.decoding(what: what, field: "[\(index)].Id", reason: "missing")
        }
        let names = (raw.names ?? []).map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }
        // Link aliases read "parent/alias"; the container's own name has no slash.
        guard let name = names.first(where: { !$0.contains("/") }) ?? names.first else {
            throw DockerError.decoding(what: what, field: "[\(index)].Names", reason: "no name (container \(id))")
        }
        var bridgeIP: IPv4Address?
        if let endpoint = raw.networkSettings?.networks?[dockerDefaultBridgeNetwork] ?? nil,
            let ipText = endpoint.ipAddress, !ipText.isEmpty
        {
            guard let ip = IPv4Address(ipText) else {
                throw DockerError.decoding(
                    what: what, field: "[\(index)].NetworkSettings.Networks.bridge.IPAddress",
                    reason: "'\(ipText)' is not an IPv4 address")
            }
            bridgeIP = ip
        }
        var addressed: [String] = []
        for (network, endpoint) in raw.networkSettings?.networks ?? [:] {
            if let text = endpoint?.ipAddress, IPv4Address(text) != nil { addressed.append(network) }
        }
        self.init(
            id: id, name: name, names: names, state: raw.state ?? "unknown",
            networkMode: raw.hostConfig?.networkMode, bridgeIP: bridgeIP, addressedNetworks: addressed.sorted())
    }
}

extension DockerBridgeNetwork {
    static let bridgeNameOption = "com.docker.network.bridge.name"
    static let iccOption = "com.docker.network.bridge.enable_icc"
    static let masqueradeOption = "com.docker.network.bridge.enable_ip_masquerade"
    static let hostBindingOption = "com.docker.network.bridge.host_binding_ipv4"
    static let hostIPv4Option = "com.docker.network.host_ipv4"

    init(raw: RawNetwork) throws {
        let what = "network inspect"
        guard let id = raw.id, !id.isEmpty else {
            throw DockerError.decoding(what: what, field: "Id", reason: "missing")
        }
        var warnings: [String] = []
        let options = raw.options ?? [:]
        func flag(_ key: String, default value: Bool) -> Bool {
            guard let text = options[key] else { return value }
            switch text.lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default:
                warnings.append("Options[\(key)]: '\(text)' is not true or false; taken as \(value)")
                return value
            }
        }
        let icc = flag(Self.iccOption, default: true)
        let masquerade = flag(Self.masqueradeOption, default: true)
        let name = raw.name ?? dockerDefaultBridgeNetwork
        let bridgeName =
            options[Self.bridgeNameOption].flatMap { $0.isEmpty ? nil : $0 }
            ?? (name == dockerDefaultBridgeNetwork ? "docker0" : "br-" + id.prefix(12))
        func address(_ key: String) -> IPv4Address? {
            guard let text = options[key], !text.isEmpty, text != "0.0.0.0" else { return nil }
            guard let address = IPv4Address(text) else {
                // An IPv6 binding address, or garbage: not the IPv4 policy's concern.
                warnings.append("Options[\(key)]: '\(text)' is not an IPv4 address; ignored")
                return nil
            }
            return address
        }

        var subnet: IPv4CIDR?
        var gateway: IPv4Address?
        var ipv6Gateway: IPv6InterfaceAddress?
        // Dual stack: the first IPv6 subnet, when the network has IPv6 on.
        for (index, config) in (raw.ipam?.config ?? []).enumerated() where raw.enableIPv6 == true {
            guard let text = config.subnet, text.contains(":") else { continue }
            guard let subnet6 = IPv6CIDR(text), text.contains("/") else {
                warnings.append("IPAM.Config[\(index)].Subnet: '\(text)' is not an IPv6 prefix; IPv6 ignored")
                break
            }
            var address = IPv6Address(high: subnet6.address.high, low: subnet6.address.low | 1)
            if let gatewayText = config.gateway, !gatewayText.isEmpty {
                guard let parsed = IPv6Address(gatewayText), subnet6.contains(parsed) else {
                    warnings.append(
                        "IPAM.Config[\(index)].Gateway: '\(gatewayText)' is not an IPv6 address of \(subnet6); IPv6 ignored"
                    )
                    break
                }
                address = parsed
            }
            ipv6Gateway = IPv6InterfaceAddress(address: address, prefixLength: subnet6.prefixLength)
            break
        }
        for (index, config) in (raw.ipam?.config ?? []).enumerated() {
            // An IPv6 subnet (dual-stack networks) is `ipv6Gateway`'s.
            guard let text = config.subnet, !text.contains(":") else { continue }
            guard let parsed = IPv4CIDR(text) else {
                throw DockerError.decoding(
                    what: what, field: "IPAM.Config[\(index)].Subnet", reason: "'\(text)' is not an IPv4 CIDR")
            }
            subnet = parsed
            if let gatewayText = config.gateway, !gatewayText.isEmpty {
                guard let parsedGateway = IPv4Address(gatewayText) else {
                    throw DockerError.decoding(
                        what: what, field: "IPAM.Config[\(index)].Gateway",
                        reason: "'\(gatewayText)' is not an IPv4 address")
                }
                gateway = parsedGateway
            }
            break
        }

        var endpoints: [String: DockerNetworkEndpoint] = [:]
        for (containerID, entry) in raw.containers ?? [:] {
            var endpoint = DockerNetworkEndpoint(name: entry.name ?? "")
            if let text = entry.ipv4Address, !text.isEmpty {
                let parts = text.split(separator: "/", omittingEmptySubsequences: false)
                endpoint.ip = IPv4Address(parts[0])
                endpoint.prefixLength = parts.count == 2 ? Int(parts[1]) : nil
                if endpoint.ip == nil {
                    warnings.append("Containers.\(containerID).IPv4Address: '\(text)' is not an address")
                }
            }
            if let text = entry.macAddress, !text.isEmpty {
                endpoint.mac = MACAddress(text)
                if endpoint.mac == nil {
                    warnings.append("Containers.\(containerID).MacAddress: '\(text)' is not a MAC address")
                }
            }
            endpoints[containerID] = endpoint
        }

        self.init(
            id: id, name: name, driver: raw.driver, bridgeName: bridgeName,
            iccEnabled: icc, ipMasquerade: masquerade, subnet: subnet, gateway: gateway,
            endpoints: endpoints, internal: raw.internal ?? false, enableIPv6: raw.enableIPv6 ?? false,
            hostBindingIPv4: address(Self.hostBindingOption), hostIPv4: address(Self.hostIPv4Option),
            ipv6Gateway: ipv6Gateway, warnings: warnings)
    }
}
