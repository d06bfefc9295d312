// SPDX-License-Identifier: Apache-2.0
//
// libbpf prints warnings (and, on a failed load, the verifier log) through one
// process-wide callback, `libbpf_set_print()`. We install ours once and route
// each message either into the error of the call that is running on this
// thread (so a failed load explains itself) or to a caller-chosen handler.

import CLibBPF
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// How loud a libbpf message is (`enum libbpf_print_level`).
public enum LibBPFLogLevel: Int, Sendable, Comparable, CustomStringConvertible {
    case warning = 0
    case info = 1
    case debug = 2

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .warning: "warning"
        case .info: "info"
        case .debug: "debug"
        }
    }
}

/// Where libbpf's messages go.
///
/// libbpf writes warnings and info to standard error by default. Once the BPF
/// module is used, its own callback (`libbpf_set_print`) is installed instead:
///
/// - messages printed while a BPF call runs on the same thread are collected
///   into that call's `BPFError` if it fails (`BPFError.libbpfLog`,
///   `BPFError.verifierLog`) and are not logged a second time;
/// - every other message (and those of calls that succeed) goes to
///   `handler`, which by default writes warnings and info to standard error
///   prefixed "libbpf: ", as libbpf itself does.
///
/// Route them into your logger with `LibBPFLog.setHandler { level, message in ... }`,
/// or drop them with `LibBPFLog.silence()`.
public enum LibBPFLog {
    /// Receives one message, without libbpf's "libbpf: " prefix and trailing
    /// newline. Called on the thread that made the libbpf call, outside any lock.
    public typealias Handler = @Sendable (LibBPFLogLevel, String) -> Void

    /// libbpf's own default: warnings and info to standard error.
    public static let standardError: Handler = { level, message in
        guard level != .debug else { return }
        var line = "libbpf: \(message)\n"
        line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }

    /// Sends libbpf's messages to `handler` instead of standard error; `nil`
    /// drops them. Process-wide (libbpf has one print callback per process).
    public static func setHandler(_ handler: Handler?) {
        installIfNeeded()
        state.withLock { $0.handler = handler }
    }

    /// Drops libbpf's messages (errors still carry the ones that explain them).
    public static func silence() {
        setHandler(nil)
    }

    // MARK: - Internals

    struct Message: Sendable {
        var level: LibBPFLogLevel
        var text: String
    }

    private struct State {
        var installed = false
        var handler: Handler? = LibBPFLog.standardError
        /// Per thread (pthread_self), a stack of capture buffers.
        var captures: [UInt: [[Message]]] = [:]
    }

    private static let state = Mutex(State())

    /// Installs our print callback once; idempotent and thread-safe.
    static func installIfNeeded() {
        let install = state.withLock { state -> Bool in
            if state.installed { return false }
            state.installed = true
            return true
        }
        if install {
            _ = libbpf_set_print(libbpfPrintCallback)
        }
    }

    /// Runs `body` and returns what libbpf printed on this thread meanwhile.
    /// The caller decides: attach the messages to an error, or `forward` them.
    static func capture<R>(_ body: () throws -> R) rethrows -> (R, CapturedLog) {
        installIfNeeded()
        let thread = currentThreadKey()
        state.withLock { $0.captures[thread, default: []].append([]) }
        func pop() -> [Message] {
            state.withLock { state in
                let lines = state.captures[thread]?.popLast() ?? []
                if state.captures[thread]?.isEmpty == true { state.captures[thread] = nil }
                return lines
            }
        }
        let result: R
        do {
            result = try body()
        } catch {
            _ = pop()
            throw error
        }
        return (result, CapturedLog(messages: pop()))
    }

    fileprivate static func dispatch(_ level: LibBPFLogLevel, _ text: String) {
        let thread = currentThreadKey()
        let handler = state.withLock { state -> Handler? in
            if var stack = state.captures[thread], !stack.isEmpty {
                stack[stack.count - 1].append(Message(level: level, text: text))
                state.captures[thread] = stack
                return nil
            }
            return state.handler
        }
        handler?(level, text)
    }

    /// Forwards messages that did not end up in an error.
    static func forward(_ messages: [Message]) {
        guard let handler = state.withLock({ $0.handler }) else { return }
        for message in messages { handler(message.level, message.text) }
    }
}

/// Identifies the calling thread for the capture table (pthread_t is an
/// integer on Linux).
private func currentThreadKey() -> UInt {
    UInt(pthread_self())
}

/// What libbpf printed during one captured call.
struct CapturedLog: Sendable {
    var messages: [LibBPFLog.Message]

    static let beginMarker = "-- BEGIN PROG LOAD LOG --"
    static let endMarker = "-- END PROG LOAD LOG --"

    /// Warnings and info, minus the verifier log blocks and debug chatter.
    var lines: [String] {
        messages.filter { $0.level != .debug && !$0.text.contains(CapturedLog.beginMarker) }
            .map(\.text)
    }

    /// The verifier log libbpf printed between its BEGIN/END markers, if any.
    var verifierLog: String? {
        for message in messages.reversed() {
            guard let begin = message.text.firstRange(of: CapturedLog.beginMarker) else { continue }
            var body = message.text[begin.upperBound...]
            if let end = body.firstRange(of: CapturedLog.endMarker) { body = body[..<end.lowerBound] }
            let log = body.drop(while: { $0 == "\n" })
            return log.isEmpty ? nil : String(log)
        }
        return nil
    }

    /// Sends the messages on to the handler (the call succeeded).
    func forward() { LibBPFLog.forward(messages) }

    /// The first message containing `needle`.
    func first(containing needle: String) -> String? {
        messages.first(where: { $0.text.contains(needle) })?.text
    }
}

/// The C callback. It must not capture context (it is a C function pointer),
/// so it reaches the router through the static state above.
private let libbpfPrintCallback: libbpf_print_fn_t = { level, format, arguments in
    guard let format, let arguments else { return 0 }
    // Most messages are one short line; the verifier log can be megabytes.
    let text: String = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 512) { small in
        let needed = Int(bpfnet_vsnprintf_copy(small.baseAddress, small.count, format, arguments))
        if needed < small.count {
            return String(cString: small.baseAddress!)
        }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: needed + 1) { large in
            _ = bpfnet_vsnprintf_copy(large.baseAddress, large.count, format, arguments)
            return String(cString: large.baseAddress!)
        }
    }
    var message = Substring(text)
    if message.hasPrefix("libbpf: ") { message = message.dropFirst("libbpf: ".count) }
    while message.last == "\n" { message = message.dropLast() }
    let swiftLevel: LibBPFLogLevel
    switch level {
    case LIBBPF_WARN: swiftLevel = .warning
    case LIBBPF_INFO: swiftLevel = .info
    default: swiftLevel = .debug
    }
    LibBPFLog.dispatch(swiftLevel, String(message))
    return 0
}
