// SPDX-License-Identifier: Apache-2.0
//
// The safety net: every namespace NetLab creates and every background
// process it starts is recorded here before it exists, and removed when it is
// torn down normally. On SIGINT/SIGTERM/SIGHUP or at exit() whatever is still
// recorded is stopped and deleted, so `bpfnet demo`/`bpfnet bench` interrupted
// with Ctrl-C, or a test run that fails half-way, leave nothing behind.

import Dispatch
import LinuxNet
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class CleanupRegistry: Sendable {
    static let shared = CleanupRegistry()

    private struct WeakProcess {
        weak var process: BackgroundProcess?
    }

    private struct State {
        var namespaces: Set<String> = []
        var processes: [pid_t: WeakProcess] = [:]
        /// Run first, before processes stop and namespaces go.
        var steps: [@Sendable () -> Void] = []
        var installed = false
    }

    private let state = Mutex(State())

    func register(namespaces names: [String]) {
        state.withLock { $0.namespaces.formUnion(names) }
    }

    func unregister(namespaces names: [String]) {
        state.withLock { $0.namespaces.subtract(names) }
    }

    func register(process pid: pid_t) {
        state.withLock { $0.processes[pid] = WeakProcess() }
    }

    /// Records the object so the net can stop it through `stop()`, which
    /// knows whether the pid was already reaped (and may be reused).
    func attach(_ process: BackgroundProcess) {
        state.withLock { $0.processes[process.pid] = WeakProcess(process: process) }
    }

    func add(step: @escaping @Sendable () -> Void) {
        state.withLock { $0.steps.append(step) }
    }

    func unregister(process pid: pid_t) {
        _ = state.withLock { $0.processes.removeValue(forKey: pid) }
    }

    var recordedNamespaces: Set<String> { state.withLock { $0.namespaces } }

    /// Installs the exit and signal hooks once. A signal whose disposition is
    /// not the default (ignored by the parent, or handled by the application)
    /// is left alone: that application then calls `NetLab.cleanUpNow()` itself.
    func installSafetyNet() {
        let first = state.withLock { state -> Bool in
            defer { state.installed = true }
            return !state.installed
        }
        guard first else { return }
        atexit { CleanupRegistry.shared.cleanUpEverything() }
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            let previous = signal(signalNumber, SIG_IGN)
            guard unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_DFL, to: Int.self) else {
                signal(signalNumber, previous)
                continue
            }
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                let note = "\ninterrupted: removing the network namespaces and processes this run made\n"
                _ = note.withCString { write(STDERR_FILENO, $0, strlen($0)) }
                CleanupRegistry.shared.cleanUpEverything()
                // Die of the same signal, so the exit status says what happened.
                // kill, not raise: this runs on a dispatch worker thread, which
                // blocks signals, and raise() would leave it pending there.
                signal(signalNumber, SIG_DFL)
                kill(getpid(), signalNumber)
            }
            source.resume()
            // Lives as long as the process does.
            _ = Unmanaged.passRetained(source as AnyObject)
        }
    }

    /// Runs the added steps, stops every recorded process, then deletes
    /// every recorded namespace. Steps stay registered: each one is itself
    /// idempotent and may find more to do on a later call.
    func cleanUpEverything() {
        let (namespaces, processes, steps) = state.withLock { state in
            defer {
                state.namespaces = []
                state.processes = [:]
            }
            return (state.namespaces, state.processes, state.steps)
        }
        for step in steps { step() }
        for (pid, entry) in processes {
            if let process = entry.process {
                process.stop(grace: .milliseconds(200))
            } else {
                // Registered but its object is gone (being released right now):
                // it was never reaped, so the pid is still ours.
                kill(pid, SIGKILL)
            }
        }
        if !namespaces.isEmpty {
            NamespaceJanitor.delete(namespaces.sorted())
        }
    }
}

enum NamespaceJanitor {
    /// `ip -force -batch -` with one `netns del` per namespace; missing ones are
    /// fine (idempotent). Returns the ones still present afterwards.
    @discardableResult
    static func delete(_ names: [String]) -> [String] {
        let present = names.filter { NetworkNamespace(unopenedNamed: $0).exists }
        guard !present.isEmpty else { return [] }
        _ = try? ProcessRunner.run(IPBatch.command(in: nil, present.map { "netns del \($0)" }, force: true))
        return present.filter { NetworkNamespace(unopenedNamed: $0).exists }
    }
}
