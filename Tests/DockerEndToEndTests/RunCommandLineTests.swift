// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run`'s refusals that come before anything is started: the built
// binary, its exit code (2: usage or bad input) and its message. No root, no
// Docker needed.

import Foundation
import LinuxNet
import NetLab
import XCTest

final class RunCommandLineTests: XCTestCase {
    private func bpfnet(_ arguments: [String]) throws -> CommandResult {
        try ProcessRunner.run(
            Command(
                [try BPFNetCLI.locate()] + arguments, timeout: .seconds(30),
                environment: ["BPFNET_RUN_DIR": NSTemporaryDirectory() + "bpfnet-run-cli-\(getpid())"]))
    }

    private func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "bpfnet-run-cli-\(UUID().uuidString).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testAPolicyFileWithContainersOrLinksIsRefused() throws {
        let config = try file(
            """
            icc: false
            containers:
              - {name: web, ip: 172.17.0.2, mac: 02:42:ac:11:00:02, port: vethweb}

            """)
        let result = try bpfnet(["run", "--config", config])
        XCTAssertEqual(result.status, .exited(2), result.stderr)
        XCTAssertTrue(
            result.stderr.contains(
                "\(config):2: containers: not allowed in this file: `bpfnet run` takes networks, containers, links and the bridges' IPv6 from Docker"
            ),
            result.stderr)
    }

    func testBadOptionsAreUsageErrors() throws {
        for (arguments, expected) in [
            (["run", "--docker-host", "ftp://somewhere"], "unsupported scheme 'ftp'"),
            (["run", "--docker-host", "/var/run/docker.sock"], "did you mean unix:///var/run/docker.sock?"),
            (["run", "--resync-interval", "0"], "--resync-interval 0.0: expected seconds between 1 and 86400"),
            (["run", "--log-level", "loud"], "--log-level loud: expected trace, debug"),
            (["run", "--icc", "maybe"], "icc"),
            (["run", "--pin-path", "relative/pins"], "must be an absolute directory path"),
            (["run", "--allow-source", "10.0.0.0/8"], "no external interface to apply it to"),
            (["run", "--metrics-address", "9469"], "--metrics-address '9469': expected HOST:PORT"),
            (["run", "--metrics-address", "127.0.0.1:99999"], "--metrics-address '127.0.0.1:99999'"),
        ] {
            let result = try bpfnet(arguments)
            XCTAssertEqual(result.status, .exited(2), "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
        }
    }

    func testHelpNamesTheSettingsOnlyFileAndTheSignals() throws {
        let result = try bpfnet(["run", "--help"])
        XCTAssertEqual(result.status, .exited(0))
        for text in [
            "--docker-host", "--config", "--pin-path", "--resync-interval", "--metrics-address", "must not", "SIGTERM",
            "unload",
        ] {
            XCTAssertTrue(result.stdout.contains(text), "help lacks \(text): \(result.stdout)")
        }
    }
}
