// SPDX-License-Identifier: Apache-2.0
//
// Sysctls written from inside a namespace without starting a process.
//
// /proc/sys/net resolves against the network namespace of the *thread* that
// opens it (current->nsproxy), so a short-lived LinuxNet namespace thread that
// joins the namespace reads and writes that namespace's settings, and nothing
// else in this process changes namespace. This replaces one
// `nsenter … sysctl` process per namespace, the slowest step of a build.

#if canImport(Glibc)
import Glibc
#endif
import LinuxNet
import SystemPackage

/// Runs each body on a namespace thread of its own inside its namespace, all
/// at once, and returns their failure messages (nil for success), in order.
private func runInNamespaces(_ work: [(path: String, body: () -> String?)]) -> [String?] {
    NamespaceThread.runConcurrently(work.map { path, body in
        { () -> String? in
            let namespace: NetworkNamespace
            do throws(LinuxNetError) {
                namespace = try NetworkNamespace(path: path)
            } catch {
                return "cannot open \(path): \(Errno(rawValue: error.errno))"
            }
            do throws(LinuxNetError) {
                try NamespaceThread.enter(namespace)
            } catch {
                return "cannot enter \(path): \(Errno(rawValue: error.errno))"
            }
            return body()
        }
    }).map { outcome in
        switch outcome {
        case .success(let failure): failure
        case .failure(let error): "cannot start a thread: \(Errno(rawValue: (error as? LinuxNetError)?.errno ?? EIO))"
        }
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
        let failures = runInNamespaces(settings.map { namespace, pairs in
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
        let failure = runInNamespaces([(namespace.path, {
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
