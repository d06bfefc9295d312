// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet bench` (docs/bench.md): packet rates side by side, and
// `bpfnet bench micro`: the BPF_PROG_TEST_RUN cost of each program. The
// engine is BPFNetBench; this file is options, output files and exit codes.

import ArgumentParser
import BPFNetBench
import Foundation

extension BenchProfile: ExpressibleByArgument {}
extension BenchDirection: ExpressibleByArgument {}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Packet rates side by side: the bridge, Docker's iptables rules and bpfnet, as links grow.",
        discussion: """
            Builds one complete Docker-like host per variant in network namespaces of its own (same addresses, \
            same containers, the same N links), sends from the sender container to the receiver in interleaved \
            rounds on one pinned CPU, and reports the CPU cost per packet and its ratio to the bare bridge \
            measured in the same round. Everything is removed at the end, also on Ctrl-C. \
            `bpfnet bench micro` times each eBPF program alone with BPF_PROG_TEST_RUN. The options \
            (--variants, --links, --flows, --rounds, --profile, --json, --svg, ...) are listed by \
            `bpfnet bench run --help`; docs/bench.md explains the method.
            """,
        subcommands: [BenchRun.self, BenchMicro.self],
        defaultSubcommand: BenchRun.self)
}

struct BenchRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Measure every variant at every N (the default subcommand of `bench`).",
        discussion: "Variants: "
            + (BenchVariant.all + BenchVariant.crossHost.dropFirst()).map { variant in
                "\(variant.name) — \(variant.summary)"
                    + (variant.isDiagnostic ? " (diagnostic: measured only when named)" : "")
            }.joined(separator: "; ")
            + ". bridge is always measured: every ratio is taken against it. --profile cross-host measures "
            + "bridge, docker-forward-accept, bpfnet-peers and bpfnet-peers-fastpath on two hosts, one flow. "
            + "--direction ingress measures an outside host's frames to a published port, with N published ports "
            + "(--ports): "
            + BenchVariant.ingress.map { "\($0.name) — \($0.summary)" }.joined(separator: "; ") + ".")

    @Option(
        help: ArgumentHelp(
            "Variants to measure, comma-separated (default: every one but the diagnostics).",
            valueName: "a,b,..."))
    var variants: String?

    @Option(
        help: ArgumentHelp(
            "Numbers of Docker links to sweep, comma-separated (default 0,100,1000,10000; cross-host: none).",
            valueName: "N,..."))
    var links: String?

    @Option(
        help: ArgumentHelp(
            "containers: from one container to another (default); ingress: from an outside host to a published "
                + "port, N published ports (--ports), --profile new|established.",
            valueName: "containers|ingress"))
    var direction: BenchDirection = .containers

    @Option(
        help: ArgumentHelp(
            "--direction ingress: numbers of published ports to sweep, comma-separated (default 0,100,1000,10000).",
            valueName: "N,..."))
    var ports: String?

    @Option(
        help: ArgumentHelp(
            "Allowed flows the traffic is spread over (1-4096), each allowed by a link of its own.",
            valueName: "K"))
    var flows: Int = 1

    @Option(
        help: ArgumentHelp(
            "Docker bridge networks on the host (1-1000), the default bridge included: the others are empty "
                + "user-defined networks, whose isolation and forward rules Docker's iptables walk for every packet.",
            valueName: "K"))
    var networks: Int = 1

    @Option(help: ArgumentHelp("Measured rounds per N (a warm-up round comes on top).", valueName: "R"))
    var rounds: Int = BenchConfiguration.defaultRounds

    @Option(help: ArgumentHelp("CPU seconds per burst (one variant, one round).", valueName: "SECONDS"))
    var burst: Double = BenchConfiguration.defaultBurstSeconds

    @Option(
        help: ArgumentHelp(
            "live: XDP live frames (default); udp: real UDP sockets (sendmmsg); established: live frames on flows "
                + "the receiver answered first (conntrack ESTABLISHED, Docker's short-cut); cross-host: live frames "
                + "from a container on one host to one on another, routed through both. With --direction ingress: "
                + "new (default: every frame a new flow) or established.",
            valueName: "live|udp|established|cross-host|new"))
    var profile: BenchProfile?

    @Option(help: ArgumentHelp("The CPU the sending thread is pinned to (default: the last one).", valueName: "CPU"))
    var cpu: Int?

    @Option(help: ArgumentHelp("Write the results as JSON.", valueName: "FILE"))
    var json: String?

    @Option(help: ArgumentHelp("Draw ns/packet against N as an SVG chart.", valueName: "FILE"))
    var svg: String?

    func run() throws {
        let profile = self.profile ?? direction.profiles[0]
        let selection =
            try variants.map {
                try BenchVariant.select(
                    $0.split(separator: ",").map(String.init), profile: profile, direction: direction)
            }
            ?? BenchVariant.defaultSelection(for: profile, direction: direction)
        // N is links between containers, published ports for ingress.
        switch (direction, links, ports) {
        case (.ingress, .some, _):
            throw BenchError.badInput("--direction ingress sweeps published ports: give --ports N,... (not --links)")
        case (.containers, _, .some):
            throw BenchError.badInput("--ports applies to --direction ingress; between containers give --links N,...")
        default: break
        }
        let sweep =
            try (links ?? ports).map(BenchConfiguration.parseLinks)
            ?? (profile == .crossHost ? [0] : BenchConfiguration.defaultLinks)
        let configuration = BenchConfiguration(
            variants: selection, links: sweep, flows: flows, networks: networks,
            rounds: rounds, burstSeconds: burst, profile: profile, direction: direction, cpu: cpu)
        for (option, path) in [("--json", json), ("--svg", svg)] {
            if let path { try checkWritable(path, option: option) }
        }
        let outcome = try BenchRunner(configuration).run()
        print(BenchTable.render(outcome.report, context: outcome.context), terminator: "")
        for note in outcome.notes { print("  note: \(note)") }
        if let json {
            try outcome.report.jsonData().write(to: URL(fileURLWithPath: json))
        }
        if let svg {
            try Data(BenchChart.render(outcome.report, context: outcome.context).utf8).write(
                to: URL(fileURLWithPath: svg))
        }
        let failures = outcome.report.failures
        if !failures.isEmpty {
            throw BenchError.runtime("packets went missing: " + failures.joined(separator: "; "))
        }
    }
}

