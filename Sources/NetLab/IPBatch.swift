// SPDX-License-Identifier: Apache-2.0
//
// iproute2 batches (one `ip -batch` per namespace and step of a build) and
// NetLab's errors. NetLab names its namespaces with LinuxNet's
// `NetworkNamespace`, unopened: they are made after they are named, and go
// away when deleted.

import LinuxNet

/// Runs iproute2 batches and turns "Command failed -:N" into the line that failed.
enum IPBatch {
    enum Tool: String { case ip, bridge }

    /// `ip [-n NS] -batch -` with `lines` on stdin.
    static func command(
        _ tool: Tool = .ip, in namespace: NetworkNamespace?, _ lines: [String],
        force: Bool = false, timeout: Duration = .seconds(30)
    ) -> Command {
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
            number >= 1, number <= lines.count
        {
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
