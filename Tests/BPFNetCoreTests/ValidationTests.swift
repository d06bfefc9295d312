import XCTest

@testable import BPFNetCore

final class ValidationTests: XCTestCase {
    func problems(_ policy: Policy, bridge: IPv4InterfaceAddress? = nil) -> [PolicyProblem] {
        policy.normalized().problems(bridgeAddress: bridge)
    }

    func paths(_ policy: Policy, bridge: IPv4InterfaceAddress? = nil) -> [String] {
        problems(policy, bridge: bridge).map(\.path)
    }

    func testSampleIsValid() throws {
        try Sample.policy.validate()
        try Sample.policy.validate(bridge: Sample.bridgeAddress)
    }

    func testDuplicates() {
        var policy = Sample.policy
        policy.containers.append(Container(name: "web", ip: Sample.web.ip, mac: Sample.web.mac, port: "vethweb"))
        XCTAssertEqual(
            paths(policy), ["containers[2].name", "containers[2].ip", "containers[2].mac", "containers[2].port"])
        let text = problems(policy).map(\.description).joined(separator: "\n")
        XCTAssertTrue(text.contains("containers[2].ip: 172.17.0.2 is already the address of containers[0] 'web'"), text)
        XCTAssertTrue(text.contains("02:42:ac:11:00:02 is already the MAC of containers[0] 'web'"), text)
        XCTAssertTrue(text.contains("'vethweb' is already the port of containers[0] 'web'"), text)
    }

    func testLinks() {
        var policy = Sample.policy
        policy.links += [
            Link(parent: "client", child: "web", alias: "w"), Link(parent: "web", child: "web"),
            Link(parent: "ghost", child: "web"), Link(parent: "web", child: "client"),
        ]
        XCTAssertEqual(paths(policy), ["links[1]", "links[2]", "links[3].parent"])
        let text = problems(policy).map(\.description).joined(separator: "\n")
        XCTAssertTrue(text.contains("links[1]: client → web is already linked by links[0]"), text)
        XCTAssertTrue(text.contains("links[2]: 'web' is linked to itself"), text)
        XCTAssertTrue(
            text.contains("links[3].parent: no container is named 'ghost'; known containers: client, web"), text)
    }

    func testPublishedCollisions() {
        var policy = Sample.policy
        // Same port on every address as web's 8080/tcp.
        policy.containers[1].published = [
            PublishedPort(hostPort: 8080, containerPort: 8080),
            PublishedPort(hostPort: 8080, containerPort: 8080, proto: .udp),  // other proto: fine
            PublishedPort(hostIP: IPv4Address(10, 0, 0, 1), hostPort: 9000, containerPort: 1),
            PublishedPort(hostIP: IPv4Address(10, 0, 0, 2), hostPort: 9000, containerPort: 1),  // other IP: fine
            PublishedPort(hostIP: IPv4Address(10, 0, 0, 1), hostPort: 9000, containerPort: 2),
            PublishedPort(hostPort: 9000, containerPort: 3),
        ]  // any vs specific
        XCTAssertEqual(
            paths(policy), ["containers[1].published[0]", "containers[1].published[4]", "containers[1].published[5]"])
        let text = problems(policy).map(\.description).joined(separator: "\n")
        XCTAssertTrue(
            text.contains("host port 8080/tcp on every address collides with containers[0] 'web' published[0]"), text)
        XCTAssertTrue(
            text.contains(
                "host port 9000/tcp on 10.0.0.1 collides with containers[1] 'client' published[2] (on 10.0.0.1)"), text)
        // 0.0.0.0 is "every address".
        var any = Sample.policy
        any.containers[1].published = [PublishedPort(hostIP: .any, hostPort: 8080, containerPort: 1)]
        XCTAssertEqual(
            Policy(containers: any.containers).problems(bridgeAddress: nil).map(\.path), ["containers[1].published[0]"])
    }

    func testPublishedPortNotExposedIsMergedNotRejected() throws {
        var policy = Sample.policy
        policy.containers[1].published = [PublishedPort(hostPort: 9999, containerPort: 7777, proto: .udp)]
        try policy.validate()
        XCTAssertEqual(policy.normalized().containers[1].exposed, [PortSpec(7777, .udp)])
        XCTAssertEqual(Policy.effectiveExposedPorts(of: policy.containers[1]), [PortSpec(7777, .udp)])
    }

