// SPDX-License-Identifier: Apache-2.0
//
// The two files `bpfnet run` keeps per pin path: a lock (one agent per
// dataplane) and a state file (what `status --json` shows as `agent` and
// `lastSyncLatencyMs`). They live under /run/bpfnet, not in the pin directory:
// bpffs holds pins only, and /sys/fs/bpf is a bpffs, so neither the pin
// directory nor its parent can hold a regular file. The file names carry a
// hash of the pin path, so agents on different pin paths never meet. Here are
// the paths and what `status` and `unload` do with the files; the agent writes
// the state file (BPFNetAgent's AgentStateWriter).

import BPFNetCore
import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where the agent of one pin path keeps its lock and state.
public struct AgentFiles: Sendable, Hashable {
    /// Default directory; `BPFNET_RUN_DIR` replaces it (tests, unusual hosts).
    public static let defaultDirectory = "/run/bpfnet"

    public let directory: String
    /// The pin path the files belong to, lexically normalised.
    public let pinPath: String

    public init(pinPath: FilePath, directory: String? = nil) {
        self.directory =
            directory
            ?? ProcessInfo.processInfo.environment["BPFNET_RUN_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? Self.defaultDirectory
        self.pinPath = URL(fileURLWithPath: pinPath.string).standardizedFileURL.path
    }

    /// "agent-sys-fs-bpf-bpfnet-1f2e3d4c5b6a7988": readable, and unique per pin path.
    public var baseName: String {
        var readable = String(pinPath.map { $0.isLetter || $0.isNumber ? $0 : "-" })
        while readable.contains("--") { readable = readable.replacingOccurrences(of: "--", with: "-") }
        readable = String(readable.trimmingCharacters(in: CharacterSet(charactersIn: "-")).suffix(48))
        return "agent-\(readable)-\(Self.fnv1a(pinPath))"
    }

    public var lockPath: String { directory + "/" + baseName + ".lock" }
    public var statePath: String { directory + "/" + baseName + ".json" }

    /// FNV-1a 64: stable across processes (Swift's Hasher is seeded per process).
    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    // MARK: Lock

    /// The pid of the agent holding the lock, or nil when none does. Never
    /// takes the lock for longer than the probe.
    public func runningAgentPID() -> Int32? {
        let fd = open(lockPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        guard errno == EWOULDBLOCK else { return nil }
        return Self.pid(inLockFile: lockPath) ?? 0
    }

    /// Who holds the lock, for messages: `bpfnet load --watch` writes
    /// "load --watch" on the lock file's third line, `bpfnet run` its Docker host.
    public static func holderName(inLockFile path: String) -> String {
        let lines = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n") ?? []
        return lines.count > 2 && lines[2].hasPrefix(watchingLoadMark) ? "`bpfnet load --watch`" : "`bpfnet run`"
    }

    /// What `bpfnet load --watch` writes where `bpfnet run` writes its Docker host.
    public static let watchingLoadMark = "load --watch"

    /// The pid written on the lock file's first line.
    public static func pid(inLockFile path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let first = text.split(separator: "\n").first
        else { return nil }
        return Int32(first.trimmingCharacters(in: .whitespaces))
    }

    // MARK: State

    /// The agent's last report with `running` filled in from the lock; nil when
    /// there is none (or it cannot be read).
    public func readState() -> DataplaneStatus.Agent? {
        guard let data = FileManager.default.contents(atPath: statePath),
            var agent = try? JSONDecoder().decode(DataplaneStatus.Agent.self, from: data)
        else { return nil }
        let holder = runningAgentPID()
        agent.running = holder != nil
        if let holder, holder != 0 { agent.pid = holder }
        return agent
    }

    /// Removes the state file (`unload`: the dataplane it described is gone).
    /// Refuses to unload `backend` while a `bpfnet run` agent keeps this pin
    /// path's dataplane in step with Docker: it would put back what unload removes.
    public func refuseUnloadWhileAgentRuns(_ backend: String) throws {
        try refuseWhileAgentRuns(then: "unload", prefix: "\(backend): ")
    }

    /// Refuses `action` (`load`, `unload`) on this pin path while an agent
    /// runs there: the agent would overwrite what the action writes.
    public func refuseWhileAgentRuns(then action: String, prefix: String = "") throws {
        if let pid = runningAgentPID() {
            let holder = Self.holderName(inLockFile: lockPath)
            let source = holder == "`bpfnet run`" ? "Docker" : "its policy file"
            throw DataplaneError.busy(
                "\(prefix)\(holder) (pid \(pid)) keeps the dataplane at \(pinPath) in step "
                    + "with \(source); stop it first (kill -TERM \(pid)), then \(action)")
        }
    }

    public func removeState() {
        unlink(statePath)
    }
}

extension DataplaneStatus {
    /// Adds what the pin path's agent last reported (nothing when none ran).
    public mutating func addAgentState(from files: AgentFiles) {
        guard let agent = files.readState() else { return }
        self.agent = agent
        lastSyncLatencyMs = agent.lastSyncLatencyMs
    }
}
