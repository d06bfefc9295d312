// SPDX-License-Identifier: Apache-2.0
//
// Command-line parsing for bpfnet-probe. Hand-written (no ArgumentParser) to
// keep the binary small and its start-up cheap.

#if canImport(Glibc)
import Glibc
#endif

/// Exit codes. NetLab relies on these: 1 is a network outcome (the probe
/// ran and the peer did not answer), anything higher is our own failure and
/// must never be mistaken for "blocked".
enum ExitCode: Int32 {
    case ok = 0
    case unreachable = 1
    case usage = 2
    case localError = 3
}

struct UsageError: Error {
    var message: String
}

/// `--name VALUE` / `--name=VALUE` options plus positionals.
struct Arguments {
    var positionals: [String] = []
    var options: [String: String] = [:]
    var flags: Set<String> = []

    /// - Parameters:
    ///   - valued: option names that take a value.
    ///   - flags: option names that take none.
    init(_ args: ArraySlice<String>, valued: Set<String>, flags allowedFlags: Set<String>) throws {
        var iterator = args.makeIterator()
        while let arg = iterator.next() {
            guard arg.hasPrefix("--") else {
                positionals.append(arg)
                continue
            }
            var name = String(arg.dropFirst(2))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if allowedFlags.contains(name) {
                guard value == nil else { throw UsageError(message: "--\(name) takes no value") }
                flags.insert(name)
            } else if valued.contains(name) {
                if value == nil { value = iterator.next() }
                guard let value else { throw UsageError(message: "--\(name) needs a value") }
                options[name] = value
            } else {
                let known = (valued.union(allowedFlags)).sorted().map { "--\($0)" }.joined(separator: ", ")
                throw UsageError(message: "unknown option --\(name) (accepted: \(known))")
            }
        }
    }

    func integer(_ name: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = options[name] else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError(
                message: "--\(name) \(text): expected an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func port(_ name: String) throws -> UInt16? {
        guard let text = options[name] else { return nil }
        guard let value = UInt16(text), value != 0 else {
            throw UsageError(message: "--\(name) \(text): expected a port 1-65535")
        }
        return value
    }

    func address(_ name: String) throws -> UInt32? {
        guard let text = options[name] else { return nil }
        guard let value = Endpoint.parseAddress(text) else {
            throw UsageError(message: "--\(name) \(text): expected an IPv4 address a.b.c.d")
        }
        return value
    }

    /// "80,443,8000-8010" → [80, 443, 8000, ..., 8010].
    func portList(_ name: String) throws -> [UInt16] {
        guard let text = options[name] else { return [] }
        var ports: [UInt16] = []
        for item in text.split(separator: ",") {
            let bounds = item.split(separator: "-", maxSplits: 1)
            guard let low = UInt16(bounds[0]), low != 0,
                let high = bounds.count == 2 ? UInt16(bounds[1]) : low, high >= low
            else {
                throw UsageError(message: "--\(name) \(text): expected ports like 80,443,8000-8010 (1-65535)")
            }
            ports.append(contentsOf: low...high)
        }
        return ports
    }
}
