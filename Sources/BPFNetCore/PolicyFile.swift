// SPDX-License-Identifier: Apache-2.0
//
// The policy file of `bpfnet load --config` (DESIGN.md section 4), read with
// Yams' node API rather than Decodable so that every problem can name the file,
// the line, the key path and the offending value, and so that an unknown key is
// an error: an operator's typo ("icc_: false") must never silently leave the
// default (icc on) in force.

import Foundation
import Yams

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
        "bridge", "icc", "ipForward", "forwardPolicy", "portHook", "fastPath",
        "extInterfaces", "containers", "links",
    ]
    static let extInterfaceKeys = ["name", "allowSources"]
    static let containerKeys = ["name", "ip", "mac", "port", "exposed", "published"]
    static let publishedKeys = ["hostIP", "hostPort", "containerPort", "proto"]
    static let linkKeys = ["parent", "child", "alias"]

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

/// "Did you mean" for unknown keys: same letters ignoring case, '_' and '-',
/// or an edit distance of at most 2 (1 for short keys).
enum Suggestion {
    static func closest(to word: String, among candidates: [String]) -> String? {
        let folded = fold(word)
        if let exact = candidates.first(where: { fold($0) == folded }) { return exact }
        let limit = word.count <= 4 ? 1 : 2
        let scored = candidates.map { ($0, distance(folded, fold($0))) }.filter { $0.1 <= limit }
        return scored.min { $0.1 < $1.1 }?.0
    }

