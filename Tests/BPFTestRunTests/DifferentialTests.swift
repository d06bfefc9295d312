// SPDX-License-Identifier: Apache-2.0
//
// The differential suite: seeded random and mutated frames (FrameFuzzer, plus
// frames built along the link rules and cheap variants of every frame, see
// FrameSource) through the real port program (tc, with and without a
// context, and XDP) and the real ext program (on ingress devices with and
// without an allow-list), and through ReferenceDataplane, over the policies of
// `policies(seed:)` (peers among them, one routed in the namespace) switched
// through the reconciler. Every frame must get the same (action,
// reason) from both, and the kernel's per-reason counters must equal the
// model's tally at the end.
//
// Seeds: BPFNET_FUZZ_SEED (decimal or 0x-hex) or a fixed default, plus one
// seed derived from the clock on every run. Every failure message names the
// seed; `BPFNET_FUZZ_SEED=<seed> swift test --filter
// BPFTestRunTests.DifferentialTests/testFixedSeedKernelAgreesWithTheModel`
// replays it: the policies, the schedule and the frames all derive from the
// seed, so the first 40,000 frames of that run are the time-seeded run's.
//
// Cost: a test run is a few µs; generating and judging a frame in a debug
// build costs more, so each generated frame yields four frames (FrameSource
// variants) and the hot loop allocates nothing per test run.

import BPF
import BPFNetCore
import BPFNetShared
import BPFNetTestSupport
import CLibBPF
import Foundation
import XCTest

final class DifferentialTests: TestRunTestCase {
    static let defaultSeed: UInt64 = 0xb9f_2024_0001

    /// Frames per campaign; each goes through port tc, port XDP and ext.
    static let fixedSeedFrames = 100_000
    static let timeSeedFrames = 40_000
    /// Frames between two policy switches.
    static let segmentLength = 5_000

    static func seedFromEnvironment() -> UInt64? {
        guard let text = ProcessInfo.processInfo.environment["BPFNET_FUZZ_SEED"]?.trimmingCharacters(in: .whitespaces),
            !text.isEmpty
        else { return nil }
        if text.lowercased().hasPrefix("0x") { return UInt64(text.dropFirst(2), radix: 16) }
        return UInt64(text)
    }

    func testFixedSeedKernelAgreesWithTheModel() throws {
        let fromEnvironment = Self.seedFromEnvironment()
        if ProcessInfo.processInfo.environment["BPFNET_FUZZ_SEED"] != nil && fromEnvironment == nil {
            XCTFail("BPFNET_FUZZ_SEED must be a decimal or 0x-hex UInt64; using the default seed")
        }
        let seed = fromEnvironment ?? Self.defaultSeed
        try runCampaign(seed: seed, frames: Self.fixedSeedFrames, requireEveryReason: seed == Self.defaultSeed)
    }

    /// BPFNET_DIFFERENTIAL_FRAMES sets its length (scripts/soak.sh: 10,000,000).
    func testTimeDerivedSeedKernelAgreesWithTheModel() throws {
        var mixer = SplitMix64(seed: UInt64(Date().timeIntervalSince1970 * 1_000_000) ^ UInt64(getpid()) << 40)
        let frames = ProcessInfo.processInfo.environment["BPFNET_DIFFERENTIAL_FRAMES"].flatMap { Int($0) }
        try runCampaign(seed: mixer.next(), frames: frames ?? Self.timeSeedFrames, requireEveryReason: false)
    }

    // MARK: Policies

