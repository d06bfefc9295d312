import Foundation
import XCTest

@testable import BPFNetCore

final class PolicyFileTests: XCTestCase {
    static func fixture(_ name: String) -> String {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures").appendingPathComponent(name).path
    }

    /// Parses `yaml` expecting failure; returns the error.
    func failure(
        _ yaml: String, file: String = "policy.yaml", kind: PolicyFileKind = .complete,
        line: UInt = #line
    ) -> PolicyFileError? {
        do {
            let policy = try PolicyFile.load(yaml: yaml, file: file, kind: kind)
            XCTFail("expected an error, got \(policy)", line: line)
            return nil
        } catch {
            return error
        }
    }

    /// Asserts that exactly one problem is reported, at `path`, and that the
    /// rendered message names the file, the path and every `mentions`.
    func assertProblem(
        _ yaml: String, path: String, mentions: [String], kind: PolicyFileKind = .complete,
        line: UInt = #line
    ) {
        guard let error = failure(yaml, kind: kind, line: line) else { return }
        XCTAssertEqual(error.problems.map(\.path), [path], "\(error)", line: line)
        let text = error.description
        XCTAssertTrue(text.hasPrefix("policy.yaml"), text, line: line)
        if !path.isEmpty { XCTAssertTrue(text.contains(path), text, line: line) }
        for word in mentions { XCTAssertTrue(text.contains(word), "'\(word)' missing in: \(text)", line: line) }
    }

    // MARK: Happy paths

    func testDesignSample() throws {
        let policy = try PolicyFile.load(contentsOf: Self.fixture("policy-file-example.yaml"))
        XCTAssertEqual(policy.bridge, "docker0")
        XCTAssertFalse(policy.icc)
        XCTAssertTrue(policy.ipForward)
        XCTAssertEqual(policy.forwardPolicy, .drop)
        XCTAssertEqual(policy.portHook, .tc)
        XCTAssertEqual(
            policy.extInterfaces,
            [
                ExternalInterface(
                    name: "eth0", allowSources: [IPv4CIDR("198.51.100.2/32")!, IPv4CIDR("203.0.113.0/24")!])
            ])
        XCTAssertEqual(policy.containers.count, 2)
        let web = policy.containers[0]
        XCTAssertEqual(web.name, "web")
        XCTAssertEqual(web.ip, IPv4Address(172, 17, 0, 2))
        XCTAssertEqual(web.mac, MACAddress(0x02, 0x42, 0xac, 0x11, 0x00, 0x02))
        XCTAssertEqual(web.port, "vethweb")
        XCTAssertEqual(web.exposed, [PortSpec(80, .tcp), PortSpec(53, .udp)])
        XCTAssertEqual(web.published, [PublishedPort(hostPort: 8080, containerPort: 80, proto: .tcp)])
        XCTAssertEqual(
            policy.containers[1],
            Container(
                name: "client", ip: IPv4Address(172, 17, 0, 3),
                mac: MACAddress("02:42:ac:11:00:03")!, port: "vethclient"))
        XCTAssertEqual(policy.links, [Link(parent: "client", child: "web")])
    }

    func testEmptyFileIsAllDefaults() throws {
        XCTAssertEqual(try PolicyFile.load(yaml: "", file: "empty.yaml"), Policy())
        XCTAssertEqual(try PolicyFile.load(yaml: "# nothing\n", file: "empty.yaml"), Policy())
        let defaults = Policy()
        XCTAssertTrue(defaults.icc)
        XCTAssertTrue(defaults.ipForward)
        XCTAssertEqual(defaults.forwardPolicy, .drop)
        XCTAssertEqual(defaults.bridge, "docker0")
    }

    func testSettingsOnlyFile() throws {
        let policy = try PolicyFile.load(contentsOf: Self.fixture("run-settings.yaml"), kind: .settingsOnly)
        XCTAssertFalse(policy.icc)
        XCTAssertEqual(policy.forwardPolicy, .accept)
        XCTAssertEqual(
            policy.extInterfaces,
            [
                ExternalInterface(name: "eth0", allowSources: [IPv4CIDR("198.51.100.0/24")!]),
                ExternalInterface(name: "eth1"),
            ])
        XCTAssertTrue(policy.containers.isEmpty)
    }

    func testSettingsOnlyRejectsContainersAndLinks() {
        let yaml = Self.designSample
        guard let error = failure(yaml, kind: .settingsOnly) else { return }
        XCTAssertEqual(error.problems.map(\.path), ["containers", "links"])
        XCTAssertTrue(error.description.contains("bpfnet run"), error.description)
        XCTAssertTrue(error.description.contains("from Docker"), error.description)
        XCTAssertEqual(error.problems[0].line, 10)
    }

