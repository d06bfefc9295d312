// SPDX-License-Identifier: Apache-2.0
//
// The client through real HTTP on a unix socket, against FakeDockerDaemon.

import BPFNetCore
import Foundation
import XCTest

@testable import DockerWatcher

final class ClientTests: XCTestCase {
    private func withClient<T: Sendable>(
        _ daemon: FakeDockerDaemon,
        configuration: DockerClient.Configuration = .init(),
        _ body: (DockerClient) async throws -> T
    ) async throws -> T {
        try await DockerClient.withClient(
            host: .unixSocket(path: daemon.socketPath), configuration: configuration, body)
    }

    func testNegotiatesTheDaemonsVersion() async throws {
        let daemon = try FakeDockerDaemon(apiVersion: "1.41")
        defer { daemon.stop() }
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route(
            "/version", .full(status: 200, body: String(decoding: try Fixture.data("version.json"), as: UTF8.self)))
        daemon.route(
            "/containers/json",
            .full(status: 200, body: String(decoding: try Fixture.data("containers_list.json"), as: UTF8.self)))
        daemon.route(
            "/containers/",
            .full(status: 200, body: String(decoding: try Fixture.data("inspect_cc.json"), as: UTF8.self)))
        daemon.route(
            "/networks/bridge",
            .full(status: 200, body: String(decoding: try Fixture.data("network_bridge.json"), as: UTF8.self)))
        daemon.route(
            "/info", .full(status: 200, body: String(decoding: try Fixture.data("info_subset.json"), as: UTF8.self)))

        try await withClient(daemon) { client in
            let ping = try await client.ping()
            XCTAssertEqual(ping.apiVersion, DockerAPIVersion(1, 41))
            XCTAssertEqual(ping.server, "FakeDocker/1.0 (linux)")
            // The first versioned request negotiates by itself.
            let version = try await client.version()
            XCTAssertEqual(version.apiVersion, DockerAPIVersion(1, 41))
            let apiVersion = await client.apiVersion
            XCTAssertEqual(apiVersion, DockerAPIVersion(1, 41))
            let names = try await client.listContainers().map(\.name)
            XCTAssertEqual(names, ["cc", "cb", "ca"])
            let links = try await client.inspectContainer("cc").links.map(\.child)
            XCTAssertEqual(links, ["cb"])
            let bridgeName = try await client.bridgeNetwork().bridgeName
            XCTAssertEqual(bridgeName, "docker0")
            let forwarding = try await client.info().ipv4Forwarding
            XCTAssertEqual(forwarding, true)
        }
        XCTAssertEqual(
            daemon.receivedRequests,
            [
                "/_ping", "/_ping", "/v1.41/version",
                "/v1.41/containers/json?filters=%7B%22network%22%3A%5B%22bridge%22%5D%2C%22status%22%3A%5B%22running%22%5D%7D",
                "/v1.41/containers/cc/json", "/v1.41/networks/bridge", "/v1.41/info",
            ])
    }

