// SPDX-License-Identifier: Apache-2.0
//
// The agent's parts on their own, without the actor: each is a value or a
// small class the actor owns, so its rules can be checked one by one.

import BPFNetCore
import BPFNetDataplane
import Foundation
import Logging
import SystemPackage
import XCTest

@testable import BPFNetAgent
@testable import DockerWatcher

final class PendingChangesTests: XCTestCase {
    private let docker = ScriptedDocker()
    private let start = ContinuousClock.now

    private func container(_ action: DockerEventAction, _ id: String, timeNano: Int64? = 1_000) -> DockerEvent {
        DockerEvent(type: .container, action: action, actorID: id, attributes: ["name": id], timeNano: timeNano)
    }

    private func record(_ events: [DockerEvent], into pending: inout PendingChanges) {
        for (index, event) in events.enumerated() {
            XCTAssertTrue(pending.record(event, receivedAt: start + .milliseconds(index)), "\(event)")
        }
    }

    func testWhichEventsConcernThePolicy() {
        let classified = { (event: DockerEvent) in PendingChanges.classify(event).map { "\($0.0) \($0.1)" } }
        XCTAssertEqual(classified(container(.start, "a")), "a refresh")
        XCTAssertEqual(classified(container(.restart, "a")), "a refresh")
        XCTAssertEqual(classified(container(.die, "a")), "a remove")
        XCTAssertEqual(classified(container(.stop, "a")), "a remove")
        XCTAssertEqual(classified(container(.destroy, "a")), "a destroy")
        XCTAssertEqual(classified(docker.network(.connect, "a")), "a refresh")
        XCTAssertEqual(classified(docker.network(.disconnect, "a")), "a refresh", "it may stay on other networks")
        XCTAssertEqual(classified(docker.network(.connect, "a", network: "app")), "a refresh", "a user network")
        XCTAssertEqual(classified(docker.network(.disconnect, "a", network: "app")), "a refresh")
        XCTAssertNil(classified(docker.network(.connect, "a", network: "lan", type: "macvlan")), "not a bridge")
        XCTAssertNil(classified(docker.networkEvent(.create, "app")), "the agent's own: it reads the networks")
        XCTAssertNil(classified(container(.other("exec_start: sh"), "a")))
        XCTAssertNil(classified(container(.start, "")), "no container ID")
        XCTAssertNil(classified(DockerEvent(type: .other("plugin"), action: .other("enable"), actorID: "p1")))

        var pending = PendingChanges()
        XCTAssertFalse(pending.record(container(.other("pause"), "a"), receivedAt: start))
        XCTAssertTrue(pending.isEmpty, "an ignored event records nothing")
    }

    /// Both daemons' stop orders end in a removal; a restart ends in a refresh.
    func testTheLastEventPerContainerWins() {
        var pending = PendingChanges()
        // 20.10: die, disconnect, stop.
        record(
            [
                container(.start, "v20"), container(.die, "v20"), docker.network(.disconnect, "v20"),
                container(.stop, "v20"),
            ], into: &pending)
        // 29: disconnect, stop, die.
        record([docker.network(.disconnect, "v29"), container(.stop, "v29"), container(.die, "v29")], into: &pending)
        // `docker restart`: die … start … restart.
        record(
            [
                container(.die, "again"), container(.stop, "again"), container(.start, "again"),
                container(.restart, "again"),
            ], into: &pending)
        XCTAssertEqual(pending.changes["v20"]?.kind, .remove)
        XCTAssertNil(pending.changes["v20"]?.start, "a removal clears the start mark")
        XCTAssertEqual(pending.changes["v29"]?.kind, .remove)
        XCTAssertEqual(pending.changes["again"]?.kind, .refresh)
        XCTAssertEqual(
            pending.changes["again"]?.start?.received, start + .milliseconds(2),
            "the start marks for the latency; a later restart keeps the mark")
    }

