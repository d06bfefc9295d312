// SPDX-License-Identifier: Apache-2.0

import Foundation
import XCTest

@testable import LinuxNet
@testable import NetLab

final class ProcessRunnerTests: XCTestCase {
    func testCapturesOutputAndStatus() throws {
        let ok = try ProcessRunner.run(Command(["echo", "hello", "world"]))
        XCTAssertEqual(ok.status, .exited(0))
        XCTAssertEqual(ok.stdout, "hello world\n")
        XCTAssertTrue(ok.succeeded)

        let failed = try ProcessRunner.run(Command(["ls", "/nonexistent-netlab-path"]))
        XCTAssertEqual(failed.status, .exited(2))
        XCTAssertFalse(failed.stderr.isEmpty)
        XCTAssertThrowsError(try failed.check()) { error in
            let text = "\(error)"
            XCTAssert(text.contains("ls /nonexistent-netlab-path"), text)
            XCTAssert(text.contains("No such file"), text)
        }
    }

    func testFeedsStandardInput() throws {
        let big = String(repeating: "line of input\n", count: 20_000)  // far more than a socket buffer
        let result = try ProcessRunner.runChecked(Command(["wc", "-l"], input: big))
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "20000")
    }

    func testMissingProgramNamesIt() {
        XCTAssertThrowsError(try ProcessRunner.run(Command(["netlab-no-such-program", "x"]))) { error in
            XCTAssert("\(error)".contains("netlab-no-such-program"), "\(error)")
        }
    }

    func testTimeoutKillsTheChild() throws {
        let started = ContinuousClock.now
        let result = try ProcessRunner.run(Command(["sleep", "10"], timeout: .milliseconds(200)))
        XCTAssertTrue(result.timedOut)
        XCTAssertEqual(result.status, .signaled(SIGKILL))
        XCTAssertLessThan((ContinuousClock.now - started).milliseconds, 2000)
        XCTAssert("\(CommandError.failed(result))".contains("timed out"))
    }

    func testRunsConcurrentlyAndHonoursExclusiveKeys() throws {
        let started = ContinuousClock.now
        let parallel = ProcessRunner.runAll((0..<8).map { _ in Command(["sleep", "0.3"]) }, maxConcurrent: 8)
        XCTAssertEqual(parallel.count, 8)
        for result in parallel { XCTAssertTrue(try result.get().succeeded) }
        XCTAssertLessThan((ContinuousClock.now - started).milliseconds, 2000, "8 × 0.3 s should overlap")

        let serialStart = ContinuousClock.now
        let serial = ProcessRunner.runAll(
            (0..<3).map { _ in Command(["sleep", "0.2"], exclusiveKey: "same") },
            maxConcurrent: 8)
        for result in serial { XCTAssertTrue(try result.get().succeeded) }
        XCTAssertGreaterThanOrEqual((ContinuousClock.now - serialStart).milliseconds, 590, "same key must not overlap")
    }

    func testResultsKeepCommandOrder() throws {
        let commands = (0..<20).map { Command(["echo", "\($0)"]) }
        let results = try ProcessRunner.runAllChecked(commands, maxConcurrent: 5)
        XCTAssertEqual(results.map { $0.stdout.trimmingCharacters(in: .newlines) }, (0..<20).map(String.init))
    }

    func testEnvironmentIsPassed() throws {
        let result = try ProcessRunner.runChecked(
            Command(
                ["printenv", "NETLAB_TEST_VALUE"],
                environment: ["NETLAB_TEST_VALUE": "42"]))
        XCTAssertEqual(result.stdout, "42\n")
    }

    func testBackgroundProcessStopsByPid() throws {
        let process = try BackgroundProcess(Command(["sleep", "30"]), captureOutput: false)
        XCTAssertTrue(process.isRunning)
        let status = process.stop(grace: .milliseconds(300))
        XCTAssertEqual(status, .signaled(SIGTERM))
        XCTAssertFalse(process.isRunning)
        XCTAssertEqual(process.stop(), status, "stop is idempotent")
    }

    func testWaitForLineReportsEarlyExit() throws {
        let process = try BackgroundProcess(Command(["ls", "/nonexistent-netlab-path"]), captureOutput: true)
        XCTAssertThrowsError(try process.waitForLine(prefix: "ready", timeout: .seconds(5))) { error in
            XCTAssert("\(error)".contains("No such file"), "the log should be in the error: \(error)")
        }
        process.stop()
    }

    func testPollTimeoutsNeverWaitForever() {
        XCTAssertEqual(Duration.milliseconds(-500).pollMilliseconds, 0)
        XCTAssertEqual(Duration.seconds(-2).pollMilliseconds, 0)
        XCTAssertEqual(Duration.milliseconds(1500).pollMilliseconds, 1500)
        XCTAssertEqual(Duration.seconds(1 << 40).pollMilliseconds, Int32.max)
    }
}
