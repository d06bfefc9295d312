// SPDX-License-Identifier: Apache-2.0
//
// Raw mirrors of the Engine API's JSON: every field optional (absent and null
// mean the same), named as Docker names it, so any daemon version decodes.
// What the policy depends on is validated when they are converted
// (DockerDecoding.swift).

import Foundation

/// Decodes any JSON value and keeps nothing (the `{}` values of `ExposedPorts`).
struct IgnoredJSON: Decodable {
    init(from decoder: any Decoder) throws {}
}

struct RawPortBinding: Decodable {
    var hostIP: String?
    var hostPort: String?
    enum CodingKeys: String, CodingKey { case hostIP = "HostIp", hostPort = "HostPort" }
}

typealias RawPortMap = [String: [RawPortBinding]?]

struct RawEndpointSettings: Decodable {
    var ipAddress: String?
    var ipPrefixLen: Int?
    var gateway: String?
    var macAddress: String?
    var endpointID: String?
    var networkID: String?
    var globalIPv6Address: String?
    enum CodingKeys: String, CodingKey {
        case ipAddress = "IPAddress", ipPrefixLen = "IPPrefixLen", gateway = "Gateway"
        case macAddress = "MacAddress", endpointID = "EndpointID", networkID = "NetworkID"
        case globalIPv6Address = "GlobalIPv6Address"
    }
}

struct RawInspect: Decodable {
    struct State: Decodable {
        var status: String?
        var running: Bool?
        var pid: Int?
        enum CodingKeys: String, CodingKey { case status = "Status", running = "Running", pid = "Pid" }
    }
    struct Config: Decodable {
        var exposedPorts: [String: IgnoredJSON]?
        enum CodingKeys: String, CodingKey { case exposedPorts = "ExposedPorts" }
    }
    struct HostConfig: Decodable {
        var networkMode: String?
        var links: [String]?
        var portBindings: RawPortMap?
        enum CodingKeys: String, CodingKey {
            case networkMode = "NetworkMode", links = "Links", portBindings = "PortBindings"
        }
    }
    struct NetworkSettings: Decodable {
        var ports: RawPortMap?
        var networks: [String: RawEndpointSettings?]?
        enum CodingKeys: String, CodingKey { case ports = "Ports", networks = "Networks" }
    }
    var id: String?
    var name: String?
    var state: State?
    var config: Config?
    var hostConfig: HostConfig?
    var networkSettings: NetworkSettings?
    enum CodingKeys: String, CodingKey {
        case id = "Id", name = "Name", state = "State", config = "Config"
        case hostConfig = "HostConfig", networkSettings = "NetworkSettings"
    }
}

struct RawSummary: Decodable {
    struct HostConfig: Decodable {
        var networkMode: String?
        enum CodingKeys: String, CodingKey { case networkMode = "NetworkMode" }
    }
    struct NetworkSettings: Decodable {
        var networks: [String: RawEndpointSettings?]?
        enum CodingKeys: String, CodingKey { case networks = "Networks" }
    }
    var id: String?
    var names: [String]?
    var state: String?
    var hostConfig: HostConfig?
    var networkSettings: NetworkSettings?
    enum CodingKeys: String, CodingKey {
        case id = "Id", names = "Names", state = "State", hostConfig = "HostConfig", networkSettings = "NetworkSettings"
    }
}

struct RawNetwork: Decodable {
    struct IPAM: Decodable {
        struct Config: Decodable {
            var subnet: String?
            var gateway: String?
            enum CodingKeys: String, CodingKey { case subnet = "Subnet", gateway = "Gateway" }
        }
        var config: [Config]?
        enum CodingKeys: String, CodingKey { case config = "Config" }
    }
    struct Endpoint: Decodable {
        var name: String?
        var macAddress: String?
        var ipv4Address: String?
        enum CodingKeys: String, CodingKey {
            case name = "Name", macAddress = "MacAddress", ipv4Address = "IPv4Address"
        }
    }
    var id: String?
    var name: String?
    var driver: String?
    var ipam: IPAM?
    var options: [String: String]?
    var containers: [String: Endpoint]?
    var `internal`: Bool?
    var enableIPv6: Bool?
    enum CodingKeys: String, CodingKey {
        case id = "Id", name = "Name", driver = "Driver", ipam = "IPAM", options = "Options", containers = "Containers"
        case `internal` = "Internal", enableIPv6 = "EnableIPv6"
    }
}

struct RawInfo: Decodable {
    var serverVersion: String?
    var ipv4Forwarding: Bool?
    var bridgeNfIptables: Bool?
    var bridgeNfIp6tables: Bool?
    var dockerRootDir: String?
    enum CodingKeys: String, CodingKey {
        case serverVersion = "ServerVersion", ipv4Forwarding = "IPv4Forwarding"
        case bridgeNfIptables = "BridgeNfIptables", bridgeNfIp6tables = "BridgeNfIp6tables"
        case dockerRootDir = "DockerRootDir"
    }
}

struct RawVersion: Decodable {
    var version: String?
    var apiVersion: String?
    var minAPIVersion: String?
    var os: String?
    var arch: String?
    var kernelVersion: String?
    enum CodingKeys: String, CodingKey {
        case version = "Version", apiVersion = "ApiVersion", minAPIVersion = "MinAPIVersion"
        case os = "Os", arch = "Arch", kernelVersion = "KernelVersion"
    }
}
