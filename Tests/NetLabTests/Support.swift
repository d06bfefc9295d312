// SPDX-License-Identifier: Apache-2.0

import BPFNetCore
import Foundation
import XCTest

@testable import NetLab

func requireRoot() throws {
    guard geteuid() == 0 else { throw XCTSkip("requires root (network namespaces, raw sockets)") }
}

/// The probe must exist in CI; a missing binary is a failure, not a skip.
func probeRunner(file: StaticString = #filePath, line: UInt = #line) throws -> ProbeRunner {
    do {
        return try ProbeRunner()
    } catch {
        XCTFail("\(error)", file: file, line: line)
        throw error
    }
}

/// Namespaces under /run/netns whose names start with `prefix`.
func namespaces(withPrefix prefix: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
    return names.filter { $0.hasPrefix(prefix) }.sorted()
}

/// Every namespace NetLab could have created in this process.
var ourNamespaces: [String] { namespaces(withPrefix: "bn\(getpid())") }

func processExists(_ pid: pid_t) -> Bool {
    // A zombie still has /proc/PID; its state letter says whether it runs.
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
    return state != "Z" && state != "X"
}

func waitUntil(_ timeout: Duration, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

func assertAll(
    _ results: [ProbeResult], are expected: Reachability,
    file: StaticString = #filePath, line: UInt = #line
) {
    let wrong = results.filter { $0.reachability != expected }
    XCTAssert(wrong.isEmpty, "expected \(expected):\n\(ReachabilityMatrix(wrong))", file: file, line: line)
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}