    func testADestroySticks() {
        var pending = PendingChanges()
        record(
            [container(.destroy, "gone"), container(.start, "gone"), docker.network(.connect, "gone")],
            into: &pending)
        let batch = pending.takeBatch()
        XCTAssertEqual(batch.removals.map(\.id), ["gone"])
        XCTAssertEqual(batch.removals.map(\.destroyed), [true])
        XCTAssertTrue(batch.refreshes.isEmpty)
        XCTAssertTrue(batch.starts.isEmpty, "a destroyed container is not measured")
    }

    func testABatchTakesEverythingInIDOrder() {
        var pending = PendingChanges()
        record(
            [
                container(.start, "c", timeNano: 42), container(.die, "b"), container(.restart, "a"),
                container(.destroy, "d"), docker.network(.connect, "e"),
            ], into: &pending)
        let batch = pending.takeBatch()
        XCTAssertTrue(pending.isEmpty)
        XCTAssertEqual(batch.count, 5)
        XCTAssertEqual(batch.refreshes, ["a", "c", "e"])
        XCTAssertEqual(batch.removals.map(\.id), ["b", "d"])
        XCTAssertEqual(batch.removals.map(\.destroyed), [false, true])
        XCTAssertEqual(Array(batch.starts.keys), ["c"], "only a start event marks for the latency")
        XCTAssertEqual(batch.starts["c"], PendingChanges.StartMark(eventTimeNano: 42, received: start))
        XCTAssertEqual(pending.takeBatch().count, 0)

        record([container(.start, "x")], into: &pending)
        pending.removeAll()
        XCTAssertTrue(pending.isEmpty)
    }
}

final class ConcurrentMapTests: XCTestCase {
    /// What the transforms saw, shared between them.
    private final class Probe: @unchecked Sendable {
        private let lock = NSLock()
        private var inFlight = 0
        private(set) var maximum = 0
        private(set) var finished = 0
        /// Element → how many had finished when it started.
        private(set) var finishedAtStart: [Int: Int] = [:]
        private(set) var calls: [Int] = []

        var current: Int { lock.withLock { inFlight } }

        func begin(_ element: Int) {
            lock.withLock {
                inFlight += 1
                maximum = max(maximum, inFlight)
                finishedAtStart[element] = finished
                calls.append(element)
            }
        }

        func end() {
            lock.withLock {
                inFlight -= 1
                finished += 1
            }
        }
    }

    func testNeverMoreThanTheLimitAndStartedInOrder() async throws {
        for limit in [1, 3, 8] {
            let probe = Probe()
            let inputs = Array(0..<20)
            let results = await inputs.concurrentMap(limit: limit) { element -> Int in
                probe.begin(element)
                // The first ones wait until the limit is reached, so a helper
                // that ran fewer at once would stall here and one that ran more would show.
                if element < limit {
                    let deadline = ContinuousClock.now + .seconds(5)
                    while probe.current < limit, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(1))
                    }
                }
                try? await Task.sleep(for: .milliseconds(element % 3))
                probe.end()
                return element * element
            }
            XCTAssertEqual(results, Dictionary(uniqueKeysWithValues: inputs.map { ($0, $0 * $0) }))
            XCTAssertEqual(probe.maximum, limit, "limit \(limit)")
            // Element i starts only after i - limit + 1 others finished: in sequence order, one for one.
            for (element, finished) in probe.finishedAtStart {
                XCTAssertGreaterThanOrEqual(finished, element - limit + 1, "limit \(limit), element \(element)")
            }
        }
    }

    func testResultsAreKeyedByInputAndEachDistinctInputRunsOnce() async {
        let probe = Probe()
        let results = await [3, 1, 2, 3, 1].concurrentMap(limit: 2) { element -> String in
            probe.begin(element)
            probe.end()
            return "#\(element)"
        }
        XCTAssertEqual(results, [1: "#1", 2: "#2", 3: "#3"])
        XCTAssertEqual(probe.calls.sorted(), [1, 2, 3])
        let none = await [Int]().concurrentMap(limit: 4) { $0 }
        XCTAssertTrue(none.isEmpty)
        let zeroLimit = await [1, 2].concurrentMap(limit: 0) { $0 + 1 }
        XCTAssertEqual(zeroLimit, [1: 2, 2: 3], "a limit below one runs one at a time")
    }

    private struct Refused: Error, Equatable {
        var element: Int
    }

    func testTheFirstFailureIsThrownAndCancelsTheRest() async {
        let probe = Probe()
        let clock = ContinuousClock()
        let started = clock.now
        do throws(Refused) {
            _ = try await Array(0..<10).concurrentMap(limit: 2) { element throws(Refused) -> Int in
                probe.begin(element)
                defer { probe.end() }
                if element == 1 { throw Refused(element: 1) }
                try? await Task.sleep(for: .seconds(10))
                return element
            }
            XCTFail("expected the failure")
        } catch {
            XCTAssertEqual(error, Refused(element: 1), "typed: the transform's own error")
        }
        XCTAssertLessThan(clock.now - started, .seconds(5), "the sleeping one was cancelled")
        XCTAssertLessThanOrEqual(probe.calls.count, 3, "nothing new starts after a failure: \(probe.calls)")
    }
}