    static var designSample: String {
        try! String(contentsOfFile: fixture("policy-file-example.yaml"), encoding: .utf8)
    }

    func testBooleansAndChoices() throws {
        for (text, value) in [("true", true), ("True", true), ("TRUE", true), ("false", false), ("False", false)] {
            XCTAssertEqual(try PolicyFile.load(yaml: "icc: \(text)", file: "f").icc, value)
            XCTAssertEqual(try PolicyFile.load(yaml: "ipForward: \(text)", file: "f").ipForward, value)
        }
        XCTAssertEqual(
            try PolicyFile.load(yaml: "forwardPolicy: accept\nportHook: xdp", file: "f").forwardPolicy, .accept)
        XCTAssertEqual(try PolicyFile.load(yaml: "portHook: xdp", file: "f").portHook, .xdp)
        for mode in NATMode.allCases {
            XCTAssertEqual(try PolicyFile.load(yaml: "nat: \(mode.rawValue)", file: "f").nat, mode)
        }
    }

    /// `nat` auto (the default) is ebpf where the port program can translate
    /// replies back (tc) and the fast path is on; netfilter otherwise. An
    /// explicit choice stands; ebpf with the XDP port hook is refused.
    func testNATAutoResolvesByPortHookAndFastPath() throws {
        XCTAssertEqual(Policy().nat, .auto)
        XCTAssertEqual(Policy().natInForce, .ebpf)
        XCTAssertEqual(Policy(portHook: .xdp).natInForce, .netfilter)
        XCTAssertEqual(Policy(fastPath: false).natInForce, .netfilter)
        XCTAssertEqual(Policy(nat: .netfilter).natInForce, .netfilter)
        XCTAssertEqual(Policy(fastPath: false, nat: .ebpf).natInForce, .ebpf)
        XCTAssertNoThrow(try PolicyFile.load(yaml: "portHook: xdp", file: "f").validate())
        XCTAssertNoThrow(try PolicyFile.load(yaml: "portHook: xdp\nnat: auto", file: "f").validate())
        XCTAssertThrowsError(try PolicyFile.load(yaml: "portHook: xdp\nnat: ebpf", file: "f").validate())
        guard let error = failure("nat: bpf") else { return }
        XCTAssertTrue(error.description.contains("auto"), error.description)
    }

    func testExposedPortForms() throws {
        let yaml = """
            containers:
              - {name: a, ip: 172.17.0.2, mac: "02:42:ac:11:00:02", port: veth-a,
                 exposed: [80, 80/tcp, 53/udp, 132/sctp, "8080", 443/TCP]}
            """
        let policy = try PolicyFile.load(yaml: yaml, file: "f")
        XCTAssertEqual(
            policy.containers[0].exposed,
            [PortSpec(80), PortSpec(443), PortSpec(8080), PortSpec(53, .udp), PortSpec(132, .sctp)])
    }

    func testPublishedMergedIntoExposedAndDockerNotation() throws {
        let yaml = """
            containers:
              - name: a
                ip: 172.17.0.2
                mac: 02:42:ac:11:00:02
                port: veth-a
                published:
                  - 127.0.0.1:8080:80
                  - 5353:53/udp
                  - {hostIP: 0.0.0.0, hostPort: 9000, containerPort: 9000}
                  - {hostIP: ~, hostPort: 9001, containerPort: 9001, proto: sctp}
            """
        let policy = try PolicyFile.load(yaml: yaml, file: "f")
        let container = policy.containers[0]
        XCTAssertEqual(
            container.published,
            [
                PublishedPort(hostIP: IPv4Address(127, 0, 0, 1), hostPort: 8080, containerPort: 80, proto: .tcp),
                PublishedPort(hostPort: 5353, containerPort: 53, proto: .udp),
                PublishedPort(hostPort: 9000, containerPort: 9000, proto: .tcp),  // 0.0.0.0 normalised to nil
                PublishedPort(hostPort: 9001, containerPort: 9001, proto: .sctp),
            ])
        XCTAssertEqual(container.exposed, [PortSpec(80), PortSpec(9000), PortSpec(53, .udp), PortSpec(9001, .sctp)])
        // parse() keeps the file as written.
        let raw = try PolicyFile.parse(yaml: yaml, file: "f")
        XCTAssertEqual(raw.containers[0].exposed, [])
    }

