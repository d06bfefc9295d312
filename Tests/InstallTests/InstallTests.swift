// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet install` and `uninstall` on scratch directories for --prefix and
// --root (no root needed): the unit systemd accepts, daemon.json merged and put
// back, and nothing left behind.

import BPFNetInstall
import Foundation
import XCTest

final class InstallTests: XCTestCase {
    private var scratch: String!
    private var prefix: String { scratch + "/usr/local" }
    private var root: String { scratch + "/root" }
    private var daemonJSON: String { root + "/etc/docker/daemon.json" }

    override func setUpWithError() throws {
        scratch = NSTemporaryDirectory() + "bpfnet-install-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// A stand-in for the built binaries: /bin/true under their names, outside ROOT and PREFIX.
    private func binaries(probe: Bool = true) throws -> [String] {
        let source = scratch + "/build"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        var paths: [String] = []
        for name in probe ? ["bpfnet", "bpfnet-probe"] : ["bpfnet"] {
            try? FileManager.default.removeItem(atPath: source + "/" + name)
            try FileManager.default.copyItem(atPath: "/bin/true", toPath: source + "/" + name)
            paths.append(source + "/" + name)
        }
        return paths
    }

    private func installer() throws -> Installer { try Installer(prefix: prefix, root: root) }

    private func install(daemonJSON: Bool = true, settingsFile: String? = nil) throws -> [String] {
        try installer().install(
            InstallOptions(binaries: try binaries(), settingsFile: settingsFile, dockerDaemonJSON: daemonJSON))
    }

    private func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    private func readJSON(_ path: String) throws -> NSDictionary {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path), "no \(path)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    /// Every file and directory under the scratch directory, with each file's bytes and mode.
    private func tree() throws -> [String: String] {
        var result: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: scratch)
        while let path = enumerator?.nextObject() as? String {
            if path.hasPrefix("build") { continue }
            let full = scratch + "/" + path
            let attributes = try FileManager.default.attributesOfItem(atPath: full)
            let mode = String((attributes[.posixPermissions] as? Int) ?? -1, radix: 8)
            if attributes[.type] as? FileAttributeType == .typeDirectory {
                result[path] = "directory \(mode)"
            } else {
                let data = FileManager.default.contents(atPath: full) ?? Data()
                result[path] = "file \(mode) \(data.base64EncodedString())"
            }
        }
        return result
    }

    // MARK: The unit