final class ContainerTrackerTests: XCTestCase {
    /// Counts the port lookups; fails for the pids in `failing`.
    private final class Ports: @unchecked Sendable {
        private let lock = NSLock()
        private var lookups: [Int32] = []
        private var failing: Set<Int32> = []

        var count: Int { lock.withLock { lookups.count } }
        func fail(_ pid: Int32?, _ yes: Bool = true) {
            lock.withLock { if let pid { if yes { failing.insert(pid) } else { failing.remove(pid) } } }
        }

        var resolver: BridgePortResolver {
            { pid in
                try self.lock.withLock {
                    self.lookups.append(pid)
                    if self.failing.contains(pid) { throw BridgePortLookupError("no such process") }
                }
                return "veth\(pid)"
            }
        }
    }

    private func tracker(
        _ docker: ScriptedDocker, _ ports: Ports,
        logs: LogRecorder = LogRecorder()
    ) -> ContainerTracker {
        ContainerTracker(
            docker: docker, resolvePorts: endpointPortResolver(ports.resolver), concurrency: 4, logger: logs.logger)
    }

    func testPortsAreLookedUpOncePerProcessAndEndpoint() async throws {
        let docker = ScriptedDocker()
        let ports = Ports()
        let tracker = tracker(docker, ports)
        let web = docker.run("web", silently: true)
        let failed = await tracker.take(try await tracker.inspect([web]))
        XCTAssertFalse(failed)
        XCTAssertEqual(tracker.containers[web]?.port, "veth\(docker.container(named: "web")!.pid!)")
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertEqual(ports.count, 1, "the same process and endpoint: the port found before")

        docker.stop("web", silently: true)
        docker.start("web", silently: true)
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertEqual(ports.count, 2, "a new process: looked up again")
        XCTAssertEqual(tracker.containers[web]?.port, "veth\(docker.container(named: "web")!.pid!)")

        tracker.remove(web, destroyed: false)
        XCTAssertNil(tracker.containers[web])
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertEqual(ports.count, 2, "a removal keeps the port: the container may come back as it was")
        tracker.remove(web, destroyed: true)
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertEqual(ports.count, 3, "a destroyed container's port is forgotten")
        tracker.forgetPorts()
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertEqual(ports.count, 4, "after a reconnect every port is looked up again")
    }

