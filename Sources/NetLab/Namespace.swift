// SPDX-License-Identifier: Apache-2.0
//
// A network namespace, named by the file that holds it open: /run/netns/NAME
// for the ones `ip netns add` creates, /proc/PID/ns/net for a process's own
// (e.g. a container started by dockerd).

#if canImport(Glibc)
import Glibc
import LinuxNet
#endif

public struct NetNamespace: Hashable, Sendable, CustomStringConvertible {
    /// A short name for messages; for /run/netns namespaces the name `ip -n` takes.
    public var name: String
    /// The nsfs file to enter.
    public var path: String

    /// A namespace under /run/netns (made by `ip netns add NAME`).
    public init(named name: String) {
        self.name = name
        path = "/run/netns/" + name
    }

    /// Any nsfs file, e.g. `/proc/1234/ns/net`.
    public init(path: String, name: String? = nil) {
        self.path = path
        self.name = name ?? path
    }

    /// Whether it is one `ip -n NAME` can address.
    public var isNamed: Bool { path == "/run/netns/" + name }

    /// Whether the nsfs file is still there.
    public var exists: Bool { access(path, F_OK) == 0 }

    /// argv that runs `arguments` inside the namespace with
    /// `nsenter --net=PATH`. Only the network namespace changes: /sys and
    /// bpffs pins under /sys/fs/bpf stay visible (`ip netns exec` remounts
    /// /sys and would hide them).
    public func enter(_ arguments: [String]) -> [String] {
        ["nsenter", "--net=" + path, "--"] + arguments
    }

    /// A command to run inside the namespace (via nsenter --net).
    public func command(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30)) -> Command {
        Command(enter(arguments), input: input, timeout: timeout)
    }

    /// Runs `arguments` inside the namespace and throws unless it exits 0.
    @discardableResult
    public func run(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30)) throws(CommandError) -> CommandResult {
        try ProcessRunner.runChecked(command(arguments, input: input, timeout: timeout))
    }

    public var description: String { name }
}

/// Runs iproute2 batches and turns "Command failed -:N" into the line that failed.
enum IPBatch {
    enum Tool: String { case ip, bridge }

    /// `ip [-n NS] -batch -` with `lines` on stdin.
    static func command(_ tool: Tool = .ip, in namespace: NetNamespace?, _ lines: [String],
                        force: Bool = false, timeout: Duration = .seconds(30)) -> Command {
        var arguments = [tool.rawValue]
        if let namespace {
            precondition(namespace.isNamed, "\(tool.rawValue) -n needs a namespace under /run/netns")
            arguments += ["-n", namespace.name]
        }
        if force { arguments.append("-force") }
        arguments += ["-batch", "-"]
        return Command(arguments, input: lines.joined(separator: "\n") + "\n", timeout: timeout)
    }

    /// A failure with the offending batch line quoted.
    static func explain(_ error: CommandError, _ lines: [String]) -> NetLabError {
        guard case .failed(let result) = error else { return .command(error) }
        var detail = result.stderr.trimmed
        if let range = detail.firstRange(of: "Command failed -:"),
           let number = Int(detail[range.upperBound...].prefix { $0.isNumber }),
           number >= 1, number <= lines.count {
            detail += " (line \(number): `\(lines[number - 1])`)"
        }
        return .batchFailed(command: result.command.description, detail: detail)
    }
}

/// Errors of the topology builder and the probes, with what to do about them.
public enum NetLabError: Error, CustomStringConvertible, Sendable {
    case invalidSpec(String)
    case command(CommandError)
    case batchFailed(command: String, detail: String)
    case probeBinaryNotFound(searched: [String])
    case serverDidNotStart(String)
    case notRoot(String)
    case unknownRole(String, known: [String])
    case sysctlFailed(String)

    public var description: String {
        switch self {
        case .invalidSpec(let message):
            "netlab: invalid topology: \(message)"
        case .command(let error):
            "netlab: \(error)"
        case .batchFailed(let command, let detail):
            "netlab: `\(command)` failed: \(detail)"
        case .probeBinaryNotFound(let searched):
            "netlab: bpfnet-probe not found (looked at \(searched.joined(separator: ", "))) — "
                + "build it with `swift build --product bpfnet-probe` or set BPFNET_PROBE to its path"
        case .serverDidNotStart(let message):
            "netlab: probe server did not start: \(message)"
        case .notRoot(let what):
            "netlab: \(what) needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) — run as root"
        case .sysctlFailed(let message):
            "netlab: \(message)"
        case .unknownRole(let role, let known):
            "netlab: no namespace '\(role)' in this topology (known: \(known.joined(separator: ", ")))"
        }
    }
}
