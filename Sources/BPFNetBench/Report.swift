// SPDX-License-Identifier: Apache-2.0
//
// What a run found: one result per (variant, N), the JSON written by
// `--json` (the schema is the issue's, key for key, so scripts can rely on
// it), and the table printed on stdout.

import Foundation

/// min / median / max of a set of measurements.
public struct Spread: Codable, Sendable, Hashable {
    public var min: Double
    public var median: Double
    public var max: Double

    public init(min: Double, median: Double, max: Double) {
        self.min = min
        self.median = median
        self.max = max
    }

    /// Of `values` (not empty). The median of an even count is the mean of the middle two.
    public init(_ values: [Double]) {
        precondition(!values.isEmpty, "a spread needs at least one value")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        self.init(
            min: sorted[0],
            median: sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2,
            max: sorted[sorted.count - 1])
    }
}

/// One (variant, N) point.
public struct BenchResult: Codable, Sendable, Hashable {
    public var variant: String
    public var links: Int
    public var flows: Int
    /// Docker bridge networks on the host (nil in reports from before `--networks`: 1).
    public var networks: Int?
    /// CPU ns of the sending thread (and its CPU's ksoftirqd) per packet, over rounds.
    public var nsPerPacket: Spread
    /// 1000 / median ns: million packets per second one dedicated core would forward.
    public var mppsPerCore: Double
    /// Packets generated and counted at the receiver over the measured rounds.
    public var sent: UInt64
    public var delivered: UInt64
    /// Per-round cost ratio against `bridge` in the same round, over rounds.
    public var ratioToBridge: Spread

    public var isComplete: Bool { sent == delivered }
}

/// `bpfnet bench --json`: { profile, packetBytes, rounds, results: [...] }.
public struct BenchReport: Codable, Sendable, Hashable {
    public var profile: String
    public var packetBytes: Int
    public var rounds: Int
    public var results: [BenchResult]
    /// "ingress" for `--direction ingress` (each result's `links` is then N
    /// published ports); nil between containers, so that the JSON of that
    /// direction keeps the issue's schema.
    public var direction: String?

    public init(profile: String, packetBytes: Int, rounds: Int, results: [BenchResult], direction: String? = nil) {
        self.profile = profile
        self.packetBytes = packetBytes
        self.rounds = rounds
        self.results = results
        self.direction = direction
    }

    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Points where packets went missing, as sentences.
    public var failures: [String] {
        results.filter { !$0.isComplete }.map { result in
            result.delivered < result.sent
                ? "\(result.variant) at N=\(result.links): \(result.sent - result.delivered) of \(result.sent) packets were not delivered"
                : "\(result.variant) at N=\(result.links): the receiver counted \(result.delivered) packets for \(result.sent) sent"
        }
    }

    public func result(_ variant: String, links: Int) -> BenchResult? {
        results.first { $0.variant == variant && $0.links == links }
    }
}

/// What the run was, for the table's and the chart's headings.
public struct BenchContext: Sendable, Hashable {
    public var profile: BenchProfile
    public var direction: BenchDirection
    public var flows: Int
    public var networks: Int
    public var rounds: Int
    public var burstSeconds: Double
    public var cpu: Int
    public var date: Date
    public var kernel: String
    /// Load averages (1, 5, 15 min) when the run started.
    public var loadAverage: [Double]
    /// The frames went through an AF_PACKET socket: the kernel refused XDP live frames.
    public var packetSocket = false

    public init(_ configuration: BenchConfiguration, date: Date = Date()) {
        profile = configuration.profile
        direction = configuration.direction
        flows = configuration.flows
        networks = configuration.networks
        rounds = configuration.rounds
        burstSeconds = configuration.burstSeconds
        cpu = configuration.cpu
        self.date = date
        var name = utsname()
        uname(&name)
        kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var loads = [Double](repeating: 0, count: 3)
        loadAverage = getloadavg(&loads, 3) == 3 ? loads : []
    }