    func testAFailedLookupTracksTheContainerWithWhy() async throws {
        let docker = ScriptedDocker()
        let ports = Ports()
        let tracker = tracker(docker, ports)
        let web = docker.run("web", silently: true)
        ports.fail(docker.container(named: "web")?.pid)
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertNil(tracker.containers[web]?.port)
        XCTAssertEqual(tracker.containers[web]?.portProblem, "bridge port not found: no such process")
        ports.fail(docker.container(named: "web")?.pid, false)
        _ = await tracker.take(try await tracker.inspect([web]))
        XCTAssertNotNil(tracker.containers[web]?.port, "a failure is not cached")
    }

    func testInspectAnswersAndTheResyncReplacement() async throws {
        let docker = ScriptedDocker()
        let ports = Ports()
        let logs = LogRecorder()
        let tracker = tracker(docker, ports, logs: logs)
        let web = docker.run("web", silently: true)
        let client = docker.run("client", links: [("web", "w"), ("db", "db")], silently: true)
        let lone = docker.run("lone", silently: true)
        let answers = try await tracker.inspect([web, client, lone, "ghost"])
        XCTAssertTrue(answers["ghost"]?.isNotFound == true)
        _ = await tracker.take(answers)
        XCTAssertEqual(Set(tracker.byName.keys), ["web", "client", "lone"])
        XCTAssertTrue(logs.contains(.info, "removed before it could be inspected (404)"))
        XCTAssertEqual(tracker.untrackedChildren(of: [client, web]), ["db"])

        // An inspect that fails keeps what was known; a container no longer listed is dropped.
        docker.failInspect(of: web, with: .httpStatus(request: "GET /containers/x/json", status: 500, message: "boom"))
        docker.stop("lone", silently: true)
        let listed = [web, client]
        let dropped = await tracker.replace(listed: listed, inspected: try await tracker.inspect(listed))
        XCTAssertEqual(dropped, ["lone"])
        XCTAssertEqual(Set(tracker.byName.keys), ["web", "client"])
        XCTAssertTrue(logs.contains(.warning, "resync: inspecting container"))
        let failed = await tracker.take(try await tracker.inspect([web]))
        XCTAssertTrue(failed, "a failed inspect asks for a resync")

        // Losing the daemon ends the session: the inspect throws.
        docker.goAway()
        do {
            _ = try await tracker.inspect([client])
            XCTFail("an unreachable daemon must throw")
        } catch {
            XCTAssertTrue("\(error)".contains("not reachable"), "\(error)")
        }
    }
}

final class AgentReporterTests: XCTestCase {
    private func policy(_ names: [String]) -> Policy {
        Policy(
            containers: names.enumerated().map { index, name in
                let ip = IPv4Address(172 << 24 | 17 << 16 | UInt32(index + 2))
                return Container(name: name, ip: ip, mac: MACAddress(dockerStyleFor: ip), port: "veth\(name)")
            })
    }

    func testStartsAreMeasuredOnceEnforcedOldestFirst() {
        let logs = LogRecorder()
        var reporter = AgentReporter(dockerHost: "unix:///d.sock", logger: logs.logger, report: nil)
        let now = ContinuousClock.now
        let wall: Int64 = 5_000_000_000
        let starts: [String: PendingChanges.StartMark] = [
            "id-web": .init(eventTimeNano: wall - 40_000_000, received: now - .milliseconds(30)),
            "id-late": .init(eventTimeNano: nil, received: now - .milliseconds(10)),
            "id-future": .init(eventTimeNano: wall + 1, received: now - .milliseconds(20)),
            "id-skipped": .init(eventTimeNano: wall, received: now),
        ]
        reporter.recordStarts(starts, enforcedBy: policy(["web", "late", "future"]), now: now, wallNanos: wall) {
            String($0.dropFirst(3))
        }
        XCTAssertEqual(reporter.startLatencies.map(\.container), ["web", "future", "late"], "by arrival")
        XCTAssertEqual(reporter.startLatencies[0].sinceEvent, .milliseconds(40))
        XCTAssertEqual(reporter.startLatencies[0].reported, .milliseconds(40), "the event's own time when known")
        XCTAssertNil(reporter.startLatencies[1].sinceEvent, "a clock ahead of ours is not a measurement")
        XCTAssertEqual(reporter.startLatencies[2].reported, .milliseconds(10))
        XCTAssertTrue(logs.contains(.info, "container web: start event → rules in the maps in 40.0 ms (30.0 ms"))

        let status = reporter.status(connected: true, daemon: nil, lastError: nil)
        XCTAssertEqual(status.lastSyncContainer, "late", "the last one to arrive")
        XCTAssertEqual(status.lastSyncLatencyMs, 10)
        XCTAssertEqual(status.pid, getpid())

        let many = Dictionary(
            uniqueKeysWithValues: (0..<1_500).map {
                ("id-web\($0)", PendingChanges.StartMark(eventTimeNano: nil, received: now))
            })
        reporter.recordStarts(
            many, enforcedBy: policy((0..<1_500).map { "web\($0)" }),
            now: now, wallNanos: wall
        ) { String($0.dropFirst(3)) }
        XCTAssertEqual(reporter.startLatencies.count, AgentReporter.keptLatencies)
    }

