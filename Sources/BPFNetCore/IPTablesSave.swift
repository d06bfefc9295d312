// SPDX-License-Identifier: Apache-2.0
//
// Reads `iptables-save -c` output: the iptables fallback's view of what is in
// the kernel (which of its chains and rules exist, their counters, and the
// policy they enforce, for `bpfnet status`).

/// The parsed output of `iptables-save [-c]`.
public struct IPTablesSave: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public var chain: String
        /// The rule as iptables-save prints it after `-A CHAIN ` (re-usable in `-D CHAIN ...`).
        public var spec: String
        /// `spec` split into arguments (quotes removed).
        public var arguments: [String]
        public var packets: UInt64
        public var bytes: UInt64

        /// The value after `option` ("-s", "--dport", "--comment", ...), if present.
        public func value(_ option: String) -> String? {
            guard let index = arguments.firstIndex(of: option), index + 1 < arguments.count else { return nil }
            return arguments[index + 1]
        }

        /// Whether `option` appears negated (`! -o docker0`).
        public func isNegated(_ option: String) -> Bool {
            guard let index = arguments.firstIndex(of: option), index > 0 else { return false }
            return arguments[index - 1] == "!"
        }

        public var comment: String? { value("--comment") }
        public var target: String? { value("-j") ?? value("-g") }

        /// True for rules bpfnet wrote (comment "bpfnet" or "bpfnet:<reason>").
        public var isOwn: Bool {
            guard let comment else { return false }
            return comment == IPTablesRuleset.ownComment || comment.hasPrefix(IPTablesRuleset.ownComment + ":")
        }

        /// The reason name of a counting rule ("bpfnet:icc" → "icc").
        public var reason: String? {
            guard let comment, comment.hasPrefix(IPTablesRuleset.ownComment + ":") else { return nil }
            return String(comment.dropFirst(IPTablesRuleset.ownComment.count + 1))
        }
    }

    public struct Table: Sendable, Equatable {
        public var name: String
        /// Chain name → policy ("ACCEPT", "DROP" for built-in chains, "-" for user chains), in order.
        public var chains: [(name: String, policy: String)]
        public var rules: [Rule]

        public func hasChain(_ name: String) -> Bool { chains.contains { $0.name == name } }
        public func rules(in chain: String) -> [Rule] { rules.filter { $0.chain == chain } }

        public static func == (lhs: Table, rhs: Table) -> Bool {
            lhs.name == rhs.name && lhs.rules == rhs.rules
                && lhs.chains.map(\.name) == rhs.chains.map(\.name)
                && lhs.chains.map(\.policy) == rhs.chains.map(\.policy)
        }
    }

    public var tables: [String: Table]

    public init(tables: [String: Table] = [:]) { self.tables = tables }

    public func table(_ name: String) -> Table { tables[name] ?? Table(name: name, chains: [], rules: []) }

    /// Parses the text; lines it does not understand are skipped.
    public init(parsing text: String) {
        var tables: [String: Table] = [:]
        var current: Table?
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = rawLine.trimmingWhitespace
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("*") {
                current = Table(name: String(line.dropFirst()), chains: [], rules: [])
            } else if line == "COMMIT" {
                if let table = current { tables[table.name] = table }
                current = nil
            } else if line.hasPrefix(":") {
                let parts = line.dropFirst().split(separator: " ")
                if parts.count >= 2 { current?.chains.append((String(parts[0]), String(parts[1]))) }
            } else {
                var rest = Substring(line)
                var packets: UInt64 = 0
                var bytes: UInt64 = 0
                if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                    let numbers = rest[rest.index(after: rest.startIndex)..<close].split(separator: ":")
                    if numbers.count == 2 {
                        packets = UInt64(numbers[0]) ?? 0
                        bytes = UInt64(numbers[1]) ?? 0
                    }
                    rest = rest[rest.index(after: close)...].drop { $0 == " " }
                }
                guard rest.hasPrefix("-A ") else { continue }
                let afterA = rest.dropFirst(3)
                let chainEnd = afterA.firstIndex(of: " ") ?? afterA.endIndex
                let chain = String(afterA[..<chainEnd])
                let spec = String(afterA[chainEnd...].drop { $0 == " " })
                current?.rules.append(
                    Rule(
                        chain: chain, spec: spec, arguments: Self.split(spec),
                        packets: packets, bytes: bytes))
            }
        }
        self.tables = tables
    }

    /// Splits a rule into arguments the way iptables-restore does (double
    /// quotes group, backslash escapes inside them).
    static func split(_ text: String) -> [String] {
        // Bytes, not Characters: a save of tens of thousands of rules is parsed per command.
        let quote = UInt8(ascii: "\"")
        let backslash = UInt8(ascii: "\\")
        let space = UInt8(ascii: " ")
        var result: [String] = []
        var current: [UInt8] = []
        var inQuotes = false
        var escaped = false
        var hasToken = false
        for byte in text.utf8 {
            if escaped {
                current.append(byte)
                escaped = false
            } else if inQuotes && byte == backslash {
                escaped = true
            } else if byte == quote {
                inQuotes.toggle()
                hasToken = true
            } else if byte == space && !inQuotes {
                if hasToken { result.append(String(decoding: current, as: UTF8.self)) }
                current.removeAll(keepingCapacity: true)
                hasToken = false
            } else {
                current.append(byte)
                hasToken = true
            }
        }
        if hasToken { result.append(String(decoding: current, as: UTF8.self)) }
        return result
    }
}

extension Substring {
    var trimmingWhitespace: String {
        var view = self
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
