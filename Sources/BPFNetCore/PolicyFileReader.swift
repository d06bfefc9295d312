// SPDX-License-Identifier: Apache-2.0
//
// The walk over a policy file's YAML tree (PolicyFile's entry points use it):
// the problems it collects with their file positions, the document's top
// level, and the structural checks every section shares (mappings with known
// keys, lists, scalars). The values and the sections are in
// PolicyFileValues.swift and PolicyFileSections.swift.

import Yams

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
        if let node = keys["nat"], let value: NATMode = choice(node, path: "nat") { policy.nat = value }
        if let node = keys["extInterfaces"] {
            policy.extInterfaces = list(node, path: "extInterfaces") { reader, item, path in
                reader.extInterface(item, path: path)
            }
        }
        // Peers are host settings: `bpfnet run` reads them too.
        if let node = keys["peers"] {
            policy.peers = list(node, path: "peers") { reader, item, path in reader.peer(item, path: path) }
        }
        if let node = keys["peerPolicy"], let value: PeerPolicy = choice(node, path: "peerPolicy") {
            policy.peerPolicy = value
        }
        for key in ["networks", "containers", "links", "bridgeIPv6"] where keys[key] != nil && kind == .settingsOnly {
            fail(
                key, nil,
                "not allowed in this file: `bpfnet run` takes networks, containers, links and the bridges' IPv6 "
                    + "from Docker; remove '\(key)' (or use `bpfnet load --config` for a static policy)")
        }
        if kind == .complete {
            if let node = keys["bridgeIPv6"] { policy.bridgeIPv6 = ipv6InterfaceAddress(node, path: "bridgeIPv6") }
            if let node = keys["networks"] {
                policy.networks = list(node, path: "networks") { reader, item, path in
                    reader.network(item, path: path)
                }
            }
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
    /// `aliases` are keys once documented under another name: accepted, never
    /// suggested or listed.
    mutating func mapping(
        _ node: Node, path: String, allowed: [String], aliases: [String] = [], required: [String] = [],
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
            guard allowed.contains(key) || aliases.contains(key) else {
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
}