    func testStatusCarriesTheCountersAndWhatWasLeftOut() {
        let reports = ReportBox()
        let logs = LogRecorder()
        var reporter = AgentReporter(dockerHost: "unix:///d.sock", logger: logs.logger, report: { reports.set($0) })
        reporter.statistics.resyncs = 3
        reporter.statistics.reconnects = 1
        reporter.statistics.eventsHandled = 7
        reporter.statistics.malformedEvents = 2
        reporter.recordResync(duration: .milliseconds(1234), containers: 12)
        let skipped = DockerSkippedContainer(id: "id-a", name: "a", reason: "bridge port unknown")
        reporter.recordSkipped([skipped])
        reporter.recordSkipped([skipped])
        XCTAssertEqual(logs.all.filter { $0.1.contains("left out of the policy") }.count, 1, "warned once")
        let daemon = DockerDaemonIdentity(version: "29.7.2", apiVersion: DockerAPIVersion(1, 55))
        reporter.publish(connected: false, daemon: daemon, lastError: "gone")
        let status = try? XCTUnwrap(reports.last)
        XCTAssertEqual(status?.dockerHost, "unix:///d.sock")
        XCTAssertEqual(status?.connected, false)
        XCTAssertEqual(status?.dockerServer, "29.7.2")
        XCTAssertEqual(status?.apiVersion, "1.55")
        XCTAssertEqual(status?.lastResyncMs, 1234)
        XCTAssertEqual(status?.lastResyncContainers, 12)
        XCTAssertEqual(status?.resyncs, 3)
        XCTAssertEqual(status?.reconnects, 1)
        XCTAssertEqual(status?.eventsHandled, 7)
        XCTAssertEqual(status?.malformedEvents, 2)
        XCTAssertEqual(status?.skippedContainers, [skipped.description])
        XCTAssertEqual(status?.lastError, "gone")
        XCTAssertNil(status?.lastSyncLatencyMs)
    }
}