    /// The policies a campaign switches between, drawn from `seed`.
    func policies(seed: UInt64) throws -> [(name: String, state: MapState)] {
        var random = Xoshiro256StarStar(seed: seed ^ 0x706f_6c69_6379)
        let namespace = rig.namespace
        func compile(_ policy: Policy, bridge: IPv4InterfaceAddress? = Fixture.bridge) throws -> MapState {
            try Fixture.compile(policy, namespace: namespace, bridgeAddress: bridge)
        }

        // Many containers with random exposed and published ports, many links.
        let pool: [PortSpec] = [
            PortSpec(80), PortSpec(443), PortSpec(5432), PortSpec(6379), PortSpec(8080),
            PortSpec(53, .udp), PortSpec(123, .udp), PortSpec(5353, .udp),
            PortSpec(9899, .sctp), PortSpec(36412, .sctp),
        ]
        var crowd: [Container] = []
        for i in 0..<24 {
            var exposed = (0..<random.int(0...3)).map { _ in random.pick(pool) }
            if random.chance(20) {
                exposed.append(PortSpec(UInt16(random.int(1...65535)), random.pick([.tcp, .udp, .sctp])))
            }
            var published: [PublishedPort] = []
            if let first = exposed.first, i % 3 == 0 {
                published.append(
                    PublishedPort(
                        hostIP: random.chance(50) ? Fixture.hostAddress : nil, hostPort: UInt16(9000 + i),
                        containerPort: first.port, proto: first.proto))
            }
            crowd.append(
                Fixture.container(
                    String(format: "c%02d", i), IPv4Address(10, 88, 0, UInt8(10 + i)),
                    exposed: exposed, published: published))
        }
        var links: [Link] = []
        var linked = Set<String>()
        while links.count < 40 {
            let parent = random.pick(crowd).name
            let child = random.pick(crowd).name
            guard parent != child, linked.insert(parent + ">" + child).inserted else { continue }
            links.append(Link(parent: parent, child: child))
        }
        let manyLinks = Policy(
            icc: false, forwardPolicy: .accept,
            extInterfaces: [
                ExternalInterface(
                    name: "ext0",
                    allowSources: [
                        IPv4CIDR("203.0.113.0/25")!,
                        IPv4CIDR("198.51.100.200/32")!,
                        IPv4CIDR("10.0.0.0/8")!,
                    ],
                    // The fuzzer's IPv6 frames come from fe80::1: admitted here, refused on ext2 below.
                    allowSourcesIPv6: [IPv6CIDR("fe80::/64")!]),
                ExternalInterface(name: "ext1", allowSources: [IPv4CIDR("0.0.0.0/0")!]),
            ],
            containers: Fixture.containers + crowd, links: Fixture.links + links)

        var open = Fixture.policy(icc: true, forward: .accept, allowList: false)
        open.extInterfaces.append(ExternalInterface(name: "ext2"))

        // No bridge address known: only container keys are "inside"; containers anywhere.
        var unknownBridge = Fixture.policy(icc: false, forward: .accept)
        unknownBridge.extInterfaces = [
            ExternalInterface(name: "ext1", allowSources: [IPv4CIDR("100.64.0.0/10")!]),
            ExternalInterface(
                name: "ext2", allowSources: [IPv4CIDR("203.0.113.7/32")!],
                allowSourcesIPv6: [IPv6CIDR("2001:db8::/32")!]),
        ]
        unknownBridge.containers.append(Fixture.container("far", IPv4Address(192, 168, 77, 7), exposed: [PortSpec(22)]))
        unknownBridge.links.append(Link(parent: "far", child: "db"))

        // Peer hosts: host2 routed through ext1 with the router's MAC (one the
        // fuzzer draws), host3 with no route at all (everything from it is spoofed).
        try rig.routePeer(Fixture.peerHost, via: "ext1", mac: Fixture.routerMAC, localAddress: "10.250.0.1/24")
        var peered = Fixture.policy(icc: false, forward: .accept)
        peered.peers = Fixture.peers
        var peeredNetworks = Fixture.withNetworks(Fixture.policy(icc: true, forward: .drop))
        peeredNetworks.peers = Fixture.peers
        peeredNetworks.peerPolicy = .allow

        return [
            ("icc on, forward drop, ext0 list", try compile(Fixture.policy(icc: true, forward: .drop))),
            ("icc off, forward accept, peers host2 (via ext1) and host3 (no route)", try compile(peered)),
            ("three networks, icc on, forward drop, peers, peerPolicy allow", try compile(peeredNetworks)),
            ("icc off, forward drop, ext0 list", try compile(Fixture.policy(icc: false, forward: .drop))),
            (
                "icc off, forward accept, 29 containers, 42 links, lists on ext0 and ext1 (0.0.0.0/0)",
                try compile(manyLinks)
            ),
            ("icc on, forward accept, no lists, ext2 an ext interface", try compile(open)),
            (
                "no bridge address, icc off, forward accept, lists on ext1 and ext2",
                try compile(unknownBridge, bridge: nil)
            ),
            (
                "three networks: docker0 icc off with links, front icc on, back internal; forward accept",
                try compile(Fixture.withNetworks(Fixture.policy(icc: false, forward: .accept)))
            ),
            (
                "three networks, docker0 icc on, forward drop",
                try compile(Fixture.withNetworks(Fixture.policy(icc: true, forward: .drop)))
            ),
            (
                "dual stack: three networks with IPv6, docker0 icc off, back internal; forward accept, ext0 list",
                try compile(Fixture.dualStack(Fixture.withNetworks(Fixture.policy(icc: false, forward: .accept))))
            ),
            (
                "dual stack: three networks with IPv6, docker0 icc on, forward drop",
                try compile(Fixture.dualStack(Fixture.withNetworks(Fixture.policy(icc: true, forward: .drop))))
            ),
            // What the programs see between load and the first policy: an all-zero config, no entries.
            ("nothing loaded (zero config, empty maps)", MapState.empty),
        ]
    }