    func testAllowSourcesForms() throws {
        let yaml = """
            extInterfaces:
              - {name: eth0, allowSources: 10.0.0.0/8}
              - {name: eth1, allowSources: [198.51.100.7, 203.0.113.9/24, 203.0.113.0/24]}
              - {name: eth2, allowSources: []}
              - {name: eth3}
            """
        let policy = try PolicyFile.load(yaml: yaml, file: "f")
        XCTAssertEqual(
            policy.extInterfaces.map(\.allowSources),
            [
                [IPv4CIDR("10.0.0.0/8")!],
                [IPv4CIDR("198.51.100.7/32")!, IPv4CIDR("203.0.113.0/24")!],  // host bits masked, duplicate merged
                [], [],
            ])
    }

    /// docker-proxy serves published ports on [::] too: a list may name IPv6 sources.
    func testAllowSourcesTakeIPv6Prefixes() throws {
        let policy = try PolicyFile.load(
            yaml: """
                extInterfaces:
                  - {name: eth0, allowSources: [198.51.100.0/24, "2001:db8:77::/48", "2001:DB8:77:0::1/48", "::1"]}
                  - {name: eth1, allowSources: "2001:db8::5"}
                """, file: "f")
        XCTAssertEqual(policy.extInterfaces.map(\.allowSources), [[IPv4CIDR("198.51.100.0/24")!], []])
        XCTAssertEqual(
            policy.extInterfaces.map(\.allowSourcesIPv6),
            [[IPv6CIDR("2001:db8:77::/48")!, IPv6CIDR("::1/128")!], [IPv6CIDR("2001:db8::5/128")!]],
            "host bits masked, duplicates merged, a bare address is /128")
        XCTAssertTrue(policy.extInterfaces[1].hasAllowList, "an IPv6-only list is a list: no IPv4 source is admitted")
        assertProblem(
            "extInterfaces: [{name: eth0, allowSources: ['2001:db8::/129']}]",
            path: "extInterfaces[0].allowSources[0]", mentions: ["'2001:db8::/129'", "0-128"])
        assertProblem(
            "extInterfaces: [{name: eth0, allowSources: ['2001:db8:::1/64']}]",
            path: "extInterfaces[0].allowSources[0]", mentions: ["'2001:db8:::1/64'", "IPv6 prefix"])
    }

