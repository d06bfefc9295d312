// SPDX-License-Identifier: Apache-2.0
//
// The one error type of LinuxNet. Callers that phrase failures their own way
// (NetLab's sysctl messages, DockerWatcher's port lookup) read `errno`.

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call or rtnetlink request.
///
/// `description` is written for operators:
///
///     opening network namespace /run/netns/x: No such file or directory — no such namespace; …
public struct LinuxNetError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The call and its subject, e.g. `setns(/run/netns/a, CLONE_NEWNET)` or `RTM_GETLINK`.
    public var operation: String
    /// What was being done, in words, e.g. `entering network namespace /run/netns/a`.
    public var action: String
    /// The error number the call returned.
    public var errno: Int32
    /// What to do about it, when we can tell.
    public var hint: String?

    public init(operation: String, action: String, errno: Int32, hint: String? = nil) {
        self.operation = operation
        self.action = action
        self.errno = errno
        self.hint = hint
    }

    /// The file or namespace does not exist: `ENOENT`.
    public var isNotFound: Bool { errno == ENOENT }
    /// Missing privileges: `EPERM` or `EACCES`.
    public var isPermission: Bool { errno == EPERM || errno == EACCES }

    /// strerror(3)'s text for `errno`.
    public var message: String { String(cString: strerror(errno)) }

    public var description: String {
        "\(action): \(message)" + (hint.map { " — \($0)" } ?? "")
    }
}
