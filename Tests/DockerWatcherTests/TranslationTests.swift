// SPDX-License-Identifier: Apache-2.0

import BPFNetCore
import Foundation
import XCTest

@testable import DockerWatcher

final class LinkParsingTests: XCTestCase {
    func testWellFormedEntries() {
        XCTAssertEqual(
            DockerLinkDeclaration(parsing: "/srv1:/cli2/s1"),
            DockerLinkDeclaration(child: "srv1", parent: "cli2", alias: "s1"))
        XCTAssertEqual(
            DockerLinkDeclaration(parsing: "/my-db.1:/web_app/db"),
            DockerLinkDeclaration(child: "my-db.1", parent: "web_app", alias: "db"))
        // Alias equal to the child's name (`--link db` without an alias).
        XCTAssertEqual(
            DockerLinkDeclaration(parsing: "/db:/web/db"),
            DockerLinkDeclaration(child: "db", parent: "web", alias: "db"))
        XCTAssertEqual(DockerLinkDeclaration(child: "a", parent: "b", alias: "c").description, "/a:/b/c")
    }

    func testMalformedEntries() {
        for entry in [
            "", "/a", "a:/b/c", "/a:b/c", "/a:/b", "/a:/b/", "/:/b/c", "/a:/b/c/d", "/a::/b/c",
            "/a:/b/c:/d", "//a:/b/c", "/a:/", "/a/b:/c/d",
        ] {
            XCTAssertNil(DockerLinkDeclaration(parsing: entry), entry)
        }
    }
}

final class TranslationTests: XCTestCase {
    private func container(
        _ name: String, ip: UInt8?, running: Bool = true, mode: String = "default",
        links: [String] = [], exposed: [PortSpec] = [], published: [PublishedPort] = [],
        mac: Bool = true
    ) -> DockerContainer {
        let address = ip.map { IPv4Address(172, 17, 0, $0) }
        return DockerContainer(
            id: "id-\(name)", name: name, running: running, pid: running ? 1000 + Int32(ip ?? 0) : nil,
            networkMode: mode,
            bridge: address.map { DockerBridgeEndpoint(ip: $0, mac: mac ? MACAddress(dockerStyleFor: $0) : nil) },
            links: links.compactMap { DockerLinkDeclaration(parsing: $0) },
            exposedPorts: exposed, publishedPorts: published)
    }

