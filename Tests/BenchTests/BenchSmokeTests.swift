// SPDX-License-Identifier: Apache-2.0
//
// A seconds-long run of the real bench (root): every available variant is
// built, delivers every packet it sends, reports in the JSON schema,
// and leaves nothing behind — no namespace, no bpffs mount, no directory, no
// change to the root namespace's nftables. No timing is asserted: this
// machine is shared and the numbers are the bench's business, not the test's.

import BPFNetCore
import Foundation
import LinuxNet
import NetLab
import XCTest

@testable import BPFNetBench

final class BenchSmokeTests: XCTestCase {
    /// What the bench could leave behind, seen from outside.
    private struct Leftovers: Equatable {
        var namespaces: [String]
        var mounts: [String]
        var directories: [String]
        var rootNFTables: String

        static func now() -> Leftovers {
            let netns = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
            let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
            let tmp = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
            let tables = (try? ProcessRunner.run(Command(["nft", "list", "tables"])).stdout) ?? ""
            // Only this process's: other people may run benches at the same time.
            let ours = ["bpfnet-bench-\(getpid())-", "bpfnet-maps-\(getpid())-"]
            return Leftovers(
                namespaces: netns.filter { $0.hasPrefix("bn\(getpid())") }.sorted(),
                mounts: mountinfo.split(separator: "\n").filter { line in ours.contains { line.contains("/tmp/" + $0) }
                }
                .map(String.init),
                directories: tmp.filter { name in ours.contains { name.hasPrefix($0) } }.sorted(),
                rootNFTables: tables)
        }
    }

    private func assertDelivered(
        _ report: BenchReport, variants: [String], links: [Int],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(report.results.count, variants.count * links.count, file: file, line: line)
        for n in links {
            for variant in variants {
                guard let result = report.result(variant, links: n) else {
                    XCTFail("no result for \(variant) at N=\(n)", file: file, line: line)
                    continue
                }
                XCTAssertGreaterThan(result.sent, 0, "\(variant) N=\(n)", file: file, line: line)
                XCTAssertEqual(result.delivered, result.sent, "\(variant) N=\(n) lost packets", file: file, line: line)
                XCTAssertGreaterThan(result.nsPerPacket.min, 0, file: file, line: line)
            }
            XCTAssertEqual(report.result("bridge", links: n)?.ratioToBridge.median, 1, file: file, line: line)
        }
        XCTAssertEqual(report.failures, [], file: file, line: line)
    }

