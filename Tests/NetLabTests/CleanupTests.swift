// SPDX-License-Identifier: Apache-2.0
//
// The exit safety net. The signal cases run this very test bundle again as a
// child (filtered to `SignalHelper`), let it build a topology and start a
// server, signal it, and check what it left behind.

import BPFNetCore
import Foundation
import LinuxNet
import XCTest

@testable import NetLab

final class CleanupTests: XCTestCase {
    func testCleanUpNowRemovesEverything() throws {
        try requireRoot()
        let runner = try probeRunner()
        let topology = try Topology.build(.dockerLike(containers: ["a"], external: false))
        let server = try topology.startServer(in: "a", tcp: [80], probe: runner)
        NetLab.cleanUpNow()
        XCTAssertEqual(namespaces(withPrefix: topology.prefix + "-"), [])
        XCTAssertFalse(server.isRunning)
        XCTAssertEqual(topology.teardown(), [], "teardown after the safety net is harmless")
    }

    /// Starts the helper and returns it with the prefix and server pid it reports.
    func startHelper() throws -> (BackgroundProcess, prefix: String, server: pid_t) {
        let runner = try probeRunner()
        guard let bundle = ProbeRunner.currentExecutable() else { throw XCTSkip("no /proc/self/exe") }
        let helper = try BackgroundProcess(
            Command(
                [bundle, "NetLabTests.SignalHelper/testBuildAndWaitForSignal"],
                environment: ["NETLAB_SIGNAL_HELPER": "1", "BPFNET_PROBE": runner.binary]))
        let line = try helper.waitForLine(prefix: "netlab-helper ", timeout: .seconds(60))
        var prefix = ""
        var server: pid_t = 0
        for token in line.split(separator: " ") {
            if token.hasPrefix("prefix=") { prefix = String(token.dropFirst(7)) }
            if token.hasPrefix("server=") { server = pid_t(token.dropFirst(7)) ?? 0 }
        }
        XCTAssertFalse(prefix.isEmpty, line)
        XCTAssertFalse(namespaces(withPrefix: prefix + "-").isEmpty)
        XCTAssertTrue(processExists(server))
        return (helper, prefix, server)
    }

    func testSigintTearsDown() throws {
        try requireRoot()
        for signalNumber in [SIGINT, SIGTERM] {
            let (helper, prefix, server) = try startHelper()
            kill(helper.pid, signalNumber)
            XCTAssertTrue(
                waitUntil(.seconds(10)) { !helper.isRunning }, "helper did not exit on signal \(signalNumber)")
            XCTAssertEqual(helper.stop(), .signaled(signalNumber), "it should die of the signal after cleaning up")
            XCTAssertEqual(namespaces(withPrefix: prefix + "-"), [], "signal \(signalNumber) left namespaces")
            XCTAssertTrue(waitUntil(.seconds(2)) { !processExists(server) }, "signal \(signalNumber) left the server")
        }
    }

    func testServerDiesWithAKilledParent() throws {
        try requireRoot()
        let (helper, prefix, server) = try startHelper()
        defer {
            // SIGKILL cannot be caught: the namespaces are ours to remove here.
            let left = namespaces(withPrefix: prefix + "-")
            if !left.isEmpty { _ = NamespaceJanitor.delete(left) }
            XCTAssertEqual(namespaces(withPrefix: prefix + "-"), [])
        }
        kill(helper.pid, SIGKILL)
        XCTAssertEqual(helper.stop(), .signaled(SIGKILL))
        XCTAssertTrue(
            waitUntil(.seconds(3)) { !processExists(server) }, "--exit-with-parent server outlived its parent")
    }
}

/// Not a test of its own: the child process of CleanupTests.
final class SignalHelper: XCTestCase {
    func testBuildAndWaitForSignal() throws {
        guard getenv("NETLAB_SIGNAL_HELPER") != nil else {
            throw XCTSkip("helper process for CleanupTests; runs only as their child")
        }
        let topology = try Topology.build(.dockerLike(containers: ["web"], external: false))
        let server = try topology.startServer(in: "web", tcp: [80])
        print("netlab-helper prefix=\(topology.prefix) server=\(server.pid)")
        fflush(nil)
        // sleep() returns early whenever a signal handler runs on this
        // thread (dispatch's own catches SIGINT here): keep sleeping.
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline { sleep(1) }
        XCTFail("no signal arrived")
    }
}
