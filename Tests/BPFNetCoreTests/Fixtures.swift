import BPFNetTestSupport
import Foundation

@testable import BPFNetCore

/// The example policy of docs/policy-file.md and host facts that go with it.
enum Sample {
    static let bridgeAddress = IPv4InterfaceAddress("172.17.0.1/16")!
    static let interfaces: [String: UInt32] = [
        "lo": 1, "eth0": 2, "docker0": 3, "eth1": 4,
        "vethweb": 10, "vethclient": 11, "vethdb": 12, "vethother": 13,
    ]
    static let facts = HostFacts(bridgeIfindex: 3, bridgeAddress: bridgeAddress, interfaces: interfaces)

    static let web = Container(
        name: "web", ip: IPv4Address(172, 17, 0, 2), mac: MACAddress("02:42:ac:11:00:02")!,
        port: "vethweb", exposed: [PortSpec(80, .tcp), PortSpec(53, .udp)],
        published: [PublishedPort(hostPort: 8080, containerPort: 80, proto: .tcp)])
    static let client = Container(
        name: "client", ip: IPv4Address(172, 17, 0, 3), mac: MACAddress("02:42:ac:11:00:03")!,
        port: "vethclient")
    static let db = Container(
        name: "db", ip: IPv4Address(172, 17, 0, 4), mac: MACAddress("02:42:ac:11:00:04")!,
        port: "vethdb", exposed: [PortSpec(5432, .tcp)])
    static let other = Container(
        name: "other", ip: IPv4Address(172, 17, 0, 5), mac: MACAddress("02:42:ac:11:00:05")!,
        port: "vethother")

    /// docs/policy-file.md's example as a value.
    static let policy = Policy(
        bridge: "docker0", icc: false, ipForward: true, forwardPolicy: .drop, portHook: .tc,
        extInterfaces: [
            ExternalInterface(
                name: "eth0",
                allowSources: [
                    IPv4CIDR("198.51.100.2/32")!,
                    IPv4CIDR("203.0.113.0/24")!,
                ])
        ],
        containers: [web, client], links: [Link(parent: "client", child: "web")])

    static func state(_ policy: Policy = policy) -> MapState {
        try! PolicyCompiler.compile(policy, facts: facts)
    }

    static let bridgeMAC = MACAddress(0x02, 0x42, 0x00, 0x00, 0x00, 0x01)
    static let gateway = Endpoint(mac: bridgeMAC, ip: bridgeAddress.address)
    static let outside = Endpoint(mac: bridgeMAC, ip: IPv4Address(198, 51, 100, 9))
}

extension Endpoint {
    static func of(_ container: Container) -> Endpoint { Endpoint(container) }
}
