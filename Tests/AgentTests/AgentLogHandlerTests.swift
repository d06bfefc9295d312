// SPDX-License-Identifier: Apache-2.0
//
// The log lines of `bpfnet run`: one per event, with the level, no raw
// control characters, and journald's priority prefix under systemd.

import BPFNetAgent
import Foundation
import Logging
import XCTest

final class AgentLogHandlerTests: XCTestCase {
    private let date = Date(timeIntervalSince1970: 1_764_936_000)

    func testOneLinePerEventWithItsLevelAndNoEscapeCodes() {
        let message = "apply failed: tc said\nRTNETLINK answers: File exists\n\u{1B}[31mred\u{1B}[0m\tend"
        let line = AgentLogHandler.line(
            level: .error, label: "bpfnet.agent", message: message, metadata: ["container": "web\nx"],
            destination: .stream, date: date)
        XCTAssertEqual(
            line,
            "2025-12-05T12:00:00.000Z error bpfnet.agent: apply failed: tc said\\nRTNETLINK answers: File exists\\n"
                + "\\u{1b}[31mred\\u{1b}[0m\tend container=web\\nx\n")
        XCTAssertEqual(line.filter { $0 == "\n" }.count, 1)
        XCTAssertFalse(line.unicodeScalars.contains("\u{1B}"))
    }

    func testTheJournalGetsThePriorityAndNoTimestamp() {
        let expected: [(Logger.Level, String)] = [
            (.trace, "<7>trace"), (.debug, "<7>debug"), (.info, "<6>info"), (.notice, "<5>notice"),
            (.warning, "<4>warning"), (.error, "<3>error"), (.critical, "<2>critical"),
        ]
        for (level, start) in expected {
            let line = AgentLogHandler.line(
                level: level, label: "bpfnet.run", message: "m", destination: .journal, date: date)
            XCTAssertEqual(line, "\(start) bpfnet.run: m\n")
        }
    }

    func testTheJournalIsRecognisedOnlyWhenStandardErrorIsIt() throws {
        XCTAssertEqual(AgentLogHandler.standardErrorDestination(environment: [:]), .stream)
        XCTAssertEqual(AgentLogHandler.standardErrorDestination(environment: ["JOURNAL_STREAM": "1:2"]), .stream)
        XCTAssertEqual(AgentLogHandler.standardErrorDestination(environment: ["JOURNAL_STREAM": "junk"]), .stream)
        var status = stat()
        XCTAssertEqual(fstat(STDERR_FILENO, &status), 0)
        XCTAssertEqual(
            AgentLogHandler.standardErrorDestination(environment: [
                "JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino)"
            ]),
            .journal)
    }

    func testTheHandlerWritesWhatTheLoggerIsGiven() {
        let lines = LineBox()
        var logger = Logger(label: "bpfnet.test") { label in
            AgentLogHandler(label: label, destination: .journal, write: { lines.append($0) })
        }
        logger.logLevel = .notice
        logger.info("not shown")
        logger.warning("two\nlines")
        XCTAssertEqual(lines.all, ["<4>warning bpfnet.test: two\\nlines\n"])
    }
}

private final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var all: [String] { lock.withLock { lines } }
    func append(_ line: String) { lock.withLock { lines.append(line) } }
}
