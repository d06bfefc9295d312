// SPDX-License-Identifier: Apache-2.0
//
// The client against a real dockerd (Debian's docker.io) running in a network namespace of
// the test's own. Root only: skipped with a message otherwise; when root it must run, so a
// missing package fails the test instead of skipping it.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

@testable import DockerWatcher

#if canImport(Glibc)
import Glibc
#endif

final class RealDockerTests: XCTestCase {
    func testClientFollowsAPrivateDockerd() async throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root: starts dockerd in a network namespace of its own")
        }
        if let missing = PrivateDockerd.missingRequirements() {
            return XCTFail("cannot start a private dockerd: \(missing) — \(PrivateDockerd.installHint)")
        }
        var timings: [(String, Duration)] = []
        let clock = ContinuousClock()
        var lap = clock.now
        func mark(_ what: String) {
            timings.append((what, clock.now - lap))
            lap = clock.now
        }

        // A namespace and a directory of this test's own; both go at the end, also on failure.
        var template = Array("/tmp/bpfnet-dockerd-XXXXXX".utf8CString)
        let base = String(cString: try XCTUnwrap(mkdtemp(&template)))
        let namespace = NetworkNamespace(unopenedNamed: "bpfnet-dkw-\(getpid())")
        try ProcessRunner.runChecked(Command(["ip", "netns", "add", namespace.name]))
        let dockerd = try PrivateDockerd(base: base + "/docker", tag: "dkw-\(getpid())")
        addTeardownBlock {
            dockerd.destroy()
            _ = try? ProcessRunner.run(Command(["ip", "netns", "del", namespace.name]))
            try? FileManager.default.removeItem(atPath: base)
        }
        try dockerd.start(in: namespace, flags: ["--iptables=false"], timeout: .seconds(90))
        mark("dockerd start")
        let image = try dockerd.importBusybox()
        mark("busybox image import")

        try await DockerClient.withClient(
            host: .unixSocket(path: dockerd.socket),
            configuration: .init(requestTimeout: .seconds(20))
        ) { client in
            // Version: what the daemon announces, capped at what this client knows.
            let announced = try XCTUnwrap(
                DockerAPIVersion(try dockerd.docker("version", "--format", "{{.Server.APIVersion}}")))
            let negotiated = try await client.negotiateAPIVersion()
            XCTAssertEqual(negotiated, DockerAPIVersion.negotiated(daemon: announced))
            let version = try await client.version()
            XCTAssertEqual(version.apiVersion, announced)

            let network = try await client.bridgeNetwork()
            XCTAssertEqual(network.name, "bridge")
            XCTAssertEqual(network.bridgeName, "docker0")
            XCTAssertTrue(network.iccEnabled)
            let subnet = try XCTUnwrap(network.subnet)

            // Follow first, then change things: every start must arrive.
            let stream = try await client.events(since: Date())
            let recorder = EventRecorder()
            let follower = Task {
                do {
                    for try await item in stream { await recorder.record(item) }
                    await recorder.end(with: nil)
                } catch {
                    await recorder.end(with: error)
                }
            }
            mark("client: negotiate, version, network, events open")

            // `sleep` as pid 1 ignores SIGTERM: a short stop timeout keeps `docker stop` and the
            // daemon's own shutdown (which stops every container) from waiting 10 s each.
            func run(_ arguments: String...) throws -> String {
                try dockerd.docker(["run", "-d", "--stop-timeout", "1"] + arguments + [image, "sleep", "3600"])
            }
            let webID = try run("--name", "web", "--expose", "5353/udp", "-p", "8080:80")
            let clientID = try run("--name", "client", "--link", "web:w")
            let loneID = try run("--name", "lone")
            mark("docker run x3")

            let listed = try await client.listContainers()
            XCTAssertEqual(Set(listed.map(\.name)), ["web", "client", "lone"])
            XCTAssertEqual(Set(listed.map(\.id)), [webID, clientID, loneID])
            XCTAssertEqual(listed.first { $0.name == "web" }?.names.sorted(), ["client/w", "web"])

            let web = try await client.inspectContainer(webID)
            let parent = try await client.inspectContainer("client")
            let lone = try await client.inspectContainer(loneID)
            for container in [web, parent, lone] {
                XCTAssertTrue(container.running, container.name)
                XCTAssertNotNil(container.pid, container.name)
                XCTAssertEqual(container.networkMode, "default")
                let bridge = try XCTUnwrap(container.bridge, container.name)
                XCTAssertTrue(subnet.contains(bridge.ip), "\(bridge.ip) outside \(subnet)")
                XCTAssertNotNil(bridge.mac)
                XCTAssertEqual(container.warnings, [], container.name)
            }
            XCTAssertEqual(web.exposedPorts, [PortSpec(80, .tcp), PortSpec(5353, .udp)])
            XCTAssertEqual(
                web.publishedPorts, [PublishedPort(hostIP: nil, hostPort: 8080, containerPort: 80, proto: .tcp)])
            XCTAssertEqual(parent.links, [DockerLinkDeclaration(child: "web", parent: "client", alias: "w")])
            XCTAssertEqual(lone.links, [])
            mark("list + inspect x3")

            // The real port lookup: setns into each container, rtnetlink on both sides.
            let lookup = LinuxBridgePortLookup(bridgeNamespace: namespace.path)
            let snapshot = await DockerPolicyTranslator.snapshot(of: [web, parent, lone], resolvePort: lookup.resolver)
            mark("bridge port lookup x3 + translation")
            XCTAssertEqual(snapshot.skipped, [])
            XCTAssertEqual(snapshot.containers.map(\.name), ["client", "lone", "web"])
            XCTAssertEqual(snapshot.links, [Link(parent: "client", child: "web", alias: "w")])
            XCTAssertEqual(snapshot.containers.first { $0.name == "web" }?.exposed, web.exposedPorts)
            let bridgeIndex = try XCTUnwrap(
                Int32(
                    try ProcessRunner.runChecked(
                        Command(
                            ["ip", "-n", namespace.name, "-o", "link", "show", "docker0"])
                    ).stdout.split(separator: ":")[0]))
            for container in snapshot.containers {
                let shown = try ProcessRunner.runChecked(
                    Command(
                        ["ip", "-n", namespace.name, "-o", "link", "show", "dev", container.port])
                ).stdout
                XCTAssertTrue(shown.contains("master docker0"), shown)
            }
            let webPort = try await lookup.bridgePort(forPID: try XCTUnwrap(web.pid))
            XCTAssertEqual(webPort.masterIfindex, bridgeIndex)
            XCTAssertEqual(webPort.name, snapshot.containers.first { $0.name == "web" }?.port)
            do {
                _ = try await lookup.hostPort(forPID: 999_999_999)
                XCTFail("a pid that does not exist has no port")
            } catch let error as BridgePortLookupError {
                XCTAssertTrue(error.message.contains("/proc/999999999/ns/net"), error.message)
            }

            for id in [webID, clientID, loneID] {
                try await recorder.waitFor("start of \(id.prefix(12))") {
                    $0.type == .container && $0.action == .start && $0.actorID == id
                }
                try await recorder.waitFor("bridge connect of \(id.prefix(12))") {
                    $0.isDefaultBridgeNetworkEvent && $0.action == .connect && $0.containerID == id
                }
            }
            mark("start + connect events x3")

            // The child stops: its link goes, whatever Docker keeps in its rules.
            try dockerd.docker("stop", "web")
            try await recorder.waitFor("die of web") { $0.action == .die && $0.actorID == webID }
            try await recorder.waitFor("bridge disconnect of web") {
                $0.isDefaultBridgeNetworkEvent && $0.action == .disconnect && $0.containerID == webID
            }
            let stoppedWeb = try await client.inspectContainer(webID)
            XCTAssertFalse(stoppedWeb.running)
            XCTAssertNil(stoppedWeb.pid)
            XCTAssertNil(stoppedWeb.bridge)
            XCTAssertEqual(DockerPolicyTranslator.links(among: [stoppedWeb, parent, lone]), [])
            let withoutWeb = await DockerPolicyTranslator.snapshot(
                of: [stoppedWeb, parent, lone], resolvePort: lookup.resolver)
            XCTAssertEqual(withoutWeb.containers.map(\.name), ["client", "lone"])
            XCTAssertEqual(withoutWeb.links, [])
            let running = try await client.listContainers()
            XCTAssertEqual(Set(running.map(\.name)), ["client", "lone"])
            mark("stop child, die + disconnect events, re-translate")

            // It comes back: the link follows it at once, to whatever address it got.
            try dockerd.docker("start", "web")
            try await recorder.waitFor("second start of web", count: 2) { $0.action == .start && $0.actorID == webID }
            let restartedWeb = try await client.inspectContainer(webID)
            let restarted = await DockerPolicyTranslator.snapshot(
                of: [restartedWeb, parent, lone], resolvePort: lookup.resolver)
            XCTAssertEqual(restarted.links, [Link(parent: "client", child: "web", alias: "w")])
            XCTAssertEqual(restarted.containers.first { $0.name == "web" }?.ip, restartedWeb.bridge?.ip)
            mark("restart child, re-translate")

            // A container removed under our feet: a 404 the caller can tell apart.
            try dockerd.docker("rm", "-f", "lone")
            do {
                _ = try await client.inspectContainer(loneID)
                XCTFail("lone was removed")
            } catch let error as DockerError {
                XCTAssertTrue(error.isNotFound, "\(error)")
            }
            try await recorder.waitFor("destroy of lone") {
                $0.type == .container && $0.action == .destroy && $0.actorID == loneID
            }
            let malformed = await recorder.malformed
            XCTAssertEqual(malformed, [])

            // The daemon goes away: the stream must say so, not hang.
            dockerd.stop()
            mark("dockerd stop")
            let ending = try await recorder.waitForEnd(timeout: .seconds(30))
            guard case .eventStreamEnded? = ending as? DockerError else {
                return XCTFail("expected eventStreamEnded, got \(String(describing: ending))")
            }
            follower.cancel()
            do {
                _ = try await client.ping()
                XCTFail("dockerd is stopped")
            } catch let error as DockerError {
                guard case .daemonUnreachable = error else { return XCTFail("\(error)") }
                XCTAssertTrue(error.description.contains("is dockerd running? use --docker-host"), error.description)
            }
        }
        print("RealDockerTests timings: " + timings.map { "\($0.0) \(format($0.1))" }.joined(separator: ", "))
    }

    private func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.2f s", Double(seconds) + Double(attoseconds) / 1e18)
    }
}

/// Collects what the event stream yields, for assertions that do not depend on order.
private actor EventRecorder {
    private(set) var events: [DockerEvent] = []
    private(set) var malformed: [DockerMalformedEvent] = []
    private var ended = false
    private var ending: (any Error)?

    func record(_ item: DockerEventItem) {
        switch item {
        case .event(let event): events.append(event)
        case .malformed(let bad): malformed.append(bad)
        }
    }

    func end(with error: (any Error)?) {
        ended = true
        ending = error
    }

    func waitFor(
        _ what: String, count: Int = 1, timeout: Duration = .seconds(20),
        _ matches: @Sendable (DockerEvent) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while events.filter(matches).count < count {
            if ended { throw Failure("event stream ended before \(what): \(String(describing: ending))") }
            if ContinuousClock.now > deadline {
                throw Failure("no \(what) within \(timeout); got: \(events.map(\.description).joined(separator: "; "))")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func waitForEnd(timeout: Duration) async throws -> (any Error)? {
        let deadline = ContinuousClock.now + timeout
        while !ended {
            if ContinuousClock.now > deadline {
                throw Failure("event stream still open \(timeout) after dockerd stopped")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return ending
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