    // MARK: The campaign

    struct Disagreement {
        var segment: Int
        var policy: String
        var index: Int
        var origin: String
        var hook: Hook
        var frame: [UInt8]
        var kernelCode: UInt32
        var kernelReason: Reason?
        var model: Verdict
    }

    struct Tally {
        var packets = [UInt64](repeating: 0, count: ProgramKind.counterSlots)
        var bytes = [UInt64](repeating: 0, count: ProgramKind.counterSlots)

        mutating func count(_ slot: Int, bytes length: Int) {
            packets[slot] &+= 1
            bytes[slot] &+= UInt64(length)
        }
    }

    func runCampaign(seed: UInt64, frames: Int, requireEveryReason: Bool) throws {
        let seedText = "0x" + String(seed, radix: 16)
        let replay =
            "BPFNET_FUZZ_SEED=\(seedText) swift test --filter BPFTestRunTests.DifferentialTests/testFixedSeedKernelAgreesWithTheModel"
        print("differential: seed \(seedText), \(frames) frames × (port tc, port XDP, ext); replay with \(replay)")

        let policies = try policies(seed: seed)
        var random = Xoshiro256StarStar(seed: seed ^ 0x7363_6865_6475_6c65)
        let segments = (frames + Self.segmentLength - 1) / Self.segmentLength
        // Every policy once in a shuffled order, then random switches.
        var schedule = Array(policies.indices)
        for i in stride(from: schedule.count - 1, to: 0, by: -1) {
            schedule.swapAt(i, Int(random.below(UInt64(i + 1))))
        }
        while schedule.count < segments { schedule.append(Int(random.below(UInt64(policies.count)))) }

        let namespace = rig.namespace
        let peerRoutes = rig.peerRoutes
        let ingresses = [
            namespace.index("ext0"), namespace.index("ext1"), namespace.index("ext2"), namespace.index("lo"),
        ]
        let start = try rig.counters()
        var kernelMirror = Tally()  // what the kernel's slots hold, relative to `start`
        var model = Tally()
        var disagreements: [Disagreement] = []
        var runs = 0
        var refused = 0
        var linkBased = 0
        /// "program/reason" of the IPv6 frames judged under the dual-stack policies.
        var dualStackIPv6: Set<String> = []
        let clock = ContinuousClock()
        let began = clock.now

        // Reused for every variant and every counter read: nothing is allocated per test run.
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 4096)
        defer { buffer.deallocate() }
        let counterFD = rig.counterMap.handle.fd
        let cpus = rig.counterMap.possibleCPUs
        let stride = rig.counterMap.valueStride
        let values = UnsafeMutableRawPointer.allocate(byteCount: cpus * stride, alignment: 8)
        defer { values.deallocate() }
        func kernelPackets(_ slot: Int) throws -> UInt64 {
            var key = UInt32(slot)
            guard bpf_map_lookup_elem(counterFD, &key, values) == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)  // reading bn_counters[slot]
            }
            var total: UInt64 = 0
            for cpu in 0..<cpus { total &+= values.load(fromByteOffset: cpu * stride, as: bpfnet_counter.self).packets }
            return total
        }

        for segment in 0..<segments {
            let (name, desired) = policies[schedule[segment]]
            let state = try rig.write(desired)
            let reference = ReferenceDataplane(state: state)
            let ownPorts = Dictionary(
                state.ports.values.filter(\.known).map { ($0.address, $0) }, uniquingKeysWith: { first, _ in first })
            var source = FrameSource(
                state: state, seed: seed ^ UInt64(segment + 1) &* 0x9E37_79B9_7F4A_7C15,
                ingresses: ingresses, peerNeighbours: peerRoutes.values.map(\.neighbour).sorted())
            let count = min(Self.segmentLength, frames - segment * Self.segmentLength)
            let rig = self.rig!

            try rig.inNamespace {
                var index = 0
                while index < count {
                    let base = source.next()
                    if base.origin == .link { linkBased += 1 }
                    let baseParsed = FrameParser.parse(base.frame)
                    for variant in FrameSource.Variant.allCases where index < count {
                        index += 1
                        let length = source.write(variant, of: base.frame, parsed: baseParsed, into: buffer)
                        let frame = UnsafeBufferPointer(rebasing: buffer[0..<length])
                        let parsed = FrameParser.parse(frame)
                        // The sender: mostly the one the frame claims; an unknown port
                        // or another container's port (a spoof) one time in eight each.
                        let sender: PortSender
                        switch random.below(8) {
                        case 0 where random.chance(50) && !state.networks.isEmpty:
                            // A port whose container is unknown, on one of the networks.
                            sender = .unknown(network: random.pick(state.networks.keys.sorted()))
                        case 0: sender = .unknown
                        case 1 where !state.ports.isEmpty:
                            sender = .container(
                                state.ports.sorted { $0.key < $1.key }.map(\.value)[
                                    Int(random.below(UInt64(state.ports.count)))])
                        default:
                            // The claimed container's own entry when it has one (its network with it).
                            let claimed = PortSender.claimed(by: Array(frame))
                            if case .container(let record) = claimed, let own = ownPorts[record.address],
                                own.mac == record.mac
                            {
                                sender = .container(own)
                            } else if case .ipv6(let packet) = parsed, let owner = state.containers6[packet.source],
                                let own = state.ports[owner.portIfindex],
                                owner.mac == EthernetAddresses(of: frame).source
                            {
                                // An IPv6 source claims the container of that address.
                                sender = .container(own)
                            } else {
                                sender = claimed
                            }
                        }
                        try rig.setSender(sender)
                        let port = reference.portVerdict(
                            parsed: parsed, ethernet: EthernetAddresses(of: frame), sender: sender)
                        let ext = reference.extVerdict(
                            parsed: parsed, ethernet: EthernetAddresses(of: frame), ingressIfindex: base.ingress,
                            routeToPeer: { peerRoutes[$0] })
                        let data = UnsafeRawBufferPointer(frame)

                        func check(_ hook: Hook, _ expected: Verdict) throws {
                            let code: UInt32
                            do {
                                code = try rig.runOnCurrentThread(hook, data)
                            } catch let error as BPFError
                                where error.errno == .invalidArgument && hook.testRunMayRefuse(Array(frame))
                            {
                                refused += 1  // never ran (see `testRunMayRefuse`); the XDP run covers the frame
                                return
                            }
                            runs += 1
                            if name.hasPrefix("dual stack"), case .ipv6 = parsed {
                                dualStackIPv6.insert("\(hook.program.name)/\(expected.reason.name)")
                            }
                            let slot = hook.program.counterIndex(expected.reason)
                            model.count(slot, bytes: length)
                            if hook.action(of: code) == expected.action,
                                try kernelPackets(slot) &- start[slot].packets == kernelMirror.packets[slot] &+ 1
                            {
                                kernelMirror.count(slot, bytes: length)
                                return
                            }
                            // Slow path: which slot did the kernel count?
                            let now = try rig.counters()
                            let moved = now.indices.first {
                                now[$0].packets &- start[$0].packets != kernelMirror.packets[$0]
                            }
                            if let moved { kernelMirror.count(moved, bytes: length) }
                            disagreements.append(
                                Disagreement(
                                    segment: segment, policy: name, index: index - 1,
                                    origin: "\(base.kind), \(variant)", hook: hook,
                                    frame: Array(frame), kernelCode: code,
                                    kernelReason: moved.map { Reason(rawValue: UInt32($0 % Reason.slotsPerProgram)) },
                                    model: expected))
                        }
                        try check(index % 2 == 0 ? .portTC : .portTCContext, port)
                        try check(.portXDP, port)
                        try check(.ext(ingress: base.ingress), ext)
                    }
                }
            }
        }
        let elapsed = clock.now - began

        // Every disagreement, the first few in full.
        for d in disagreements.prefix(5) {
            let kernel =
                "\(d.hook.action(of: d.kernelCode).map(\.rawValue) ?? "code") \(d.kernelReason.map(\.name) ?? "no counter")"
            XCTFail(
                """
                differential disagreement, seed \(seedText) (replay: \(replay))
                  policy \(d.policy) (segment \(d.segment)), frame \(d.index) of the segment (\(d.origin)), \(d.hook)
                  kernel: \(kernel) (return code \(d.kernelCode))
                  model:  \(d.model)
                  frame (\(d.frame.count) bytes):
                \(hexDump(d.frame))
                """)
        }
        if disagreements.count > 5 {
            var byKind: [String: Int] = [:]
            for d in disagreements {
                byKind[
                    "\(d.hook.program): kernel \(d.kernelReason.map(\.name) ?? "?") vs model \(d.model.reason)",
                    default: 0] += 1
            }
            XCTFail(
                "seed \(seedText): \(disagreements.count) disagreements in all: "
                    + byKind.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))
        }

        // The counters the kernel kept equal the model's tally, reason by reason.
        let end = try rig.counters()
        var totalsDiffer: [String] = []
        for slot in 0..<ProgramKind.counterSlots {
            let packets = end[slot].packets &- start[slot].packets
            let bytes = end[slot].bytes &- start[slot].bytes
            if packets != model.packets[slot] || bytes != model.bytes[slot] {
                totalsDiffer.append(
                    "\(slotName(slot)): kernel \(packets) packets/\(bytes) bytes, model \(model.packets[slot])/\(model.bytes[slot])"
                )
            }
        }
        XCTAssertTrue(
            totalsDiffer.isEmpty,
            "seed \(seedText): counter totals differ:\n  " + totalsDiffer.joined(separator: "\n  "))

        // What the campaign exercised.
        var lines: [String] = []
        for program in ProgramKind.all {
            let seen = Reason.allKnown.compactMap { reason -> String? in
                let packets = model.packets[program.counterIndex(reason)]
                return packets == 0 ? nil : "\(reason.name) \(packets)"
            }
            lines.append("  \(program): " + seen.joined(separator: ", "))
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print(
            "differential: seed \(seedText): \(frames) frames (\(linkBased) link-rule bases), \(runs) test runs (\(refused) tc runs refused by the kernel), \(segments) segments over \(policies.count) policies, "
                + "\(disagreements.count) disagreements, \(String(format: "%.1f", seconds)) s\n"
                + lines.joined(separator: "\n"))

        if requireEveryReason {
            // With the default seed the campaign reaches every verdict a test run can produce
            // (not `reply`: its conntrack table is empty; ConntrackReplyTests shows it).
            let port: [Reason] = [
                .nonIP, .host, .iccAllowed, .link, .linkReverse, .linkFragment, .outside, .ipv6, .icc, .malformed,
                .unknownPort, .spoofed, .encap, .network, .internal,
            ]
            let ext: [Reason] = [
                .nonIP, .ipv6, .published, .forwardAccept, .local, .fragment, .source, .forward, .malformed, .encap,
                .internal, .peer, .icc, .peerSpoofed,
            ]
            for program in [ProgramKind.portTC, .portXDP] {
                for reason in port {
                    XCTAssertGreaterThan(
                        model.packets[program.counterIndex(reason)], 0, "\(program) never saw \(reason)")
                }
            }
            for reason in ext {
                XCTAssertGreaterThan(
                    model.packets[ProgramKind.extXDP.counterIndex(reason)], 0, "ext never saw \(reason)")
            }
            // IPv6 frames under the dual-stack policies reach every IPv6 verdict of both programs.
            let port6: [Reason] = [.iccAllowed, .icc, .network, .host, .internal, .spoofed, .ipv6, .unknownPort]
            let ext6: [Reason] = [.forwardAccept, .forward, .source, .internal, .fragment, .ipv6]
            let expected6 =
                [ProgramKind.portTC, .portXDP].flatMap { program in port6.map { "\(program.name)/\($0.name)" } }
                + ext6.map { "\(ProgramKind.extXDP.name)/\($0.name)" }
            XCTAssertEqual(
                Set(expected6).subtracting(dualStackIPv6), [],
                "IPv6 verdicts the dual-stack policies never produced (seen: \(dualStackIPv6.sorted()))")
        }
    }
}
