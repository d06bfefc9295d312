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

/// A network namespace, held open by fd.
///
///     let namespace = try NetworkNamespace(named: "bpftest-42-1")
///     let veth0 = try namespace.run { try RouteNetlink().link(named: "veth0") }
///
/// Sockets keep the namespace they were created in: one created inside
/// `run(_:)` may be used from any thread afterwards.
public final class NetworkNamespace: Sendable, CustomStringConvertible {
    /// The namespace's file (e.g. /run/netns/NAME, /proc/PID/ns/net).
    public let path: String
    /// An fd on the namespace file, open while this instance lives.
    public let fd: Int32

    /// Opens the namespace file at `path`.
    public init(path: String) throws(LinuxNetError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw LinuxNetError(
                operation: "open(\(path))", action: "opening network namespace \(path)", errno: code,
                hint: code == ENOENT ? "no such namespace; `ip netns add NAME` creates /run/netns/NAME" : nil)
        }
        self.path = path
        self.fd = fd
    }

    /// Opens a namespace created by `ip netns add NAME` (/run/netns/NAME).
    public convenience init(named name: String) throws(LinuxNetError) {
        try self.init(path: "/run/netns/\(name)")
    }

    /// The calling thread's current namespace.
    public static func current() throws(LinuxNetError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/thread-self/ns/net")
    }

    deinit {
        close(fd)
    }

    /// Runs `body` on a new thread inside this namespace and returns its
    /// result (or rethrows its error). Blocks the caller until done; the
    /// caller's thread never changes namespace.
    public func run<Result>(_ body: () throws -> Result) throws -> Result {
        try NamespaceThread.run {
            try NamespaceThread.enter(self)
            return try body()
        }
    }

    public var description: String { path }
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
            guard let value = outcome.value else { fatalError("NamespaceThread.run: the thread ended without a result") }
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
        precondition(isCurrent, "NamespaceThread.enter(\(namespace.path)) called on a thread LinuxNet did not start "
            + "for it; use NetworkNamespace.run or NamespaceThread.run")
        guard linuxnet_setns_net(namespace.fd) == 0 else {
            let code = errno
            throw LinuxNetError(
                operation: "setns(\(namespace.path), CLONE_NEWNET)", action: "entering network namespace \(namespace.path)",
                errno: code, hint: code == EPERM ? "entering a network namespace needs CAP_SYS_ADMIN" : nil)
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
        let created = pthread_create(&thread, nil, { context in
            let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
            pthread_setspecific(NamespaceThread.marker, UnsafeRawPointer(bitPattern: 1))
            if let name = job.name { _ = linuxnet_set_thread_name(name) }
            job.work()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw LinuxNetError(operation: "pthread_create", action: "starting a thread for work in a network namespace",
                                errno: created)
        }
        return thread
    }
}
