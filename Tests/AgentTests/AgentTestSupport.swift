// SPDX-License-Identifier: Apache-2.0

import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import DockerWatcher
import Foundation
import Logging
import XCTest

/// Log lines, kept for assertions.
final class LogRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String)] = []

    var all: [(Logger.Level, String)] { lock.withLock { lines } }

    func append(_ level: Logger.Level, _ message: String) {
        lock.withLock { lines.append((level, message)) }
        if ProcessInfo.processInfo.environment["BPFNET_TEST_LOGS"] != nil {
            print("[\(level)] \(message)")
        }
    }

    func contains(_ level: Logger.Level, _ text: String) -> Bool {
        all.contains { $0.0 == level && $0.1.contains(text) }
    }

    var logger: Logger {
        var logger = Logger(label: "test.agent") { _ in RecordingHandler(recorder: self) }
        logger.logLevel = .trace
        return logger
    }

    private struct RecordingHandler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.append(event.level, "\(event.message)")
        }
    }
}

/// The last state the agent reported (what `bpfnet run` writes to its state file).
final class ReportBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: DataplaneStatus.Agent?
    private var countValue = 0

    var last: DataplaneStatus.Agent? { lock.withLock { value } }
    var count: Int { lock.withLock { countValue } }

    func set(_ agent: DataplaneStatus.Agent) {
        lock.withLock {
            value = agent
            countValue += 1
        }
    }
}

/// An agent wired to a scripted Docker, the in-memory dataplane and a fake host.
final class AgentHarness: @unchecked Sendable {
    let docker: ScriptedDocker
    let dataplane = InMemoryDataplane()
    let host = FakeHost()
    let logs = LogRecorder()
    let reports = ReportBox()
    let agent: DockerAgent
    private var task: Task<Void, any Error>?

    static let fast = DockerAgent.Configuration(
        resyncInterval: .seconds(3600), requestedResyncSpacing: .milliseconds(50),
        initialBackoff: .milliseconds(20), maximumBackoff: .milliseconds(160), tickInterval: .milliseconds(10))

    init(
        docker: ScriptedDocker = ScriptedDocker(), settings: AgentSettings = AgentSettings(policy: Policy(icc: false)),
        configuration: DockerAgent.Configuration = AgentHarness.fast
    ) {
        self.docker = docker
        let reports = self.reports
        agent = DockerAgent(
            docker: docker, dataplane: DataplaneExecutor(dataplane), settings: settings,
            resolvePorts: fakePortResolver, host: host, configuration: configuration,
            logger: logs.logger, report: { reports.set($0) })
    }

    func start() {
        let agent = self.agent
        task = Task { try await agent.run() }
    }

    /// Cancels the agent (SIGTERM in the CLI) and waits for it to return.
    func stop() async throws {
        task?.cancel()
        try await task?.value
        task = nil
    }

    var runTask: Task<Void, any Error>? { task }

    /// Connected, the first resync done, the event stream open.
    func isFollowing() async -> Bool {
        let snapshot = await agent.snapshot()
        return snapshot.connected && snapshot.statistics.resyncs >= 1 && docker.hasEventStream
    }

    /// What the maps hold now, as `status --json` shows it.
    var status: DataplaneStatus? { try? dataplane.status() }

    /// Names of the containers in force.
    var enforcedContainers: Set<String> { Set(status?.containers.map(\.name) ?? []) }

    /// "parent(parentIP)→child(childIP) ports" for each link in force.
    var enforcedLinks: Set<String> {
        Set(
            status?.links.map {
                "\($0.parent)(\($0.parentIP))→\($0.child)(\($0.childIP)) \($0.ports.joined(separator: ","))"
            } ?? [])
    }

    /// The link rules (forward and reverse) in the maps, as (source, destination) pairs.
    var linkRulePairs: Set<String> {
        Set(dataplane.state.links.map { "\($0.source)>\($0.destination)" })
    }
}

/// Polls `condition` until it holds; fails with `what` after `timeout`.
func eventually(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(5),
    file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        if ContinuousClock.now > deadline {
            XCTFail("timed out waiting for \(what())", file: file, line: line)
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// Waits a little and checks that `condition` still holds all along.
func stays(
    _ what: @autoclosure () -> String, for duration: Duration = .milliseconds(150),
    file: StaticString = #filePath, line: UInt = #line, _ condition: () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + duration
    while ContinuousClock.now < deadline {
        if !(await condition()) {
            XCTFail("no longer true: \(what())", file: file, line: line)
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}
