// SPDX-License-Identifier: Apache-2.0
//
// Runs external commands (argv, never a shell) and collects what they print.
// One poll(2) loop drives any number of children at once, so a topology
// build or a reachability matrix runs many short processes concurrently
// without a thread per process (the cooperative pool has only two threads on
// this machine, and blocking them would stall everything else).

#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

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

    public init(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30),
                exclusiveKey: String? = nil, environment: [String: String] = [:]) {
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
            let safe = !argument.isEmpty && argument.allSatisfy {
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

    init(waitStatus status: Int32) {
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
    public static func runAllChecked(_ commands: [Command], maxConcurrent: Int = 8) throws(CommandError) -> [CommandResult] {
        var results: [CommandResult] = []
        for result in runAll(commands, maxConcurrent: maxConcurrent) {
            results.append(try result.get().check())
        }
        return results
    }
}

// MARK: - Spawning

/// Where the three standard descriptors of a child come from.
struct ChildStdio {
    var stdin: Int32?    // nil: /dev/null
    var stdout: Int32?   // nil: /dev/null
    var stderr: Int32?   // nil: /dev/null
}

enum Spawner {
    /// Directories searched after PATH: iproute2, sysctl and ethtool live in sbin.
    static let fallbackDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// Resolves a program name to a path the way a login shell of root would.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        let directories = path.split(separator: ":").map(String.init) + fallbackDirectories
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + program
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// posix_spawn(3) in a new process group, with the signals a caller may
    /// have set to SIG_IGN (NetLab's own Ctrl-C handling does) reset to default,
    /// so SIGTERM still stops the child.
    static func spawn(_ arguments: [String], environment: [String: String] = [:], stdio: ChildStdio) throws(Errno) -> pid_t {
        guard let path = resolve(arguments[0]) else { throw Errno.noSuchFileOrDirectory }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, source) in [(Int32(0), stdio.stdin), (1, stdio.stdout), (2, stdio.stderr)] {
            if let source {
                posix_spawn_file_actions_adddup2(&actions, source, target)
            } else {
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cArguments.append(nil)
        defer { for argument in cArguments { free(argument) } }

        var cEnvironment: [UnsafeMutablePointer<CChar>?] = []
        if !environment.isEmpty {
            var entry = environ
            while let variable = entry.pointee {
                let text = String(cString: variable)
                let name = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
                if environment[name] == nil { cEnvironment.append(strdup(variable)) }
                entry += 1
            }
            for (name, value) in environment.sorted(by: { $0.key < $1.key }) {
                cEnvironment.append(strdup("\(name)=\(value)"))
            }
            cEnvironment.append(nil)
        }
        defer { for variable in cEnvironment { free(variable) } }

        var pid: pid_t = 0
        let rc = cEnvironment.isEmpty
            ? posix_spawn(&pid, path, &actions, &attributes, cArguments, environ)
            : posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return pid
    }

    /// A close-on-exec channel for a child's output: the child gets its end
    /// through dup2 only, so no other child started concurrently inherits it
    /// (which would hold EOF back). Glibc's module hides pipe2, so this is a
    /// socket pair (SOCK_CLOEXEC is atomic there); children cannot tell.
    static func pipe() throws(Errno) -> (read: Int32, write: Int32) {
        let pair = try socketPair()
        shutdown(pair.0, Int32(SHUT_WR))
        shutdown(pair.1, Int32(SHUT_RD))
        return (pair.0, pair.1)
    }

    /// A channel for standard input; we write with MSG_NOSIGNAL instead of
    /// changing the process-wide SIGPIPE disposition.
    static func inputPair() throws(Errno) -> (ours: Int32, child: Int32) {
        let pair = try socketPair()
        shutdown(pair.0, Int32(SHUT_RD))
        shutdown(pair.1, Int32(SHUT_WR))
        return (pair.0, pair.1)
    }

    static func socketPair() throws(Errno) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw Errno(rawValue: errno)
        }
        return (fds[0], fds[1])
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// waitpid(pid, WNOHANG): the status once the child has ended, else nil.
    static func reap(_ pid: pid_t) -> TerminationStatus? {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid { return TerminationStatus(waitStatus: status) }
            if rc == -1 && errno == EINTR { continue }
            if rc == -1 && errno == ECHILD { return .exited(-1) }  // reaped elsewhere
            return nil
        }
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what poll(2) accepts; a deadline in the
    /// past is 0 (never -1, which would wait forever).
    var pollMilliseconds: Int32 {
        if self <= .zero { return 0 }
        let (seconds, attoseconds) = components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

// MARK: - The multiplexing loop

private struct Multiplexer {
    final class Job {
        let index: Int
        let command: Command
        let pid: pid_t
        let started: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
        var input: Int32?
        var inputOffset = 0
        var stdout: Int32?
        var stderr: Int32?
        var outBytes: [UInt8] = []
        var errBytes: [UInt8] = []
        var status: TerminationStatus?
        var killed = false

        init(index: Int, command: Command, pid: pid_t, input: Int32?, stdout: Int32, stderr: Int32) {
            self.index = index
            self.command = command
            self.pid = pid
            self.started = .now
            self.deadline = started.advanced(by: command.timeout)
            self.input = input
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    static let captureLimit = 16 << 20

    let commands: [Command]
    let maxConcurrent: Int
    var results: [Result<CommandResult, CommandError>?]
    var pending: [Int]
    var running: [Job] = []
    var buffer = [UInt8](repeating: 0, count: 65536)

    init(commands: [Command], maxConcurrent: Int) {
        self.commands = commands
        self.maxConcurrent = maxConcurrent
        results = Array(repeating: nil, count: commands.count)
        pending = Array(commands.indices)
    }

    mutating func run() -> [Result<CommandResult, CommandError>] {
        while !pending.isEmpty || !running.isEmpty {
            launchReady()
            if running.isEmpty { continue }
            pollOnce()
            finishEnded()
        }
        return results.map { $0! }
    }

    /// Starts pending commands while there is room and their exclusive key is free.
    mutating func launchReady() {
        var position = 0
        while running.count < maxConcurrent && position < pending.count {
            let index = pending[position]
            let command = commands[index]
            if let key = command.exclusiveKey, running.contains(where: { $0.command.exclusiveKey == key }) {
                position += 1
                continue
            }
            pending.remove(at: position)
            do {
                running.append(try start(index: index, command: command))
            } catch {
                results[index] = .failure(.spawnFailed(command, error))
            }
        }
    }

    func start(index: Int, command: Command) throws(Errno) -> Job {
        var opened: [Int32] = []
        do {
            let out = try Spawner.pipe(); opened += [out.read, out.write]
            let err = try Spawner.pipe(); opened += [err.read, err.write]
            var input: (ours: Int32, child: Int32)?
            if command.input != nil {
                let pair = try Spawner.inputPair(); opened += [pair.ours, pair.child]
                input = pair
            }
            let pid = try Spawner.spawn(command.arguments, environment: command.environment,
                                        stdio: ChildStdio(stdin: input?.child, stdout: out.write, stderr: err.write))
            close(out.write)
            close(err.write)
            if let input { close(input.child) }
            for fd in [out.read, err.read] + (input.map { [$0.ours] } ?? []) { Spawner.setNonBlocking(fd) }
            return Job(index: index, command: command, pid: pid, input: input?.ours, stdout: out.read, stderr: err.read)
        } catch {
            for fd in opened { close(fd) }
            throw error
        }
    }

    mutating func pollOnce() {
        var fds: [pollfd] = []
        var owners: [(job: Job, stream: Int)] = []  // 0 stdin, 1 stdout, 2 stderr
        var wait = Duration.seconds(3600)
        let now = ContinuousClock.now
        for job in running {
            if let fd = job.input { fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)); owners.append((job, 0)) }
            if let fd = job.stdout { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)); owners.append((job, 1)) }
            if let fd = job.stderr { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)); owners.append((job, 2)) }
            // There is no pidfd_open in Glibc's module: a child that closed its
            // output but has not been reaped yet is checked every millisecond.
            let awaitingExit = job.killed || (job.stdout == nil && job.stderr == nil)
            wait = min(wait, awaitingExit ? .milliseconds(1) : job.deadline - now)
        }
        let ready = poll(&fds, nfds_t(fds.count), wait.pollMilliseconds)
        if ready <= 0 { return }
        for (slot, owner) in owners.enumerated() where fds[slot].revents != 0 {
            let job = owner.job
            switch owner.stream {
            case 0: writeInput(job)
            case 1: job.stdout = drain(job.stdout!, into: &job.outBytes)
            default: job.stderr = drain(job.stderr!, into: &job.errBytes)
            }
        }
    }

    func writeInput(_ job: Job) {
        guard let fd = job.input, let input = job.command.input else { return }
        while job.inputOffset < input.count {
            let n = input.withUnsafeBytes {
                send(fd, $0.baseAddress! + job.inputOffset, $0.count - job.inputOffset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 { job.inputOffset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            break  // EPIPE and friends: the child does not want the rest
        }
        close(fd)
        job.input = nil
    }

    /// Reads what is available; returns nil (and closes) at end of file.
    mutating func drain(_ fd: Int32, into bytes: inout [UInt8]) -> Int32? {
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                if bytes.count < Self.captureLimit { bytes.append(contentsOf: buffer[..<n]) }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return fd }
            close(fd)
            return nil
        }
    }

    mutating func finishEnded() {
        let now = ContinuousClock.now
        var index = 0
        while index < running.count {
            let job = running[index]
            if !job.killed && now >= job.deadline {
                // Only the pid we started (not yet reaped, so still ours).
                kill(job.pid, SIGKILL)
                job.killed = true
            }
            if job.status == nil && (job.killed || (job.stdout == nil && job.stderr == nil)) {
                job.status = Spawner.reap(job.pid)
            }
            guard let status = job.status else { index += 1; continue }
            if job.killed {
                // It is dead; take whatever is buffered and stop waiting for
                // EOF (a helper it forked may still hold the other end).
                if let fd = job.stdout { _ = drain(fd, into: &job.outBytes).map { close($0) }; job.stdout = nil }
                if let fd = job.stderr { _ = drain(fd, into: &job.errBytes).map { close($0) }; job.stderr = nil }
            }
            if let fd = job.input { close(fd); job.input = nil }
            results[job.index] = .success(CommandResult(
                command: job.command, status: status,
                stdout: String(decoding: job.outBytes, as: UTF8.self),
                stderr: String(decoding: job.errBytes, as: UTF8.self),
                duration: now - job.started, timedOut: job.killed))
            running.remove(at: index)
        }
    }
}

extension String {
    var trimmed: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
