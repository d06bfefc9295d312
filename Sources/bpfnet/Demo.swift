// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import BPFNetBench
import BPFNetCore
import BPFNetDataplane
import DemoHost
import Foundation
import NetLab

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a demo host in network namespaces, load bpfnet on it and show what it enforces.",
        discussion: """
            Builds a bridge docker0 with five containers (links, exposed and published ports), a \
            user-defined network `backend` (its own bridge, icc off) with two more, and an external network \
            with an allowed and a non-allowed source, loads bpfnet with icc=true and then icc=false, measures \
            every probe with real TCP/UDP/ICMP traffic (between the networks too), prints the reachability \
            matrix with the reason of each drop and the counters, and removes everything it made. Exits 1 if \
            any cell disagrees with the policy, or a drop reason was counted less often than probes it blocked. \
            It ends with a short (about 10 s) packet-rate comparison of the bare bridge, Docker's iptables rules \
            at 1,000 links and bpfnet (see `bpfnet bench`); --no-bench skips it. \
            --hosts 2 builds Docker's two-host example instead: two hosts that are each other's peers \
            (docs/policy.md, "Peers"), each with its own bpfnet routing the other's container subnet \
            (routes: true), and an outside host; it shows containers reaching each other across the hosts with \
            their own addresses, the outside held off, masquerade towards it, and host2's icc applied to its \
            peer's containers (no packet-rate comparison).
            """)

    @Flag(
        help: "Print JSON: {settings, matrix: [{from, to, proto, port, expected, observed, reason, ...}], counters}.")
    var json = false

    @Option(name: .customLong("port-hook"), help: ArgumentHelp("tc (default) or xdp.", valueName: "tc|xdp"))
    var portHook: PortHook = .tc

    @Flag(name: .customLong("no-bench"), help: "Skip the short packet-rate comparison at the end.")
    var noBench = false

    @Option(
        help: ArgumentHelp(
            "1: the demo host (default); 2: Docker's two-host example with peers.", valueName: "1|2"))
    var hosts = 1

    func validate() throws {
        guard hosts == 1 || hosts == 2 else {
            throw ValidationError("--hosts \(hosts): expected 1 (the demo host) or 2 (two peer hosts)")
        }
    }

    func run() throws {
        try requireRoot("demo")
        if hosts == 2 { return try runTwoHosts() }
        // Ctrl-C during the comparison also unmounts its pin directories.
        if !noBench { BenchSafetyNet.install() }
        let settings = [PolicySettings(icc: true), PolicySettings(icc: false)]
        progress(
            "building the demo host (\(Scenario.members.count) containers on docker0 and "
                + "\(Scenario.networks.map(\.name).joined(separator: ", ")), 1 external network)")
        let lab = try DemoLab()
        defer { lab.close() }

        var report = DemoReport(settings: [], matrix: [], counters: [:])
        var undercounted: [String] = []
        for setting in settings {
            progress("loading bpfnet: \(setting), port hook \(portHook.rawValue)")
            try lab.load(setting, portHook: portHook)
            // Counters live in the pinned maps and survive a reload: show what this run added.
            let before = try lab.status()
            let entries = try lab.measure(setting)
            let counters = DemoPrinter.delta(from: before, to: try lab.status())
            report.settings.append(setting.description)
            report.matrix += entries.map { DemoReport.Cell(entry: $0, policy: setting) }
            report.counters[setting.description] = counters
            var byReason: [String: UInt64] = [:]
            for reasons in counters.values { byReason.merge(reasons, uniquingKeysWith: +) }
            // The reasons are the eBPF programs'; the netfilter fallbacks count theirs under their own rules.
            let missing =
                try lab.status().backend == "bpf" ? DemoLab.undercountedReasons(entries, counted: byReason) : []
            undercounted += missing.map { "\(setting): \($0)" }
            if !json {
                print(DemoPrinter.section(setting, entries: entries, counters: counters, undercounted: missing))
            }
        }
        lab.close()
        let mismatches = report.matrix.filter { !$0.entry.matches }
        if !json {
            print("\(report.matrix.count - mismatches.count) of \(report.matrix.count) cells match the policy.")
        }
        if !noBench {
            report.bench = try comparison()
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        }
        if !mismatches.isEmpty {
            throw DataplaneError.runtime(
                "\(mismatches.count) cells disagree with the policy: "
                    + mismatches.map { "\($0.entry.source) → \($0.entry.destination) (\($0.policy))" }
                    .joined(separator: "; "))
        }
        if !undercounted.isEmpty {
            throw DataplaneError.runtime(
                "drops not counted under the reason the policy names: " + undercounted.joined(separator: "; "))
        }
        if let bench = report.bench, !bench.failures.isEmpty {
            throw DataplaneError.runtime(
                "packets went missing in the comparison: " + bench.failures.joined(separator: "; "))
        }
    }

    /// The short side-by-side: bridge, Docker's iptables-nft rules with
    /// 1,000 links, bpfnet enforcing on tc with delivery by the bridge, and
    /// bpfnet as installed (fast path on), about 10 s. A machine that cannot run it
    /// (no iptables, no br_netfilter) skips it with a note.
    private func comparison() throws -> BenchReport? {
        var configuration = BenchConfiguration(
            variants: [], links: [1000], flows: 1, rounds: 10, burstSeconds: 0.15, profile: .live, showProgress: !json)
        configuration.variants = ["bridge", "docker-iptables-nft", "bpfnet-tc", "bpfnet-fastpath"]
            .compactMap(BenchVariant.named)
        do {
            try configuration.validate()
        } catch {
            FileHandle.standardError.write(Data("bpfnet demo: skipping the packet-rate comparison: \(error)\n".utf8))
            return nil
        }
        progress("packet rates side by side (bridge, Docker's iptables at 1,000 links, bpfnet), about 10 s")
        let outcome = try BenchRunner(configuration).run()
        if !json {
            print("\n== packet rates, side by side (`bpfnet bench` measures more)\n")
            print(BenchTable.render(outcome.report, context: outcome.context), terminator: "")
            if let nft = outcome.report.result("docker-iptables-nft", links: 1000),
                let tc = outcome.report.result("bpfnet-tc", links: 1000),
                let fast = outcome.report.result("bpfnet-fastpath", links: 1000)
            {
                print(
                    String(
                        format: "\nWith 1,000 links Docker's iptables rules cost %.0f× the bridge per packet; "
                            + "bpfnet enforces the same policy at %.2f× on top of the bridge, and at %.2f× with its fast "
                            + "path (the default), which delivers allowed traffic around the bridge.",
                        nft.ratioToBridge.median, tc.ratioToBridge.median, fast.ratioToBridge.median))
            }
        }
        return outcome.report
    }

    /// `--hosts 2`: PeerHostsLab under each of TwoHostSettings.demo.
    private func runTwoHosts() throws {
        progress(
            "building two peer hosts (host1: docker0 172.17.0.0/16 with c1; host2: docker0 172.18.0.0/16 with c2, c3; "
                + "routers between 192.168.7.1 and 192.168.8.1) and an outside host")
        let lab = try PeerHostsLab()
        defer { lab.close() }
        var report = TwoHostReport()
        var undercounted: [String] = []
        for setting in TwoHostSettings.demo {
            progress("loading bpfnet on both hosts: \(setting)")
            try lab.load(setting)
            let before = try lab.counters()
            let hitsBefore = try lab.fastPathHits()
            let entries = try lab.measure(setting)
            let counters = DemoPrinter.delta(from: before, to: try lab.counters())
            let hits = try lab.fastPathHits().reduce(into: [String: UInt64]()) { result, entry in
                let earlier = hitsBefore[entry.key] ?? 0
                if entry.value > earlier { result[entry.key] = entry.value - earlier }
            }
            report.fastPath[setting.description] = hits
            report.settings.append(setting.description)
            report.matrix += entries.map { TwoHostReport.Cell(entry: $0, policy: setting.description) }
            report.counters[setting.description] = counters
            var byReason: [String: UInt64] = [:]
            for reasons in counters.values { byReason.merge(reasons, uniquingKeysWith: +) }
            let missing = DemoLab.undercountedReasons(entries, counted: byReason)
            undercounted += missing.map { "\(setting): \($0)" }
            if !json {
                print("\n== \(setting) (host1: icc on, peerPolicy icc; both: forward policy drop)")
                print(DemoPrinter.grid("across the hosts and with the outside", entries), terminator: "")
                print(DemoPrinter.counterLines(counters, undercounted: missing), terminator: "")
                let cells = hits.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                print(
                    "fast path (packets delivered around the bridge and the hosts' stacks): "
                        + (cells.isEmpty ? "none" : cells.joined(separator: ", ")))
            }
        }
        for host in [lab.host1, lab.host2] {
            report.routes[host.name] = try host.status().peers?.flatMap { $0.routes ?? [] } ?? []
        }
        lab.close()
        let mismatches = report.matrix.filter { !$0.entry.matches }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("\nroutes bpfnet installed (routes: true)")
            for (host, routes) in report.routes.sorted(by: { $0.key < $1.key }) {
                for route in routes { print("  \(host): \(route)") }
            }
            print("\n\(report.matrix.count - mismatches.count) of \(report.matrix.count) cells match the policy.")
        }
        if !mismatches.isEmpty {
            throw DataplaneError.runtime(
                "\(mismatches.count) cells disagree with the policy: "
                    + mismatches.map {
                        "\($0.entry.source) → \($0.entry.destination) (\($0.policy)): \($0.entry.observed)"
                    }
                    .joined(separator: "; "))
        }
        if !undercounted.isEmpty {
            throw DataplaneError.runtime(
                "drops not counted under the reason the policy names: " + undercounted.joined(separator: "; "))
        }
    }

    private func progress(_ message: String) {
        if json { return }
        fflush(nil)  // what print() buffered goes out first when both streams share a terminal or pipe
        FileHandle.standardError.write(Data("bpfnet demo: \(message)\n".utf8))
    }
}