    func testInterfaces() {
        var policy = Sample.policy
        policy.extInterfaces += [
            ExternalInterface(name: "eth0"), ExternalInterface(name: "docker0"),
            ExternalInterface(name: "vethclient"),
        ]
        XCTAssertEqual(paths(policy), ["extInterfaces[1].name", "extInterfaces[2].name", "containers[1].port"])
        let text = problems(policy).map(\.description).joined(separator: "\n")
        XCTAssertTrue(text.contains("extInterfaces[1].name: 'eth0' is listed twice (also extInterfaces[0])"), text)
        XCTAssertTrue(text.contains("extInterfaces[2].name: 'docker0' is the bridge"), text)
        XCTAssertTrue(
            text.contains("containers[1].port: 'vethclient' is an external interface (extInterfaces[3])"), text)

        var bridgePort = Sample.policy
        bridgePort.containers[0].port = "docker0"
        XCTAssertEqual(paths(bridgePort), ["containers[0].port"])
        var badBridge = Sample.policy
        badBridge.bridge = "this-name-is-too-long"
        XCTAssertEqual(paths(badBridge), ["bridge"])
    }

    func testAddressesAgainstTheBridge() throws {
        var policy = Sample.policy
        policy.containers[0].ip = IPv4Address(172, 17, 0, 1)
        policy.containers[1].ip = IPv4Address(172, 17, 255, 255)
        XCTAssertEqual(paths(policy), [], "unknown without the bridge address")
        XCTAssertEqual(paths(policy, bridge: Sample.bridgeAddress), ["containers[0].ip", "containers[1].ip"])
        let text = problems(policy, bridge: Sample.bridgeAddress).map(\.description).joined(separator: "\n")
        XCTAssertTrue(text.contains("172.17.0.1 is the bridge's own address (docker0 has 172.17.0.1/16)"), text)
        XCTAssertTrue(text.contains("172.17.255.255 is the broadcast address of the bridge subnet 172.17.0.0/16"), text)
        XCTAssertThrowsError(try policy.validate(bridge: Sample.bridgeAddress)) { error in
            XCTAssertTrue("\(error)".hasPrefix("invalid policy (2 problems):"), "\(error)")
        }
        var network = Sample.policy
        network.containers[0].ip = IPv4Address(172, 17, 0, 0)
        XCTAssertEqual(paths(network, bridge: Sample.bridgeAddress), ["containers[0].ip"])
        // Outside the subnet is allowed (the programs treat known containers as inside).
        var far = Sample.policy
        far.containers[0].ip = IPv4Address(10, 1, 1, 1)
        XCTAssertEqual(paths(far, bridge: Sample.bridgeAddress), [])
    }

    func testUnusableValues() {
        var policy = Sample.policy
        policy.containers[0].ip = IPv4Address(224, 0, 0, 1)
        policy.containers[1].ip = IPv4Address(127, 0, 0, 2)
        policy.containers[0].mac = MACAddress(0x01, 0, 0x5e, 0, 0, 1)
        policy.containers[1].mac = MACAddress(0, 0, 0, 0, 0, 0)
        policy.containers[0].exposed.append(PortSpec(0))
        policy.containers[0].published.append(
            PublishedPort(hostIP: IPv4Address(239, 1, 1, 1), hostPort: 0, containerPort: 0))
        policy.containers[1].name = "bad name"
        let found = Set(problems(policy).map(\.path))
        XCTAssertEqual(
            found,
            [
                "containers[0].ip", "containers[1].ip", "containers[0].mac", "containers[1].mac",
                "containers[0].exposed[0]", "containers[0].published[1].hostPort",
                "containers[0].published[1].containerPort", "containers[0].published[1].hostIP",
                "containers[1].name", "links[0].parent",
            ])
        // Loopback bindings are Docker's common "-p 127.0.0.1:8080:80".
        var loopback = Sample.policy
        loopback.containers[0].published = [
            PublishedPort(hostIP: IPv4Address(127, 0, 0, 1), hostPort: 8080, containerPort: 80)
        ]
        XCTAssertEqual(paths(loopback), [])
    }

