// SPDX-License-Identifier: Apache-2.0
//
// Runs external commands (argv, never a shell) and collects what they print.
// One poll(2) loop drives any number of children at once, so a topology
// build or a reachability matrix runs many short processes concurrently
// without a thread per process (the cooperative pool has only two threads on
// this machine, and blocking them would stall everything else).
//
// In LinuxNet because the netfilter fallbacks (nft, iptables-restore) and the
// agent's host checks run commands as well as NetLab does. Hand-written rather
// than swift-subprocess: that package's API is async only, while the callers
// here are synchronous (a dataplane apply, a topology build), and it has no
// runner for many children at once with exclusive keys.

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One command to run: an argument vector, optional standard input and a
/// time limit. `arguments[0]` is looked up like a shell would, plus the sbin
/// directories (a CI environment's PATH may lack them).
public struct Command: Sendable, CustomStringConvertible {
    public var arguments: [String]
    /// Fed to the child's standard input, which is then closed; nil gives it /dev/null.
    public var input: [UInt8]?
    /// After this the child is killed (SIGKILL) and the result is marked `timedOut`.
    public var timeout: Duration
    /// Commands with the same key never run at the same time in `ProcessRunner.runAll`
    /// (e.g. two probes binding the same fixed source port in one namespace).
    public var exclusiveKey: String?
    /// Variables set (or replaced) in the child's environment; the rest is inherited.
    public var environment: [String: String]

    public init(
        _ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30),
        exclusiveKey: String? = nil, environment: [String: String] = [:]
    ) {
        precondition(!arguments.isEmpty, "a command needs at least a program name")
        self.arguments = arguments
        self.input = input.map { Array($0.utf8) }
        self.timeout = timeout
        self.exclusiveKey = exclusiveKey
        self.environment = environment
    }

    /// The command line as a shell would need it quoted (for messages only).
    public var description: String {
        arguments.map { argument in
            let safe =
                !argument.isEmpty
                && argument.allSatisfy {
                    $0.isLetter || $0.isNumber || "-_./:=,@+%".contains($0)
                }
            return safe ? argument : "'" + argument.replacing("'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}

/// How a child ended.
public enum TerminationStatus: Sendable, Hashable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    package init(waitStatus status: Int32) {
        // WIFEXITED/WEXITSTATUS are macros Swift does not import.
        if status & 0x7F == 0 {
            self = .exited((status >> 8) & 0xFF)
        } else {
            self = .signaled(status & 0x7F)
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exit status \(code)"
        case .signaled(let signal): "signal \(signal)"
        }
    }
}

/// What a finished command left behind.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var command: Command
    public var status: TerminationStatus
    public var stdout: String
    public var stderr: String
    public var duration: Duration
    /// The command ran past its timeout and was killed.
    public var timedOut: Bool

    public var succeeded: Bool { status == .exited(0) && !timedOut }

    /// Returns self when the command succeeded, throws `CommandError.failed` otherwise.
    @discardableResult
    public func check() throws(CommandError) -> CommandResult {
        guard succeeded else { throw .failed(self) }
        return self
    }

    public var description: String {
        let how = timedOut ? "timed out after \(command.timeout) and was killed" : "ended with \(status)"
        let detail = stderr.trimmed.isEmpty ? stdout.trimmed : stderr.trimmed
        return "`\(command)` \(how)" + (detail.isEmpty ? "" : ": \(detail)")
    }
}

public enum CommandError: Error, CustomStringConvertible, Sendable {
    /// The program could not be started at all (not found, not executable).
    case spawnFailed(Command, Errno)
    /// It ran but failed or timed out; the result carries its stderr.
    case failed(CommandResult)

    public var description: String {
        switch self {
        case .spawnFailed(let command, let errno):
            "cannot start `\(command)`: \(errno) — is \(command.arguments[0]) installed and on PATH?"
        case .failed(let result):
            result.description
        }
    }
}

public enum ProcessRunner {
    /// Where `program` would be run from (PATH, then the sbin directories,
    /// as for root's login shell); nil when it is not installed.
    public static func locate(_ program: String) -> String? {
        Spawner.resolve(program)
    }

    /// Runs one command to completion. Throws only when it cannot be started;
    /// a non-zero exit is in the result (use `check()`).
    public static func run(_ command: Command) throws(CommandError) -> CommandResult {
        try runAll([command], maxConcurrent: 1)[0].get()
    }

    /// Runs one command and throws unless it exits 0 in time.
    @discardableResult
    public static func runChecked(_ command: Command) throws(CommandError) -> CommandResult {
        try run(command).check()
    }

    /// Runs every command, at most `maxConcurrent` at a time, honouring
    /// `exclusiveKey`. Results come back in the order of `commands`.
    public static func runAll(_ commands: [Command], maxConcurrent: Int = 8) -> [Result<CommandResult, CommandError>] {
        var loop = Multiplexer(commands: commands, maxConcurrent: max(1, maxConcurrent))
        return loop.run()
    }

    /// Runs every command and throws the first failure (in command order)
    /// after all of them have ended.
    @discardableResult
    public static func runAllChecked(
        _ commands: [Command],
        maxConcurrent: Int = 8
    ) throws(CommandError) -> [CommandResult] {
        var results: [CommandResult] = []
        for result in runAll(commands, maxConcurrent: maxConcurrent) {
            results.append(try result.get().check())
        }
        return results
    }
}
