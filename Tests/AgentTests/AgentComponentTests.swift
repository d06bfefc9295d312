// SPDX-License-Identifier: Apache-2.0
//
// The agent's parts on their own, without the actor: each is a value or a
// small class the actor owns, so its rules can be checked one by one.

@testable import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
@testable import DockerWatcher
import Foundation
import Logging
import SystemPackage
import XCTest

final class ConcurrentMapTests: XCTestCase {
    /// What the transforms saw, shared between them.
    private final class Probe: @unchecked Sendable {
        private let lock = NSLock()
        private var inFlight = 0
        private(set) var maximum = 0
        private(set) var finished = 0
        /// Element → how many had finished when it started.
        private(set) var finishedAtStart: [Int: Int] = [:]
        private(set) var calls: [Int] = []

        var current: Int { lock.withLock { inFlight } }

        func begin(_ element: Int) {
            lock.withLock {
                inFlight += 1
                maximum = max(maximum, inFlight)
                finishedAtStart[element] = finished
                calls.append(element)
            }
        }

        func end() {
            lock.withLock {
                inFlight -= 1
                finished += 1
            }
        }
    }

    func testNeverMoreThanTheLimitAndStartedInOrder() async throws {
        for limit in [1, 3, 8] {
            let probe = Probe()
            let inputs = Array(0..<20)
            let results = await inputs.concurrentMap(limit: limit) { element -> Int in
                probe.begin(element)
                // The first ones wait until the limit is reached, so a helper
                // that ran fewer at once would stall here and one that ran more would show.
                if element < limit {
                    let deadline = ContinuousClock.now + .seconds(5)
                    while probe.current < limit, ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(1))
                    }
                }
                try? await Task.sleep(for: .milliseconds(element % 3))
                probe.end()
                return element * element
            }
            XCTAssertEqual(results, Dictionary(uniqueKeysWithValues: inputs.map { ($0, $0 * $0) }))
            XCTAssertEqual(probe.maximum, limit, "limit \(limit)")
            // Element i starts only after i - limit + 1 others finished: in sequence order, one for one.
            for (element, finished) in probe.finishedAtStart {
                XCTAssertGreaterThanOrEqual(finished, element - limit + 1, "limit \(limit), element \(element)")
            }
        }
    }

    func testResultsAreKeyedByInputAndEachDistinctInputRunsOnce() async {
        let probe = Probe()
        let results = await [3, 1, 2, 3, 1].concurrentMap(limit: 2) { element -> String in
            probe.begin(element)
            probe.end()
            return "#\(element)"
        }
        XCTAssertEqual(results, [1: "#1", 2: "#2", 3: "#3"])
        XCTAssertEqual(probe.calls.sorted(), [1, 2, 3])
        let none = await [Int]().concurrentMap(limit: 4) { $0 }
        XCTAssertTrue(none.isEmpty)
        let zeroLimit = await [1, 2].concurrentMap(limit: 0) { $0 + 1 }
        XCTAssertEqual(zeroLimit, [1: 2, 2: 3], "a limit below one runs one at a time")
    }

    private struct Refused: Error, Equatable {
        var element: Int
    }

    func testTheFirstFailureIsThrownAndCancelsTheRest() async {
        let probe = Probe()
        let clock = ContinuousClock()
        let started = clock.now
        do throws(Refused) {
            _ = try await Array(0..<10).concurrentMap(limit: 2) { element throws(Refused) -> Int in
                probe.begin(element)
                defer { probe.end() }
                if element == 1 { throw Refused(element: 1) }
                try? await Task.sleep(for: .seconds(10))
                return element
            }
            XCTFail("expected the failure")
        } catch {
            XCTAssertEqual(error, Refused(element: 1), "typed: the transform's own error")
        }
        XCTAssertLessThan(clock.now - started, .seconds(5), "the sleeping one was cancelled")
        XCTAssertLessThanOrEqual(probe.calls.count, 3, "nothing new starts after a failure: \(probe.calls)")
    }
}