    // MARK: Parsing edge cases of the value types

    func testCIDRParsing() {
        XCTAssertEqual(IPv4CIDR("10.0.0.0/8")?.description, "10.0.0.0/8")
        XCTAssertEqual(IPv4CIDR("10.1.2.3/8")?.description, "10.0.0.0/8", "host bits masked")
        XCTAssertEqual(IPv4CIDR("10.1.2.3")?.description, "10.1.2.3/32")
        XCTAssertEqual(IPv4CIDR("0.0.0.0/0")?.netmask, 0)
        XCTAssertEqual(IPv4CIDR("1.2.3.4/32")?.netmask, 0xFFFF_FFFF)
        for bad in [
            "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0/8", "10.0.0.0/8/8", "10.0.0.0/ 8", "/8", "",
            "256.0.0.0/8", "10.0.0.0/008", "a.b.c.d/8", "10.0.0.0/٣",
        ] {
            XCTAssertNil(IPv4CIDR(bad), bad)
        }
        XCTAssertNotNil(IPv4CIDR("10.0.0.0/08"))
        XCTAssertTrue(IPv4CIDR("203.0.113.0/24")!.contains(IPv4Address(203, 0, 113, 255)))
        XCTAssertFalse(IPv4CIDR("203.0.113.0/24")!.contains(IPv4Address(203, 0, 114, 0)))
        XCTAssertEqual(IPv4InterfaceAddress("172.17.0.1/16")?.network.description, "172.17.0.0/16")
        XCTAssertEqual(IPv4InterfaceAddress("172.17.0.1/16")?.broadcast, IPv4Address(172, 17, 255, 255))
        XCTAssertNil(IPv4InterfaceAddress("172.17.0.1"))
        XCTAssertNil(IPv4InterfaceAddress("172.17.0.1/33"))
        XCTAssertNil(IPv4InterfaceAddress("172.17.0/8"))
        XCTAssertEqual(IPv4InterfaceAddress("10.0.0.1/32")?.network.description, "10.0.0.1/32")
    }

    func testAddressParsing() {
        XCTAssertEqual(IPv4Address("0.0.0.0"), .any)
        XCTAssertEqual(IPv4Address("255.255.255.255")?.isLimitedBroadcast, true)
        for bad in [
            "1.2.3", "1.2.3.4.5", "1.2.3.256", "1..3.4", " 1.2.3.4", "1.2.3.4 ", "01234.1.1.1", "+1.2.3.4", "１.2.3.4",
        ] {
            XCTAssertNil(IPv4Address(bad), bad)
        }
        XCTAssertEqual(IPv4Address(172, 17, 0, 2).networkOrder, UInt32(0xAC11_0002).bigEndian)
        XCTAssertEqual(IPv4Address(networkOrder: UInt32(0xAC11_0002).bigEndian), IPv4Address(172, 17, 0, 2))
    }

    func testMACParsing() {
        XCTAssertEqual(MACAddress("02:42:AC:11:00:02"), MACAddress("02-42-ac-11-00-02"))
        for bad in [
            "02:42:ac:11:00", "02:42:ac:11:00:02:03", "2:42:ac:11:00:02", "02:42:ac:11:00:0g", "024:2a:c1:10:00:2", "",
        ] {
            XCTAssertNil(MACAddress(bad), bad)
        }
        XCTAssertEqual(MACAddress(dockerStyleFor: IPv4Address(172, 17, 0, 2)).description, "02:42:ac:11:00:02")
        XCTAssertTrue(MACAddress("33:33:00:00:00:01")!.isMulticast)
        XCTAssertFalse(MACAddress("02:42:ac:11:00:02")!.isMulticast)
    }

