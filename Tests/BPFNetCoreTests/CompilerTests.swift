import BPFNetShared
import XCTest

@testable import BPFNetCore

final class CompilerTests: XCTestCase {
    let web = Sample.web.ip, client = Sample.client.ip

    func testConfigRecordAndBytes() throws {
        let state = Sample.state()
        let config = state.config
        // icc false, forward drop; by default the fast path and (nat auto with the tc hook) the eBPF NAT.
        XCTAssertEqual(config.flags, [.loaded, .ipForward, .fastPath, .nat, .natDrain])
        XCTAssertEqual(config.bridgeAddress, IPv4Address(172, 17, 0, 1))
        XCTAssertEqual(config.bridgeSubnet, IPv4Address(172, 17, 0, 0))
        XCTAssertEqual(config.bridgeNetmask, IPv4Address(255, 255, 0, 0))
        XCTAssertEqual(config.bridgeIfindex, 3)
        XCTAssertEqual(config.generation, 0)

        let c = config.cValue
        XCTAssertEqual(
            c.flags,
            BPFNET_CFG_LOADED.rawValue | BPFNET_CFG_IP_FORWARD.rawValue | BPFNET_CFG_FAST_PATH.rawValue
                | BPFNET_CFG_NAT.rawValue | BPFNET_CFG_NAT_DRAIN.rawValue)
        XCTAssertEqual(c.bridge_addr, UInt32(0xAC11_0001).bigEndian)
        XCTAssertEqual(c.bridge_netmask, UInt32(0xFFFF_0000).bigEndian)
        // As bytes: host-order u32s little-endian (x86/arm64), __be32 in packet order.
        XCTAssertEqual(
            MapEntry.config(config).valueBytes,
            [0x0C, 0x06, 0x00, 0x80, 172, 17, 0, 1, 172, 17, 0, 0, 255, 255, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]
                + [0, 0, 0, 0, 0, 0, 0, 0])  // bridge_mac unknown here, pad
        XCTAssertEqual(MapKey.config.bytes, [0, 0, 0, 0])
        XCTAssertEqual(ConfigRecord(c), config)

        var accepting = Sample.policy
        accepting.icc = true
        accepting.forwardPolicy = .accept
        accepting.ipForward = false
        XCTAssertEqual(
            Sample.state(accepting).config.flags, [.loaded, .icc, .forwardAccept, .fastPath, .nat, .natDrain])
        accepting.nat = .netfilter
        XCTAssertEqual(Sample.state(accepting).config.flags, [.loaded, .icc, .forwardAccept, .fastPath])
        accepting.nat = .auto
        accepting.portHook = .xdp
        XCTAssertEqual(Sample.state(accepting).config.flags, [.loaded, .icc, .forwardAccept, .fastPath])
    }

    func testNoBridgeAddressMeansNoSubnet() throws {
        let facts = HostFacts(bridgeIfindex: 3, bridgeAddress: nil, interfaces: Sample.interfaces)
        let config = try PolicyCompiler.compile(Sample.policy, facts: facts).config
        XCTAssertEqual(config.bridgeAddress, .any)
        XCTAssertEqual(config.bridgeNetmask, .any)
        XCTAssertNil(config.bridgeInterfaceAddress)
        XCTAssertTrue(
            config.flags.contains(.outsideContainers), "with the subnet unknown, every container is outside it")
    }

    /// The programs look a non-subnet destination up in bn_containers only
    /// when some container lies outside the subnet.
    func testOutsideContainersFlagOnlyForAContainerOutsideTheSubnet() throws {
        XCTAssertFalse(Sample.state().config.flags.contains(.outsideContainers))
        var stray = Sample.policy
        stray.containers[0].ip = IPv4Address(10, 99, 0, 2)
        XCTAssertTrue(Sample.state(stray).config.flags.contains(.outsideContainers))
        XCTAssertEqual(
            Sample.state(stray).config.cValue.flags & BPFNET_CFG_OUTSIDE_CONTAINERS.rawValue,
            BPFNET_CFG_OUTSIDE_CONTAINERS.rawValue)
    }

