// SPDX-License-Identifier: Apache-2.0
//
// The bench itself:
//
//  1. validate everything (root, tools, map sizes) before anything exists;
//  2. build one complete host per variant, each in its own namespaces, with
//     the same addresses, containers and phantom ports;
//  3. for each N (ascending): install every variant's rules for N links,
//     check that the allowed flows arrive everywhere and that traffic from a
//     stranger is dropped by every filter (and passes the bare bridge);
//  4. measure in interleaved rounds: one thread pinned to one CPU enters each
//     variant's sender namespace in turn and sends one burst there; the
//     order rotates each round; a warm-up round is not recorded;
//  5. summarise per (variant, N): ns/packet over rounds, and the per-round
//     ratio to `bridge` measured in the same round (absolute figures on a
//     shared VM drift ±20 % within seconds; ratios of neighbouring bursts do
//     not);
//  6. tear everything down — also on failure, and on Ctrl-C via BenchSafetyNet.

import BPF
import Foundation

/// One burst of one variant.
struct BurstSample {
    var sent: UInt64
    var delivered: UInt64
    /// CPU time of the sending thread during the burst (softirq included).
    var threadNanoseconds: UInt64
    /// ksoftirqd time on the same CPU meanwhile (overflowed softirq work).
    var softirqNanoseconds: UInt64

    var nanosecondsPerPacket: Double {
        sent == 0 ? .infinity : Double(threadNanoseconds + softirqNanoseconds) / Double(sent)
    }
}

/// The outcome of a run: the report, and where it was measured.
public struct BenchOutcome: Sendable {
    public var report: BenchReport
    public var context: BenchContext
    /// Observations worth a line under the table (softirq work that went to
    /// ksoftirqd, ...).
    public var notes: [String] = []
}

public final class BenchRunner {
    public let configuration: BenchConfiguration
    private let progress: ProgressLine

    public init(_ configuration: BenchConfiguration) {
        self.configuration = configuration
        progress = ProgressLine(enabled: configuration.showProgress)
    }

    /// Runs the whole bench. Throws `BenchError.badInput` before building
    /// anything when the options or the machine do not allow the run.
    public func run() throws -> BenchOutcome {
        try configuration.validate()
        BenchSafetyNet.install()
        var context = BenchContext(configuration)
        let workload = configuration.workload
        let workDirectory = try BenchSafetyNet.makeDirectory(prefix: "bpfnet-bench")
        var hosts: [BenchHost] = []
        defer {
            progress.show("removing the bench topologies")
            for host in hosts { host.tearDown() }
            BenchSafetyNet.removeDirectory(workDirectory)
            progress.clear()
        }

        for variant in configuration.variants {
            progress.show("building the \(variant.name) host (\(workload.phantomCount + 2) containers)")
            hosts.append(
                try BenchHost.build(
                    variant, workload: workload, profile: configuration.profile,
                    direction: configuration.direction, workDirectory: workDirectory))
        }
        let generator = try LiveFrameGenerator()
        let newFlows =
            configuration.profile == .new ? NewFlowSender(template: workload.ingressFrame(flow: 0)) : nil
        if configuration.profile == .udp {
            for host in hosts {
                host.udpSockets = try host.senderNamespace.run { try UDPSender.openSockets(workload) }
            }
        }

        var results: [BenchResult] = []
        var notes: [String] = []
        for (step, links) in configuration.links.enumerated() {
            let label = "N=\(links) (\(step + 1)/\(configuration.links.count))"
            for host in hosts {
                progress.show("\(label): installing \(host.variant.name)'s rules")
                try host.filter.install(links: links, workload: workload, on: host)
            }
            var samples: [[BurstSample]] = []
            try PinnedThread.run(cpu: configuration.cpu) {
                try self.checkPaths(hosts, generator: generator, workload: workload, label: label)
                samples = try self.measure(
                    hosts, generator: generator, newFlows: newFlows, workload: workload, label: label)
            }
            results += summarise(samples, hosts: hosts, links: links)
            for (host, bursts) in zip(hosts, samples) {
                let softirq = bursts.reduce(0) { $0 + $1.softirqNanoseconds }
                let total = bursts.reduce(0) { $0 + $1.threadNanoseconds + $1.softirqNanoseconds }
                if total > 0, Double(softirq) / Double(total) >= 0.02 {
                    let share = String(format: "%.1f", 100 * Double(softirq) / Double(total))
                    notes.append(
                        "\(host.variant.name) at N=\(links): \(share) % of the cost ran in "
                            + "ksoftirqd/\(configuration.cpu) (included in ns/packet)")
                }
            }
        }
        if newFlows != nil {
            context.packetSocket = true
            notes.append(
                "frames were sent through an AF_PACKET socket, each with a source of its own (~0.5-1 µs of the "
                    + "sender's own cost per packet, the same on every variant, dilutes every ratio)")
        } else if generator.mode == .packetSocket {
            context.packetSocket = true
            notes.append(
                "frames were sent through \(LiveFrameGenerator.Mode.packetSocket.rawValue): BPF_PROG_TEST_RUN "
                    + "answered EPERM; the sender's own cost per packet is higher and dilutes every ratio")
        }
        let report = BenchReport(
            profile: configuration.profile.rawValue, packetBytes: BenchWorkload.packetBytes,
            rounds: configuration.rounds, results: results,
            direction: configuration.direction == .ingress ? configuration.direction.rawValue : nil)
        return BenchOutcome(report: report, context: context, notes: notes)
    }