    /// The generator and the packets, for the chart's first line.
    public var generatorLine: String {
        if direction == .ingress {
            let flowText =
                profile == .new
                ? "every frame a new flow (conntrack flushed before each burst)"
                : "\(flows) flow\(flows == 1 ? "" : "s") the receiver answered once first (conntrack: ESTABLISHED)"
            let how =
                packetSocket || profile == .new
                ? "through an AF_PACKET socket" : "as XDP live frames"
            return "ingress: an outside host's \(BenchWorkload.packetBytes)-byte UDP frames \(how) to a published "
                + "port (ext0 → DNAT → receiver), \(flowText)"
        }
        return "\(profile.summary(packetSocket: packetSocket)), \(BenchWorkload.packetBytes)-byte UDP, "
            + "\(flows) flow\(flows == 1 ? "" : "s")"
            + (networks == 1 ? "" : ", \(networks) Docker networks (\(networks - 1) user-defined, empty)")
    }

    public var roundsLine: String {
        "\(rounds) interleaved rounds of \(Self.seconds(burstSeconds)) CPU time per variant and N; "
            + "sending thread pinned to CPU \(cpu); "
            + (profile == .crossHost
                ? "two hosts on a shared link, each routing the other's container subnet"
                : direction == .ingress
                    ? "N published UDP ports on the containers, the measured one last"
                    : "icc=false, Docker-style links with one exposed UDP port")
    }

    public var headline: String {
        "\(generatorLine), \(rounds) rounds of \(Self.seconds(burstSeconds)) per variant and N, sending thread on CPU \(cpu)"
    }

    public var machine: String {
        let load =
            loadAverage.isEmpty
            ? "" : ", load average " + loadAverage.map { String(format: "%.2f", $0) }.joined(separator: " ")
        return "kernel \(kernel), \(BenchConfiguration.onlineCPUs) CPUs\(load)"
    }

    static func seconds(_ value: Double) -> String {
        value >= 1 ? String(format: "%g s", value) : String(format: "%g ms", value * 1000)
    }
}

/// The text table on stdout.
public enum BenchTable {
    public static func render(_ report: BenchReport, context: BenchContext) -> String {
        var out = "bpfnet bench: \(context.headline)\n"
        out += "  \(context.machine)\n"
        out +=
            "  ns/packet: CPU time of the sending thread (softirq included) per packet, min / median / max over rounds;\n"
        out += "  × bridge: per-round cost ratio against bridge, median (min–max); Mpps/core = 1000 / median ns\n\n"
        let header = [
            pad("N", 6, right: true), "  ", pad("variant", 24), pad("ns/packet min", 14, right: true),
            pad("median", 11, right: true), pad("max", 11, right: true), pad("Mpps/core", 11, right: true),
            "   ", pad("× bridge", 26), "delivered",
        ]
        out += header.joined() + "\n"
        var lastN: Int?
        for result in report.results {
            if let lastN, lastN != result.links { out += "\n" }
            lastN = result.links
            let ratio = result.ratioToBridge
            let ratioText =
                "\(number(ratio.median, digits: 3)) (\(number(ratio.min, digits: 3))–\(number(ratio.max, digits: 3)))"
            let delivery =
                result.isComplete
                ? "\(result.delivered) of \(result.sent)"
                : "LOST \(Int64(result.sent) - Int64(result.delivered)) of \(result.sent)"
            let row = [
                pad("\(result.links)", 6, right: true), "  ", pad(result.variant, 24),
                pad(number(result.nsPerPacket.min), 14, right: true),
                pad(number(result.nsPerPacket.median), 11, right: true),
                pad(number(result.nsPerPacket.max), 11, right: true),
                pad(String(format: "%.3f", result.mppsPerCore), 11, right: true), "   ",
                pad(ratioText, 26), delivery,
            ]
            out += row.joined() + "\n"
        }
        return out
    }

    /// "725", "9,002", "78,386"; ratios with a few significant digits.
    static func number(_ value: Double, digits: Int = 0) -> String {
        if digits > 0 {
            if value >= 100 { return String(format: "%.0f", value) }
            if value >= 10 { return String(format: "%.1f", value) }
            return String(format: "%.\(max(0, digits - 1))f", value)
        }
        let rounded = Int(value.rounded())
        var text = String(rounded)
        var index = text.count - 3
        while index > 0 {
            text.insert(",", at: text.index(text.startIndex, offsetBy: index))
            index -= 3
        }
        return text
    }

    static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let count = text.count
        guard count < width else { return text + " " }
        let spaces = String(repeating: " ", count: width - count)
        return right ? spaces + text : text + spaces
    }
}
