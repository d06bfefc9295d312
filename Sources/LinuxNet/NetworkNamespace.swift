// SPDX-License-Identifier: Apache-2.0
//
// Network namespaces, and the threads that enter them.
//
// setns(2) with CLONE_NEWNET moves only the calling *thread*, and everything
// that resolves a network namespace at call time follows the thread:
// if_nametoindex, a new netlink or packet socket, /proc/sys/net, libbpf's tc
// and XDP attach calls. So work in another namespace runs on a thread started
// for it (`NamespaceThread`), which enters the namespace and ends with the
// work: the caller's thread, Swift's cooperative pool and every other thread
// of the process never change namespace.

internal import CLinuxNet

#if canImport(Glibc)
import Glibc
#endif

/// A network namespace, named by its file: /run/netns/NAME for the ones
/// `ip netns add` creates, /proc/PID/ns/net for a process's own.
///
///     let namespace = try NetworkNamespace(named: "bpftest-42-1")
///     let veth0 = try namespace.run { try RouteNetlink().link(named: "veth0") }
///
/// Opened (`init(path:)`, `init(named:)`, `current()`), it holds an fd on the
/// file while it lives: the namespace must exist, and it stays the same one
/// even if the process whose /proc file named it ends. Unopened
/// (`init(unopenedPath:name:)`, `init(unopenedNamed:)`), it is only the name
/// and each `run` opens the file: for namespaces that are made after they are
/// named, or should go away when deleted although the value is kept (NetLab's
/// topologies). Two values are equal when they name the same file by the same name.
///
/// Sockets keep the namespace they were created in: one created inside
/// `run(_:)` may be used from any thread afterwards.
public struct NetworkNamespace: Hashable, Sendable, CustomStringConvertible {
    /// The namespace's file (e.g. /run/netns/NAME, /proc/PID/ns/net).
    public let path: String
    /// A short name for messages; for /run/netns namespaces the name `ip -n` takes.
    public let name: String
    /// The open namespace file; nil when unopened.
    private let file: OpenFile?

    /// Opens the namespace file at `path`.
    public init(path: String, name: String? = nil) throws(LinuxNetError) {
        self.path = path
        self.name = name ?? path
        file = OpenFile(fd: try Self.open(path))
    }

    /// Opens a namespace created by `ip netns add NAME` (/run/netns/NAME).
    public init(named name: String) throws(LinuxNetError) {
        try self.init(path: "/run/netns/" + name, name: name)
    }

    /// The calling thread's current namespace.
    public static func current() throws(LinuxNetError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/thread-self/ns/net")
    }

    /// Names the namespace file at `path` (e.g. `/proc/1234/ns/net`) without opening it.
    public init(unopenedPath path: String, name: String? = nil) {
        self.path = path
        self.name = name ?? path
        file = nil
    }

    /// Names /run/netns/NAME (made by `ip netns add NAME`) without opening it.
    public init(unopenedNamed name: String) {
        self.init(unopenedPath: "/run/netns/" + name, name: name)
    }

    /// Whether it is one `ip -n NAME` can address.
    public var isNamed: Bool { path == "/run/netns/" + name }

    /// Whether the namespace file is there now.
    public var exists: Bool { access(path, F_OK) == 0 }

    /// Runs `body` on a new thread inside this namespace and returns its
    /// result (or rethrows its error). Blocks the caller until done; the
    /// caller's thread never changes namespace.
    public func run<Result>(_ body: () throws -> Result) throws -> Result {
        try NamespaceThread.run {
            try NamespaceThread.enter(self)
            return try body()
        }
    }

    public var description: String { name }

    public static func == (lhs: NetworkNamespace, rhs: NetworkNamespace) -> Bool {
        lhs.path == rhs.path && lhs.name == rhs.name
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(path)
        hasher.combine(name)
    }

    /// Calls `body` with an fd on the namespace file: the held one, or one
    /// opened for the call.
    func withFileDescriptor<Value>(_ body: (Int32) throws(LinuxNetError) -> Value) throws(LinuxNetError) -> Value {
        if let file { return try body(file.fd) }
        let fd = try Self.open(path)
        defer { close(fd) }
        return try body(fd)
    }

    private static func open(_ path: String) throws(LinuxNetError) -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw LinuxNetError(
                operation: "open(\(path))", action: "opening network namespace \(path)", errno: code,
                hint: code == ENOENT ? "no such namespace; `ip netns add NAME` creates /run/netns/NAME" : nil)
        }
        return fd
    }

    /// An fd on a namespace file, closed with the last value that holds it.
    private final class OpenFile: Sendable {
        let fd: Int32

        init(fd: Int32) { self.fd = fd }

        deinit { close(fd) }
    }
}

