// SPDX-License-Identifier: Apache-2.0
//
// Reachability with real traffic: each probe runs `bpfnet-probe` inside the
// source namespace (nsenter --net) and reports whether an answer came back.
// "refused" (RST, ICMP port unreachable) means the packet got there and the
// port is closed; it is kept apart from "blocked" (nothing came back), and a
// probe that could not run at all is an "error", never "blocked".

import BPFNetCore
import LinuxNet

#if canImport(Glibc)
import Glibc
#endif

public struct IPv4Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPv4Address
    public var port: UInt16

    public init(_ address: IPv4Address, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses "a.b.c.d:port".
    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let address = IPv4Address(text[..<colon]),
            let port = UInt16(text[text.index(after: colon)...])
        else { return nil }
        self.init(address, port)
    }

    public var description: String { "\(address):\(port)" }
}

public struct Probe: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable, CustomStringConvertible {
        case tcp(UInt16)
        case udp(UInt16)
        case icmp

        public var description: String {
            switch self {
            case .tcp(let port): "\(port)/tcp"
            case .udp(let port): "\(port)/udp"
            case .icmp: "icmp"
            }
        }
    }

    public var from: NetworkNamespace
    public var to: IPv4Address
    public var kind: Kind
    /// Bind this source port (Docker's reverse link rule is about source ports).
    public var sourcePort: UInt16?
    /// Send from this address (an external with an allowed and a refused source).
    public var sourceAddress: IPv4Address?
    /// UDP payload bytes; the answer is asked to be as large (4000 fragments on a 1500 MTU).
    public var size: Int?
    /// How long to wait for an answer. A dropped TCP SYN is reported when it runs out.
    public var timeout: Duration
    /// A name for tables ("client → web"); nil shows the namespace name.
    public var label: String?

    public static let defaultTimeout: Duration = .milliseconds(500)

    public init(
        from: NetworkNamespace, to: IPv4Address, _ kind: Kind, sourcePort: UInt16? = nil,
        sourceAddress: IPv4Address? = nil, size: Int? = nil, timeout: Duration = Probe.defaultTimeout,
        label: String? = nil
    ) {
        self.from = from
        self.to = to
        self.kind = kind
        self.sourcePort = sourcePort
        self.sourceAddress = sourceAddress
        self.size = size
        self.timeout = timeout
        self.label = label
    }

    public var description: String {
        var text = "\(label ?? from.name): \(to) \(kind)"
        if let sourceAddress { text += " from \(sourceAddress)" }
        if let sourcePort { text += " sport \(sourcePort)" }
        if let size { text += " \(size) bytes" }
        return text
    }
}

public enum Reachability: String, Sendable, Hashable, CustomStringConvertible {
    /// An answer came back from the probe server.
    case allowed
    /// The packet arrived but the port is closed (TCP RST, ICMP port unreachable).
    case refused
    /// Nothing came back in time, or an ICMP error other than port unreachable.
    case blocked
    /// The probe could not run (missing binary, bind failure, bad arguments).
    case error

    public var description: String { rawValue }
}

public struct ProbeResult: Sendable, CustomStringConvertible {
    public var probe: Probe
    public var reachability: Reachability
    /// The probe's word for it: ok, refused, timeout, unreachable, reset, noreply, error.
    public var outcome: String
    /// The probe's output line (the server's answer when allowed).
    public var detail: String
    /// The server's name (`name=`), when it answered.
    public var server: String?
    /// The client address:port as the server saw it (`peer=`): checks fixed source ports and NAT.
    public var peerSeen: IPv4Endpoint?
    /// The address:port the server was reached on (`local=`): checks DNAT.
    public var localSeen: IPv4Endpoint?
    /// UDP: bytes in the answer.
    public var bytesReceived: Int?
    public var duration: Duration

    public var isAllowed: Bool { reachability == .allowed }

    public var description: String { "\(probe): \(reachability) (\(detail))" }

    /// Reads the probe's one-line report (see bpfnet-probe's main.swift).
    init(probe: Probe, result: Result<CommandResult, CommandError>) {
        switch result {
        case .failure(let error):
            self.init(probe: probe, reachability: .error, outcome: "error", detail: "\(error)", duration: .zero)
        case .success(let run):
            let line = run.stdout.split(separator: "\n").first.map(String.init) ?? ""
            let word = line.split(separator: " ").first.map(String.init) ?? ""
            var reachability: Reachability
            var outcome = word
            switch (run.status, word) {
            case (.exited(0), "bpfnet-probe"):
                reachability = .allowed
                outcome = "ok"
            case (.exited(1), "refused"), (.exited(1), "reset"):
                reachability = .refused
            case (.exited(1), "timeout"), (.exited(1), "unreachable"), (.exited(1), "noreply"):
                reachability = .blocked
            default:
                reachability = .error
                outcome = "error"
            }
            var detail = line
            if reachability == .error {
                let why = run.timedOut ? "probe process timed out" : "probe ended with \(run.status)"
                detail = "\(why): \([line, run.stderr.trimmed].filter { !$0.isEmpty }.joined(separator: " — "))"
            }
            self.init(
                probe: probe, reachability: reachability, outcome: outcome, detail: detail, duration: run.duration)
            if reachability == .allowed {
                for token in line.split(separator: " ") {
                    if token.hasPrefix("name=") { server = String(token.dropFirst(5)) }
                    if token.hasPrefix("peer=") { peerSeen = IPv4Endpoint(token.dropFirst(5)) }
                    if token.hasPrefix("local=") { localSeen = IPv4Endpoint(token.dropFirst(6)) }
                    if token.hasPrefix("received=") { bytesReceived = Int(token.dropFirst(9)) }
                }
            }
        }
    }

