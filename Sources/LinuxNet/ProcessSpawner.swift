// SPDX-License-Identifier: Apache-2.0
//
// Starting children for ProcessRunner and NetLab's BackgroundProcess:
// posix_spawn(3) in a process group of their own, close-on-exec channels for
// their output, and reaping without blocking. `package`: the other modules of
// bpfnet may build on it, its users outside do not see it.

import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where the three standard descriptors of a child come from.
package struct ChildStdio {
    package var stdin: Int32?  // nil: /dev/null
    package var stdout: Int32?  // nil: /dev/null
    package var stderr: Int32?  // nil: /dev/null

    package init(stdin: Int32?, stdout: Int32?, stderr: Int32?) {
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
    }
}

package enum Spawner {
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
    package static func spawn(
        _ arguments: [String], environment: [String: String] = [:],
        stdio: ChildStdio
    ) throws(Errno) -> pid_t {
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
        let flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP
        posix_spawnattr_setflags(&attributes, Int16(flags))

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
        let rc =
            cEnvironment.isEmpty
            ? posix_spawn(&pid, path, &actions, &attributes, cArguments, environ)
            : posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        guard rc == 0 else { throw Errno(rawValue: rc) }
        return pid
    }

    /// A close-on-exec channel for a child's output: the child gets its end
    /// through dup2 only, so no other child started concurrently inherits it
    /// (which would hold EOF back). Glibc's module hides pipe2, so this is a
    /// socket pair (SOCK_CLOEXEC is atomic there); children cannot tell.
    package static func pipe() throws(Errno) -> (read: Int32, write: Int32) {
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

    package static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// waitpid(pid, WNOHANG): the status once the child has ended, else nil.
    package static func reap(_ pid: pid_t) -> TerminationStatus? {
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
    package var pollMilliseconds: Int32 {
        if self <= .zero { return 0 }
        let (seconds, attoseconds) = components
        return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}

extension String {
    package var trimmed: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
