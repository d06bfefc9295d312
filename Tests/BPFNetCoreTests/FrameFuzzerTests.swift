import BPFNetTestSupport
import XCTest

@testable import BPFNetCore

final class FrameFuzzerTests: XCTestCase {
    static let state: MapState = {
        var policy = ReferenceVerdictTests.withDB(icc: false, forward: .accept)
        policy.links.append(Link(parent: "web", child: "db"))
        return Sample.state(policy)
    }()

    func testKnownPRNGOutputs() {
        // SplitMix64 reference values for seed 1234567 (from the published C code).
        var splitmix = SplitMix64(seed: 1_234_567)
        XCTAssertEqual(
            [splitmix.next(), splitmix.next(), splitmix.next()],
            [6_457_827_717_110_365_317, 3_203_168_211_198_807_973, 9_817_491_932_198_370_423])
        var a = Xoshiro256StarStar(seed: 42)
        var b = Xoshiro256StarStar(seed: 42)
        XCTAssertEqual((0..<10).map { _ in a.next() }, (0..<10).map { _ in b.next() })
        var bounded = Xoshiro256StarStar(seed: 7)
        for _ in 0..<1000 { XCTAssertLessThan(bounded.below(10), 10) }
        XCTAssertEqual(bounded.below(0), 0)
    }

    func testSameSeedSameFrames() {
        var first = FrameFuzzer(state: Self.state, seed: 99)
        var second = FrameFuzzer(state: Self.state, seed: 99)
        var third = FrameFuzzer(state: Self.state, seed: 100)
        let a = (0..<500).map { _ in first.next() }
        XCTAssertEqual(a, (0..<500).map { _ in second.next() })
        XCTAssertNotEqual(a, (0..<500).map { _ in third.next() })
    }

    func testRespectsLengthLimits() {
        var fuzzer = FrameFuzzer(
            state: Self.state, seed: 1, options: .init(minimumFrameLength: 14, maximumFrameLength: 200))
        for _ in 0..<3000 {
            let frame = fuzzer.next().frame
            XCTAssertGreaterThanOrEqual(frame.count, 14)
            XCTAssertLessThanOrEqual(frame.count, 200)
        }
    }

    /// The generator reaches every parse outcome and every verdict of both
    /// programs, so the differential test exercises every branch.
    func testCoversEveryBranch() {
        var fuzzer = FrameFuzzer(state: Self.state, seed: 2024, options: .init(minimumFrameLength: 0))
        let dataplane = ReferenceDataplane(state: Self.state)
        var malformations = Set<Malformation>()
        var portReasons = Set<Reason>()
        var extReasons = Set<Reason>()
        var kinds = Set<FuzzCase.Kind>()
        for _ in 0..<30_000 {
            let input = fuzzer.next()
            kinds.insert(input.kind)
            let parsed = FrameParser.parse(input.frame)
            if case .malformed(let why) = parsed { malformations.insert(why) }
            portReasons.insert(dataplane.portVerdict(frame: input.frame).reason)
            extReasons.insert(
                dataplane.extVerdict(parsed: parsed, ingressIfindex: input.ingressIfindex) {
                    $0.sourcePort % 2 == 0
                }.reason)
        }
        XCTAssertEqual(kinds, Set(FuzzCase.Kind.allCases))
        XCTAssertEqual(
            malformations,
            [
                .ethernetTruncated, .vlanTruncated, .ipv6Truncated, .ipv4Truncated, .ipv4Version,
                .ipv4HeaderLengthTooSmall, .ipv4OptionsTruncated, .ipv4TotalLengthTooSmall,
                .ipv4TotalLengthTooLarge, .l4Truncated,
            ])
        // Sent as the frame claims: `spoofed` only from ARP whose sender MAC is
        // not the frame's source; `unknown-port` needs another sender.
        XCTAssertEqual(
            portReasons,
            [.nonIP, .host, .link, .linkReverse, .linkFragment, .outside, .ipv6, .icc, .malformed, .encap, .spoofed])
        XCTAssertEqual(
            extReasons,
            [
                .nonIP, .ipv6, .fragment, .published, .forwardAccept, .reply, .related, .local, .source, .malformed,
                .encap,
            ])
    }

    func testICCAndForwardDropAreReachedToo() {
        let dataplane = ReferenceDataplane(state: Sample.state(ReferenceVerdictTests.withDB(icc: true)))
        var fuzzer = FrameFuzzer(state: dataplane.state, seed: 5)
        var port = Set<Reason>()
        var ext = Set<Reason>()
        for _ in 0..<5000 {
            let input = fuzzer.next()
            port.insert(dataplane.portVerdict(frame: input.frame).reason)
            ext.insert(dataplane.extVerdict(frame: input.frame, ingressIfindex: input.ingressIfindex).reason)
        }
        XCTAssertTrue(port.contains(.iccAllowed))
        XCTAssertTrue(ext.contains(.forward))
    }
}