    func testCapsAtTheNewestKnownVersionAndFallsBack() async throws {
        for (announced, expected) in [("1.60", "1.55"), ("1.52", "1.52"), (nil, "1.41"), ("garbage", "1.41")]
            as [(String?, String)]
        {
            let daemon = try FakeDockerDaemon(apiVersion: announced)
            defer { daemon.stop() }
            daemon.route("/_ping", .full(status: 200, body: "OK"))
            daemon.route("/version", .full(status: 200, body: #"{"Version":"x"}"#))
            let negotiated = try await withClient(daemon) { client in
                let version = try await client.negotiateAPIVersion()
                _ = try await client.version()
                return version
            }
            XCTAssertEqual(negotiated.description, expected, "announced \(announced ?? "nothing")")
            XCTAssertEqual(daemon.receivedRequests.last, "/v\(expected)/version")
        }
    }

    func testHTTPErrorsCarryTheDaemonsMessage() async throws {
        let daemon = try FakeDockerDaemon()
        defer { daemon.stop() }
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route("/containers/gone", .full(status: 404, body: #"{"message":"No such container: gone"}"#))
        daemon.route("/networks/bridge", .full(status: 500, body: "plain text failure\n"))
        daemon.route(
            "/containers/bad",
            .full(
                status: 200,
                body: #"{"Id":"bad","Name":"/bad","NetworkSettings":{"Networks":{"bridge":{"IPAddress":"1.2.3"}}}}"#))
        try await withClient(daemon) { client in
            do {
                _ = try await client.inspectContainer("gone")
                XCTFail("expected 404")
            } catch let error as DockerError {
                XCTAssertTrue(error.isNotFound)
                XCTAssertEqual(
                    error.description, "docker: GET /v1.41/containers/gone/json: HTTP 404: No such container: gone")
            }
            do {
                _ = try await client.bridgeNetwork()
                XCTFail("expected 500")
            } catch let error as DockerError {
                XCTAssertEqual(
                    error,
                    .httpStatus(request: "GET /v1.41/networks/bridge", status: 500, message: "plain text failure"))
            }
            do {
                _ = try await client.inspectContainer("bad")
                XCTFail("expected a decoding error")
            } catch let error as DockerError {
                XCTAssertEqual(
                    error,
                    .decoding(
                        what: "container inspect", field: "NetworkSettings.Networks.bridge.IPAddress",
                        reason: "'1.2.3' is not an IPv4 address"))
            }
        }
    }

    func testMissingSocketFailsAtOnceAndSaysWhatToDo() async throws {
        let path = "/tmp/bpfnet-no-such-dir-\(getpid())/docker.sock"
        let started = ContinuousClock.now
        try await DockerClient.withClient(host: .unixSocket(path: path)) { client in
            do {
                _ = try await client.negotiateAPIVersion()
                XCTFail("expected daemonUnreachable")
            } catch let error as DockerError {
                XCTAssertEqual(
                    error.description,
                    "docker daemon not reachable at unix://\(path): No such file or directory — is dockerd running? use --docker-host"
                )
            }
            // Any request, not only the ping.
            do {
                _ = try await client.listContainers()
                XCTFail("expected daemonUnreachable")
            } catch let DockerError.daemonUnreachable(host, reason) {
                XCTAssertEqual(host, "unix://\(path)")
                XCTAssertEqual(reason, "No such file or directory")
            }
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testStaleSocketIsConnectionRefused() async throws {
        let daemon = try FakeDockerDaemon()
        let path = daemon.socketPath
        // A socket file nobody listens on any more, as dockerd leaves behind when killed.
        daemon.stop()
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        mkdir((path as NSString).deletingLastPathComponent, 0o700)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        close(fd)
        defer {
            unlink(path)
            rmdir((path as NSString).deletingLastPathComponent)
        }
        try await DockerClient.withClient(host: .unixSocket(path: path)) { client in
            do {
                _ = try await client.ping()
                XCTFail("expected daemonUnreachable")
            } catch let DockerError.daemonUnreachable(_, reason) {
                XCTAssertEqual(reason, "Connection refused")
            }
        }
    }

    func testRequestsTimeOut() async throws {
        let daemon = try FakeDockerDaemon()
        defer { daemon.stop() }
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route("/containers/json", .hang)
        // A head that comes at once but a body that never ends is bounded too.
        daemon.route(
            "/version",
            .chunked(status: 200, pieces: [(.zero, #"{"Version":"#)], endCleanly: false, thenWait: .seconds(5)))
        let started = ContinuousClock.now
        try await withClient(daemon, configuration: .init(requestTimeout: .milliseconds(300))) { client in
            do {
                _ = try await client.listContainers()
                XCTFail("expected a timeout")
            } catch let error as DockerError {
                guard case .timedOut(_, let request, let seconds) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(request.hasPrefix("GET /v1.41/containers/json"), request)
                XCTAssertEqual(seconds, 0.3)
                XCTAssertTrue(error.description.contains("within 0.3 s"), error.description)
            }
            do {
                _ = try await client.version()
                XCTFail("expected a timeout")
            } catch DockerError.timedOut(_, let request, _) {
                XCTAssertEqual(request, "GET /v1.41/version")
            }
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
    }

    func testEventStreamOverHTTP() async throws {
        let daemon = try FakeDockerDaemon()
        defer { daemon.stop() }
        let start =
            #"{"Type":"container","Action":"start","Actor":{"ID":"aaa","Attributes":{"name":"web"}},"time":1,"timeNano":1000000001}"#
        let connect =
            #"{"Type":"network","Action":"connect","Actor":{"ID":"net","Attributes":{"container":"aaa","name":"bridge","type":"bridge"}}}"#
        let die =
            #"{"Type":"container","Action":"die","Actor":{"ID":"aaa","Attributes":{"name":"web","exitCode":"0"}}}"#
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route(
            "/events",
            .chunked(
                status: 200,
                pieces: [
                    (.zero, String(start.prefix(30))),
                    // Silent for longer than the request timeout: the stream is not bounded by it.
                    (
                        .milliseconds(700),
                        String(start.dropFirst(30)) + "\n" + connect + "\ngarbage\n" + String(die.prefix(10))
                    ),
                    (.milliseconds(50), String(die.dropFirst(10)) + "\n"),
                ], endCleanly: true))

        let (items, error) = try await withClient(daemon, configuration: .init(requestTimeout: .milliseconds(300))) {
            client in
            let stream = try await client.events(since: Date(timeIntervalSince1970: 1_700_000_000))
            var items: [DockerEventItem] = []
            do {
                for try await item in stream { items.append(item) }
                return (items, nil as DockerError?)
            } catch let error as DockerError {
                return (items, error)
            }
        }
        XCTAssertEqual(items.compactMap(\.event).map(\.action), [.start, .connect, .die])
        XCTAssertEqual(items.compactMap(\.event).first?.timeNano, 1_000_000_001)
        XCTAssertEqual(items.count, 4)
        guard case .malformed(let garbage) = items[2] else { return XCTFail("\(items)") }
        XCTAssertEqual(garbage.line, "garbage")
        XCTAssertEqual(
            error, .eventStreamEnded(host: "unix://\(daemon.socketPath)", reason: "the daemon closed the stream"))
        let target = try XCTUnwrap(daemon.receivedRequests.last)
        XCTAssertTrue(target.hasPrefix("/v1.41/events?since=1700000000.000000000&filters=%7B%22event%22"), target)
    }

    func testEventStreamThrowsWhenTheConnectionIsCut() async throws {
        let daemon = try FakeDockerDaemon()
        defer { daemon.stop() }
        let start = #"{"Type":"container","Action":"start","Actor":{"ID":"aaa"}}"#
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route(
            "/events", .chunked(status: 200, pieces: [(.zero, start + "\n" + #"{"Type":"cont"#)], endCleanly: false))
        let (actions, error) = try await withClient(daemon) { client in
            var actions: [DockerEventAction] = []
            do {
                for try await item in try await client.events() { actions.append(item.event!.action) }
                return (actions, nil as DockerError?)
            } catch let error as DockerError {
                return (actions, error)
            }
        }
        XCTAssertEqual(actions, [.start])
        guard case .eventStreamEnded? = error else {
            return XCTFail("expected eventStreamEnded, got \(String(describing: error))")
        }
    }

    func testEventStreamRefusedByTheDaemon() async throws {
        let daemon = try FakeDockerDaemon()
        defer { daemon.stop() }
        daemon.route("/_ping", .full(status: 200, body: "OK"))
        daemon.route("/events", .full(status: 400, body: #"{"message":"invalid filter 'bogus'"}"#))
        try await withClient(daemon) { client in
            do {
                _ = try await client.events(filters: DockerEventFilters(["bogus": ["x"]]))
                XCTFail("expected 400")
            } catch DockerError.httpStatus(_, let status, let message) {
                XCTAssertEqual(status, 400)
                XCTAssertEqual(message, "invalid filter 'bogus'")
            }
        }
    }
}
