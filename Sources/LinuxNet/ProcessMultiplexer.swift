// SPDX-License-Identifier: Apache-2.0
//
// The poll(2) loop behind ProcessRunner.runAll: starts commands as room and
// their exclusive keys allow, feeds their standard input, collects their
// output, kills them at their deadline and reaps them, on the calling thread.

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

struct Multiplexer {
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
            let out = try Spawner.pipe()
            opened += [out.read, out.write]
            let err = try Spawner.pipe()
            opened += [err.read, err.write]
            var input: (ours: Int32, child: Int32)?
            if command.input != nil {
                let pair = try Spawner.inputPair()
                opened += [pair.ours, pair.child]
                input = pair
            }
            let pid = try Spawner.spawn(
                command.arguments, environment: command.environment,
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
            if let fd = job.input {
                fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0))
                owners.append((job, 0))
            }
            if let fd = job.stdout {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append((job, 1))
            }
            if let fd = job.stderr {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append((job, 2))
            }
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
                send(
                    fd, $0.baseAddress! + job.inputOffset, $0.count - job.inputOffset,
                    Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n > 0 {
                job.inputOffset += n
                continue
            }
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
            guard let status = job.status else {
                index += 1
                continue
            }
            if job.killed {
                // It is dead; take whatever is buffered and stop waiting for
                // EOF (a helper it forked may still hold the other end).
                if let fd = job.stdout {
                    _ = drain(fd, into: &job.outBytes).map { close($0) }
                    job.stdout = nil
                }
                if let fd = job.stderr {
                    _ = drain(fd, into: &job.errBytes).map { close($0) }
                    job.stderr = nil
                }
            }
            if let fd = job.input {
                close(fd)
                job.input = nil
            }
            results[job.index] = .success(
                CommandResult(
                    command: job.command, status: status,
                    stdout: String(decoding: job.outBytes, as: UTF8.self),
                    stderr: String(decoding: job.errBytes, as: UTF8.self),
                    duration: now - job.started, timedOut: job.killed))
            running.remove(at: index)
        }
    }
}