/// What `bpfnet demo --json` prints.
struct DemoReport: Encodable {
    /// One probe: the matrix entry's own fields, whether it matched, and the policy it ran under.
    struct Cell: Encodable {
        var entry: MatrixEntry
        var policy: PolicySettings

        private enum Keys: String, CodingKey { case matches, policy, icc }

        func encode(to encoder: Encoder) throws {
            try entry.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(entry.matches, forKey: .matches)
            try container.encode(policy.description, forKey: .policy)
            try container.encode(policy.icc, forKey: .icc)
        }
    }

    var settings: [String]
    var matrix: [Cell]
    /// policy → program → reason → packets.
    var counters: [String: [String: [String: UInt64]]]
    /// The packet-rate comparison (`bpfnet bench --json` format); absent with --no-bench.
    var bench: BenchReport?
}

/// What `bpfnet demo --hosts 2 --json` prints.
struct TwoHostReport: Encodable {
    struct Cell: Encodable {
        var entry: MatrixEntry
        var policy: String

        private enum Keys: String, CodingKey { case matches, policy }

        func encode(to encoder: Encoder) throws {
            try entry.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(entry.matches, forKey: .matches)
            try container.encode(policy, forKey: .policy)
        }
    }

    var settings: [String] = []
    var matrix: [Cell] = []
    /// policy → "HOST PROGRAM" → reason → packets.
    var counters: [String: [String: [String: UInt64]]] = [:]
    /// host → the routes to its peer bpfnet installed, as `status` shows them.
    var routes: [String: [String]] = [:]
    /// policy → "HOST PROGRAM" → packets the fast path delivered while probing.
    var fastPath: [String: [String: UInt64]] = [:]
}

