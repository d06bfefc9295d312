// SPDX-License-Identifier: Apache-2.0
//
// Long-running children (probe servers, dockerd): started with pid tracking,
// stopped by that pid only — SIGTERM, a grace period, then SIGKILL — and
// registered with the exit safety net so Ctrl-C does not leave them behind.

import LinuxNet
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

public final class BackgroundProcess: Sendable, CustomStringConvertible {
    public let command: Command
    public let pid: pid_t
    /// Standard error (and standard output unless it is captured) goes to an
    /// unlinked temporary file: nothing is left on disk even if we are killed.
    private let log: Int32

    private struct State {
        var stdout: Int32?
        var pending: [UInt8] = []
        var status: TerminationStatus?
    }
    private let state: Mutex<State>

    /// Starts `command` in the background. With `captureOutput` its standard
    /// output is a pipe read by `waitForLine`; otherwise it goes to `logPath`.
    public init(_ command: Command, captureOutput: Bool = true) throws(CommandError) {
        self.command = command
        let logPath = Self.nextLogPath()
        let log = open(logPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard log >= 0 else { throw .spawnFailed(command, Errno(rawValue: errno)) }
        unlink(logPath)
        self.log = log
        var output: (read: Int32, write: Int32)?
        do {
            if captureOutput { output = try Spawner.pipe() }
            pid = try Spawner.spawn(
                command.arguments, environment: command.environment,
                stdio: ChildStdio(stdin: nil, stdout: output?.write ?? log, stderr: log))
        } catch {
            if let output {
                close(output.read)
                close(output.write)
            }
            close(log)
            throw .spawnFailed(command, error)
        }
        if let output {
            close(output.write)
            Spawner.setNonBlocking(output.read)
        }
        state = Mutex(State(stdout: output?.read))
        CleanupRegistry.shared.attach(self)
    }

    deinit {
        stop(grace: .milliseconds(200))
        close(log)
    }

    public var isRunning: Bool {
        state.withLock { state in
            if state.status == nil { state.status = Spawner.reap(pid) }
            return state.status == nil
        }
    }

    /// Reads standard output until a line starting with `prefix` arrives and
    /// returns it. Throws when the process ends first or time runs out; the
    /// error carries its log.
    public func waitForLine(prefix: String, timeout: Duration = .seconds(5)) throws(NetLabError) -> String {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let outcome: Result<String?, NetLabError> = state.withLock { state in
                while let newline = state.pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: state.pending[..<newline], as: UTF8.self)
                    state.pending.removeSubrange(...newline)
                    if line.hasPrefix(prefix) { return .success(line) }
                }
                guard let fd = state.stdout else {
                    return .failure(.serverDidNotStart("`\(command)` has no captured output to wait on"))
                }
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    state.pending.append(contentsOf: chunk[..<n])
                    return .success(nil)
                }
                if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    close(fd)
                    state.stdout = nil
                    return .failure(
                        .serverDidNotStart("`\(command)` closed its output before printing '\(prefix)'\(logTail())"))
                }
                return .success(nil)
            }
            switch outcome {
            case .success(let line?): return line
            case .failure(let error): throw error
            case .success(nil): break
            }
            let now = ContinuousClock.now
            if now >= deadline {
                throw .serverDidNotStart(
                    "`\(command)` printed no line starting with '\(prefix)' within \(timeout)\(logTail())")
            }
            let fd = state.withLock { $0.stdout } ?? -1
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, min((deadline - now).pollMilliseconds, 50))
        }
    }

    /// Sends SIGTERM without waiting, so several processes can wind down
    /// together before `stop` collects each of them.
    func requestStop() {
        state.withLock { state in
            if state.status == nil { state.status = Spawner.reap(pid) }
            if state.status == nil { kill(pid, SIGTERM) }
        }
    }

    /// Stops the process we started: SIGTERM, wait up to `grace`, then
    /// SIGKILL. Idempotent. The pid is safe to signal until we reap it (a
    /// zombie keeps its pid), and we never signal it after.
    @discardableResult
    public func stop(grace: Duration = .milliseconds(500)) -> TerminationStatus {
        let status = state.withLock { state -> TerminationStatus in
            if let fd = state.stdout {
                close(fd)
                state.stdout = nil
            }
            if let status = state.status { return status }
            if let status = Spawner.reap(pid) {
                state.status = status
                return status
            }
            kill(pid, SIGTERM)
            let deadline = ContinuousClock.now.advanced(by: grace)
            while ContinuousClock.now < deadline {
                if let status = Spawner.reap(pid) {
                    state.status = status
                    return status
                }
                usleep(2000)
            }
            kill(pid, SIGKILL)
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
            let status = TerminationStatus(waitStatus: raw)
            state.status = status
            return status
        }
        CleanupRegistry.shared.unregister(process: pid)
        return status
    }

    /// What the process wrote to its log (standard error, and standard
    /// output unless captured), at most the last `maxBytes`.
    public func logContents(maxBytes: Int = 64 << 10) -> String {
        var stat = stat()
        guard fstat(log, &stat) == 0 else { return "" }
        let size = Int(stat.st_size)
        let start = max(0, size - maxBytes)
        var bytes = [UInt8](repeating: 0, count: size - start)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes {
                pread(log, $0.baseAddress! + offset, $0.count - offset, off_t(start + offset))
            }
            if n <= 0 { break }
            offset += n
        }
        return String(decoding: bytes[..<offset], as: UTF8.self)
    }

    func logTail() -> String {
        let text = logContents(maxBytes: 2000).trimmed
        return text.isEmpty ? "" : " — log: \(text)"
    }

    public var description: String { "pid \(pid): \(command)" }

    private static let counter = Atomic<Int>(0)

    private static func nextLogPath() -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        return "\(directory)/.netlab-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max)).log"
    }
}
