// SPDX-License-Identifier: Apache-2.0
//
// The `bpfnet` binary the way an operator runs it, inside the docker host's
// namespace (nsenter --net, so /sys/fs/bpf and the test's temporary pin path
// stay visible), with the lock and state files in the test's own directory.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab

#if canImport(Glibc)
import Glibc
#endif

final class BPFNetCLI {
    let binary: String
    let namespace: NetworkNamespace
    let pinPath: String
    let runDirectory: String

    init(namespace: NetworkNamespace, workDirectory: String) throws {
        binary = try Self.locate()
        self.namespace = namespace
        pinPath = workDirectory + "/pins"
        runDirectory = workDirectory + "/run"
    }

    static func locate() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["BPFNET_BINARY"], !explicit.isEmpty { return explicit }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let sibling = executable.deletingLastPathComponent().appendingPathComponent("bpfnet").path
        guard FileManager.default.isExecutableFile(atPath: sibling) else {
            throw LabFailure(
                "no bpfnet binary next to \(executable.path) — build it (swift build) or set BPFNET_BINARY")
        }
        return sibling
    }

    var environment: [String: String] { ["BPFNET_RUN_DIR": runDirectory, "PATH": PrivateDockerd.path] }

    func command(_ arguments: [String], timeout: Duration = .seconds(60)) -> Command {
        Command(
            namespace.nsenter([binary] + arguments + ["--pin-path", pinPath]), timeout: timeout,
            environment: environment)
    }

    /// Runs a short command (status, unload, a second run); the result, whatever the exit.
    func run(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        try ProcessRunner.run(command(arguments, timeout: timeout))
    }

    func status() throws -> DataplaneStatus {
        let result = try run(["status", "--json"])
        guard result.succeeded else { throw LabFailure("bpfnet status failed: \(result.stderr)") }
        return try JSONDecoder().decode(DataplaneStatus.self, from: Data(result.stdout.utf8))
    }

    /// Starts `bpfnet run` in the background.
    func startAgent(dockerHost: String, config: String, extra: [String] = []) throws -> BackgroundProcess {
        try BackgroundProcess(
            command(
                [
                    "run", "--docker-host", dockerHost, "--config", config, "--log-level", "debug",
                    "--resync-interval", "30",
                ] + extra), captureOutput: false)
    }

    /// Polls `status --json` until `condition` holds; the last status on timeout in the error.
    @discardableResult
    func waitForStatus(
        _ what: String, timeout: Duration = .seconds(20),
        _ condition: (DataplaneStatus) -> Bool
    ) throws -> DataplaneStatus {
        let deadline = ContinuousClock.now + timeout
        var last: String = "no status yet"
        while true {
            if let status = try? status() {
                if condition(status) { return status }
                last =
                    "containers \(status.containers.map { "\($0.name)=\($0.ip)" }), "
                    + "links \(status.links.map { "\($0.parent)(\($0.parentIP))→\($0.child)(\($0.childIP))" }), icc \(status.icc), "
                    + "agent \(status.agent.map { "running \($0.running) connected \($0.connected) error \($0.lastError ?? "-")" } ?? "none")"
            }
            if ContinuousClock.now > deadline {
                throw LabFailure("bpfnet status never showed \(what) within \(timeout): \(last)")
            }
            usleep(100_000)
        }
    }

    /// Unloads (best effort) and unmounts the private bpffs.
    func cleanUp() {
        _ = try? run(["unload"])
        unmountEverything(under: pinPath)
    }
}