    func testTheUnitPassesSystemdAnalyzeVerify() throws {
        guard
            let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw XCTSkip("systemd-analyze is not installed (scripts/setup.sh installs the systemd package)")
        }
        _ = try install(daemonJSON: false)
        let unit = root + "/etc/systemd/system/bpfnet.service"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: analyze)
        // --man=no: no man pages to look up; the unit names none.
        process.arguments = ["verify", "--man=no", unit]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "systemd-analyze verify \(unit):\n\(text)")
        // verify only warns about much of what it dislikes: none of it may concern our unit.
        let complaints = text.split(separator: "\n").filter { $0.contains("bpfnet.service") }
        XCTAssertEqual(complaints, [], "systemd-analyze verify:\n\(text)")
    }

    func testTheUnitRunsTheAgentBeforeDockerWithItsCapabilitiesOnly() throws {
        _ = try install(daemonJSON: false)
        let unit = try String(contentsOfFile: root + "/etc/systemd/system/bpfnet.service", encoding: .utf8)
        let lines = Set(unit.split(separator: "\n").map(String.init))
        let exec =
            "ExecStart=\(prefix)/bin/bpfnet run --docker-host unix:///var/run/docker.sock --pin-path /sys/fs/bpf/bpfnet"
        for expected in [
            exec, "Before=docker.service", "WantedBy=multi-user.target", "Restart=on-failure",
            "LimitMEMLOCK=infinity", "ExecReload=/bin/kill -HUP $MAINPID",
            "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_NET_RAW",
            "AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_NET_RAW",
        ] {
            XCTAssertTrue(lines.contains(expected), "no line \(expected) in:\n\(unit)")
        }
        // The host's network and its bpffs: nothing that would hide them from the agent.
        for absent in ["PrivateNetwork", "PrivateTmp", "ProtectSystem", "--config"] {
            XCTAssertFalse(unit.contains(absent + "="), "\(absent) in:\n\(unit)")
        }
        XCTAssertFalse(unit.contains(" --config "), unit)
        // Each capability says why.
        for name in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_RAW"] {
            XCTAssertTrue(lines.contains { $0.hasPrefix("# \(name): ") }, "no comment for \(name):\n\(unit)")
        }
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: prefix + "/bin/bpfnet"))
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: prefix + "/bin/bpfnet-probe"))
    }

    func testTheSettingsFileIsPassedOnlyWhenItExistsOrIsGiven() throws {
        try write("icc: false\n", to: root + "/etc/bpfnet/settings.yaml")
        _ = try install(daemonJSON: false)
        let unit = try String(contentsOfFile: root + "/etc/systemd/system/bpfnet.service", encoding: .utf8)
        XCTAssertTrue(unit.contains(" --pin-path /sys/fs/bpf/bpfnet --config /etc/bpfnet/settings.yaml\n"), unit)

        try write("icc: true\n", to: root + "/srv/bpfnet.yaml")
        _ = try install(daemonJSON: false, settingsFile: "/srv/bpfnet.yaml")
        let given = try String(contentsOfFile: root + "/etc/systemd/system/bpfnet.service", encoding: .utf8)
        XCTAssertTrue(given.contains(" --config /srv/bpfnet.yaml\n"), given)

        XCTAssertThrowsError(try install(daemonJSON: false, settingsFile: "/srv/missing.yaml")) {
            XCTAssertEqual(($0 as? InstallError)?.isBadInput, true, "\($0)")
        }
    }

    func testAPinPathOffBPFFSIsRefusedBeforeAnythingIsWritten() throws {
        let before = try tree()
        XCTAssertThrowsError(
            try installer().install(InstallOptions(binaries: try binaries(), pinPath: "/run/bpfnet"))
        ) {
            XCTAssertEqual(($0 as? InstallError)?.isBadInput, true, "\($0)")
        }
        XCTAssertEqual(try tree(), before)
    }

    // MARK: Install, then uninstall

    func testInstallThenUninstallOnAnEmptyRootLeavesNothingBehind() throws {
        let before = try tree()
        let done = try install()
        XCTAssertTrue(done.contains("created \(daemonJSON) with \"iptables\": false"), "\(done)")
        XCTAssertEqual(try readJSON(daemonJSON), ["iptables": false])
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemonJSON + ".bpfnet-backup"))
        _ = try installer().uninstall()
        XCTAssertEqual(try tree(), before)
    }

    func testInstallThenUninstallRestoresTheOperatorsFilesByteForByte() throws {
        // Odd spacing and key order: the restored file is these bytes, not a re-serialisation.
        let original =
            "{ \"log-driver\":\"journald\",\n  \"iptables\" : true, \"default-address-pools\": [{\"base\": \"10.10.0.0/16\", \"size\": 24}] }\n"
        try write(original, to: daemonJSON)
        _ = chmod(daemonJSON, 0o600)
        try write("[Unit]\n", to: root + "/etc/systemd/system/other.service")
        try FileManager.default.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        let before = try tree()

        _ = try install()
        XCTAssertEqual(
            try readJSON(daemonJSON),
            [
                "log-driver": "journald", "iptables": false,
                "default-address-pools": [["base": "10.10.0.0/16", "size": 24]],
            ])
        XCTAssertEqual(try String(contentsOfFile: daemonJSON + ".bpfnet-backup", encoding: .utf8), original)
        // A second install keeps the first backup: it holds the file as it was before bpfnet.
        _ = try install()
        XCTAssertEqual(try String(contentsOfFile: daemonJSON + ".bpfnet-backup", encoding: .utf8), original)

        let done = try installer().uninstall()
        XCTAssertTrue(done.contains("restored \(daemonJSON) from \(daemonJSON).bpfnet-backup"), "\(done)")
        XCTAssertEqual(try tree(), before)
    }

    func testUninstallKeepsWhatTheOperatorChangedSinceAndPutsTheKeyBack() throws {
        try write("{\"debug\": true, \"iptables\": true}", to: daemonJSON)
        _ = try install()
        try write("{\"debug\": false, \"iptables\": false, \"mtu\": 1400}", to: daemonJSON)
        _ = try installer().uninstall()
        XCTAssertEqual(try readJSON(daemonJSON), ["debug": false, "iptables": true, "mtu": 1400])
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemonJSON + ".bpfnet-backup"))
    }

    func testUninstallOfACreatedDaemonJSONTheOperatorAddedToKeepsTheirKeys() throws {
        _ = try install()
        try write("{\"iptables\": false, \"mtu\": 1400}", to: daemonJSON)
        _ = try installer().uninstall()
        XCTAssertEqual(try readJSON(daemonJSON), ["mtu": 1400])
    }

    func testUninstallLeavesAUnitItDidNotWrite() throws {
        let unit = root + "/etc/systemd/system/bpfnet.service"
        try write("[Service]\nExecStart=/opt/mine\n", to: unit)
        XCTAssertThrowsError(try install()) { XCTAssertEqual(($0 as? InstallError)?.isBadInput, true, "\($0)") }
        let done = try installer().uninstall()
        XCTAssertTrue(FileManager.default.fileExists(atPath: unit), "\(done)")
    }

    // MARK: daemon.json

    func testDaemonJSONMerging() throws {
        let cases: [(String, NSDictionary)] = [
            ("{}", ["iptables": false]),
            ("", ["iptables": false]),
            ("{\"iptables\": true}", ["iptables": false]),
            (
                "{\"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"}, \"features\": {\"buildkit\": true}}",
                [
                    "log-opts": ["max-size": "10m", "max-file": "3"], "features": ["buildkit": true],
                    "iptables": false,
                ]
            ),
            (
                "{\"bip\": \"172.26.0.1/16\", \"ip6tables\": false, \"iptables\": false, \"dns\": [\"1.1.1.1\"]}",
                ["bip": "172.26.0.1/16", "ip6tables": false, "iptables": false, "dns": ["1.1.1.1"]]
            ),
        ]
        for (text, expected) in cases {
            let merged = try DaemonJSON.merged(Data(text.utf8), path: "daemon.json")
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: merged) as? NSDictionary)
            XCTAssertEqual(object, expected, text)
            // JSON's false, not 0: dockerd refuses a number for a boolean.
            XCTAssertTrue(String(decoding: merged, as: UTF8.self).contains("\"iptables\" : false"), text)
        }
        let absent = try DaemonJSON.merged(nil, path: "daemon.json")
        XCTAssertEqual(try JSONSerialization.jsonObject(with: absent) as? NSDictionary, ["iptables": false])
    }

    func testInvalidDaemonJSONIsRefusedAndNothingIsWritten() throws {
        for text in ["{\"iptables\": false,", "[\"iptables\"]", "\"text\"", "{'single': 1}", "iptables: false\n"] {
            try write(text, to: daemonJSON)
            let before = try tree()
            XCTAssertThrowsError(try install(), text) { error in
                XCTAssertEqual((error as? InstallError)?.isBadInput, true, "\(error)")
                XCTAssertTrue("\(error)".contains(daemonJSON), "\(error)")
            }
            XCTAssertEqual(try tree(), before, "something was written for \(text)")
        }
    }
}