    func testIPv6AddressTextForms() {
        for (text, canonical) in [
            ("2001:DB8::1", "2001:db8::1"), ("::", "::"), ("::1", "::1"), ("fe80::", "fe80::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
            ("::ffff:192.0.2.1", "::ffff:c000:201"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ] {
            XCTAssertEqual(IPv6Address(text)?.description, canonical, text)
        }
        for bad in ["", ":", ":::", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "g::1", "1.2.3.4"] {
            XCTAssertNil(IPv6Address(bad), bad)
        }
        let prefix = IPv6CIDR("2001:db8:77:ffff::1/48")!
        XCTAssertEqual(prefix.description, "2001:db8:77::/48")
        XCTAssertTrue(prefix.contains(IPv6Address("2001:db8:77:1234::9")!))
        XCTAssertFalse(prefix.contains(IPv6Address("2001:db8:78::")!))
        XCTAssertEqual(IPv6CIDR("::/0")?.contains(IPv6Address("ffff::")!), true)
        XCTAssertEqual(IPv6Address(bytes: IPv6Address("2001:db8::7")!.bytes), IPv6Address("2001:db8::7"))
    }

    // MARK: Errors: each names file, key path and value, and what is accepted

    func testUnknownKeysWithSuggestions() {
        guard
            let error = failure(
                try! String(contentsOfFile: Self.fixture("typos.yaml"), encoding: .utf8),
                file: "typos.yaml")
        else { return }
        XCTAssertEqual(
            error.problems.map(\.path),
            ["icc_", "forward_policy", "containers[0].ip", "containers[0].mack", "containers[0].exposed[0]"])
        let lines = error.description.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual(
            lines[0],
            "typos.yaml:2: icc_: unknown key 'icc_' (did you mean 'icc'?); expected one of "
                + "bridge, icc, ipForward, forwardPolicy, portHook, fastPath, nat, extInterfaces, networks, containers, links, "
                + "peers, peerPolicy, bridgeIPv6"
        )
        XCTAssertTrue(
            lines[1].hasPrefix(
                "typos.yaml:3: forward_policy: unknown key 'forward_policy' (did you mean 'forwardPolicy'?)"), lines[1])
        XCTAssertTrue(
            lines[2].hasPrefix("typos.yaml:6: containers[0].ip: '172.17.0.300' is not an IPv4 address; expected"),
            lines[2])
        XCTAssertTrue(
            lines[3].hasPrefix("typos.yaml:7: containers[0].mack: unknown key 'mack' (did you mean 'mac'?)"), lines[3])
        XCTAssertTrue(lines[4].contains("'80/tcpp' is not an exposed port; expected PORT or PORT/PROTO"), lines[4])
    }

    func testUnknownKeyWithoutSuggestion() {
        assertProblem(
            "bridge: docker0\nfoo: 1", path: "foo", mentions: ["unknown key 'foo'", "expected one of bridge"])
        guard let error = failure("bridge: docker0\nfoo: 1") else { return }
        XCTAssertFalse(error.description.contains("did you mean"))
    }

    func testBadScalarValues() {
        assertProblem("icc: no", path: "icc", mentions: ["'no'", "true or false"])
        assertProblem("icc: yes", path: "icc", mentions: ["'yes'", "true or false"])
        assertProblem("ipForward: 1", path: "ipForward", mentions: ["'1'", "true or false"])
        assertProblem("icc: [true]", path: "icc", mentions: ["found a list", "true or false"])
        assertProblem("forwardPolicy: reject", path: "forwardPolicy", mentions: ["'reject'", "drop or accept"])
        assertProblem("portHook: ebpf", path: "portHook", mentions: ["'ebpf'", "tc or xdp"])
        assertProblem(
            "bridge: a-very-long-bridge-name", path: "bridge", mentions: ["'a-very-long-bridge-name'", "at most 15"])
        assertProblem("bridge: 'br 0'", path: "bridge", mentions: ["'br 0'", "whitespace"])
        assertProblem("bridge: br/0", path: "bridge", mentions: ["'br/0'", "'/'"])
        assertProblem("bridge:", path: "bridge", mentions: ["missing", "interface name"])
        assertProblem("extInterfaces: eth0", path: "extInterfaces", mentions: ["expected a list", "'eth0'"])
        assertProblem(
            "extInterfaces: [{name: eth0, allowSources: [10.0.0.0/33]}]",
            path: "extInterfaces[0].allowSources[0]", mentions: ["'10.0.0.0/33'", "a.b.c.d/len", "0-32"])
        assertProblem(
            "extInterfaces: [{name: eth0, allowSources: [10.0.0/8]}]",
            path: "extInterfaces[0].allowSources[0]", mentions: ["'10.0.0/8'"])
        assertProblem(
            "extInterfaces: [{allowSources: [10.0.0.0/8]}]",
            path: "extInterfaces[0].name", mentions: ["required key 'name' is missing"])
        assertProblem(
            "extInterfaces: [{name: eth0, allowSource: [10.0.0.0/8]}]",
            path: "extInterfaces[0].allowSource", mentions: ["did you mean 'allowSources'?"])
    }

    static func container(_ fields: String) -> String {
        "containers:\n  - {\(fields)}\n"
    }

    func testBadContainerValues() {
        let ok = "name: web, ip: 172.17.0.2, mac: '02:42:ac:11:00:02', port: vethweb"
        assertProblem(
            Self.container(ok.replacingOccurrences(of: "172.17.0.2", with: "172.17.0")),
            path: "containers[0].ip", mentions: ["'172.17.0'", "a.b.c.d"])
        assertProblem(
            Self.container(ok.replacingOccurrences(of: "'02:42:ac:11:00:02'", with: "'02:42:ac:11:00'")),
            path: "containers[0].mac", mentions: ["'02:42:ac:11:00'", "02:42:ac:11:00:02"])
        assertProblem(
            Self.container(ok.replacingOccurrences(of: "'02:42:ac:11:00:02'", with: "'02:42:ac:11:00:zz'")),
            path: "containers[0].mac", mentions: ["'02:42:ac:11:00:zz'"])
        assertProblem(
            Self.container(ok.replacingOccurrences(of: "web,", with: "'-web',")),
            path: "containers[0].name", mentions: ["'-web'", "starting with a letter or digit"])
        assertProblem(
            Self.container(ok + ", exposed: [0]"), path: "containers[0].exposed[0]", mentions: ["'0'", "1-65535"])
        assertProblem(
            Self.container(ok + ", exposed: [65536]"), path: "containers[0].exposed[0]", mentions: ["'65536'"])
        assertProblem(
            Self.container(ok + ", exposed: [80/icmp]"), path: "containers[0].exposed[0]",
            mentions: ["'80/icmp'", "tcp, udp or sctp"])
        assertProblem(
            Self.container(ok + ", exposed: ['80-90/tcp']"), path: "containers[0].exposed[0]", mentions: ["'80-90/tcp'"]
        )
        assertProblem(
            Self.container(ok + ", published: [{hostPort: 0, containerPort: 80}]"),
            path: "containers[0].published[0].hostPort", mentions: ["'0'", "1-65535"])
        assertProblem(
            Self.container(ok + ", published: [{hostPort: 8080, containerPort: 80, proto: icmp}]"),
            path: "containers[0].published[0].proto", mentions: ["'icmp'", "tcp, udp or sctp"])
        assertProblem(
            Self.container(ok + ", published: [{hostIP: localhost, hostPort: 8080, containerPort: 80}]"),
            path: "containers[0].published[0].hostIP", mentions: ["'localhost'", "a.b.c.d"])
        assertProblem(
            Self.container(ok + ", published: [{hostPort: 8080}]"),
            path: "containers[0].published[0].containerPort", mentions: ["required key 'containerPort' is missing"])
        assertProblem(
            Self.container(ok + ", published: ['8080']"),
            path: "containers[0].published[0]", mentions: ["'8080'", "HOSTPORT:CONTAINERPORT"])
        assertProblem(
            Self.container("name: web, ip: 172.17.0.2, port: vethweb"),
            path: "containers[0].mac", mentions: ["required key 'mac' is missing"])
        assertProblem("containers: [web]", path: "containers[0]", mentions: ["expected a mapping", "'web'"])
        assertProblem(
            "links: [{parent: a, child: b, aliass: x}]", path: "links[0].aliass", mentions: ["did you mean 'alias'?"])
    }

    func testSyntaxErrorsNameTheLine() {
        guard let error = failure("bridge: docker0\nicc: [true\n") else { return }
        XCTAssertEqual(error.problems.count, 1)
        XCTAssertNotNil(error.problems[0].line)
        XCTAssertTrue(error.description.hasPrefix("policy.yaml:"), error.description)
        XCTAssertTrue(error.description.contains("not valid YAML"), error.description)

        guard let duplicate = failure("icc: true\nicc: false\n") else { return }
        XCTAssertTrue(duplicate.description.contains("'icc' appears twice"), duplicate.description)
    }

    func testRootMustBeAMapping() {
        assertProblem("- a\n- b", path: "", mentions: ["expected a mapping of settings", "found a list"])
    }

    func testValidationProblemsCarryFileAndLine() {
        let yaml = """
            containers:
              - {name: web, ip: 172.17.0.2, mac: "02:42:ac:11:00:02", port: vethweb}
              - {name: web, ip: 172.17.0.2, mac: "02:42:ac:11:00:03", port: vethweb2}
            links:
              - {parent: web, child: db}
            """
        guard let error = failure(yaml) else { return }
        XCTAssertEqual(error.problems.map(\.path), ["containers[1].name", "containers[1].ip", "links[0].child"])
        XCTAssertEqual(error.problems.map(\.line), [3, 3, 5])
        XCTAssertTrue(
            error.description.contains(
                "policy.yaml:3: containers[1].ip: 172.17.0.2 is already the address of containers[0] 'web'"),
            error.description)
        XCTAssertTrue(
            error.description.contains(
                "policy.yaml:5: links[0].child: no container is named 'db'; known containers: web"),
            error.description)
    }

    func testUnreadableFile() {
        do {
            _ = try PolicyFile.load(contentsOf: "/nonexistent/policy.yaml")
            XCTFail("expected an error")
        } catch {
            XCTAssertTrue(
                error.description.hasPrefix("/nonexistent/policy.yaml: cannot read the policy file"), error.description)
        }
    }

    func testSuggestion() {
        XCTAssertEqual(Suggestion.closest(to: "ip_forward", among: PolicyFile.topLevelKeys), "ipForward")
        XCTAssertEqual(Suggestion.closest(to: "ICC", among: PolicyFile.topLevelKeys), "icc")
        XCTAssertEqual(Suggestion.closest(to: "extInterface", among: PolicyFile.topLevelKeys), "extInterfaces")
        XCTAssertEqual(Suggestion.closest(to: "brdge", among: PolicyFile.topLevelKeys), "bridge")
        XCTAssertNil(Suggestion.closest(to: "xyz", among: PolicyFile.topLevelKeys))
    }
}
