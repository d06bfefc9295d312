// SPDX-License-Identifier: Apache-2.0
//
// What every test of the real-Docker suite sets up around itself: the root
// gate, a work directory, a private dockerd (not started: each test gives its
// own flags), the docker host's and the outside's namespaces, and bpfnet's
// command line in the docker host; and the teardown, in the right order, also
// when the test fails half-way.

import DockerTestSupport
import Foundation
import NetLab
import XCTest

final class RealDockerHost {
    let probe: ProbeRunner
    let work: String
    let dockerd: PrivateDockerd
    let lab: LabNamespaces
    let bpfnet: BPFNetCLI
    private var processes: [BackgroundProcess] = []
    private var cleanUps: [() -> Void] = []

    /// Whether the suite can run here: without root it skips (or fails when
    /// CI requires root tests), and a missing tool fails with the packages to
    /// install. Returns false after recording a failure.
    static func canRun(tools: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
                XCTFail(
                    "BPFNET_REQUIRE_ROOT_TESTS=1 but not root: the real-Docker suite needs root", file: file, line: line
                )
                return false
            }
            throw XCTSkip("needs root: starts dockerd and bpfnet in network namespaces of its own")
        }
        if let missing = PrivateDockerd.missingRequirements(tools: tools) {
            XCTFail(
                "cannot run the real-Docker suite: \(missing) — \(PrivateDockerd.installHint)", file: file, line: line)
            return false
        }
        return true
    }

    /// - Parameter name: a short word for the directory and namespace names.
    init(name: String) throws {
        probe = try ProbeRunner(maxConcurrent: 6)
        let tag = "\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        work = FileManager.default.temporaryDirectory.appendingPathComponent("bpfnet-\(name)-\(tag)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        do {
            dockerd = try PrivateDockerd(base: work + "/docker", tag: tag)
            lab = try LabNamespaces(tag: "\(tag)-\(name.prefix(3))", probe: probe)
            bpfnet = try BPFNetCLI(namespace: lab.docker, workDirectory: work)
        } catch {
            try? FileManager.default.removeItem(atPath: work)
            throw error
        }
    }

    /// Starts dockerd in the docker host's namespace with `--bip` on the lab's bridge and `flags`.
    func startDockerd(_ flags: [String], wipeNetwork: Bool = true) throws {
        try dockerd.start(in: lab.docker, flags: ["--bip", LabAddresses.bridge] + flags, wipeNetwork: wipeNetwork)
    }

    /// `process`, to be stopped by `close` (before everything else).
    @discardableResult
    func adopt(_ process: BackgroundProcess) -> BackgroundProcess {
        processes.append(process)
        return process
    }

    /// Runs `body` at `close`, after the processes stop and before dockerd
    /// goes (latest first).
    func atClose(_ body: @escaping () -> Void) {
        cleanUps.append(body)
    }

    func close() {
        for process in processes.reversed() { process.stop(grace: .seconds(5)) }
        for body in cleanUps.reversed() { body() }
        bpfnet.cleanUp()
        dockerd.destroy()
        lab.destroy()
        unmountEverything(under: work)
        try? FileManager.default.removeItem(atPath: work)
    }
}
