// SPDX-License-Identifier: Apache-2.0
//
// The agent's state machine: a scripted Docker (20.10 and 29 event orders,
// garbage, 404s, a daemon that goes away) and the in-memory dataplane, which
// shows exactly what was applied.

import BPFNetCore
import BPFNetDataplane
import Foundation
import XCTest

@testable import BPFNetAgent
@testable import DockerWatcher

final class AgentTests: XCTestCase {
    /// web (child: 80/tcp, 53/udp, published 8080→80), client (parent: --link web:w), lone.
    private func standardContainers(_ docker: ScriptedDocker) {
        docker.run(
            "web", exposed: [PortSpec(80, .tcp), PortSpec(53, .udp)],
            published: [PublishedPort(hostPort: 8080, containerPort: 80)], silently: true)
        docker.run("client", links: [("web", "w")], silently: true)
        docker.run("lone", silently: true)
    }

    func testInitialSyncEnforcesRunningContainersAndLinks() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("three containers and a link") { harness.enforcedContainers == ["web", "client", "lone"] }
        let web = harness.docker.ip(of: "web")
        let client = harness.docker.ip(of: "client")
        XCTAssertEqual(harness.enforcedLinks, ["client(\(client))→web(\(web)) 80/tcp,53/udp"])
        let status = try XCTUnwrap(harness.status)
        XCTAssertFalse(status.icc)
        XCTAssertEqual(status.bridge, "docker0")
        XCTAssertEqual(
            status.published.map { "\($0.hostPort)/\($0.proto)→\($0.container):\($0.containerPort)" },
            ["8080/tcp→web:80"])
        XCTAssertEqual(
            Set(status.containers.map(\.port)),
            Set(["web", "client", "lone"].map { "veth\(harness.docker.container(named: $0)!.pid!)" }))
        // Follow first, then list, then inspect.
        let requests = harness.docker.requests
        let eventsAt = try XCTUnwrap(requests.firstIndex(of: "events"))
        let listAt = try XCTUnwrap(requests.firstIndex(of: "list"))
        XCTAssertLessThan(eventsAt, listAt, "\(requests)")
        let snapshot = await harness.agent.snapshot()
        XCTAssertTrue(snapshot.connected)
        XCTAssertEqual(snapshot.statistics.resyncs, 1)
        try await eventually("reported") {
            harness.reports.last?.connected == true && harness.reports.last?.apiVersion == "1.41"
        }
        try await harness.stop()
        // Stopping the agent leaves the dataplane as it was.
        XCTAssertEqual(harness.enforcedContainers, ["web", "client", "lone"])
    }

    /// The link lifecycle Docker gets wrong, through both daemons' event orders.
    func testChildStopAndRestartUnderBothEventOrders() async throws {
        for flavor in [ScriptedDocker.Flavor.v20, .v29] {
            let harness = AgentHarness(docker: ScriptedDocker(flavor: flavor))
            standardContainers(harness.docker)
            harness.start()
            try await eventually("\(flavor): initial sync") { harness.enforcedLinks.count == 1 }
            let oldWeb = harness.docker.ip(of: "web")
            let client = harness.docker.ip(of: "client")
            XCTAssertTrue(harness.linkRulePairs.contains("\(client)>\(oldWeb)"))

            // The child stops: its rules go with it, whatever order the events come in.
            harness.docker.stop("web")
            try await eventually("\(flavor): web's rules gone") {
                harness.enforcedContainers == ["client", "lone"] && harness.linkRulePairs.isEmpty
            }

            // A new container takes the child's old address: it inherits nothing.
            harness.docker.run("squat", exposed: [PortSpec(80, .tcp)])
            try await eventually("\(flavor): squat enforced") { harness.enforcedContainers.contains("squat") }
            XCTAssertEqual(harness.docker.ip(of: "squat"), oldWeb, "the scripted daemon reuses the lowest free address")
            XCTAssertTrue(harness.linkRulePairs.isEmpty, "\(harness.linkRulePairs)")

            // The child comes back with a new address: its parent reaches it at once.
            harness.docker.start("web")
            let newWeb = harness.docker.ip(of: "web")
            XCTAssertNotEqual(newWeb, oldWeb)
            try await eventually("\(flavor): link to web's new address") {
                harness.enforcedLinks == ["client(\(client))→web(\(newWeb)) 80/tcp,53/udp"]
            }
            XCTAssertEqual(harness.linkRulePairs, ["\(client)>\(newWeb)", "\(newWeb)>\(client)"])
            try await harness.stop()
        }
    }

    func testParentStopAndRestart() async throws {
        let harness = AgentHarness(docker: ScriptedDocker(flavor: .v29))
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedLinks.count == 1 }
        harness.docker.stop("client")
        try await eventually("client's rules gone") {
            harness.linkRulePairs.isEmpty && !harness.enforcedContainers.contains("client")
        }
        harness.docker.start("client")
        let client = harness.docker.ip(of: "client")
        let web = harness.docker.ip(of: "web")
        try await eventually("link back from client's new address") {
            harness.enforcedLinks == ["client(\(client))→web(\(web)) 80/tcp,53/udp"]
        }
        // `docker restart`: die … start … restart, handled as one.
        harness.docker.restart("web")
        let restartedWeb = harness.docker.ip(of: "web")
        try await eventually("link follows web's restart") {
            harness.enforcedLinks == ["client(\(client))→web(\(restartedWeb)) 80/tcp,53/udp"]
        }
        try await harness.stop()
    }

    /// Recorded lines of both daemons go through the client's decoder; the 29
    /// shape has no status/id/from.
    func testRecordedEventShapesOfBothVersions() async throws {
        let harness = AgentHarness()
        harness.start()
        try await eventually("connected") { await harness.isFollowing() }
        let web = harness.docker.run("web", exposed: [PortSpec(80, .tcp)], silently: true)
        let line20 =
            #"{"status":"start","id":"\#(web)","from":"bb:local","Type":"container","Action":"start","Actor":{"ID":"\#(web)","Attributes":{"image":"bb:local","name":"web"}},"scope":"local","time":1795751702,"timeNano":1795751702066395000}"#
        harness.docker.emit(line: line20)
        try await eventually("web from a 20.10 line") { harness.enforcedContainers == ["web"] }

        harness.docker.run("client", links: [("web", "w")], silently: true)
        let client = harness.docker.id(of: "client")
        let connect29 =
            #"{"Type":"network","Action":"connect","Actor":{"ID":"d89ec135","Attributes":{"container":"\#(client)","name":"bridge","type":"bridge"}},"scope":"local","time":1795753658,"timeNano":1795753658496446908}"#
        harness.docker.emit(line: connect29)
        try await eventually("client from a 29 connect line") { harness.enforcedLinks.count == 1 }

        harness.docker.stop("web", silently: true)
        let die29 =
            #"{"Type":"container","Action":"die","Actor":{"ID":"\#(web)","Attributes":{"execDuration":"1","exitCode":"137","image":"bb:local","name":"web"}},"scope":"local","time":1795753659,"timeNano":1795753659101513455}"#
        harness.docker.emit(line: die29)
        try await eventually("web gone after a 29 die line") { harness.enforcedContainers == ["client"] }
        let snapshot = await harness.agent.snapshot()
        XCTAssertEqual(snapshot.statistics.malformedEvents, 0)
        try await harness.stop()
    }

    func testMalformedAndUnexpectedEventsAreLoggedSkippedAndResynced() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedContainers.count == 3 }
        let appliesBefore = harness.dataplane.applications.count

        // Garbage, an event without Actor.ID, a type and an action bpfnet does not handle.
        harness.docker.emit(line: "{not json")
        harness.docker.emit(line: #"{"Type":"container","Action":"start","Actor":{"Attributes":{}}}"#)
        harness.docker.emit(line: #"{"Type":"plugin","Action":"enable","Actor":{"ID":"p1"}}"#)
        harness.docker.emit(line: #"{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"abc"}}"#)
        harness.docker.emit(harness.docker.network(.connect, "ffff", network: "other-net", type: "macvlan"))
        // Meanwhile lone was removed without an event the agent could read.
        harness.docker.stop("lone", silently: true)

        try await eventually("a resync catches up after the undecodable lines") {
            harness.enforcedContainers == ["web", "client"]
        }
        let snapshot = await harness.agent.snapshot()
        XCTAssertEqual(snapshot.statistics.malformedEvents, 2)
        XCTAssertGreaterThanOrEqual(snapshot.statistics.resyncs, 2)
        XCTAssertEqual(snapshot.statistics.eventsIgnored, 3)
        XCTAssertTrue(harness.logs.contains(.warning, "undecodable docker event"), "\(harness.logs.all)")
        try await eventually("reported") { harness.reports.last?.malformedEvents == 2 }
        XCTAssertEqual(harness.dataplane.applications.count, appliesBefore + 1, "one apply for the one change")

        // Still following.
        harness.docker.run("late")
        try await eventually("late enforced") { harness.enforcedContainers.contains("late") }
        try await harness.stop()
    }

    func testInspectOfAContainerAlreadyGone() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedContainers.count == 3 }
        let applies = harness.dataplane.applications.count

        // Started and removed before the agent could look: 404.
        let ghost = harness.docker.run("ghost", silently: true)
        harness.docker.stop("ghost", silently: true)
        harness.docker.remove("ghost", silently: true)
        harness.docker.emit(harness.docker.event(.start, ghost, "ghost"))
        try await eventually("the 404 is counted") { await harness.agent.snapshot().statistics.inspectsNotFound == 1 }
        XCTAssertTrue(harness.logs.contains(.info, "removed before it could be inspected (404)"), "\(harness.logs.all)")
        XCTAssertEqual(harness.enforcedContainers, ["web", "client", "lone"])
        XCTAssertEqual(harness.dataplane.applications.count, applies, "nothing changed, nothing applied")

        // A tracked container that 404s on a later event is dropped.
        let lone = harness.docker.id(of: "lone")
        harness.docker.stop("lone", silently: true)
        harness.docker.remove("lone", silently: true)
        harness.docker.emit(harness.docker.event(.restart, lone, "lone"))
        try await eventually("lone dropped") { harness.enforcedContainers == ["web", "client"] }

        // An inspect that fails otherwise (HTTP 500) keeps what was known.
        let web = harness.docker.id(of: "web")
        harness.docker.failInspect(
            of: web, with: .httpStatus(request: "GET /containers/x/json", status: 500, message: "boom"))
        harness.docker.emit(harness.docker.event(.start, web, "web"))
        try await eventually("the failure is logged") { harness.logs.contains(.warning, "HTTP 500") }
        XCTAssertEqual(harness.enforcedContainers, ["web", "client"])
        harness.docker.failInspect(of: web, with: nil)
        try await harness.stop()
    }

    func testDaemonGoneKeepsLastStateThenReconnectsAndResyncs() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedLinks.count == 1 }
        let appliedBefore = harness.dataplane.applications.count

        harness.docker.goAway()
        try await eventually("the agent notices") { !(await harness.agent.snapshot().connected) }
        // While Docker is away things change; nothing is applied meanwhile.
        harness.docker.stop("web", silently: true)
        harness.docker.start("web", silently: true)
        harness.docker.stop("lone", silently: true)
        try await stays("the last good state stays in force") {
            harness.enforcedContainers == ["web", "client", "lone"]
                && harness.dataplane.applications.count == appliedBefore
        }
        XCTAssertTrue(harness.logs.contains(.error, "keeps enforcing the last applied policy"), "\(harness.logs.all)")
        XCTAssertEqual(harness.reports.last?.connected, false)
        XCTAssertNotNil(harness.reports.last?.lastError)

        harness.docker.comeBack()
        let web = harness.docker.ip(of: "web")
        let client = harness.docker.ip(of: "client")
        try await eventually("resynced after reconnecting") {
            harness.enforcedContainers == ["web", "client"]
                && harness.enforcedLinks == ["client(\(client))→web(\(web)) 80/tcp,53/udp"]
        }
        let snapshot = await harness.agent.snapshot()
        XCTAssertGreaterThanOrEqual(snapshot.statistics.reconnects, 1)
        XCTAssertEqual(snapshot.statistics.resyncs, 2)
        try await eventually("the error cleared") { await harness.agent.snapshot().lastError == nil }
        try await eventually("reported connected") {
            harness.reports.last?.connected == true && harness.reports.last?.lastError == nil
        }

        // A broken stream with the daemon still there: reconnect at once, resync.
        harness.docker.breakStream()
        harness.docker.stop("client", silently: true)
        try await eventually("resynced after the broken stream") { harness.enforcedContainers == ["web"] }
        try await harness.stop()
    }

    /// A port that joins the bridge gets the program at once: one more apply
    /// of the policy in force (the dataplane attaches to every bridge port),
    /// connected to Docker or not. Another bridge's ports change nothing.
    func testAPortJoiningTheBridgeIsAttachedAtOnceEvenWhileDockerIsAway() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedLinks.count == 1 }
        let before = harness.dataplane.appliedPolicies
        func portApplies() async -> Int { await harness.agent.snapshot().statistics.portApplies }

        harness.host.join("vethnew")
        try await eventually("applied for the new port") { await portApplies() == 1 }
        XCTAssertEqual(harness.dataplane.appliedPolicies.count, before.count + 1)
        XCTAssertEqual(harness.dataplane.appliedPolicies.last, before.last, "the same policy, applied again")

        harness.host.join("vethelse", bridge: "br-other")
        try await stays("another bridge's port") { await portApplies() == 1 }

        harness.docker.goAway()
        try await eventually("the agent notices") { !(await harness.agent.snapshot().connected) }
        harness.host.join("vethwhileaway")
        try await eventually("attached while Docker is away") { await portApplies() == 2 }
        XCTAssertEqual(harness.dataplane.appliedPolicies.last, before.last)
        try await harness.stop()
    }

    /// An external interface the settings name that does not exist is left
    /// out (everything else is enforced) and attached when it appears.
    func testAMissingExternalInterfaceIsLeftOutAndAttachedWhenItAppears() async throws {
        let harness = AgentHarness(
            settings: AgentSettings(
                policy: Policy(
                    icc: false,
                    extInterfaces: [
                        ExternalInterface(name: "eth0"),
                        ExternalInterface(name: "wg0", allowSources: [IPv4CIDR("198.51.100.0/24")!]),
                    ])))
        harness.host.setMissing(["wg0"])
        standardContainers(harness.docker)
        harness.start()
        try await eventually("applied without wg0") { harness.enforcedLinks.count == 1 }
        XCTAssertEqual(harness.dataplane.appliedPolicies.last?.extInterfaces.map(\.name), ["eth0"])
        try await eventually("reported") { harness.reports.last?.missingExtInterfaces == ["wg0"] }
        XCTAssertTrue(harness.logs.contains(.warning, "external interface wg0 does not exist"), "\(harness.logs.all)")

        harness.host.setMissing([])
        harness.host.appear("vethunrelated")
        try await stays("another interface appearing changes nothing") {
            harness.dataplane.appliedPolicies.last?.extInterfaces.count == 1
        }
        harness.host.appear("wg0")
        try await eventually("applied with wg0") {
            harness.dataplane.appliedPolicies.last?.extInterfaces.map(\.name) == ["eth0", "wg0"]
        }
        try await eventually("no longer reported") { harness.reports.last?.missingExtInterfaces == nil }
        try await harness.stop()
    }

    func testReconnectBackoffDoublesAndIsCapped() async throws {
        let harness = AgentHarness()
        harness.docker.goAway()
        harness.start()
        try await eventually("several attempts", timeout: .seconds(5)) { harness.docker.connectTimes.count >= 7 }
        let times = harness.docker.connectTimes
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        // 20, 40, 80, 160, 160, … ms (scheduling adds a little).
        XCTAssertGreaterThanOrEqual(gaps[0], .milliseconds(18))
        XCTAssertGreaterThanOrEqual(gaps[2], .milliseconds(75))
        XCTAssertGreaterThanOrEqual(gaps[4], .milliseconds(150))
        XCTAssertLessThan(gaps[5], .milliseconds(600), "capped at 160 ms: \(gaps)")
        XCTAssertTrue(harness.logs.contains(.error, "docker daemon not reachable"), "\(harness.logs.all)")
        XCTAssertTrue(harness.dataplane.applications.isEmpty)

        harness.docker.comeBack()
        standardContainers(harness.docker)
        try await eventually("syncs once the daemon is there") { harness.enforcedContainers.count == 3 }
        try await harness.stop()
    }

    func testFailedApplyKeepsLastGoodStateAndIsRetried() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedContainers.count == 3 }
        harness.dataplane.failNextApply(with: DataplaneError.runtime("bpf: map update: Cannot allocate memory"))
        harness.docker.run("late")
        try await eventually("the failure is logged") { harness.logs.contains(.error, "Cannot allocate memory") }
        XCTAssertTrue(harness.logs.contains(.error, "keeps enforcing the last applied policy"))
        try await eventually("retried and applied") { harness.enforcedContainers.contains("late") }
        try await eventually("the error cleared") { await harness.agent.snapshot().lastError == nil }
        let snapshot = await harness.agent.snapshot()
        XCTAssertEqual(snapshot.statistics.failedApplies, 1)
        XCTAssertNil(snapshot.lastError)
        try await harness.stop()
    }

    func testStartLatencyIsMeasuredAndReported() async throws {
        let harness = AgentHarness()
        harness.start()
        try await eventually("connected") { await harness.isFollowing() }
        harness.docker.run("web", exposed: [PortSpec(80, .tcp)])
        try await eventually("latency measured") { !(await harness.agent.snapshot().startLatencies.isEmpty) }
        let latencies = await harness.agent.snapshot().startLatencies
        let latency = try XCTUnwrap(latencies.last)
        XCTAssertEqual(latency.container, "web")
        let sinceEvent = try XCTUnwrap(latency.sinceEvent)
        XCTAssertGreaterThanOrEqual(sinceEvent, .zero)
        XCTAssertLessThan(sinceEvent, .seconds(2))
        try await eventually("reported") { harness.reports.last?.lastSyncContainer == "web" }
        let reported = try XCTUnwrap(harness.reports.last?.lastSyncLatencyMs)
        XCTAssertEqual(reported, DockerAgent.milliseconds(latency.reported), accuracy: 0.001)
        XCTAssertTrue(
            harness.logs.contains(.info, "container web: start event → rules in the maps in"), "\(harness.logs.all)")
        try await harness.stop()
    }

    func testPeriodicResyncCatchesWhatEventsMissed() async throws {
        var configuration = AgentHarness.fast
        configuration.resyncInterval = .milliseconds(200)
        let harness = AgentHarness(configuration: configuration)
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedContainers.count == 3 }
        harness.docker.stop("lone", silently: true)
        harness.docker.run("quiet", silently: true)
        try await eventually("the periodic resync saw it") { harness.enforcedContainers == ["web", "client", "quiet"] }
        try await harness.stop()
    }

    /// A full resync applies even when the agent's policy did not change: the
    /// dataplane diffs against what it holds, so drift is repaired.
    func testResyncRepairsDriftInTheDataplane() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        harness.start()
        try await eventually("initial sync") { harness.enforcedLinks.count == 1 }
        // Someone else changes the dataplane behind the agent's back.
        try harness.dataplane.apply(Policy(icc: true))
        XCTAssertTrue(harness.enforcedContainers.isEmpty)
        await harness.agent.resyncNow(reason: "test")
        try await eventually("repaired") { harness.enforcedLinks.count == 1 && harness.status?.icc == false }
        XCTAssertEqual(harness.enforcedContainers, ["web", "client", "lone"])
        try await harness.stop()
    }

    func testAContainerConnectedToTheBridgeLater() async throws {
        let harness = AgentHarness()
        harness.start()
        try await eventually("connected") { await harness.isFollowing() }
        let id = harness.docker.run("late", silently: true)
        harness.docker.emit(harness.docker.network(.connect, id))
        try await eventually("enforced after connect") { harness.enforcedContainers == ["late"] }
        harness.docker.stop("late", silently: true)
        harness.docker.emit(harness.docker.network(.disconnect, id))
        try await eventually("gone after disconnect") { harness.enforcedContainers.isEmpty }
        try await harness.stop()
    }

    func testAContainerWhosePortVanishedIsLeftOutNotEverythingElse() async throws {
        let harness = AgentHarness()
        standardContainers(harness.docker)
        let lonePort = "veth\(harness.docker.container(named: "lone")!.pid!)"
        harness.host.setMissing([lonePort])
        harness.start()
        try await eventually("the others are enforced") { harness.enforcedContainers == ["web", "client"] }
        try await eventually("lone reported as skipped") {
            harness.reports.last?.skippedContainers.contains {
                $0.contains("lone") && $0.contains("\(lonePort) is gone")
            } == true
        }
        XCTAssertTrue(harness.logs.contains(.warning, "left out of the policy"))
        try await harness.stop()
    }

    func testBridgeComesFromDockerAndAPinnedOtherBridgeRefusesToStart() async throws {
        let docker = ScriptedDocker()
        docker.setBridge(name: "br-docker", icc: false)
        docker.setInfo(DockerDaemonInfo(serverVersion: "20.10.24", ipv4Forwarding: true, bridgeNfIptables: true))
        docker.run("web", silently: true)
        let following = AgentHarness(docker: docker)
        following.host.setTraces(["iptables has Docker's chains (DOCKER, DOCKER-USER)"])
        following.start()
        try await eventually("enforced on Docker's bridge") { following.status?.bridge == "br-docker" }
        XCTAssertTrue(following.logs.contains(.warning, "enable_icc=false"))
        XCTAssertTrue(following.logs.contains(.warning, "BridgeNfIptables"))
        XCTAssertTrue(following.logs.contains(.warning, "--iptables=false"))
        try await following.stop()

        let pinned = AgentHarness(
            docker: docker, settings: AgentSettings(policy: Policy(bridge: "docker0"), requiredBridge: "docker0"))
        pinned.start()
        do {
            try await pinned.runTask?.value
            XCTFail("a pinned bridge Docker does not use must stop the agent")
        } catch let error as AgentConfigurationError {
            XCTAssertTrue(error.message.contains("bridge docker0 was given"), error.message)
            XCTAssertTrue(error.message.contains("br-docker"), error.message)
        }
        XCTAssertTrue(pinned.dataplane.applications.isEmpty)
    }

    func testStatusShowsTheUserlandProxyAndAMissingBTF() async throws {
        let harness = AgentHarness()
        harness.host.setProxies([
            DockerProxy(proto: "tcp", hostIP: "0.0.0.0", hostPort: 8080, containerIP: "172.17.0.2", containerPort: 80),
            // Another daemon's container: not bpfnet's business.
            DockerProxy(proto: "udp", hostIP: "0.0.0.0", hostPort: 53, containerIP: "10.99.0.9", containerPort: 53),
        ])
        harness.host.setKernelBTF(false)
        harness.docker.run("web", published: [PublishedPort(hostPort: 8080, containerPort: 80)])
        harness.start()
        try await eventually("the warnings in the agent's status") { harness.reports.last?.warnings?.count == 2 }
        let warnings = harness.reports.last?.warnings ?? []
        XCTAssertTrue(warnings[0].contains("1 docker-proxy processes"), warnings[0])
        XCTAssertTrue(warnings[0].contains("0.0.0.0:8080→172.17.0.2:80/tcp"), warnings[0])
        XCTAssertFalse(warnings[0].contains("10.99.0.9"), warnings[0])
        XCTAssertTrue(warnings[1].contains("no BTF"), warnings[1])
        XCTAssertTrue(harness.logs.contains(.warning, "userland proxy"))

        // Fixed on the host: the next resync takes the warnings away.
        harness.host.setProxies([])
        harness.host.setKernelBTF(true)
        await harness.agent.resyncNow(reason: "test")
        try await eventually("no warnings left") { harness.reports.last?.warnings == nil }
        try await harness.stop()
    }

    func testManyEventsAtOnceAreAppliedTogether() async throws {
        let harness = AgentHarness()
        harness.start()
        try await eventually("connected") { await harness.isFollowing() }
        for index in 0..<50 {
            harness.docker.run(
                "c\(index)", exposed: [PortSpec(80, .tcp)], links: index > 0 ? [("c\(index - 1)", "prev")] : [])
        }
        try await eventually("all fifty and their links") {
            harness.enforcedContainers.count == 50 && harness.enforcedLinks.count == 49
        }
        XCTAssertLessThan(harness.dataplane.applications.count, 50, "events that come together are applied together")
        try await harness.stop()
    }
}
