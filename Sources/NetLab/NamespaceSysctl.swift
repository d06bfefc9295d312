// SPDX-License-Identifier: Apache-2.0
//
// The sysctls of a topology's namespaces, written with LinuxNet's `Sysctl`
// from threads inside them (no process per namespace), never in the
// namespace NetLab itself runs in.

import LinuxNet

#if canImport(Glibc)
import Glibc
#endif

/// Sysctls NetLab writes: only inside the namespaces it builds.
public enum NamespaceSysctl {
    /// Writes `settings` (key, value) inside each namespace, all namespaces
    /// at once. Throws naming the first setting that failed.
    /// Refuses the caller's own namespace: NetLab never changes the
    /// namespace it runs in (normally the root one).
    public static func write(_ settings: [(NetworkNamespace, [(key: String, value: String)])]) throws(NetLabError) {
        for (namespace, _) in settings where isCallersOwn(namespace) {
            throw .sysctlFailed(
                "refusing to write sysctls in \(namespace.path): it is this process's own network namespace")
        }
        do {
            try Sysctl.write(settings)
        } catch {
            throw .sysctlFailed(error.description)
        }
    }

    /// Whether `namespace` is the one this process runs in (same nsfs inode).
    static func isCallersOwn(_ namespace: NetworkNamespace) -> Bool {
        var target = stat()
        var own = stat()
        guard stat(namespace.path, &target) == 0, stat("/proc/self/ns/net", &own) == 0 else { return false }
        return target.st_ino == own.st_ino && target.st_dev == own.st_dev
    }
}