    // MARK: On the measuring thread

    /// Every variant delivers each allowed flow, and every filter drops a
    /// stranger's traffic (the bare bridge delivers it): the rules in force
    /// are the ones meant, before any number is taken.
    private func checkPaths(
        _ hosts: [BenchHost], generator: LiveFrameGenerator, workload: BenchWorkload,
        label: String
    ) throws {
        let clock = CPUClock(cpu: configuration.cpu)
        let frames = 256 * workload.flows
        let crossHost = configuration.profile == .crossHost
        let ingress = configuration.direction == .ingress
        progress.show("\(label): checking that every variant delivers the allowed flows")
        let denied =
            crossHost
            ? CrossHostWorkload.frame(from: CrossHostWorkload.strangerIP)
            : ingress ? workload.ingressDeniedFrame() : workload.deniedFrame()
        let deniedSource =
            crossHost
            ? "from \(CrossHostWorkload.strangerIP), which no link allows (or a forged source),"
            : ingress
                ? "from outside to \(BenchWorkload.receiverIP):\(BenchWorkload.unpublishedPort), a port nobody publishes,"
                : "from \(BenchWorkload.strangerIP), which no link allows (or a forged source),"
        try generator.setFlows([denied])
        for host in hosts {
            let sample = try burst(host, generator: generator, clock: clock, packets: 256, useGenerator: true)
            let filters = host.variant.enforcesPolicy
            if filters && sample.delivered != 0 {
                throw BenchError.runtime(
                    "\(host.variant.name) at \(label): \(sample.delivered) of \(sample.sent) packets "
                        + "\(deniedSource) reached the receiver — the filter is not in force")
            }
            if !filters && sample.delivered != sample.sent {
                throw BenchError.runtime(
                    "\(host.variant.name) at \(label): only \(sample.delivered) of \(sample.sent) packets arrived "
                        + "without any filter; the topology does not deliver (is GRO on at the sender's port?)")
            }
        }
        try generator.setFlows(
            crossHost
                ? [CrossHostWorkload.frame()]
                : (0..<workload.flows).map(ingress ? workload.ingressFrame(flow:) : workload.frame(flow:)))
        if configuration.profile == .established {
            try answerEveryFlow(hosts, workload: workload, label: label)
        }
        for host in hosts {
            let sample = try burst(host, generator: generator, clock: clock, packets: frames, useGenerator: true)
            if sample.delivered != sample.sent {
                throw BenchError.runtime(
                    "\(host.variant.name) at \(label): only \(sample.delivered) of \(sample.sent) packets "
                        + "of the allowed flows reached the receiver before measuring")
            }
        }
    }

