// SPDX-License-Identifier: Apache-2.0
//
// Ctrl-C, SIGTERM, SIGHUP and exit() while a bench runs: NetLab's safety net
// deletes the namespaces (which takes every veth, attachment, iptables rule
// and conntrack entry with them); the private bpffs mounts holding bpfnet's
// pins are the one thing outside the namespaces, and this adds a step to that
// net which unmounts them first.

import BPF
import Dispatch
import Foundation
import NetLab
import Synchronization
import SystemPackage

public enum BenchSafetyNet {
    private struct State {
        var mounts: Set<String> = []
        /// Empty directories to remove after the mounts inside them.
        var directories: Set<String> = []
        var installed = false
    }

    private static let state = Mutex(State())

    /// Adds the unmounting to NetLab's safety net and installs it, once.
    /// Call before building anything.
    public static func install() {
        let first = state.withLock { state -> Bool in
            defer { state.installed = true }
            return !state.installed
        }
        guard first else { return }
        NetLab.addCleanupStep { BenchSafetyNet.releaseRecorded() }
        NetLab.installCleanupOnExit()
    }

    /// Creates /tmp/PREFIX-<pid>-XXXXXX (the pid tells whose it is) and
    /// records it, to be removed (when empty) after the mounts.
    static func makeDirectory(prefix: String) throws -> String {
        var template = Array("/tmp/\(prefix)-\(getpid())-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BenchError.runtime("cannot create a directory under /tmp: \(String(cString: strerror(errno)))")
        }
        let path = String(cString: made)
        _ = state.withLock { $0.directories.insert(path) }
        return path
    }

    /// Records a pin directory that will become a private bpffs mount.
    static func register(mount path: FilePath) {
        _ = state.withLock { $0.mounts.insert(path.string) }
    }

    /// Removes a recorded work directory (if empty) and forgets it.
    static func removeDirectory(_ path: String) {
        rmdir(path)
        _ = state.withLock { $0.directories.remove(path) }
    }

    /// Unmounts a recorded bpffs (lazily: the pins go, objects still in use
    /// stay alive until released), removes the directory and forgets it.
    static func unmount(_ path: FilePath) {
        if (try? BPFFileSystem.isBPFFS(path)) == true {
            try? BPFFileSystem.unmount(path, lazily: true)
        }
        _ = path.withCString { rmdir($0) }
        _ = state.withLock { $0.mounts.remove(path.string) }
    }

    /// Unmounts every recorded bpffs and removes the recorded directories. Idempotent.
    private static func releaseRecorded() {
        let (mounts, directories) = state.withLock { state -> (Set<String>, Set<String>) in
            defer {
                state.mounts = []
                state.directories = []
            }
            return (state.mounts, state.directories)
        }
        for mount in mounts.sorted() { unmount(FilePath(mount)) }
        for directory in directories.sorted() { rmdir(directory) }
    }
}