    private func ports(_ containers: [DockerContainer]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: containers.map { ($0.id, "veth-\($0.name)") })
    }

    func testRunningParentAndChild() {
        let web = container(
            "web", ip: 2, exposed: [PortSpec(80), PortSpec(53, .udp)],
            published: [PublishedPort(hostPort: 8080, containerPort: 80)])
        let client = container("client", ip: 3, links: ["/web:/client/w"])
        let snapshot = DockerPolicyTranslator.snapshot(of: [web, client], ports: ports([web, client]))
        XCTAssertEqual(
            snapshot.containers,
            [
                Container(
                    name: "client", ip: IPv4Address(172, 17, 0, 3),
                    mac: MACAddress(dockerStyleFor: IPv4Address(172, 17, 0, 3)),
                    port: "veth-client"),
                Container(
                    name: "web", ip: IPv4Address(172, 17, 0, 2),
                    mac: MACAddress(dockerStyleFor: IPv4Address(172, 17, 0, 2)),
                    port: "veth-web", exposed: [PortSpec(80), PortSpec(53, .udp)],
                    published: [PublishedPort(hostPort: 8080, containerPort: 80)]),
            ])
        XCTAssertEqual(snapshot.links, [Link(parent: "client", child: "web", alias: "w")])
        XCTAssertEqual(snapshot.skipped, [])
    }

    func testStoppedChildTakesItsLinkWithIt() {
        let client = container("client", ip: 3, links: ["/web:/client/w"])
        let stoppedWeb = container("web", ip: nil, running: false, exposed: [PortSpec(80)])
        let snapshot = DockerPolicyTranslator.snapshot(of: [client, stoppedWeb], ports: ports([client, stoppedWeb]))
        XCTAssertEqual(snapshot.containers.map(\.name), ["client"])
        XCTAssertEqual(snapshot.links, [])

        // A stopped container that still reports its old address (a stale inspect) is not running either.
        let staleWeb = container("web", ip: 2, running: false)
        XCTAssertEqual(
            DockerPolicyTranslator.snapshot(of: [client, staleWeb], ports: ports([client, staleWeb])).links, [])
        XCTAssertEqual(DockerPolicyTranslator.links(among: [client, staleWeb]), [])

        // A newcomer that gets the old child's address inherits nothing.
        let newcomer = container("newcomer", ip: 2)
        let after = DockerPolicyTranslator.snapshot(
            of: [client, stoppedWeb, newcomer], ports: ports([client, newcomer]))
        XCTAssertEqual(after.links, [])
        XCTAssertEqual(after.containers.map(\.name), ["client", "newcomer"])
    }

    func testRestartedChildIsFollowedToItsNewAddress() {
        let client = container("client", ip: 3, links: ["/web:/client/w"])
        let web = container("web", ip: 4, exposed: [PortSpec(80)])
        let snapshot = DockerPolicyTranslator.snapshot(of: [client, web], ports: ports([client, web]))
        XCTAssertEqual(snapshot.containers.first { $0.name == "web" }?.ip, IPv4Address(172, 17, 0, 4))
        XCTAssertEqual(snapshot.links, [Link(parent: "client", child: "web", alias: "w")])
    }

    func testStoppedParentHoldsNoLinks() {
        let client = container("client", ip: nil, running: false, links: ["/web:/client/w"])
        let web = container("web", ip: 2)
        XCTAssertEqual(DockerPolicyTranslator.snapshot(of: [client, web], ports: ports([client, web])).links, [])
    }

    func testChildOffTheBridgeOrUnknown() {
        let client = container("client", ip: 3, links: ["/web:/client/w", "/ghost:/client/g"])
        let detached = container("web", ip: nil)  // running, but disconnected from the bridge
        let snapshot = DockerPolicyTranslator.snapshot(of: [client, detached], ports: ports([client, detached]))
        XCTAssertEqual(snapshot.links, [])
        XCTAssertEqual(snapshot.containers.map(\.name), ["client"])
    }

    func testParentOutsideTheDefaultBridgeModeHoldsNoLinks() {
        // Connected to the default bridge as a second network: on docker0, but legacy links do not apply.
        let parent = container("p", ip: 3, mode: "mynet", links: ["/web:/p/w"])
        let web = container("web", ip: 2)
        let snapshot = DockerPolicyTranslator.snapshot(of: [parent, web], ports: ports([parent, web]))
        XCTAssertEqual(snapshot.containers.map(\.name), ["p", "web"])
        XCTAssertEqual(snapshot.links, [])
        let bridgeMode = container("q", ip: 4, mode: "bridge", links: ["/web:/q/w"])
        XCTAssertEqual(
            DockerPolicyTranslator.links(among: [bridgeMode, web]), [Link(parent: "q", child: "web", alias: "w")])
    }

    func testTheHolderIsTheParentAndDuplicatesCollapse() {
        let client = container(
            "client", ip: 3, links: ["/web:/elsewhere/w", "/web:/client/w", "/web:/client/w2", "/client:/client/self"])
        let web = container("web", ip: 2)
        XCTAssertEqual(
            DockerPolicyTranslator.links(among: [client, web]),
            [
                Link(parent: "client", child: "web", alias: "w"),
                Link(parent: "client", child: "web", alias: "w2"),
            ])
    }

    func testSkippedContainersSayWhy() {
        let noMAC = container("nomac", ip: 5, mac: false)
        let noPort = container("noport", ip: 6)
        let first = container("a-first", ip: 7)
        let clash = container("b-clash", ip: 7)
        let parent = container("parent", ip: 8, links: ["/noport:/parent/x"])
        let snapshot = DockerPolicyTranslator.snapshot(
            of: [noMAC, noPort, first, clash, parent],
            ports: ports([noMAC, first, clash, parent]))
        XCTAssertEqual(snapshot.containers.map(\.name), ["a-first", "parent"])
        XCTAssertEqual(snapshot.links, [], "a child that cannot be enforced is not linked")
        XCTAssertEqual(snapshot.skipped.map(\.name), ["b-clash", "nomac", "noport"])
        XCTAssertTrue(snapshot.skipped[0].reason.contains("172.17.0.7 is already held by a-first"))
        XCTAssertTrue(snapshot.skipped[1].reason.contains("no MAC"))
        XCTAssertTrue(snapshot.skipped[2].reason.contains("port unknown"))
    }

    func testResolverIsAskedPerPidAndFailuresSkip() async {
        let web = container("web", ip: 2, exposed: [PortSpec(80)])
        let client = container("client", ip: 3, links: ["/web:/client/w"])
        let stopped = container("stopped", ip: nil, running: false)
        let asked = PidRecorder()
        let snapshot = await DockerPolicyTranslator.snapshot(
            of: [web, client, stopped],
            resolvePort: { pid in
                await asked.record(pid)
                if pid == 1002 { throw BridgePortLookupError("gone") }
                return "veth\(pid)"
            })
        let pids = await asked.pids
        XCTAssertEqual(pids.sorted(), [1002, 1003])
        XCTAssertEqual(snapshot.containers.map(\.port), ["veth1003"])
        XCTAssertEqual(snapshot.links, [])
        XCTAssertEqual(snapshot.skipped.map(\.name), ["web"])
        XCTAssertTrue(snapshot.skipped[0].reason.contains("gone"), snapshot.skipped[0].reason)
    }

    func testManyLookupsAreBounded() async {
        let containers = (2...60).map { container("c\($0)", ip: UInt8($0)) }
        let gauge = ConcurrencyGauge()
        let snapshot = await DockerPolicyTranslator.snapshot(
            of: containers,
            resolvePort: { pid in
                await gauge.enter()
                try await Task.sleep(for: .milliseconds(2))
                await gauge.leave()
                return "veth\(pid)"
            }, maxConcurrentLookups: 4)
        XCTAssertEqual(snapshot.containers.count, 59)
        let peak = await gauge.peak
        XCTAssertLessThanOrEqual(peak, 4)
    }

    func testRecordedParentAndChild() throws {
        let cb = try DockerContainer(inspectJSON: Fixture.data("inspect_cb.json"))
        let cc = try DockerContainer(inspectJSON: Fixture.data("inspect_cc.json"))
        let snapshot = DockerPolicyTranslator.snapshot(of: [cc, cb], ports: [cb.id: "vethcb", cc.id: "vethcc"])
        XCTAssertEqual(snapshot.links, [Link(parent: "cc", child: "cb", alias: "b")])
        XCTAssertEqual(snapshot.containers.map(\.name), ["cb", "cc"])
        XCTAssertEqual(snapshot.containers[0].exposed, [PortSpec(80, .tcp), PortSpec(5353, .udp)])
        XCTAssertEqual(snapshot.containers[0].mac, MACAddress("02:42:ac:11:00:03"))

        let policy = snapshot.applied(
            to: Policy(icc: false, forwardPolicy: .accept, links: [Link(parent: "x", child: "y")]))
        XCTAssertFalse(policy.icc)
        XCTAssertEqual(policy.forwardPolicy, .accept)
        XCTAssertEqual(policy.links, snapshot.links)
        XCTAssertEqual(policy.containers, snapshot.containers)
    }
}

private actor PidRecorder {
    var pids: [Int32] = []
    func record(_ pid: Int32) { pids.append(pid) }
}

private actor ConcurrencyGauge {
    var current = 0
    var peak = 0
    func enter() {
        current += 1
        peak = max(peak, current)
    }
    func leave() { current -= 1 }
}