    /// `--profile established`: one frame per flow from the sender, then the
    /// receiver's answer to each, so that conntrack (Docker's variants run
    /// br_netfilter) has seen both directions and marks the flows
    /// ESTABLISHED; the bursts that follow keep the entries fresh.
    private func answerEveryFlow(_ hosts: [BenchHost], workload: BenchWorkload, label: String) throws {
        progress.show("\(label): the receiver answers every flow once (conntrack: ESTABLISHED)")
        let ingress = configuration.direction == .ingress
        let requests = (0..<workload.flows).map(ingress ? workload.ingressFrame(flow:) : workload.frame(flow:))
        let replies = (0..<workload.flows).map(ingress ? workload.ingressReplyFrame(flow:) : workload.replyFrame(flow:))
        for host in hosts {
            try PinnedThread.enter(host.senderNamespace)
            try PacketSocketSender.send(requests, count: requests.count, ifindex: host.senderIfindex)
            try PinnedThread.enter(host.receiverNamespace)
            let receiverIfindex = try NetworkInterface.index(named: "eth0")
            try PacketSocketSender.send(replies, count: replies.count, ifindex: receiverIfindex)
        }
        usleep(50_000)  // the answers cross the bridge in softirq; let them land
    }

    /// The interleaved rounds; returns the recorded samples per host.
    private func measure(
        _ hosts: [BenchHost], generator: LiveFrameGenerator, newFlows: NewFlowSender?, workload: BenchWorkload,
        label: String
    ) throws -> [[BurstSample]] {
        // New flows: never enough to fill conntrack or bn_nat (both are emptied before each burst).
        let packetLimit = newFlows == nil ? Int.max : ConntrackTable.newFlowsPerBurst()
        let clock = CPUClock(cpu: configuration.cpu)
        let budget = UInt64(configuration.burstSeconds * 1e9)
        var estimate = [Double?](repeating: nil, count: hosts.count)
        var samples = [[BurstSample]](repeating: [], count: hosts.count)
        let useGenerator = configuration.profile.usesGenerator
        for round in 0...configuration.rounds {
            for offset in hosts.indices {
                let index = (round + offset) % hosts.count
                let host = hosts[index]
                progress.show(
                    round == 0
                        ? "\(label) warm-up: \(host.variant.name)"
                        : "\(label) round \(round)/\(configuration.rounds): \(host.variant.name)")
                if useGenerator && estimate[index] == nil {
                    // One batch to size the first burst (N=10000 under iptables-nft
                    // is ~1000× slower than the bridge).
                    let probe = try burst(
                        host, generator: generator, clock: clock,
                        packets: Int(LiveFrameGenerator.batchSize), useGenerator: true, newFlows: newFlows)
                    estimate[index] = probe.nanosecondsPerPacket
                }
                let packets = useGenerator ? min(Self.packets(for: budget, estimate: estimate[index]!), packetLimit) : 0
                let sample = try burst(
                    host, generator: generator, clock: clock, packets: packets,
                    useGenerator: useGenerator, cpuBudget: budget, newFlows: newFlows)
                if sample.sent > 0 { estimate[index] = sample.nanosecondsPerPacket }
                if round > 0 { samples[index].append(sample) }
            }
        }
        return samples
    }

    /// Frames for a burst of `budget` ns at `estimate` ns each: at least one
    /// batch, at most what BPF_PROG_TEST_RUN takes.
    static func packets(for budget: UInt64, estimate: Double) -> Int {
        let wanted = Double(budget) / max(estimate, 1)
        return Int(min(max(wanted, Double(LiveFrameGenerator.batchSize)), Double(Int32.max)))
    }