/// The text form: one grid for traffic between containers, one for the host
/// and the outside (rows: source, columns: destination:port/proto).
enum DemoPrinter {
    /// program → reason → packets counted between two status readings.
    static func delta(from before: DataplaneStatus, to after: DataplaneStatus) -> [String: [String: UInt64]] {
        delta(
            from: before.programCounters.mapValues { $0.mapValues(\.packets) },
            to: after.programCounters.mapValues { $0.mapValues(\.packets) })
    }

    /// program → reason → packets counted between two readings.
    static func delta(from before: [String: [String: UInt64]], to after: [String: [String: UInt64]])
        -> [String: [String: UInt64]]
    {
        var result: [String: [String: UInt64]] = [:]
        for (program, reasons) in after {
            for (reason, value) in reasons {
                let earlier = before[program]?[reason] ?? 0
                if value > earlier { result[program, default: [:]][reason] = value - earlier }
            }
        }
        return result
    }

    static func section(
        _ settings: PolicySettings, entries: [MatrixEntry], counters: [String: [String: UInt64]],
        undercounted: [String] = []
    ) -> String {
        let networks = Scenario.networks.map { "\($0.name) on \($0.bridge) with icc \($0.icc ? "on" : "off")" }
        var out =
            "\n== \(settings) (allowed source \(Scenario.allowedSource); "
            + "\(networks.joined(separator: ", ")), whatever bpfnet's icc)\n"
        let containers = Set(Scenario.members.map(\.name))
        let between = entries.filter { containers.contains($0.from) && containers.contains($0.to) }
        let others = entries.filter { !(containers.contains($0.from) && containers.contains($0.to)) }
        out += grid("between containers", between)
        out += grid("with the host and the outside", others)
        return out + counterLines(counters, undercounted: undercounted)
    }

