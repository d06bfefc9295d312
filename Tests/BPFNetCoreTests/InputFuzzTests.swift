// SPDX-License-Identifier: Apache-2.0
//
// The control plane's text inputs, mutated at random from the examples the
// repository ships: every policy file either loads (and then compiles or is
// refused by the compiler with a reason) or is refused with a message that
// names the file, and no input crashes the process. Seeded, so a failure
// reproduces: the seed and the input are printed.

import BPFNetTestSupport
import Foundation
import XCTest

@testable import BPFNetCore

final class InputFuzzTests: XCTestCase {
    /// Tokens that mean something to YAML or to bpfnet's readers.
    private static let tokens = [
        "", " ", ":", "- ", "[", "]", "{", "}", ",", "#", "&a", "*a", "!!binary", "!!int", "~", "null", "true",
        "false", "yes", "0", "-1", "65535", "65536", "4294967296", "1e9", "0x10", "nan", "'", "\"", "\\", "\t",
        "10.0.0.0/8", "10.0.0.0/33", "256.1.1.1", "::", "::1", "2001:db8::/129", "fe80::%eth0", "1::2::3",
        "02:42:ac:11:00:02", "ff:ff:ff:ff:ff:ff", "80/tcp", "80/sctp", "0/udp", "8080:80", "[::]:8080:80",
        "veth+", "a\"b", "docker0", "eth0", String(repeating: "x", count: 300), "\u{0}", "é", "📦",
        "icc", "bridge", "containers", "links", "extInterfaces", "allowSources", "published", "exposed",
    ]

    private static func seeds() throws -> [String] {
        let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")
        return try ["policy-file-example.yaml", "run-settings.yaml", "typos.yaml"].map {
            try String(contentsOf: fixtures.appendingPathComponent($0), encoding: .utf8)
        }
    }

    private static func mutate(_ text: String, _ random: inout Xoshiro256StarStar) -> String {
        var lines = text.components(separatedBy: "\n")
        for _ in 0..<random.int(1...4) {
            guard !lines.isEmpty else { break }
            let index = random.int(0...(lines.count - 1))
            switch random.below(8) {
            case 0: lines.remove(at: index)
            case 1: lines.insert(lines[index], at: index)
            case 2: lines.swapAt(index, random.int(0...(lines.count - 1)))
            case 3: lines[index] = String(repeating: " ", count: random.int(0...6)) + lines[index]
            case 4: lines[index] = String(lines[index].dropFirst(random.int(0...4)))
            case 5:
                // Replace one word (a key, a value) with a token.
                var words = lines[index].split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                if !words.isEmpty { words[random.int(0...(words.count - 1))] = random.pick(tokens) }
                lines[index] = words.joined(separator: " ")
            case 6:
                let cut = random.int(0...lines[index].count)
                let line = lines[index]
                lines[index] = String(line.prefix(cut)) + random.pick(tokens) + String(line.dropFirst(cut))
            default:
                lines = Array(lines.prefix(index))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Host facts that know every interface the policy names.
    private static func facts(for policy: Policy) -> HostFacts {
        let names = [policy.bridge] + policy.extInterfaces.map(\.name) + policy.containers.map(\.port)
        var interfaces: [String: UInt32] = [:]
        for name in names where interfaces[name] == nil { interfaces[name] = UInt32(10 + interfaces.count) }
        return HostFacts(
            bridgeIfindex: interfaces[policy.bridge]!, bridgeAddress: IPv4InterfaceAddress("172.17.0.1/16"),
            interfaces: interfaces)
    }

    /// FUZZ_SEED=N picks another seed (for a longer hunt, raise the count).
    func testMutatedPolicyFilesLoadOrAreRefusedByName() throws {
        let seeds = try Self.seeds()
        var random = Xoshiro256StarStar(
            seed: UInt64(ProcessInfo.processInfo.environment["FUZZ_SEED"] ?? "") ?? 0xB9F_0E7)
        var loaded = 0
        var refused = 0
        for iteration in 0..<2500 {
            let input = Self.mutate(random.pick(seeds), &random)
            let kind: PolicyFileKind = random.chance(20) ? .settingsOnly : .complete
            do {
                let policy = try PolicyFile.load(yaml: input, file: "fuzz.yaml", kind: kind)
                loaded += 1
                // What loads must compile, or be refused with problems named.
                do {
                    _ = try PolicyCompiler.compile(policy, facts: Self.facts(for: policy))
                } catch {
                    XCTAssertFalse(error.problems.isEmpty, "iteration \(iteration): refused without a reason\n\(input)")
                }
            } catch {
                refused += 1
                let message = error.description
                XCTAssertTrue(
                    message.contains("fuzz.yaml") && !error.problems.isEmpty,
                    "iteration \(iteration): an error that names no file or problem: \(message)\n\(input)")
            }
        }
        // Both outcomes must be common, or the mutations test nothing.
        XCTAssertGreaterThan(loaded, 100)
        XCTAssertGreaterThan(refused, 500)
    }

    func testAddressParsersTakeAnyText() {
        var random = Xoshiro256StarStar(seed: 7)
        let alphabet = Array("0123456789abcdefABCDEF:./%-xg ")
        for _ in 0..<20000 {
            let text =
                random.chance(30)
                ? random.pick(Self.tokens)
                : String((0..<random.int(0...48)).map { _ in random.pick(alphabet) })
            // Whatever parses prints back as something that parses to the same value.
            if let v6 = IPv6Address(text) { XCTAssertEqual(IPv6Address(v6.description), v6, text) }
            if let cidr = IPv6CIDR(text) { XCTAssertEqual(IPv6CIDR(cidr.description), cidr, text) }
            if let v4 = IPv4CIDR(text) { XCTAssertEqual(IPv4CIDR(v4.description), v4, text) }
            if let prefix = SourcePrefix(text) { XCTAssertEqual(SourcePrefix(prefix.description), prefix, text) }
            _ = MACAddress(text)
            _ = IPv4Address(text)
            _ = InterfaceName.problem(text)
            _ = NetfilterName.problem(text)
        }
    }
}
