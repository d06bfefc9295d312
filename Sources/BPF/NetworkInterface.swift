// SPDX-License-Identifier: Apache-2.0
//
// Interface names and indexes, and running code inside a network namespace.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Interface name ↔ index, in the calling thread's network namespace.
public enum NetworkInterface {
    /// The index of the interface `name` (`if_nametoindex`).
    public static func index(named name: String) throws -> UInt32 {
        let index = if_nametoindex(name)
        if index != 0 { return index }
        let errno = Glibc.errno == 0 ? ENODEV : Glibc.errno
        throw BPFError(
            operation: "if_nametoindex(\(name))", action: "looking up interface \(name)",
            errno: Errno(rawValue: errno),
            hint: errno == ENODEV
                ? "there is no interface named \(name) in this network namespace (see `ip link`)" : nil)
    }

    /// The name of the interface with index `index` (`if_indextoname`).
    public static func name(index: UInt32) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard if_indextoname(index, &buffer) != nil else {
            throw BPFError(
                operation: "if_indextoname(\(index))", action: "looking up interface index \(index)",
                errno: Errno(rawValue: Glibc.errno == 0 ? ENXIO : Glibc.errno),
                hint: "there is no interface with index \(index) in this network namespace")
        }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// A network namespace, held open by fd.
///
/// libbpf's tc and XDP calls, `if_nametoindex` and test runs with an
/// ingress interface all act in the network namespace of the calling
/// *thread*. `run(_:)` executes a closure on a fresh thread that has
/// entered this namespace (`setns(fd, CLONE_NEWNET)`), waits for it and
/// returns its result; the caller's thread never changes namespace, so
/// nothing else in the process is affected:
///
///     let namespace = try NetworkNamespace(named: "bpftest-42-1")
///     let attachment = try namespace.run {
///         try TCAttachment.attach(program, ifindex: NetworkInterface.index(named: "veth0"))
///     }
///
/// Programs, maps and pins are not tied to a network namespace: load once,
/// attach in as many namespaces as needed.
public final class NetworkNamespace: Sendable {
    /// The namespace's file (e.g. /run/netns/NAME, /proc/PID/ns/net).
    public let path: FilePath
    /// An fd on the namespace file, open while this instance lives.
    public let fd: CInt

    /// Opens the namespace file at `path`.
    public init(path: FilePath) throws {
        let fd = path.withCString { open($0, O_RDONLY | O_CLOEXEC) }
        if fd < 0 {
            throw systemError("open(\(path))", action: "opening network namespace \(path)") { errno in
                errno == .noSuchFileOrDirectory ? "no such namespace; `ip netns add NAME` creates /run/netns/NAME" : nil
            }
        }
        self.path = path
        self.fd = fd
    }

    /// Opens a namespace created by `ip netns add NAME` (/run/netns/NAME).
    public convenience init(named name: String) throws {
        try self.init(path: FilePath("/run/netns/\(name)"))
    }

    /// The calling thread's current namespace.
    public static func current() throws -> NetworkNamespace {
        try NetworkNamespace(path: FilePath("/proc/thread-self/ns/net"))
    }

    deinit {
        close(fd)
    }

    /// Runs `body` on a new thread inside this namespace and returns its
    /// result (or rethrows its error). Blocks the caller until done.
    public func run<Result>(_ body: () throws -> Result) throws -> Result {
        try withoutActuallyEscaping(body) { escapable in
            let task = NamespaceTask(fd: fd, body: escapable)
            let context = Unmanaged.passRetained(task).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { context in
                let task = Unmanaged<AnyObject>.fromOpaque(context!).takeRetainedValue() as! NamespaceTaskProtocol
                task.execute()
                return nil
            }, context)
            if created != 0 {
                Unmanaged<NamespaceTask<Result>>.fromOpaque(context).release()
                throw BPFError(operation: "pthread_create", action: "starting a thread for namespace \(path)",
                               errno: Errno(rawValue: created))
            }
            pthread_join(thread, nil)
            switch task.outcome {
            case .success(let value)?: return value
            case .failure(let error)?: throw error
            case nil: fatalError("NetworkNamespace.run: thread ended without a result")
            }
        }
    }
}

private protocol NamespaceTaskProtocol: AnyObject {
    func execute()
}

/// The closure, its result and the namespace fd, handed to the thread. The
/// caller joins the thread before reading `outcome` or returning, so the
/// non-escaping closure is never used after `run` returns.
private final class NamespaceTask<Result>: NamespaceTaskProtocol, @unchecked Sendable {
    let fd: CInt
    let body: () throws -> Result
    var outcome: Swift.Result<Result, any Error>?

    init(fd: CInt, body: @escaping () throws -> Result) {
        self.fd = fd
        self.body = body
    }

    func execute() {
        if bpfnet_setns_net(fd) != 0 {
            outcome = .failure(systemError("setns(CLONE_NEWNET)", action: "entering a network namespace") { errno in
                errno == .notPermitted ? "entering a network namespace needs CAP_SYS_ADMIN" : nil
            })
            return
        }
        outcome = Swift.Result { try body() }
    }
}