    public init(probe: Probe, reachability: Reachability, outcome: String, detail: String, duration: Duration) {
        self.probe = probe
        self.reachability = reachability
        self.outcome = outcome
        self.detail = detail
        self.duration = duration
    }
}

/// Runs probes with `bpfnet-probe`.
public struct ProbeRunner: Sendable {
    /// Path of the bpfnet-probe executable.
    public let binary: String
    /// Probes in flight at once; probes that bind the same source port in the
    /// same namespace are never run together.
    public var maxConcurrent: Int

    public init(binary: String? = nil, maxConcurrent: Int = 8) throws(NetLabError) {
        self.binary = try Self.locate(explicit: binary)
        self.maxConcurrent = maxConcurrent
    }

    /// Finds the probe: an explicit path, else $BPFNET_PROBE, else next to
    /// the running executable (the same build directory for `bpfnet`, the
    /// test bundle and the benchmarks). A path that is given explicitly (as
    /// argument or in the environment) must be right: no silent fallback to
    /// another build.
    public static func locate(explicit: String? = nil) throws(NetLabError) -> String {
        var candidates: [String] = []
        if let explicit {
            candidates = [explicit]
        } else if let fromEnvironment = getenv("BPFNET_PROBE").map({ String(cString: $0) }), !fromEnvironment.isEmpty {
            candidates = [fromEnvironment]
        } else if let executable = Self.currentExecutable() {
            let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(
                separator: "/")
            candidates.append(directory + "/bpfnet-probe")
        }
        for candidate in candidates where access(candidate, X_OK) == 0 {
            return candidate
        }
        throw .probeBinaryNotFound(searched: candidates)
    }

    static func currentExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The command that runs one probe inside its namespace.
    public func command(for probe: Probe) -> Command {
        let milliseconds = max(1, probe.timeout.pollMilliseconds)
        var arguments = [binary]
        var exclusive: String?
        switch probe.kind {
        case .tcp(let port):
            arguments += ["tcp", "\(probe.to):\(port)"]
        case .udp(let port):
            arguments += ["udp", "\(probe.to):\(port)"]
            if let size = probe.size { arguments += ["--size", "\(size)"] }
        case .icmp:
            arguments += ["icmp", "\(probe.to)"]
        }
        arguments += ["--timeout", "\(milliseconds)"]
        if let sourcePort = probe.sourcePort {
            arguments += ["--sport", "\(sourcePort)"]
            // Whatever the source address: 0.0.0.0:N and A:N collide as well.
            let proto = if case .udp = probe.kind { "udp" } else { "tcp" }
            exclusive = "\(probe.from.path) \(proto) \(sourcePort)"
        }
        if let sourceAddress = probe.sourceAddress { arguments += ["--source", "\(sourceAddress)"] }
        // Slack for starting the process on a busy machine; the probe keeps its own deadline.
        return Command(probe.from.nsenter(arguments), timeout: probe.timeout + .seconds(10), exclusiveKey: exclusive)
    }

    public func run(_ probe: Probe) -> ProbeResult {
        run([probe])[0]
    }

    /// Runs every probe (up to `maxConcurrent` at once); results in the same order.
    public func run(_ probes: [Probe]) -> [ProbeResult] {
        let results = ProcessRunner.runAll(probes.map(command(for:)), maxConcurrent: maxConcurrent)
        return zip(probes, results).map { ProbeResult(probe: $0, result: $1) }
    }

    /// argv for `bpfnet-probe serve`. The server exits with its parent (our
    /// process), so even a SIGKILLed test leaves no server behind.
    public func serveArguments(tcp: [UInt16], udp: [UInt16], name: String) -> [String] {
        var arguments = [binary, "serve", "--name", name, "--exit-with-parent"]
        if !tcp.isEmpty { arguments += ["--tcp", tcp.map(String.init).joined(separator: ",")] }
        if !udp.isEmpty { arguments += ["--udp", udp.map(String.init).joined(separator: ",")] }
        return arguments
    }
}

/// A table of probe results, for `bpfnet demo` and test failure messages.
public struct ReachabilityMatrix: Sendable, CustomStringConvertible {
    public var results: [ProbeResult]

    public init(_ results: [ProbeResult]) { self.results = results }

    public var allowed: [ProbeResult] { results.filter { $0.reachability == .allowed } }
    public var blocked: [ProbeResult] { results.filter { $0.reachability == .blocked } }
    public var errors: [ProbeResult] { results.filter { $0.reachability == .error } }

    /// One aligned row per probe: what, target, options, verdict, detail.
    public var description: String {
        let rows = results.map { result -> [String] in
            let probe = result.probe
            var options: [String] = []
            if let sourceAddress = probe.sourceAddress { options.append("from \(sourceAddress)") }
            if let sourcePort = probe.sourcePort { options.append("sport \(sourcePort)") }
            if let size = probe.size { options.append("\(size) B") }
            let target: String
            switch probe.kind {
            case .tcp(let port): target = "\(probe.to):\(port)/tcp"
            case .udp(let port): target = "\(probe.to):\(port)/udp"
            case .icmp: target = "\(probe.to) icmp"
            }
            let detail =
                result.reachability == .allowed ? (result.peerSeen.map { "seen from \($0)" } ?? "") : result.detail
            return [
                probe.label ?? probe.from.name, target, options.joined(separator: ", "),
                result.reachability.rawValue, detail,
            ]
        }
        let header = ["PROBE", "TARGET", "OPTIONS", "RESULT", "DETAIL"]
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func format(_ row: [String]) -> String {
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] - cell.count)
            }.joined(separator: "  ")
        }
        return ([format(header)] + rows.map(format)).joined(separator: "\n")
    }
}
