// SPDX-License-Identifier: Apache-2.0
//
// Sysctls written from inside a namespace without starting a process.
//
// /proc/sys/net resolves against the network namespace of the *thread* that
// opens it (current->nsproxy), so a short-lived thread that joins the
// namespace with setns(2) reads and writes that namespace's settings, and
// nothing else in this process changes namespace. This replaces one
// `nsenter … sysctl` process per namespace, the slowest step of a build.

#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

enum NamespaceThread {
    private typealias SetnsFunction = @convention(c) (Int32, Int32) -> Int32

    /// Glibc's module hides setns (it is behind _GNU_SOURCE); the symbol is there.
    private static let setns: SetnsFunction? = {
        guard let symbol = dlsym(nil, "setns") else { return nil }
        return unsafeBitCast(symbol, to: SetnsFunction.self)
    }()

    /// CLONE_NEWNET from <sched.h>, also behind _GNU_SOURCE.
    private static let cloneNewNet: Int32 = 0x4000_0000

    private final class Job {
        let path: String
        let body: () -> String?
        var failure: String?

        init(path: String, body: @escaping () -> String?) {
            self.path = path
            self.body = body
        }
    }

    /// Runs every body on its own thread inside its namespace, all at once,
    /// and returns their failure messages (nil for success), in order.
    static func run(_ work: [(path: String, body: () -> String?)]) -> [String?] {
        guard setns != nil else { return work.map { _ in "setns(2) is not available in this C library" } }
        var threads: [pthread_t?] = []
        let jobs = work.map { Job(path: $0.path, body: $0.body) }
        for job in jobs {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(job).toOpaque()
            let rc = pthread_create(&thread, nil, { raw in
                let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                let fd = open(job.path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else {
                    job.failure = "cannot open \(job.path): \(Errno(rawValue: errno))"
                    return nil
                }
                defer { close(fd) }
                guard NamespaceThread.setns!(fd, NamespaceThread.cloneNewNet) == 0 else {
                    job.failure = "cannot enter \(job.path): \(Errno(rawValue: errno))"
                    return nil
                }
                job.failure = job.body()
                return nil
            }, context)
            if rc != 0 {
                Unmanaged<Job>.fromOpaque(context).release()
                job.failure = "cannot start a thread: \(Errno(rawValue: rc))"
                threads.append(nil)
            } else {
                threads.append(thread)
            }
        }
        for thread in threads {
            if let thread { pthread_join(thread, nil) }
        }
        return jobs.map(\.failure)
    }
}

/// Sysctls of one network namespace, read and written from inside it.
public enum NamespaceSysctl {
    /// "net.ipv4.ip_forward" → "/proc/sys/net/ipv4/ip_forward". A key that
    /// already uses '/' is taken as is (for names with dots, like VLANs).
    static func path(_ key: String) -> String {
        "/proc/sys/" + (key.contains("/") ? key : key.replacing(".", with: "/"))
    }

    /// Writes `settings` (key, value) inside each namespace, all namespaces
    /// at once. Throws naming the first setting that failed.
    /// Refuses the caller's own namespace: NetLab never changes the
    /// namespace it runs in (normally the root one).
    public static func write(_ settings: [(NetNamespace, [(key: String, value: String)])]) throws(NetLabError) {
        for (namespace, _) in settings where isCallersOwn(namespace) {
            throw .sysctlFailed("refusing to write sysctls in \(namespace.path): it is this process's own network namespace")
        }
        let failures = NamespaceThread.run(settings.map { namespace, pairs in
            (namespace.path, {
                for (key, value) in pairs {
                    let fd = open(path(key), O_WRONLY | O_CLOEXEC)
                    guard fd >= 0 else { return "sysctl \(key)=\(value) in \(namespace): \(Errno(rawValue: errno))" }
                    defer { close(fd) }
                    let text = value + "\n"
                    let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
                    if n < 0 { return "sysctl \(key)=\(value) in \(namespace): \(Errno(rawValue: errno))" }
                }
                return nil
            })
        })
        if let failure = failures.compactMap({ $0 }).first { throw .sysctlFailed(failure) }
    }

    /// Reads one setting inside a namespace (trailing newline removed).
    public static func read(_ key: String, in namespace: NetNamespace) throws(NetLabError) -> String {
        var value = ""
        let failure = NamespaceThread.run([(namespace.path, {
            let fd = open(path(key), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return "sysctl \(key) in \(namespace): \(Errno(rawValue: errno))" }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return "sysctl \(key) in \(namespace): \(Errno(rawValue: errno))" }
            value = String(decoding: buffer[..<n], as: UTF8.self).trimmed
            return nil
        })])[0]
        if let failure { throw .sysctlFailed(failure) }
        return value
    }

    /// Whether `namespace` is the one this process runs in (same nsfs inode).
    static func isCallersOwn(_ namespace: NetNamespace) -> Bool {
        var target = stat()
        var own = stat()
        guard stat(namespace.path, &target) == 0, stat("/proc/self/ns/net", &own) == 0 else { return false }
        return target.st_ino == own.st_ino && target.st_dev == own.st_dev
    }
}
