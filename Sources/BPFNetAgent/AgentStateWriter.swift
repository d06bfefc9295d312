// SPDX-License-Identifier: Apache-2.0
//
// The agent's state file: every report the agent publishes replaces it, so
// `bpfnet status --json` can show what the agent does (docs/agent.md). Where
// the file lives and how it is read are in BPFNetDataplane's AgentFiles, since
// `status` and `unload` read it without an agent; writing is the agent's alone.

import BPFNetCore
import BPFNetDataplane
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes the agent's reports to its state file; says so once if it cannot.
public final class AgentStateWriter: @unchecked Sendable {
    private let files: AgentFiles
    private let logger: Logger
    private let lock = NSLock()
    private var failed = false

    public init(files: AgentFiles, logger: Logger) {
        self.files = files
        self.logger = logger
    }

    /// Replaces the state file; a failure is logged the first time only (the
    /// agent goes on: the state file is for `status`, not for enforcing).
    public func write(_ agent: DataplaneStatus.Agent) {
        do {
            try files.writeState(agent)
        } catch {
            let first = lock.withLock { () -> Bool in
                defer { failed = true }
                return !failed
            }
            if first {
                let warning =
                    "cannot write the agent's state to \(files.statePath): \(error) — `bpfnet status` "
                    + "will not show it"
                logger.warning("\(warning)")
            }
        }
    }
}

extension AgentFiles {
    /// Replaces the state file atomically (write to a temporary file, rename).
    public func writeState(_ agent: DataplaneStatus.Agent) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(agent)
        let temporary = statePath + ".tmp.\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw DataplaneError.system("writing \(temporary)", errno: errno)
        }
        guard rename(temporary, statePath) == 0 else {
            let code = errno
            unlink(temporary)
            throw DataplaneError.system("renaming \(temporary) to \(statePath)", errno: code)
        }
    }
}