/// Threads started for work in other network namespaces.
///
/// Each runs one body and ends with it. Inside that body, and only there,
/// `enter(_:)` moves the thread into a namespace, as often as the work needs
/// (a bridge's namespace, then a container's; one namespace per benchmark
/// burst). `NetworkNamespace.run(_:)` is the common case: one namespace, one
/// body.
public enum NamespaceThread {
    /// Runs `body` on a new thread, waits for it and returns its result (or
    /// rethrows its error).
    public static func run<Result>(_ body: () throws -> Result) throws -> Result {
        try withoutActuallyEscaping(body) { body in
            let outcome = Outcome<Result>()
            let thread = try start(Job { outcome.value = Swift.Result { try body() } })
            pthread_join(thread, nil)
            guard let value = outcome.value else {
                fatalError("NamespaceThread.run: the thread ended without a result")
            }
            return try value.get()
        }
    }

    /// Runs `body` on a new thread (named `name`, at most 15 bytes, when
    /// given) and returns its result without blocking the caller's thread:
    /// the thread resumes the caller when done.
    public static func run<Result: Sendable>(
        named name: String? = nil, _ body: @escaping @Sendable () throws -> Result
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            let job = Job(name: name) { continuation.resume(with: Swift.Result { try body() }) }
            do {
                pthread_detach(try start(job))
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// Runs every body on a thread of its own, all started before any is
    /// waited for, and returns their outcomes in order. A thread that cannot
    /// be started is a failure in its place; the others still run.
    public static func runConcurrently<Result>(_ bodies: [() throws -> Result]) -> [Swift.Result<Result, any Error>] {
        let outcomes = bodies.map { _ in Outcome<Result>() }
        var threads: [pthread_t?] = []
        for (body, outcome) in zip(bodies, outcomes) {
            do {
                threads.append(try start(Job { outcome.value = Swift.Result { try body() } }))
            } catch {
                outcome.value = .failure(error)
                threads.append(nil)
            }
        }
        for thread in threads {
            if let thread { pthread_join(thread, nil) }
        }
        return outcomes.map { outcome in
            guard let value = outcome.value else { fatalError("NamespaceThread: a thread ended without a result") }
            return value
        }
    }

    /// Whether the calling thread is one of these (started by `run`).
    public static var isCurrent: Bool { pthread_getspecific(marker) != nil }

    /// Moves the calling thread into `namespace` (setns(2), CLONE_NEWNET).
    /// Only on a thread started by `run`/`runConcurrently`: anywhere else it
    /// would move a thread other code runs on, so it stops the process.
    public static func enter(_ namespace: NetworkNamespace) throws(LinuxNetError) {
        precondition(
            isCurrent,
            "NamespaceThread.enter(\(namespace.path)) called on a thread LinuxNet did not start "
                + "for it; use NetworkNamespace.run or NamespaceThread.run")
        try namespace.withFileDescriptor { (fd) throws(LinuxNetError) in
            guard linuxnet_setns_net(fd) == 0 else {
                let code = errno
                throw LinuxNetError(
                    operation: "setns(\(namespace.path), CLONE_NEWNET)",
                    action: "entering network namespace \(namespace.path)",
                    errno: code, hint: code == EPERM ? "entering a network namespace needs CAP_SYS_ADMIN" : nil)
            }
        }
    }

    // MARK: threads

    /// Set (to any non-nil value) on the threads started here.
    private static let marker: pthread_key_t = {
        var key = pthread_key_t()
        let result = pthread_key_create(&key, nil)
        precondition(result == 0, "pthread_key_create: \(String(cString: strerror(result)))")
        return key
    }()

    /// What a thread runs. The caller waits (join or continuation) before
    /// anything `work` captured goes away.
    private final class Job: @unchecked Sendable {
        let name: String?
        let work: () -> Void

        init(name: String? = nil, _ work: @escaping () -> Void) {
            self.name = name
            self.work = work
        }
    }

    /// A result written by the thread and read after it has been joined.
    private final class Outcome<Value>: @unchecked Sendable {
        var value: Swift.Result<Value, any Error>?
    }

    private static func start(_ job: Job) throws(LinuxNetError) -> pthread_t {
        _ = marker  // created before any thread needs it
        let context = Unmanaged.passRetained(job).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { context in
                let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
                pthread_setspecific(NamespaceThread.marker, UnsafeRawPointer(bitPattern: 1))
                if let name = job.name { _ = linuxnet_set_thread_name(name) }
                job.work()
                return nil
            }, context)
        guard created == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw LinuxNetError(
                operation: "pthread_create", action: "starting a thread for work in a network namespace",
                errno: created)
        }
        return thread
    }
}
