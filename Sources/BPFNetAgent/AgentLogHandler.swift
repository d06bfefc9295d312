// SPDX-License-Identifier: Apache-2.0
//
// How `bpfnet run` writes its log to standard error: one line per event,
// whatever the message holds, with its level. swift-log's StreamLogHandler
// already writes one line with the level and no colours, but a message with
// a newline in it (a command's stderr, a verifier log inside an error) becomes
// several lines, which journald stores as several entries, the later ones
// without a level. Under systemd (stderr is the journal: $JOURNAL_STREAM names
// it) each line starts with its syslog priority, `<3>` for an error, which
// journald takes as the entry's priority (`journalctl -p err`) and strips;
// journald keeps its own timestamp, so the line has none.

import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

public struct AgentLogHandler: LogHandler {
    /// Where the lines go, which decides their shape.
    public enum Destination: Sendable, Hashable {
        /// The journal: `<priority>level label: message`, no timestamp.
        case journal
        /// A terminal, a file or a pipe: `timestamp level label: message`.
        case stream
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String
    private let destination: Destination
    private let write: @Sendable (String) -> Void

    public init(
        label: String, destination: Destination = Self.standardErrorDestination(),
        write: @escaping @Sendable (String) -> Void = Self.writeToStandardError
    ) {
        self.label = label
        self.destination = destination
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        write(
            Self.line(
                level: event.level, label: label, message: "\(event.message)", metadata: all,
                destination: destination, date: Date()))
    }

    /// One event as one line, its newline included.
    public static func line(
        level: Logger.Level, label: String, message: String, metadata: Logger.Metadata = [:],
        destination: Destination, date: Date
    ) -> String {
        var text = "\(level) \(label): \(oneLine(message))"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            text += " \(oneLine(key))=\(oneLine("\(value)"))"
        }
        switch destination {
        case .journal: return "<\(syslogPriority(level))>\(text)\n"
        case .stream: return "\(timestamp(date)) \(text)\n"
        }
    }

    /// Line breaks and other control characters (an ANSI colour's ESC among
    /// them) written as escapes, so that nothing a message carries in splits
    /// the line or reaches a terminal or the journal raw.
    static func oneLine(_ text: String) -> String {
        var result = ""
        result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result.unicodeScalars.append(scalar)
            case _ where scalar.properties.generalCategory == .control:
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// syslog(3)'s priorities, as sd-daemon(3) prefixes take them.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// `.journal` when standard error is the stream systemd connected to the
    /// journal ($JOURNAL_STREAM is its device and inode, systemd.exec(5)),
    /// else `.stream`. A child whose stderr was redirected inherits the
    /// variable but not the stream, hence the comparison.
    public static func standardErrorDestination(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> Destination {
        guard let stream = environment["JOURNAL_STREAM"] else { return .stream }
        let parts = stream.split(separator: ":").compactMap { UInt64($0) }
        var status = stat()
        guard parts.count == 2, fstat(STDERR_FILENO, &status) == 0 else { return .stream }
        return UInt64(status.st_dev) == parts[0] && UInt64(status.st_ino) == parts[1] ? .journal : .stream
    }

    /// One write(2) per line: lines of concurrent events do not interleave.
    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        let bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}
