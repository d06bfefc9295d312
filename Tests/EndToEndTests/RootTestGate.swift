// SPDX-License-Identifier: Apache-2.0

import Foundation
import XCTest

/// Root-only suites skip on a developer's machine without root, but must run
/// in CI: there BPFNET_REQUIRE_ROOT_TESTS=1 turns the skip into a failure.
func requireRoot(_ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
    guard geteuid() != 0 else { return }
    if ProcessInfo.processInfo.environment["BPFNET_REQUIRE_ROOT_TESTS"] == "1" {
        XCTFail("\(what) requires root, and BPFNET_REQUIRE_ROOT_TESTS=1 forbids skipping it", file: file, line: line)
        throw XCTSkip("failed: not root")
    }
    throw XCTSkip("requires root: \(what)")
}
