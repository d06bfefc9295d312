// SPDX-License-Identifier: Apache-2.0
//
// SIGHUP reads `run --config` again: good settings are applied, bad ones are
// logged and the old ones stay in force, with everything the agent follows.

import BPFNetAgent
import BPFNetCore
import Foundation
import XCTest

final class SettingsReloadTests: XCTestCase {
    func testSIGHUPAppliesAReloadedSettingsFileAndKeepsTheOldSettingsWhenItIsBad() async throws {
        let file = NSTemporaryDirectory() + "bpfnet-settings-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        func write(_ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: file)) }
        // The command line's overrides stay on top of whatever the file says.
        let overrides = PolicyOverrides(forwardPolicy: .accept)
        let load: @Sendable () throws -> AgentSettings = {
            try AgentSettings.load(configFile: file, overrides: overrides)
        }

        try write("icc: false\n")
        let harness = AgentHarness(settings: try load())
        harness.docker.run("web", silently: true)
        harness.docker.run("client", silently: true)
        harness.start()
        try await eventually("enforced with icc false") {
            harness.status?.icc == false && harness.enforcedContainers == ["web", "client"]
        }

        try write("icc: true\nforwardPolicy: drop\n")
        await harness.agent.hangup(loadSettings: load, logger: harness.logs.logger)
        try await eventually("the reloaded settings applied") { harness.status?.icc == true }
        XCTAssertEqual(harness.status?.forwardPolicy, "accept", "--forward-policy still overrides the file")
        XCTAssertTrue(harness.logs.contains(.notice, "settings reloaded: icc true"))

        // Each of these is refused; the settings in force and the containers stay.
        let bad = [
            ("icc: maybe\n", "icc"),
            (
                "icc: false\ncontainers:\n  - {name: x, ip: 172.17.0.9, mac: 02:42:ac:11:00:09, port: vethx}\n",
                "containers"
            ),
            ("bridge: br-elsewhere\nicc: false\n", "br-elsewhere"),
        ]
        for (text, named) in bad {
            try write(text)
            let resyncs = await harness.agent.snapshot().statistics.resyncs
            await harness.agent.hangup(loadSettings: load, logger: harness.logs.logger)
            try await eventually("the error about \(named) logged") {
                harness.logs.all.contains {
                    $0.0 == .error && $0.1.contains("settings were not reloaded") && $0.1.contains(named)
                }
            }
            // The SIGHUP's resync still runs, with the old settings.
            try await eventually("resynced") { await harness.agent.snapshot().statistics.resyncs > resyncs }
            XCTAssertEqual(harness.status?.icc, true, text)
            XCTAssertEqual(harness.enforcedContainers, ["web", "client"], text)
        }

        // Without a settings file SIGHUP only resyncs.
        let resyncs = await harness.agent.snapshot().statistics.resyncs
        await harness.agent.hangup(loadSettings: nil, logger: harness.logs.logger)
        try await eventually("resynced") { await harness.agent.snapshot().statistics.resyncs > resyncs }
        XCTAssertEqual(harness.status?.icc, true)
        try await harness.stop()
    }
}