    func testPortParsing() {
        XCTAssertEqual(PortSpec("80"), PortSpec(80, .tcp))
        XCTAssertEqual(PortSpec("53/udp"), PortSpec(53, .udp))
        XCTAssertEqual(PortSpec("132/SCTP"), PortSpec(132, .sctp))
        XCTAssertEqual(PortSpec("65535/tcp")?.port, 65535)
        for bad in ["0", "65536", "80/", "/tcp", "80/icmp", "80/tcp/udp", "-1", "80-90", "", "http"] {
            XCTAssertNil(PortSpec(bad), bad)
        }
        XCTAssertEqual(PortSpec(53, .udp).description, "53/udp")
        XCTAssertEqual(
            PolicyFileReader.parseDockerBinding("127.0.0.1:8080:80/udp"),
            PublishedPort(hostIP: IPv4Address(127, 0, 0, 1), hostPort: 8080, containerPort: 80, proto: .udp))
        XCTAssertNil(PolicyFileReader.parseDockerBinding("8080"))
        XCTAssertNil(PolicyFileReader.parseDockerBinding("0:80"))
        XCTAssertNil(PolicyFileReader.parseDockerBinding("localhost:1:2"))
    }

    func testInterfaceNames() {
        XCTAssertTrue(InterfaceName.isValid("eth0"))
        XCTAssertTrue(InterfaceName.isValid("veth1234567890a"))  // 15 bytes
        XCTAssertFalse(InterfaceName.isValid("veth1234567890ab"))
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] { XCTAssertFalse(InterfaceName.isValid(bad), bad) }
        XCTAssertEqual(ContainerName.normalized("/web"), "web")
        XCTAssertNil(ContainerName.normalized("_web"))
        XCTAssertEqual(ContainerName.normalized("w"), "w")
        XCTAssertNil(ContainerName.normalized("web!"))
    }

    // MARK: Overrides

    func testOverrides() throws {
        var overrides = PolicyOverrides(
            bridge: "br0", icc: true, ipForward: false, forwardPolicy: .accept, portHook: .xdp)
        var policy = try overrides.apply(to: Sample.policy)
        XCTAssertEqual(policy.bridge, "br0")
        XCTAssertTrue(policy.icc)
        XCTAssertFalse(policy.ipForward)
        XCTAssertEqual(policy.forwardPolicy, .accept)
        XCTAssertEqual(policy.portHook, .xdp)
        XCTAssertEqual(policy.extInterfaces, Sample.policy.extInterfaces, "untouched when not given")
        XCTAssertEqual(policy.containers, Sample.policy.containers)
        XCTAssertTrue(PolicyOverrides().isEmpty)
        XCTAssertEqual(try PolicyOverrides().apply(to: Sample.policy), Sample.policy)

        // --ext-if replaces the list; a name from the file keeps its allow-list.
        overrides = PolicyOverrides(extInterfaces: ["eth1", "eth0", "eth1"])
        policy = try overrides.apply(to: Sample.policy)
        XCTAssertEqual(policy.extInterfaces, [ExternalInterface(name: "eth1"), Sample.policy.extInterfaces[0]])

        // --allow-source replaces every interface's list.
        overrides.allowSources = [SourcePrefix("10.0.0.0/8")!, SourcePrefix("2001:db8::/32")!]
        policy = try overrides.apply(to: Sample.policy)
        XCTAssertEqual(
            policy.extInterfaces.map(\.allowSources), [[IPv4CIDR("10.0.0.0/8")!], [IPv4CIDR("10.0.0.0/8")!]])
        XCTAssertEqual(
            policy.extInterfaces.map(\.allowSourcesIPv6), [[IPv6CIDR("2001:db8::/32")!], [IPv6CIDR("2001:db8::/32")!]])

        // ... and is refused when there is no interface to apply it to.
        XCTAssertThrowsError(try PolicyOverrides(allowSources: [.v4(IPv4CIDR("10.0.0.0/8")!)]).apply(to: Policy())) {
            error in
            XCTAssertTrue("\(error)".contains("--allow-source"), "\(error)")
            XCTAssertTrue("\(error)".contains("10.0.0.0/8"), "\(error)")
            XCTAssertTrue("\(error)".contains("--ext-if"), "\(error)")
        }
    }
}

extension ValidationTests {
    func testSignsAreNotNumbers() {
        XCTAssertNil(IPv4CIDR("10.0.0.0/+8"))
        XCTAssertNil(PortSpec("+80"))
        XCTAssertNil(MACAddress("+2:42:ac:11:00:02"))
        XCTAssertNil(IPv4InterfaceAddress("172.17.0.1/+6"))
        XCTAssertNil(PolicyFileReader.parseDockerBinding("+80:80"))
    }
}