    static func fold(_ s: String) -> String {
        String(s.lowercased().filter { $0 != "_" && $0 != "-" })
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// The walk over the YAML tree. Collects problems instead of stopping at the first.
struct PolicyFileReader {
    let file: String
    let kind: PolicyFileKind
    var problems: [PolicyFileProblem] = []
    /// Where each key path was written, for problems found after parsing.
    private var marks: [String: (line: Int, column: Int)] = [:]

    init(file: String, kind: PolicyFileKind) {
        self.file = file
        self.kind = kind
    }

    /// The mark of `path` or of its closest recorded parent.
    func mark(for path: String) -> (line: Int, column: Int)? {
        var candidate = path
        while !candidate.isEmpty {
            if let mark = marks[candidate] { return mark }
            if let cut = candidate.lastIndex(where: { $0 == "." || $0 == "[" }) {
                candidate = String(candidate[..<cut])
            } else {
                break
            }
        }
        return nil
    }

    // MARK: Problems

    mutating func fail(_ path: String, _ node: Node?, _ message: String) {
        let mark = node?.mark
        problems.append(
            PolicyFileProblem(
                path: path, line: mark?.line ?? self.mark(for: path)?.line,
                column: mark?.column ?? self.mark(for: path)?.column, message: message))
    }

    mutating func remember(_ path: String, _ node: Node) {
        if let mark = node.mark { marks[path] = (mark.line, mark.column) }
    }

    /// How a value is shown in a message: scalars quoted, collections by kind.
    static func show(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): "'\(scalar.string)'"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    // MARK: Document

    /// Parses `yaml`; problems end up in `problems`, in file order.
    mutating func read(yaml: String) -> Policy? {
        let policy = readUnsorted(yaml: yaml)
        problems = problems.enumerated().sorted { a, b in
            let ka = (a.element.line ?? Int.max, a.element.column ?? 0, a.offset)
            let kb = (b.element.line ?? Int.max, b.element.column ?? 0, b.offset)
            return ka < kb
        }.map(\.element)
        return policy
    }

    private mutating func readUnsorted(yaml: String) -> Policy? {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            problems.append(Self.syntaxProblem(error))
            return nil
        }
        var policy = Policy()
        guard let root, !Self.isNull(root) else { return policy }  // an empty file: every default
        guard
            let keys = mapping(
                root, path: "", allowed: PolicyFile.topLevelKeys,
                what: "settings (\(PolicyFile.topLevelKeys.joined(separator: ", ")))")
        else { return nil }

        if let node = keys["bridge"], let name = interfaceName(node, path: "bridge") { policy.bridge = name }
        if let node = keys["icc"], let value = bool(node, path: "icc") { policy.icc = value }
        if let node = keys["ipForward"], let value = bool(node, path: "ipForward") { policy.ipForward = value }
        if let node = keys["forwardPolicy"], let value: ForwardPolicy = choice(node, path: "forwardPolicy") {
            policy.forwardPolicy = value
        }
        if let node = keys["portHook"], let value: PortHook = choice(node, path: "portHook") { policy.portHook = value }
        if let node = keys["fastPath"], let value = bool(node, path: "fastPath") { policy.fastPath = value }
        if let node = keys["extInterfaces"] {
            policy.extInterfaces = list(node, path: "extInterfaces") { reader, item, path in
                reader.extInterface(item, path: path)
            }
        }
        for key in ["containers", "links"] where keys[key] != nil && kind == .settingsOnly {
            fail(
                key, nil,
                "not allowed in this file: `bpfnet run` takes containers and links from Docker; "
                    + "remove '\(key)' (or use `bpfnet load --config` for a static policy)")
        }
        if kind == .complete {
            if let node = keys["containers"] {
                policy.containers = list(node, path: "containers") { reader, item, path in
                    reader.container(item, path: path)
                }
            }
            if let node = keys["links"] {
                policy.links = list(node, path: "links") { reader, item, path in reader.link(item, path: path) }
            }
        }
        return policy
    }

    static func syntaxProblem(_ error: Error) -> PolicyFileProblem {
        if let yaml = error as? YamlError {
            switch yaml {
            case .scanner(let context, let problem, let mark, _),
                .parser(let context, let problem, let mark, _),
                .composer(let context, let problem, let mark, _):
                let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
                return PolicyFileProblem(
                    path: "", line: mark.line, column: mark.column,
                    message: "not valid YAML: \(what)")
            case .duplicatedKeysInMapping(let duplicates, let context):
                return PolicyFileProblem(
                    path: "", line: context.mark.line, column: context.mark.column,
                    message: "key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) "
                        + "appears twice in the same mapping; write each key once")
            default:
                break
            }
        }
        return PolicyFileProblem(path: "", message: "not valid YAML: \(error)")
    }

    // MARK: Structure

    /// The known keys of a mapping. Unknown keys, non-scalar keys and missing
    /// required keys are reported; nil when `node` is not a mapping at all.
    mutating func mapping(
        _ node: Node, path: String, allowed: [String], required: [String] = [],
        what: String
    ) -> [String: Node]? {
        guard case .mapping(let mapping) = node else {
            fail(path, node, "expected a mapping of \(what), found \(Self.show(node))")
            return nil
        }
        if !path.isEmpty { remember(path, node) }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                fail(
                    path, keyNode,
                    "keys must be plain words, found \(Self.show(keyNode)); expected one of \(allowed.joined(separator: ", "))"
                )
                continue
            }
            let key = scalar.string
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            guard allowed.contains(key) else {
                let hint = Suggestion.closest(to: key, among: allowed).map { " (did you mean '\($0)'?)" } ?? ""
                fail(
                    keyPath, keyNode, "unknown key '\(key)'\(hint); expected one of \(allowed.joined(separator: ", "))")
                continue
            }
            remember(keyPath, keyNode)
            result[key] = value
        }
        for key in required where result[key] == nil || Self.isNull(result[key]!) {
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            fail(keyPath, result[key] ?? node, "required key '\(key)' is missing (expected \(what))")
            result[key] = nil
        }
        return result
    }

    /// A list whose items `item` turns into values; an absent/null list is empty.
    mutating func list<T>(
        _ node: Node, path: String,
        _ item: (inout PolicyFileReader, Node, String) -> T?
    ) -> [T] {
        if Self.isNull(node) { return [] }
        guard case .sequence(let sequence) = node else {
            fail(path, node, "expected a list, found \(Self.show(node))")
            return []
        }
        var result: [T] = []
        for (index, element) in sequence.enumerated() {
            let elementPath = "\(path)[\(index)]"
            remember(elementPath, element)
            if let value = item(&self, element, elementPath) { result.append(value) }
        }
        return result
    }

    /// A list, or a single scalar taken as a one-element list ("allowSources: 10.0.0.0/8").
    mutating func scalarList<T>(
        _ node: Node, path: String,
        _ item: (inout PolicyFileReader, Node, String) -> T?
    ) -> [T] {
        if case .scalar = node, !Self.isNull(node) {
            return item(&self, node, path).map { [$0] } ?? []
        }
        return list(node, path: path, item)
    }

    mutating func text(_ node: Node, path: String, expected: String) -> String? {
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            fail(
                path, node,
                Self.isNull(node)
                    ? "a value is missing; expected \(expected)"
                    : "expected \(expected), found \(Self.show(node))")
            return nil
        }
        return scalar.string
    }

    // MARK: Values

    mutating func bool(_ node: Node, path: String) -> Bool? {
        guard let text = text(node, path: path, expected: "true or false") else { return nil }
        switch text {
        case "true", "True", "TRUE": return true
        case "false", "False", "FALSE": return false
        default:
            fail(path, node, "'\(text)' is not a boolean; expected true or false")
            return nil
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node, path: String) -> T?
    where T.RawValue == String {
        let accepted = T.allCases.map(\.rawValue).joined(separator: " or ")
        guard let text = text(node, path: path, expected: accepted) else { return nil }
        if let value = T(rawValue: text) ?? T(rawValue: text.lowercased()) { return value }
        fail(path, node, "'\(text)' is not accepted; expected \(accepted)")
        return nil
    }

    mutating func interfaceName(_ node: Node, path: String) -> String? {
        guard let text = text(node, path: path, expected: "an interface name") else { return nil }
        if let problem = InterfaceName.problem(text) {
            fail(path, node, problem + "; expected a Linux interface name (1-15 bytes, no '/', ':' or whitespace)")
            return nil
        }
        return text
    }

    mutating func containerName(_ node: Node, path: String) -> String? {
        guard let text = text(node, path: path, expected: "a container name") else { return nil }
        guard let name = ContainerName.normalized(text) else {
            fail(path, node, "'\(text)' is not a valid container name; use \(ContainerName.accepted)")
            return nil
        }
        return name
    }

    mutating func ipv4(_ node: Node, path: String) -> IPv4Address? {
        guard let text = text(node, path: path, expected: "an IPv4 address") else { return nil }
        guard let address = IPv4Address(text) else {
            fail(
                path, node,
                "'\(text)' is not an IPv4 address; expected dotted-quad a.b.c.d with each part 0-255, such as 172.17.0.2"
            )
            return nil
        }
        return address
    }

    mutating func cidr(_ node: Node, path: String) -> IPv4CIDR? {
        guard let text = text(node, path: path, expected: "an IPv4 prefix") else { return nil }
        guard let cidr = IPv4CIDR(text) else {
            fail(
                path, node,
                "'\(text)' is not an IPv4 prefix; expected a.b.c.d/len with len 0-32 (such as 203.0.113.0/24), or a single address"
            )
            return nil
        }
        return cidr
    }

    mutating func mac(_ node: Node, path: String) -> MACAddress? {
        guard let text = text(node, path: path, expected: "a MAC address") else { return nil }
        guard let mac = MACAddress(text) else {
            fail(
                path, node, "'\(text)' is not a MAC address; expected six two-digit hex bytes such as 02:42:ac:11:00:02"
            )
            return nil
        }
        return mac
    }

    mutating func port(_ node: Node, path: String) -> UInt16? {
        guard let text = text(node, path: path, expected: "a port number 1-65535") else { return nil }
        guard !text.isEmpty, text.allSatisfy(\.isASCIIDigit), let port = UInt16(text), port != 0 else {
            fail(path, node, "'\(text)' is not a port; expected a number 1-65535")
            return nil
        }
        return port
    }

    mutating func transport(_ node: Node, path: String) -> TransportProtocol? {
        guard let text = text(node, path: path, expected: "tcp, udp or sctp") else { return nil }
        guard let proto = TransportProtocol(rawValue: text.lowercased()) else {
            fail(path, node, "'\(text)' is not a protocol; expected tcp, udp or sctp")
            return nil
        }
        return proto
    }

    mutating func portSpec(_ node: Node, path: String) -> PortSpec? {
        guard let text = text(node, path: path, expected: "PORT or PORT/PROTO") else { return nil }
        guard let spec = PortSpec(text) else {
            fail(
                path, node,
                "'\(text)' is not an exposed port; expected PORT or PORT/PROTO with PORT 1-65535 "
                    + "and PROTO tcp, udp or sctp (such as 80, 80/tcp, 53/udp, 132/sctp)")
            return nil
        }
        return spec
    }

    // MARK: Sections

    mutating func extInterface(_ node: Node, path: String) -> ExternalInterface? {
        if case .scalar = node {  // "- eth0": an interface admitting every source
            return interfaceName(node, path: "\(path).name").map { ExternalInterface(name: $0) }
        }
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.extInterfaceKeys, required: ["name"],
                what: "external interface settings (name, allowSources)")
        else { return nil }
        let name = keys["name"].flatMap { interfaceName($0, path: "\(path).name") }
        let sources =
            keys["allowSources"].map {
                scalarList($0, path: "\(path).allowSources") { reader, item, itemPath in
                    reader.cidr(item, path: itemPath)
                }
            } ?? []
        return name.map { ExternalInterface(name: $0, allowSources: sources) }
    }

    mutating func container(_ node: Node, path: String) -> Container? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.containerKeys,
                required: ["name", "ip", "mac", "port"],
                what: "container settings (name, ip, mac, port, exposed, published)")
        else { return nil }
        var name: String?
        var ip: IPv4Address?
        var macAddress: MACAddress?
        var port: String?
        if let node = keys["name"] { name = containerName(node, path: "\(path).name") }
        if let node = keys["ip"] { ip = ipv4(node, path: "\(path).ip") }
        if let node = keys["mac"] { macAddress = mac(node, path: "\(path).mac") }
        if let node = keys["port"] { port = interfaceName(node, path: "\(path).port") }
        let exposed =
            keys["exposed"].map {
                scalarList($0, path: "\(path).exposed") { reader, item, itemPath in
                    reader.portSpec(item, path: itemPath)
                }
            } ?? []
        let published =
            keys["published"].map {
                list($0, path: "\(path).published") { reader, item, itemPath in
                    reader.publishedPort(item, path: itemPath)
                }
            } ?? []
        guard let name, let ip, let macAddress, let port else { return nil }
        return Container(name: name, ip: ip, mac: macAddress, port: port, exposed: exposed, published: published)
    }

    mutating func publishedPort(_ node: Node, path: String) -> PublishedPort? {
        if case .scalar(let scalar) = node, !Self.isNull(node) {
            // Docker's own notation: [hostIP:]hostPort:containerPort[/proto].
            guard let binding = Self.parseDockerBinding(scalar.string) else {
                fail(
                    path, node,
                    "'\(scalar.string)' is not a published port; expected a mapping "
                        + "{hostIP: optional, hostPort: N, containerPort: N, proto: tcp|udp|sctp} "
                        + "or Docker's notation [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] such as 8080:80/tcp")
                return nil
            }
            return binding
        }
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.publishedKeys,
                required: ["hostPort", "containerPort"],
                what: "published port settings (hostIP, hostPort, containerPort, proto)")
        else { return nil }
        var hostIP: IPv4Address?
        var hostIPFailed = false
        if let node = keys["hostIP"], !Self.isNull(node) {
            hostIP = ipv4(node, path: "\(path).hostIP")
            hostIPFailed = hostIP == nil
        }
        let hostPort = keys["hostPort"].flatMap { port($0, path: "\(path).hostPort") }
        let containerPort = keys["containerPort"].flatMap { port($0, path: "\(path).containerPort") }
        var proto: TransportProtocol? = .tcp
        if let node = keys["proto"], !Self.isNull(node) { proto = transport(node, path: "\(path).proto") }
        guard !hostIPFailed, let hostPort, let containerPort, let proto else { return nil }
        return PublishedPort(hostIP: hostIP, hostPort: hostPort, containerPort: containerPort, proto: proto)
    }

    static func parseDockerBinding(_ text: String) -> PublishedPort? {
        let protoSplit = text.split(separator: "/", omittingEmptySubsequences: false)
        guard protoSplit.count <= 2 else { return nil }
        var proto = TransportProtocol.tcp
        if protoSplit.count == 2 {
            guard let parsed = TransportProtocol(rawValue: protoSplit[1].lowercased()) else { return nil }
            proto = parsed
        }
        let parts = protoSplit[0].split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        var hostIP: IPv4Address?
        if parts.count == 3 {
            guard let ip = IPv4Address(parts[0]) else { return nil }
            hostIP = ip
        }
        let hostText = parts[parts.count - 2]
        let containerText = parts[parts.count - 1]
        guard hostText.allSatisfy(\.isASCIIDigit), containerText.allSatisfy(\.isASCIIDigit),
            let hostPort = UInt16(hostText), hostPort != 0,
            let containerPort = UInt16(containerText), containerPort != 0
        else { return nil }
        return PublishedPort(hostIP: hostIP, hostPort: hostPort, containerPort: containerPort, proto: proto)
    }

    mutating func link(_ node: Node, path: String) -> Link? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.linkKeys, required: ["parent", "child"],
                what: "link settings (parent, child, alias)")
        else { return nil }
        let parent = keys["parent"].flatMap { containerName($0, path: "\(path).parent") }
        let child = keys["child"].flatMap { containerName($0, path: "\(path).child") }
        var alias: String?
        if let node = keys["alias"], !Self.isNull(node) {
            alias = text(node, path: "\(path).alias", expected: "an alias name")
            if let value = alias, value.isEmpty || value.contains(where: \.isWhitespace) {
                fail("\(path).alias", node, "'\(value)' is not a usable alias; expected a host name without spaces")
            }
        }
        guard let parent, let child else { return nil }
        return Link(parent: parent, child: child, alias: alias)
    }
}
