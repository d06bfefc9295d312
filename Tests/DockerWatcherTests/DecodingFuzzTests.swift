// SPDX-License-Identifier: Apache-2.0
//
// Docker's answers, mutated at random from the recorded ones: an inspect
// either decodes or throws, and what decodes translates into a policy (or
// names the containers it leaves out) without crashing the agent. Seeded.

import BPFNetCore
import BPFNetTestSupport
import Foundation
import XCTest

@testable import DockerWatcher

final class DecodingFuzzTests: XCTestCase {
    private static let values: [String] = [
        "null", "true", "0", "-1", "4294967296", "1e400", "\"\"", "\"x\"", "[]", "{}", "[null]",
        "\"172.17.0.999\"", "\"02:42:zz:11:00:02\"", "\"80/tcp\"", "\"99999/udp\"", "\"/web:/client/w\"",
        "\"::\"", "\"bridge\"", "\"\\u0000\"", "\"\(String(repeating: "a", count: 5000))\"",
    ]

    /// Replaces the value after a random `"key":` with a token, cuts the text,
    /// or flips bytes.
    private static func mutate(_ data: Data, _ random: inout Xoshiro256StarStar) -> Data {
        var bytes = [UInt8](data)
        switch random.below(4) {
        case 0, 1:
            let text = String(decoding: bytes, as: UTF8.self)
            let keys = text.ranges(of: "\":").map(\.upperBound)
            guard let at = keys.isEmpty ? nil : random.pick(keys) else { return data }
            // The old value runs to the next ',' or '}' at this nesting level (roughly: the next one).
            let rest = text[at...]
            let end = rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex
            let mutated = String(text[..<at]) + random.pick(values) + String(text[end...])
            return Data(mutated.utf8)
        case 2:
            return Data(bytes.prefix(random.int(0...bytes.count)))
        default:
            for _ in 0..<random.int(1...8) where !bytes.isEmpty {
                bytes[random.int(0...(bytes.count - 1))] = random.byte()
            }
            return Data(bytes)
        }
    }

    func testMutatedInspectAnswersDecodeOrThrowAndTranslate() throws {
        let names = try FileManager.default.contentsOfDirectory(
            atPath: Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path
        ).filter { $0.hasPrefix("inspect_") }.sorted()
        XCTAssertFalse(names.isEmpty)
        let seeds = try names.map { try Fixture.data($0) }
        var random = Xoshiro256StarStar(seed: 0xD0C_4E7)
        var decoded: [DockerContainer] = []
        var thrown = 0
        for _ in 0..<3000 {
            let input = Self.mutate(random.pick(seeds), &random)
            do {
                decoded.append(try DockerContainer(inspectJSON: input))
            } catch {
                thrown += 1
                XCTAssertFalse("\(error)".isEmpty)
            }
            if decoded.count >= 40 {
                // What decodes goes into a policy together, as the agent builds it.
                let ports = Dictionary(
                    decoded.map { ($0.id, "veth\($0.id.prefix(7))") }, uniquingKeysWith: { first, _ in first })
                let snapshot = DockerPolicyTranslator.snapshot(of: decoded, ports: ports)
                let policy = snapshot.applied(to: Policy(icc: false))
                _ = policy.normalized().problems(bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16"))
                decoded.removeAll()
            }
        }
        XCTAssertGreaterThan(thrown, 300, "the mutations must break some answers")
        XCTAssertLessThan(thrown, 2900, "and leave others decodable")
    }
}