    func testContainersMacsNames() {
        let state = Sample.state()
        XCTAssertEqual(
            state.containers,
            [
                web: ContainerRecord(portIfindex: 10, mac: Sample.web.mac),
                client: ContainerRecord(portIfindex: 11, mac: Sample.client.mac),
            ])
        XCTAssertEqual(state.macs, [Sample.web.mac: web, Sample.client.mac: client])
        XCTAssertEqual(state.names, [web: "web", client: "client"])

        XCTAssertEqual(MapKey.container(web).bytes, [172, 17, 0, 2])
        XCTAssertEqual(
            MapEntry.container(web, state.containers[web]!).valueBytes,
            [10, 0, 0, 0, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0, 0])
        XCTAssertEqual(MapKey.mac(Sample.web.mac).bytes, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0, 0])
        XCTAssertEqual(MapEntry.mac(Sample.web.mac, web).valueBytes, [172, 17, 0, 2])
        let nameBytes = MapEntry.name(web, "web").valueBytes
        XCTAssertEqual(nameBytes.count, 64)
        XCTAssertEqual(Array(nameBytes.prefix(4)), [0x77, 0x65, 0x62, 0])
    }

    func testLinkRulesOfTheSample() {
        let rules = Sample.state().links
        let expected: Set<LinkRule> = [
            LinkRule(source: client, destination: web, port: 80, proto: 6, direction: .forward),
            LinkRule(source: web, destination: client, port: 80, proto: 6, direction: .reverse),
            LinkRule(source: client, destination: web, port: 53, proto: 17, direction: .forward),
            LinkRule(source: web, destination: client, port: 53, proto: 17, direction: .reverse),
            LinkRule(source: client, destination: web, port: 0, proto: 6, direction: .pair),
            LinkRule(source: web, destination: client, port: 0, proto: 6, direction: .pair),
            LinkRule(source: client, destination: web, port: 0, proto: 17, direction: .pair),
            LinkRule(source: web, destination: client, port: 0, proto: 17, direction: .pair),
        ]
        XCTAssertEqual(rules, expected)

        // Exact key bytes: saddr, daddr, port (network order), proto, dir.
        let forward = LinkRule(source: client, destination: web, port: 80, proto: 6, direction: .forward)
        XCTAssertEqual(MapKey.link(forward).bytes, [172, 17, 0, 3, 172, 17, 0, 2, 0x00, 0x50, 6, 1])
        let reverse = LinkRule(source: web, destination: client, port: 0x1234, proto: 17, direction: .reverse)
        XCTAssertEqual(MapKey.link(reverse).bytes, [172, 17, 0, 2, 172, 17, 0, 3, 0x12, 0x34, 17, 2])
        XCTAssertEqual(MapEntry.link(forward).valueBytes, [0, 0, 0, 0])
        XCTAssertEqual(LinkRule(forward.cKey), forward)
    }

    func testLinkRulesDoNotDependOnICC() {
        var open = Sample.policy
        open.icc = true
        XCTAssertEqual(Sample.state(open).links, Sample.state().links)
    }

    func testPublishedPortsMergeIntoLinkPorts() {
        // A published container port that is not listed in exposed still
        // becomes a link port (Docker merges -p into ExposedPorts).
        var policy = Sample.policy
        policy.containers[0].exposed = []
        let rules = Sample.state(policy).links
        XCTAssertTrue(
            rules.contains(LinkRule(source: client, destination: web, port: 80, proto: 6, direction: .forward)))
        XCTAssertFalse(rules.contains { $0.proto == 17 })
        XCTAssertEqual(rules.count, 4)
    }

    func testChildWithoutPortsGivesNoRules() {
        var policy = Sample.policy
        policy.links = [Link(parent: "web", child: "client")]  // client exposes nothing
        XCTAssertEqual(Sample.state(policy).links, [])
    }

    func testSeveralLinksShareRules() {
        var policy = Sample.policy
        policy.containers += [Sample.db, Sample.other]
        policy.links = [
            Link(parent: "client", child: "web"), Link(parent: "other", child: "web"),
            Link(parent: "client", child: "db"), Link(parent: "web", child: "client"),
        ]
        let rules = Sample.state(policy).links
        // client→web 8, other→web 8, client→db: 1 fwd, 1 rev, 2 pair = 4; web→client: nothing.
        XCTAssertEqual(rules.count, 20)
        XCTAssertTrue(
            rules.contains(
                LinkRule(source: Sample.db.ip, destination: client, port: 5432, proto: 6, direction: .reverse)))
    }

    func testPublishedBytes() {
        var policy = Sample.policy
        policy.containers[0].published.append(
            PublishedPort(
                hostIP: IPv4Address(203, 0, 113, 1), hostPort: 5353,
                containerPort: 53, proto: .udp))
        let state = Sample.state(policy)
        let any = PublishedKey(hostAddress: .any, hostPort: 8080, proto: 6)
        let specific = PublishedKey(hostAddress: IPv4Address(203, 0, 113, 1), hostPort: 5353, proto: 17)
        XCTAssertEqual(
            state.published,
            [
                any: PublishedTarget(containerAddress: web, containerPort: 80),
                specific: PublishedTarget(containerAddress: web, containerPort: 53),
            ])
        XCTAssertEqual(MapKey.published(any).bytes, [0, 0, 0, 0, 0x1f, 0x90, 6, 0])
        XCTAssertEqual(MapKey.published(specific).bytes, [203, 0, 113, 1, 0x14, 0xe9, 17, 0])
        XCTAssertEqual(MapEntry.published(any, state.published[any]!).valueBytes, [172, 17, 0, 2, 0, 80, 0, 0])
    }

    func testExtInterfacesAndAllowList() {
        var policy = Sample.policy
        policy.extInterfaces.append(ExternalInterface(name: "eth1"))
        let state = Sample.state(policy)
        XCTAssertEqual(state.extInterfaces, [2: ExtInterfaceRecord(flags: .allowList), 4: ExtInterfaceRecord()])
        XCTAssertEqual(
            state.allowSources,
            [
                AllowSource(ifindex: 2, prefix: IPv4CIDR("198.51.100.2/32")!),
                AllowSource(ifindex: 2, prefix: IPv4CIDR("203.0.113.0/24")!),
            ])
        let key = AllowSource(ifindex: 2, prefix: IPv4CIDR("203.0.113.0/24")!)
        // prefixlen 32 + 24 = 56, ifindex (host order), address (network order, masked).
        XCTAssertEqual(MapKey.allowSource(key).bytes, [56, 0, 0, 0, 2, 0, 0, 0, 203, 0, 113, 0])
        XCTAssertEqual(MapEntry.allowSource(key).valueBytes, [1, 0, 0, 0])
        XCTAssertEqual(MapKey.extInterface(2).bytes, [2, 0, 0, 0])
        XCTAssertEqual(
            MapEntry.extInterface(ifindex: 2, ExtInterfaceRecord(flags: .allowList)).valueBytes, [1, 0, 0, 0])
        XCTAssertEqual(AllowSource(key.cKey), key)
        // Host bits are masked in the key.
        XCTAssertEqual(
            AllowSource(ifindex: 2, prefix: IPv4CIDR("203.0.113.77/24")!).cKey.addr,
            UInt32(0xCB00_7100).bigEndian)
    }

    func testMissingInterfacesAreReportedTogether() {
        var policy = Sample.policy
        policy.containers[1].port = "vethgone"
        policy.extInterfaces = [ExternalInterface(name: "wan9")]
        XCTAssertThrowsError(try PolicyCompiler.compile(policy, facts: Sample.facts)) { error in
            let problems = (error as! PolicyValidationError).problems
            XCTAssertEqual(problems.map(\.path), ["containers[1].port", "extInterfaces[0].name"])
            XCTAssertTrue(problems[0].message.contains("'vethgone'"))
            XCTAssertTrue(problems[1].message.contains("'wan9' does not exist"))
        }
    }

    func testCompileValidatesAgainstTheBridgeAddress() {
        var policy = Sample.policy
        policy.containers[1].ip = IPv4Address(172, 17, 0, 1)
        XCTAssertThrowsError(try PolicyCompiler.compile(policy, facts: Sample.facts)) { error in
            XCTAssertEqual((error as! PolicyValidationError).problems.map(\.path), ["containers[1].ip"])
        }
    }

    func testLongNamesAreTruncatedOnCharacterBoundaries() {
        let ascii = String(repeating: "a", count: 80)
        XCTAssertEqual(ContainerNameRecord.truncated(ascii).utf8.count, 63)
        let wide = String(repeating: "é", count: 40)  // 2 bytes each
        XCTAssertEqual(ContainerNameRecord.truncated(wide), String(repeating: "é", count: 31))
        let c = ContainerNameRecord.cValue(wide)
        XCTAssertEqual(ContainerNameRecord.name(c), String(repeating: "é", count: 31))
        XCTAssertEqual(ContainerNameRecord.name(ContainerNameRecord.cValue("web")), "web")
        // A 64-byte name without NUL (allowed by the header) reads back whole.
        var full = bpfnet_container_name()
        withUnsafeMutableBytes(of: &full.name) { for i in 0..<64 { $0[i] = 0x61 } }
        XCTAssertEqual(ContainerNameRecord.name(full).count, 64)
    }

    func testEntriesRoundTripThroughBytes() throws {
        var policy = Sample.policy
        policy.containers.append(Sample.db)
        policy.links.append(Link(parent: "web", child: "db"))
        let state = Sample.state(policy)
        for entry in state.entries {
            let decoded = try MapEntry(kind: entry.kind, key: entry.keyBytes, value: entry.valueBytes)
            XCTAssertEqual(decoded, entry)
        }
        XCTAssertThrowsError(try MapEntry(kind: .links, key: [1, 2, 3], value: [0, 0, 0, 0])) { error in
            XCTAssertTrue("\(error)".contains("bn_links"))
        }
        var bad = AllowSource(ifindex: 2, prefix: IPv4CIDR("10.0.0.0/8")!).cKey
        bad.prefixlen = 16
        XCTAssertThrowsError(try MapEntry(kind: .allowSources, key: rawBytes(bad), value: [1, 0, 0, 0]))
    }
}
