// SPDX-License-Identifier: Apache-2.0
//
// The policy file of `bpfnet load --config` (docs/policy-file.md), read with
// Yams' node API rather than Decodable so that every problem can name the file,
// the line, the key path and the offending value, and so that an unknown key is
// an error: an operator's typo ("icc_: false") must never silently leave the
// default (icc on) in force.
//
// Here: what a caller sees (the kinds of file, the problems, the entry
// points). The walk over the tree is PolicyFileReader.swift, its values and
// sections PolicyFileValues.swift and PolicyFileSections.swift.

import Foundation

/// Which keys a policy file may hold.
public enum PolicyFileKind: Sendable, Hashable {
    /// `bpfnet load --config`: the whole policy, containers and links included.
    case complete
    /// `bpfnet run`: host settings only; containers and links come from Docker.
    case settingsOnly
}

/// One problem in a policy file.
public struct PolicyFileProblem: Hashable, Sendable, CustomStringConvertible {
    /// Key path such as "containers[1].ip"; empty for the document itself.
    public var path: String
    /// 1-based line and column of the offending node, when known.
    public var line: Int?
    public var column: Int?
    public var message: String

    public init(path: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Everything wrong with one policy file. Its description has one line per
/// problem: `FILE:LINE: KEY.PATH: message`.
public struct PolicyFileError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var problems: [PolicyFileProblem]

    public init(file: String, problems: [PolicyFileProblem]) {
        self.file = file
        self.problems = problems
    }

    public var description: String {
        problems.map { problem in
            let location = problem.line.map { "\(file):\($0)" } ?? file
            return "\(location): \(problem.description)"
        }.joined(separator: "\n")
    }
}

/// Reads policy files.
public enum PolicyFile {
    static let topLevelKeys = [
        "bridge", "icc", "ipForward", "forwardPolicy", "portHook", "fastPath", "nat",
        "extInterfaces", "networks", "containers", "links", "peers", "peerPolicy", "bridgeIPv6",
    ]
    static let extInterfaceKeys = ["name", "allowSources"]
    static let networkKeys = ["name", "bridge", "icc", "internal", "masquerade", "hostIPv4", "ipv6"]
    /// `hostBindingIPv4`, the name `hostIPv4` was first documented under.
    static let networkKeyAliases = ["hostBindingIPv4"]
    static let containerKeys = ["name", "ip", "mac", "port", "network", "exposed", "published", "ipv6"]
    static let publishedKeys = ["hostIP", "hostPort", "containerPort", "proto"]
    static let linkKeys = ["parent", "child", "alias"]
    static let peerKeys = ["name", "address", "subnets", "routes"]

    /// Reads, parses, normalises and validates a policy file; the policy it
    /// returns is ready for the compiler. Every problem (syntax, values,
    /// unknown keys, consistency) is reported in one `PolicyFileError`.
    public static func load(contentsOf path: String, kind: PolicyFileKind = .complete) throws(PolicyFileError) -> Policy
    {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? error.localizedDescription
            throw PolicyFileError(
                file: path,
                problems: [
                    PolicyFileProblem(
                        path: "",
                        message: "cannot read the policy file: \(reason); pass a readable YAML file with --config")
                ])
        }
        return try load(yaml: text, file: path, kind: kind)
    }

    /// `load(contentsOf:)` for text already in memory; `file` names it in messages.
    public static func load(yaml: String, file: String, kind: PolicyFileKind = .complete) throws(PolicyFileError)
        -> Policy
    {
        var reader = PolicyFileReader(file: file, kind: kind)
        let policy = reader.read(yaml: yaml)
        guard reader.problems.isEmpty, let policy else {
            throw PolicyFileError(file: file, problems: reader.problems)
        }
        let normalized = policy.normalized()
        let problems = normalized.problems(bridgeAddress: nil)
        guard problems.isEmpty else {
            throw PolicyFileError(
                file: file,
                problems: problems.map { problem in
                    let mark = reader.mark(for: problem.path)
                    return PolicyFileProblem(
                        path: problem.path, line: mark?.line, column: mark?.column, message: problem.message)
                })
        }
        return normalized
    }

    /// Parses without normalising or validating: the policy exactly as written.
    /// Throws for syntax errors, unknown keys and values that are not what the
    /// key accepts.
    public static func parse(yaml: String, file: String, kind: PolicyFileKind = .complete) throws(PolicyFileError)
        -> Policy
    {
        var reader = PolicyFileReader(file: file, kind: kind)
        let policy = reader.read(yaml: yaml)
        guard reader.problems.isEmpty, let policy else {
            throw PolicyFileError(file: file, problems: reader.problems)
        }
        return policy
    }
}