    func testEveryVariantBuildsDeliversReportsAndCleansUp() throws {
        try requireRoot("bench smoke run (namespaces, eBPF, iptables)")
        let before = Leftovers.now()
        let configuration = BenchConfiguration(
            links: [0, 100], flows: 2, rounds: 3, burstSeconds: 0.02,
            showProgress: false)
        let outcome = try BenchRunner(configuration).run()
        let names = BenchVariant.defaultSelection.map(\.name)
        assertDelivered(outcome.report, variants: names, links: [0, 100])
        XCTAssertEqual(outcome.report.profile, "live")
        XCTAssertEqual(outcome.report.packetBytes, 60)
        XCTAssertEqual(outcome.report.rounds, 3)
        XCTAssertEqual(BenchSchema.problems(in: try outcome.report.jsonData()), [])
        let svg = BenchChart.render(outcome.report, context: outcome.context)
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, names.count)
        XCTAssertFalse(BenchTable.render(outcome.report, context: outcome.context).contains("LOST"))
        XCTAssertEqual(Leftovers.now(), before, "the bench left something behind")
    }

    func testRealSocketProfile() throws {
        try requireRoot("bench smoke run with UDP sockets")
        let before = Leftovers.now()
        var configuration = BenchConfiguration(
            links: [10], flows: 2, networks: 3, rounds: 2, burstSeconds: 0.02, profile: .udp,
            showProgress: false)
        configuration.variants = try BenchVariant.select([
            "bpfnet-tc", "docker-iptables-legacy", "bridge-empty-tc",
            "bridge-empty-xdp",
        ])
        let outcome = try BenchRunner(configuration).run()
        assertDelivered(
            outcome.report,
            variants: [
                "bridge", "docker-iptables-legacy", "bpfnet-tc", "bridge-empty-tc",
                "bridge-empty-xdp",
            ], links: [10])
        XCTAssertEqual(outcome.report.profile, "udp")
        // Two empty user-defined networks next to docker0 (Docker's rules and bpfnet's policy have them).
        XCTAssertEqual(Set(outcome.report.results.map(\.networks)), [3])
        XCTAssertEqual(BenchSchema.problems(in: try outcome.report.jsonData()), [])
        XCTAssertEqual(Leftovers.now(), before, "the bench left something behind")
    }

    /// `--profile cross-host`: two hosts per variant, every packet from host1's
    /// container arrives at host2's; the forged source is dropped by bpfnet
    /// and delivered by routing and by Docker's FORWARD ACCEPT (the checks
    /// before measuring); nothing is left behind.
    func testCrossHostProfile() throws {
        try requireRoot("bench smoke run across two simulated hosts")
        let before = Leftovers.now()
        let configuration = BenchConfiguration(
            variants: BenchVariant.defaultSelection(for: .crossHost), links: [0], rounds: 2, burstSeconds: 0.02,
            profile: .crossHost, showProgress: false)
        let outcome = try BenchRunner(configuration).run()
        assertDelivered(
            outcome.report, variants: ["bridge", "docker-forward-accept", "bpfnet-peers", "bpfnet-peers-fastpath"],
            links: [0])
        XCTAssertEqual(outcome.report.profile, "cross-host")
        XCTAssertEqual(BenchSchema.problems(in: try outcome.report.jsonData()), [])
        XCTAssertEqual(Leftovers.now(), before, "the bench left something behind")
    }

    /// `--direction ingress`, both profiles: every variant delivers the
    /// outside host's frames to the published port (new flows: every frame
    /// a fresh source, conntrack flushed around each burst), drops frames
    /// routed straight at an unpublished container port (the reference
    /// delivers them), and leaves nothing behind.
    func testIngressDirection() throws {
        try requireRoot("bench smoke run from outside to a published port")
        let before = Leftovers.now()
        for (profile, flows) in [(BenchProfile.new, 1), (.established, 2)] {
            let configuration = BenchConfiguration(
                links: [0, 50], flows: flows, rounds: 2, burstSeconds: 0.02, profile: profile, direction: .ingress,
                showProgress: false)
            let outcome = try BenchRunner(configuration).run()
            assertDelivered(
                outcome.report, variants: BenchVariant.defaultSelection(for: profile, direction: .ingress).map(\.name),
                links: [0, 50])
            XCTAssertEqual(outcome.report.profile, profile.rawValue)
            XCTAssertEqual(outcome.report.direction, "ingress")
            XCTAssertEqual(BenchSchema.problems(in: try outcome.report.jsonData()), [])
        }
        XCTAssertEqual(Leftovers.now(), before, "the bench left something behind")
    }

    /// `--profile established`: the receiver answers each flow before the
    /// bursts, and every packet still arrives; the Docker ruleset without
    /// links (icc on) delivers as well.
    func testEstablishedProfileAndDockerWithoutLinks() throws {
        try requireRoot("bench smoke run with answered flows")
        let before = Leftovers.now()
        var configuration = BenchConfiguration(
            links: [0, 100], flows: 2, rounds: 2, burstSeconds: 0.02, profile: .established, showProgress: false)
        configuration.variants = try BenchVariant.select(["docker-iptables-nft", "docker-nolinks", "bpfnet-tc"])
        let outcome = try BenchRunner(configuration).run()
        assertDelivered(
            outcome.report, variants: ["bridge", "docker-iptables-nft", "docker-nolinks", "bpfnet-tc"],
            links: [0, 100])
        XCTAssertEqual(outcome.report.profile, "established")
        XCTAssertEqual(BenchSchema.problems(in: try outcome.report.jsonData()), [])
        XCTAssertEqual(Leftovers.now(), before, "the bench left something behind")
    }

    func testMicroChecksEveryVerdictAndCleansUp() throws {
        try requireRoot("bench micro (eBPF test runs)")
        let before = Leftovers.now()
        let report = try MicroBench(MicroConfiguration(repeatCount: 10_000, rounds: 1, links: 100)).run()
        XCTAssertEqual(
            report.results.map { "\($0.program) \($0.packet)" },
            [
                "empty-tc any", "port-tc matching", "port-tc non-matching",
                "empty-xdp any", "port-xdp matching", "port-xdp non-matching",
                "ext-xdp matching", "ext-xdp non-matching",
            ])
        XCTAssertTrue(report.results.allSatisfy { $0.nsPerRun.median > 0 })
        let json = try JSONSerialization.jsonObject(with: report.jsonData()) as? [String: Any]
        XCTAssertEqual(Set(json?.keys.map { $0 } ?? []), ["repeat", "rounds", "links", "results"])
        XCTAssertEqual(Leftovers.now(), before, "bench micro left something behind")
    }

    func testBadInputIsReportedBeforeAnythingIsBuilt() throws {
        try requireRoot("bench input checks (root, so only the input is wrong)")
        let before = Leftovers.now()
        let configuration = BenchConfiguration(links: [100_000], showProgress: false)
        XCTAssertThrowsError(try BenchRunner(configuration).run()) { error in
            XCTAssertTrue((error as? BenchError)?.isBadInput == true, "\(error)")
        }
        XCTAssertEqual(Leftovers.now(), before)
    }
}