    /// One burst in `host`'s sender namespace, with its delivery check.
    /// With `newFlows` the frames come from it, each a new flow, and the
    /// host's conntrack table is flushed before and after (outside the timing).
    private func burst(
        _ host: BenchHost, generator: LiveFrameGenerator, clock: CPUClock, packets: Int,
        useGenerator: Bool, cpuBudget: UInt64 = 0, newFlows: NewFlowSender? = nil
    ) throws -> BurstSample {
        if newFlows != nil {
            try PinnedThread.enter(host.hostNamespace)
            try ConntrackTable.flush()
            try host.filter.forgetConnections(on: host)
        }
        try PinnedThread.enter(host.senderNamespace)
        let before = try host.sink.count()
        let softirqStart = clock.softirqNanoseconds()
        let threadStart = CPUClock.threadNanoseconds()
        let sent: UInt64
        if let newFlows {
            try newFlows.send(count: packets, ifindex: host.senderIfindex)
            sent = UInt64(packets)
        } else if useGenerator {
            try generator.send(count: packets, ifindex: host.senderIfindex)
            sent = UInt64(packets)
        } else {
            sent = try UDPSender.send(sockets: host.udpSockets, cpuBudget: cpuBudget)
        }
        // The sending thread's time ends with the send: the wait for delivery
        // below polls the sink and is no cost of the packets. Softirq time is
        // read after it, since work left to ksoftirqd/<cpu> is theirs.
        let threadEnd = CPUClock.threadNanoseconds()
        let delivered = try Self.waitForDelivery(host.sink, from: before, expecting: sent)
        let softirqEnd = clock.softirqNanoseconds()
        if newFlows != nil {
            try PinnedThread.enter(host.hostNamespace)
            try ConntrackTable.flush()
            try host.filter.forgetConnections(on: host)
        }
        return BurstSample(
            sent: sent, delivered: delivered, threadNanoseconds: threadEnd - threadStart,
            softirqNanoseconds: softirqEnd &- softirqStart)
    }

    /// Packets counted since `before`, once `expected` arrived or the count
    /// stopped moving for half a second. Softirq work normally finishes
    /// inside the sending call; what overflows to ksoftirqd/<cpu> can wait
    /// behind other tasks on a busy machine for tens of milliseconds.
    static func waitForDelivery(_ sink: Sink, from before: UInt64, expecting expected: UInt64) throws -> UInt64 {
        let start = ContinuousClock.now
        var lastChange = start
        var count = try sink.count()
        while count &- before < expected {
            let now = ContinuousClock.now
            if now - lastChange > .milliseconds(500) || now - start > .seconds(20) { break }
            usleep(1000)
            let next = try sink.count()
            if next != count {
                count = next
                lastChange = ContinuousClock.now
            }
        }
        return count &- before
    }

    // MARK: Summary

    private func summarise(_ samples: [[BurstSample]], hosts: [BenchHost], links: Int) -> [BenchResult] {
        guard let bridgeIndex = hosts.firstIndex(where: { $0.variant == .bridge }) else { return [] }
        let bridgeCost = samples[bridgeIndex].map(\.nanosecondsPerPacket)
        return hosts.indices.map { index in
            let costs = samples[index].map(\.nanosecondsPerPacket)
            let ratios = zip(costs, bridgeCost).map { $0 / $1 }
            let nsPerPacket = Spread(costs)
            return BenchResult(
                variant: hosts[index].variant.name, links: links, flows: configuration.flows,
                // Only for K > 1, so that the JSON of a run without --networks keeps the schema.
                networks: configuration.networks == 1 ? nil : configuration.networks,
                nsPerPacket: nsPerPacket, mppsPerCore: 1000 / nsPerPacket.median,
                sent: samples[index].reduce(0) { $0 + $1.sent },
                delivered: samples[index].reduce(0) { $0 + $1.delivered },
                ratioToBridge: Spread(ratios))
        }
    }
}

/// "bpfnet bench: N=1000 (3/4) round 12/50: docker-iptables-nft" on one
/// rewritten stderr line, only when stderr is a terminal.
final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private let lock = NSLock()

    init(enabled: Bool) {
        self.enabled = enabled && isatty(STDERR_FILENO) == 1
    }

    func show(_ message: String) {
        guard enabled else { return }
        lock.withLock {
            FileHandle.standardError.write(Data("\r\u{1B}[K bpfnet bench: \(message)".utf8))
        }
    }

    func clear() {
        guard enabled else { return }
        lock.withLock { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
