// SPDX-License-Identifier: Apache-2.0
//
// Sysctls read and written through /proc/sys, without starting a process.
//
// /proc/sys/net resolves against the network namespace of the *thread* that
// opens it (current->nsproxy): the plain calls act in the calling thread's
// namespace, the ones given a namespace run on a namespace thread that joins
// it, and nothing else in this process changes namespace (this replaced one
// `nsenter … sysctl` process per namespace, the slowest step of a NetLab build).

#if canImport(Glibc)
import Glibc
#endif

/// Reads and writes /proc/sys, here or inside another network namespace.
public enum Sysctl {
    /// "net.ipv4.ip_forward" → "/proc/sys/net/ipv4/ip_forward". A key that
    /// already uses '/' ("net/ipv4/ip_forward") is taken as is (for names
    /// with dots, like VLANs).
    public static func path(_ key: String) -> String {
        "/proc/sys/" + (key.contains("/") ? key : key.replacing(".", with: "/"))
    }

    /// Reads one setting in the calling thread's namespace, without the
    /// surrounding whitespace (the trailing newline).
    public static func read(_ key: String) throws(LinuxNetError) -> String {
        try read(key, describing: "")
    }

    /// Writes one setting in the calling thread's namespace.
    public static func write(_ key: String, _ value: String) throws(LinuxNetError) {
        try write(key, value, describing: "")
    }

    /// Reads one setting inside `namespace`.
    public static func read(_ key: String, in namespace: NetworkNamespace) throws(LinuxNetError) -> String {
        let value = inNamespaces([
            (
                namespace,
                { () throws(LinuxNetError) in
                    try read(key, describing: " in \(namespace)")
                }
            )
        ])[0]
        return try value.get()
    }

    /// Writes `settings` (key, value) inside each namespace, all namespaces
    /// at once. Throws the first failure, in the order given.
    public static func write(_ settings: [(NetworkNamespace, [(key: String, value: String)])]) throws(LinuxNetError) {
        let outcomes = inNamespaces(
            settings.map { namespace, pairs in
                (
                    namespace,
                    { () throws(LinuxNetError) in
                        for (key, value) in pairs { try write(key, value, describing: " in \(namespace)") }
                    }
                )
            })
        for outcome in outcomes { try outcome.get() }
    }

    // MARK: -

    private static func read(_ key: String, describing place: String) throws(LinuxNetError) -> String {
        let file = path(key)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno, "open(\(file))", "reading \(file)\(place)") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw failure(errno, "read(\(file))", "reading \(file)\(place)") }
            if n == 0 { break }
            bytes += buffer[..<n]
        }
        return String(decoding: bytes, as: UTF8.self).trimmed
    }

    private static func write(_ key: String, _ value: String, describing place: String) throws(LinuxNetError) {
        let file = path(key)
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno, "open(\(file))", "writing \(file)\(place)") }
        defer { close(fd) }
        let text = value + "\n"
        let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        if n < 0 { throw failure(errno, "write(\(file))", "writing \(value) to \(file)\(place)") }
    }

    /// `code` first, so that it is errno before building the strings can change it.
    private static func failure(_ code: Int32, _ operation: String, _ action: String) -> LinuxNetError {
        LinuxNetError(operation: operation, action: action, errno: code)
    }

    /// Runs each body on a namespace thread of its own inside its namespace,
    /// all at once, and returns their outcomes in order.
    private static func inNamespaces<Value>(
        _ work: [(NetworkNamespace, () throws(LinuxNetError) -> Value)]
    ) -> [Result<Value, LinuxNetError>] {
        NamespaceThread.runConcurrently(
            work.map { namespace, body in
                { () throws -> Value in
                    try NamespaceThread.enter(namespace)
                    return try body()
                }
            }
        ).map { outcome in
            outcome.mapError { error in
                error as? LinuxNetError
                    ?? LinuxNetError(operation: "pthread_create", action: "starting a namespace thread", errno: EIO)
            }
        }
    }
}
