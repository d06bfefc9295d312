// SPDX-License-Identifier: Apache-2.0
//
// Ctrl-C, SIGTERM, SIGHUP and exit() while a bench runs: NetLab's safety net
// deletes the namespaces (which takes every veth, attachment, iptables rule
// and conntrack entry with them); the private bpffs mounts holding bpfnet's
// pins are the one thing outside the namespaces, and this net unmounts them
// first. It owns the signals (installed before any topology exists, so
// NetLab leaves them alone and only adds its exit() hook) and calls
// NetLab.cleanUpNow() itself.

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

    /// Installs the signal and exit hooks once. Call before building anything.
    /// A signal that already has a handler (not SIG_DFL) is left to it.
    public static func install() {
        let first = state.withLock { state -> Bool in
            defer { state.installed = true }
            return !state.installed
        }
        guard first else { return }
        atexit { BenchSafetyNet.cleanUpNow() }
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            let previous = signal(signalNumber, SIG_IGN)
            guard unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_DFL, to: Int.self) else {
                signal(signalNumber, previous)
                continue
            }
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                FileHandle.standardError.write(Data("\nbpfnet bench: interrupted, removing the bench topologies\n".utf8))
                BenchSafetyNet.cleanUpNow()
                // Die of the same signal, so the exit status says what happened.
                signal(signalNumber, SIG_DFL)
                kill(getpid(), signalNumber)
            }
            source.resume()
            _ = Unmanaged.passRetained(source as AnyObject)
        }
        // NetLab adds its exit() hook; its signal hooks stand aside (ours are set).
        NetLab.installCleanupOnExit()
    }

    /// Records a pin directory that will become a private bpffs mount.
    static func register(mount path: FilePath) {
        _ = state.withLock { $0.mounts.insert(path.string) }
    }

    /// Records a work directory, removed (when empty) after the mounts.
    static func register(directory path: String) {
        _ = state.withLock { $0.directories.insert(path) }
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

    /// Unmounts every recorded bpffs, then lets NetLab stop its processes and
    /// delete its namespaces. Idempotent.
    public static func cleanUpNow() {
        let (mounts, directories) = state.withLock { state -> (Set<String>, Set<String>) in
            defer {
                state.mounts = []
                state.directories = []
            }
            return (state.mounts, state.directories)
        }
        for mount in mounts.sorted() { unmount(FilePath(mount)) }
        for directory in directories.sorted() { rmdir(directory) }
        NetLab.cleanUpNow()
    }
}
