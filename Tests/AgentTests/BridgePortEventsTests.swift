// SPDX-License-Identifier: Apache-2.0
//
// The link monitor as `bpfnet run` uses it: real rtnetlink notifications in a
// network namespace of the test's own, reduced to "this port joined that bridge".

import BPFNetAgent
import Foundation
import LinuxNet
import XCTest

final class BridgePortEventsTests: XCTestCase {
    private func ip(_ namespace: String, _ lines: [String]) throws {
        let result = try ProcessRunner.run(
            Command(["ip", "-n", namespace, "-batch", "-"], input: lines.joined(separator: "\n") + "\n"))
        XCTAssertTrue(result.succeeded, result.stderr)
    }

    /// The reduction both `run` and `load --watch` use, on its own.
    func testTheTrackerReportsAppearancesAndJoinsOnce() {
        func link(_ index: Int32, _ name: String, master: Int32? = nil) -> LinkMonitor.Event {
            .changed(RouteNetlink.Link(index: index, name: name, master: master))
        }
        var tracker = LinkChangeTracker()
        XCTAssertEqual(
            tracker.changes(from: [link(7, "v1"), link(7, "v1", master: 3), link(7, "v1", master: 3)]),
            [.appeared(name: "v1"), .joined(port: "v1", masterIndex: 3)], "an up or MTU change is no new join")
        XCTAssertEqual(
            tracker.changes(from: [link(7, "v1"), link(7, "v1", master: 3)]), [.joined(port: "v1", masterIndex: 3)])
        XCTAssertEqual(
            tracker.changes(from: [.removed(index: 7), link(7, "v1b", master: 4)]),
            [.appeared(name: "v1b"), .joined(port: "v1b", masterIndex: 4)], "an ifindex that went and came back")
        XCTAssertEqual(
            tracker.changes(from: [.overflow, link(7, "v1b", master: 4)]),
            [.lost, .appeared(name: "v1b"), .joined(port: "v1b", masterIndex: 4)])
    }

    func testAPortJoiningABridgeIsReportedOnceWithTheBridgesName() async throws {
        guard geteuid() == 0 else {
            if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
                return XCTFail("requires root: network namespaces")
            }
            throw XCTSkip("requires root: network namespaces")
        }
        let name = "bnlinks\(getpid())"
        XCTAssertTrue(try ProcessRunner.run(Command(["ip", "netns", "add", name])).succeeded)
        addTeardownBlock { _ = try? ProcessRunner.run(Command(["ip", "netns", "del", name])) }
        try ip(name, ["link add br0 type bridge", "link add br1 type bridge", "link add old type veth peer name oldp"])
        try ip(name, ["link set old master br0"])

        // Created on a thread inside the namespace: the socket and the reader thread belong to it.
        let namespace = try NetworkNamespace(named: name)
        let events = try XCTUnwrap(try namespace.run { SystemAgentHost().bridgePortEvents() })
        let seen = EventBox()
        let reader = Task { for await event in events { seen.append(event) } }
        defer { reader.cancel() }
        try ip(
            name,
            [
                "link add v1 type veth peer name v1p", "link set v1 master br0", "link set v1 up",
                "link set v1 mtu 1400", "link add v2 type veth peer name v2p", "link set v2 master br1",
                "link set v1 nomaster", "link set v1 master br0",
            ])
        let joins = { seen.all.filter { if case .joined = $0 { true } else { false } } }
        try await eventually("three joins") { joins().count >= 3 }
        try await Task.sleep(for: .milliseconds(200))
        XCTAssertEqual(
            joins(),
            [
                .joined(port: "v1", bridge: "br0"), .joined(port: "v2", bridge: "br1"),
                .joined(port: "v1", bridge: "br0"),
            ],
            "a join each time a port gets a master; other changes and the port that was there before say nothing")
        let appeared = Set(seen.all.compactMap { if case .appeared(let name) = $0 { name } else { nil } })
        XCTAssertTrue(appeared.isSuperset(of: ["v1", "v1p", "v2", "v2p"]), "\(appeared)")
        XCTAssertFalse(appeared.contains("old"), "nothing happened to it")
        XCTAssertEqual(seen.all.count { $0 == .appeared(name: "v1") }, 1, "leaving a bridge is not going away")
    }
}

private final class EventBox: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [BridgePortEvent] = []
    var all: [BridgePortEvent] { lock.withLock { events } }
    func append(_ event: BridgePortEvent) { lock.withLock { events.append(event) } }
}