    /// The counters a section added, by program and reason, and the reasons counted too rarely.
    static func counterLines(_ counters: [String: [String: UInt64]], undercounted: [String]) -> String {
        var out = "\ncounters (packets counted while probing, by program and reason)\n"
        for (program, reasons) in counters.sorted(by: { $0.key < $1.key }) {
            let cells = reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            out += "  \(program): \(cells.joined(separator: ", "))\n"
        }
        for problem in undercounted { out += "  ! fewer drops counted than probes blocked: \(problem)\n" }
        return out
    }

    static func grid(_ title: String, _ entries: [MatrixEntry]) -> String {
        var columns: [String] = []
        var rows: [String] = []
        var cells: [String: String] = [:]
        for entry in entries {
            if !columns.contains(entry.destination) { columns.append(entry.destination) }
            if !rows.contains(entry.source) { rows.append(entry.source) }
            // A mismatch is flagged where it is seen: "blocked≠" means "blocked, but the policy allows it".
            // A drop the policy expects shows its reason: "blocked:network".
            let reason = entry.matches ? entry.reason.map { ":" + $0 } ?? "" : ""
            cells[entry.source + "|" + entry.destination] = entry.observed + reason + (entry.matches ? "" : "≠")
        }
        let firstWidth = max(rows.map(\.count).max() ?? 0, 6) + 2
        let widths = columns.map { column in
            max(column.count, 8, rows.map { cells[$0 + "|" + column]?.count ?? 0 }.max() ?? 0) + 2
        }
        var out = "\n\(title) (rows: source; columns: destination; blocked:REASON; ≠ = differs from the policy)\n"
        out += pad("", firstWidth) + zip(columns, widths).map { pad($0, $1) }.joined() + "\n"
        for row in rows {
            out += pad(row, firstWidth)
            out += zip(columns, widths).map { pad(cells[row + "|" + $0] ?? "-", $1) }.joined() + "\n"
        }
        return out
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