final class DaemonChecksTests: XCTestCase {
    func testWarningsNameWhatPolicesTheBridgeNextToBPFNet() {
        let settings = Policy(bridge: "docker0", icc: false)
        let quiet = DockerBridgeNetwork(
            id: "n", name: "bridge", bridgeName: "docker0",
            subnet: IPv4CIDR("172.17.0.0/16"))
        XCTAssertEqual(
            DaemonChecks.warnings(
                network: quiet, settings: settings, info: nil, firewallTraces: [],
                bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16")), [])
        var loud = quiet
        loud.iccEnabled = false
        let info = DockerDaemonInfo(serverVersion: "20.10.24", ipv4Forwarding: true, bridgeNfIptables: true)
        let warnings = DaemonChecks.warnings(
            network: loud, settings: settings, info: info,
            firewallTraces: ["iptables has Docker's chains (DOCKER)"],
            bridgeAddress: IPv4InterfaceAddress("10.0.0.1/24"))
        XCTAssertEqual(warnings.count, 4, "\(warnings)")
        XCTAssertTrue(warnings[0].contains("enable_icc=false"))
        XCTAssertTrue(warnings[1].hasPrefix("iptables has Docker's chains (DOCKER): dockerd runs"))
        XCTAssertTrue(warnings[2].contains("BridgeNfIptables") && !warnings[2].contains("none found now"))
        XCTAssertTrue(warnings[3].contains("subnet is 172.17.0.0/16") && warnings[3].contains("has 10.0.0.1/24"))

        var noSubnet = quiet
        noSubnet.subnet = nil
        XCTAssertEqual(
            DaemonChecks.warnings(
                network: noSubnet, settings: settings, info: nil, firewallTraces: [],
                bridgeAddress: {
                    XCTFail("asked without a subnet")
                    return nil
                }()), [])
    }
}

final class DockerProxyTests: XCTestCase {
    func testDockerProxyCommandLines() {
        XCTAssertEqual(
            DockerProxy(arguments: [
                "/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
                "-container-ip", "172.17.0.2", "-container-port", "80",
            ])?.description, "0.0.0.0:8080→172.17.0.2:80/tcp")
        // Newer dockerd passes --flags and more options.
        XCTAssertEqual(
            DockerProxy(arguments: [
                "docker-proxy", "-proto", "udp", "-host-ip", "::", "-host-port", "53", "-container-ip",
                "172.18.0.3", "-container-port", "53", "-use-listen-fd",
            ])?.containerIP, "172.18.0.3")
        XCTAssertNil(DockerProxy(arguments: ["/usr/bin/dockerd", "-proto", "tcp"]))
        XCTAssertNil(DockerProxy(arguments: ["docker-proxy", "-proto", "tcp", "-host-port", "x"]))
        XCTAssertNil(DockerProxy(arguments: []))
        XCTAssertNil(DaemonChecks.proxyWarning([]))
        XCTAssertNil(DaemonChecks.btfWarning(hasKernelBTF: true))
    }
}

final class AgentProcessTests: XCTestCase {
    func testTheStateWriterSaysOnceThatItCannotWrite() throws {
        let blocker = FileManager.default.temporaryDirectory
            .appendingPathComponent("bpfnet-state-\(UUID().uuidString)").path
        XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data()))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: blocker) }
        // A regular file where the directory should be: nothing can be written under it.
        let files = AgentFiles(pinPath: FilePath("/sys/fs/bpf/test"), directory: blocker + "/run")
        let logs = LogRecorder()
        let writer = AgentStateWriter(files: files, logger: logs.logger)
        let agent = DataplaneStatus.Agent(running: true, dockerHost: "unix:///d.sock", connected: true)
        writer.write(agent)
        writer.write(agent)
        XCTAssertEqual(logs.all.filter { $0.0 == .warning && $0.1.contains("cannot write the agent's state") }.count, 1)
    }

    func testSIGHUPAsksForAResync() async throws {
        let hangups = ReportBox()
        let signals = AgentSignals(
            logger: LogRecorder().logger, onStop: { XCTFail("SIGHUP must not stop the agent") },
            onHangup: {
                hangups.set(
                    DataplaneStatus.Agent(
                        running: true, dockerHost: "",
                        connected: true))
            })
        defer {
            signals.stop()
            signal(SIGHUP, SIG_DFL)
        }
        // Thread-directed, from a thread that unblocks it: a process-directed
        // kill() could be taken by another reader of SIGHUP in this process
        // instead (NetLab's safety net reads it through a signalfd once a
        // namespace test has run, and then ends the whole test process).
        let sender = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGHUP)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            raise(SIGHUP)
        }
        sender.start()
        try await eventually("the hangup handler ran") { hangups.count == 1 }
    }
}
