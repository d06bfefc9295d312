// SPDX-License-Identifier: Apache-2.0
//
// One `bpfnet run` per dataplane: an flock(2) on /run/bpfnet/agent-….lock
// (see AgentFiles for why not in the pin directory). The kernel drops the lock
// when the process ends, however it ends, so a crashed agent never blocks the
// next one and there is no stale pid file to judge.

import BPFNetDataplane
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public struct AgentLockError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    /// The pid of the agent that holds the lock, when it is known.
    public var holder: Int32?
    /// Another process holds the lock (rather than the lock file failing).
    public var isHeldByAnother = false

    public var description: String { message }

    /// As the dataplane layer's error: `busy` when another agent holds the lock.
    public var dataplaneError: DataplaneError { isHeldByAnother ? .busy(message) : .runtime(message) }
}

/// The held lock; released by `release()` or when the process exits.
public final class AgentLock: @unchecked Sendable {
    public let files: AgentFiles
    private var fd: Int32

    private init(files: AgentFiles, fd: Int32) {
        self.files = files
        self.fd = fd
    }

    deinit { release() }

    /// Takes the lock of `files`' pin path or says who holds it.
    /// - Parameter dockerHost: written into the lock file, for the next one's message.
    public static func acquire(_ files: AgentFiles, dockerHost: String) throws(AgentLockError) -> AgentLock {
        do {
            try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        } catch {
            throw AgentLockError(
                message: "cannot create \(files.directory) for the agent's lock: \(error) — "
                    + "run as root, or set BPFNET_RUN_DIR to a writable directory")
        }
        // O_NOFOLLOW: a symlink planted at the lock's path must not make root
        // create or truncate the file it points to.
        let fd = open(files.lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link; remove it" : String(cString: strerror(errno))
            throw AgentLockError(message: "cannot open \(files.lockPath): \(reason)")
        }
        // `bpfnet status` probes the lock with a shared flock for an instant: retry briefly.
        var attempts = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            attempts += 1
            if code == EWOULDBLOCK, attempts < 25 {
                usleep(20_000)
                continue
            }
            close(fd)
            guard code == EWOULDBLOCK else {
                throw AgentLockError(message: "cannot lock \(files.lockPath): \(String(cString: strerror(code)))")
            }
            let holder = AgentFiles.pid(inLockFile: files.lockPath)
            let who = holder.map { "pid \($0)" } ?? "another process"
            let name = AgentFiles.holderName(inLockFile: files.lockPath)
            throw AgentLockError(
                message:
                    "another \(name) (\(who)) already keeps the dataplane at \(files.pinPath) in step "
                    + "(lock \(files.lockPath)); stop it first\(holder.map { " (kill -TERM \($0))" } ?? "") "
                    + "or give this one another --pin-path",
                holder: holder, isHeldByAnother: true)
        }
        let content = "\(getpid())\n\(files.pinPath)\n\(dockerHost)\n"
        _ = ftruncate(fd, 0)
        _ = content.withCString { pwrite(fd, $0, strlen($0), 0) }
        return AgentLock(files: files, fd: fd)
    }

    /// Releases the lock (the file stays: removing it would let two agents
    /// lock two different files of the same name).
    public func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }
}