struct BenchMicro: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "micro",
        abstract: "BPF_PROG_TEST_RUN cost of each bpfnet program against an empty one.",
        discussion: """
            Port program (tc and XDP) and ext program, each with a packet a map entry matches and one no entry \
            matches, against bpfnet_empty_tc / bpfnet_empty_xdp; kernel-reported ns per repetition, with the \
            maps holding the bench host's policy.
            """)

    @Option(help: ArgumentHelp("Repetitions per test run.", valueName: "COUNT"))
    var `repeat`: Int = 1_000_000

    @Option(help: ArgumentHelp("Rounds over every program and packet.", valueName: "R"))
    var rounds: Int = 5

    @Option(help: ArgumentHelp("Links in the maps.", valueName: "N"))
    var links: Int = 1000

    @Option(help: ArgumentHelp("The CPU to run on (default: the last one).", valueName: "CPU"))
    var cpu: Int?

    @Option(help: ArgumentHelp("Write the results as JSON.", valueName: "FILE"))
    var json: String?

    func run() throws {
        if let json { try checkWritable(json, option: "--json") }
        let report = try MicroBench(MicroConfiguration(repeatCount: `repeat`, rounds: rounds, links: links, cpu: cpu))
            .run()
        print(report.table, terminator: "")
        if let json {
            try report.jsonData().write(to: URL(fileURLWithPath: json))
        }
    }
}

/// An output file's directory must exist before minutes of measuring start.
private func checkWritable(_ path: String, option: String) throws {
    let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
        FileManager.default.isWritableFile(atPath: directory)
    else {
        throw BenchError.badInput("\(option) \(path): the directory \(directory) does not exist or is not writable")
    }
}
