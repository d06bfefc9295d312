// SPDX-License-Identifier: Apache-2.0
//
// `GET /events`: newline-delimited JSON objects, read as they arrive. The framing is the
// newline, not the JSON braces: a line that is not a valid event is reported and skipped, and
// the next line starts clean, so garbage can never desynchronise the events after it.

import BPFNetCore
import Foundation
import NIOCore

/// `Type` of an event; only containers and networks concern the policy.
public enum DockerEventType: Hashable, Sendable, CustomStringConvertible {
    case container
    case network
    case other(String)

    public init(rawValue: String) {
        switch rawValue {
        case "container": self = .container
        case "network": self = .network
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .container: "container"
        case .network: "network"
        case .other(let value): value
        }
    }

    public var description: String { rawValue }
}

/// `Action` of an event. The ones a control plane acts on have cases; every other action
/// (`create`, `kill`, `exec_start: sh`, `health_status: healthy`, ...) is passed through as `.other`.
public enum DockerEventAction: Hashable, Sendable, CustomStringConvertible {
    case start, die, stop, destroy, restart, connect, disconnect, create
    case other(String)

    public init(rawValue: String) {
        switch rawValue {
        case "start": self = .start
        case "die": self = .die
        case "stop": self = .stop
        case "destroy": self = .destroy
        case "restart": self = .restart
        case "connect": self = .connect
        case "disconnect": self = .disconnect
        case "create": self = .create
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .start: "start"
        case .die: "die"
        case .stop: "stop"
        case .destroy: "destroy"
        case .restart: "restart"
        case .connect: "connect"
        case .disconnect: "disconnect"
        case .create: "create"
        case .other(let value): value
        }
    }

    public var description: String { rawValue }
}

/// One event. Read from `Type`, `Action`, `Actor.ID` and `Actor.Attributes`, which every API
/// version since 1.22 sends; the legacy `status`/`id`/`from` (gone in 1.52) are only a fallback.
public struct DockerEvent: Hashable, Sendable, CustomStringConvertible {
    public var type: DockerEventType
    public var action: DockerEventAction
    /// `Actor.ID`: the container's ID for container events, the network's for network events.
    public var actorID: String
    /// `Actor.Attributes`: `name`, `image`, `exitCode`, labels; for network events `container`,
    /// `name` (the network) and `type` (its driver).
    public var attributes: [String: String]
    /// `timeNano`, else `time` in nanoseconds; nil when the daemon sent neither.
    public var timeNano: Int64?

    public init(
        type: DockerEventType, action: DockerEventAction, actorID: String,
        attributes: [String: String] = [:], timeNano: Int64? = nil
    ) {
        self.type = type
        self.action = action
        self.actorID = actorID
        self.attributes = attributes
        self.timeNano = timeNano
    }

    /// The container the event is about: the actor of a container event, the `container`
    /// attribute of a network event.
    public var containerID: String? {
        switch type {
        case .container: actorID
        case .network: attributes["container"]
        case .other: nil
        }
    }

    /// The container's name (container events carry it; network events do not).
    public var containerName: String? { type == .container ? attributes["name"] : nil }

    /// The network's name, for network events.
    public var networkName: String? { type == .network ? attributes["name"] : nil }

    /// A network event on the default bridge (`name` "bridge"; user-defined bridge networks
    /// have the same driver `type`, so the driver does not tell).
    public var isDefaultBridgeNetworkEvent: Bool { type == .network && networkName == dockerDefaultBridgeNetwork }

    /// A network event about a bridge-driver network (`type` attribute "bridge"); an event
    /// without the attribute counts as one, to be safe.
    public var isBridgeNetworkEvent: Bool {
        type == .network && (attributes["type"] ?? dockerBridgeDriver) == dockerBridgeDriver
    }

    /// `exitCode` of a container `die`.
    public var exitCode: Int? { attributes["exitCode"].flatMap { Int($0) } }

    public var description: String {
        var text = "\(type) \(action) \(actorID.prefix(12))"
        if let name = containerName ?? networkName { text += " (\(name))" }
        if type == .network, let container = attributes["container"] { text += " container=\(container.prefix(12))" }
        return text
    }

    /// Decodes one event object.
    public init(json data: Data) throws {
        let raw = try decodeJSON(RawEvent.self, from: data, what: "event")
        let typeText = raw.type ?? (raw.status != nil ? "container" : nil)
        guard let typeText, !typeText.isEmpty else {
            throw DockerError.decoding(what: "event", field: "Type", reason: "missing")
        }
        guard let actionText = raw.action ?? raw.status, !actionText.isEmpty else {
            throw DockerError.decoding(what: "event", field: "Action", reason: "missing")
        }
        guard let actorID = raw.actor?.id ?? raw.id, !actorID.isEmpty else {
            throw DockerError.decoding(what: "event", field: "Actor.ID", reason: "missing")
        }
        var nanos = raw.timeNano
        if nanos == nil, let seconds = raw.time {
            nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue
        }
        self.init(
            type: DockerEventType(rawValue: typeText), action: DockerEventAction(rawValue: actionText),
            actorID: actorID, attributes: raw.actor?.attributes ?? [:], timeNano: nanos)
    }
}

struct RawEvent: Decodable {
    struct Actor: Decodable {
        var id: String?
        var attributes: [String: String]?
        enum CodingKeys: String, CodingKey { case id = "ID", attributes = "Attributes" }
    }
    var type: String?
    var action: String?
    var actor: Actor?
    var status: String?
    var id: String?
    var time: Int64?
    var timeNano: Int64?
    enum CodingKeys: String, CodingKey {
        case type = "Type", action = "Action", actor = "Actor", status, id, time, timeNano
    }
}

/// An undecodable line of the event stream; the stream goes on after it.
public struct DockerMalformedEvent: Hashable, Sendable, CustomStringConvertible {
    /// The line, cut to its first 256 characters.
    public var line: String
    public var reason: String

    public init(line: String, reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { "undecodable docker event (\(reason)): \(line)" }
}

/// What the event stream yields: an event, or a line the consumer should log and skip.
public enum DockerEventItem: Hashable, Sendable {
    case event(DockerEvent)
    case malformed(DockerMalformedEvent)

    public var event: DockerEvent? {
        if case .event(let event) = self { return event }
        return nil
    }
}

/// The `filters` query parameter of `GET /events`: values in one key are OR'ed, keys AND'ed.
public struct DockerEventFilters: Hashable, Sendable {
    public var filters: [String: [String]]

    public init(_ filters: [String: [String]]) { self.filters = filters }

    /// Container and network events that change what the policy holds. `create` and
    /// `destroy` match both types (a container's create changes nothing; a network's does):
    /// consumers check the type as well.
    public static let bridgePolicy = DockerEventFilters([
        "type": ["container", "network"],
        "event": ["start", "die", "stop", "destroy", "connect", "disconnect", "restart", "create"],
    ])

    /// Compact JSON with sorted keys, as the query parameter carries it.
    public var json: String { filtersJSON(filters) }
}

/// The Engine API's `filters` parameter: a JSON `map[string][]string`.
func filtersJSON(_ filters: [String: [String]]) -> String {
    let data = try? JSONSerialization.data(withJSONObject: filters, options: [.sortedKeys])
    return data.flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
}

// MARK: - Framing

/// Splits a byte stream into lines. Chunk boundaries fall anywhere: inside an object, between
/// several objects, inside a multi-byte character.
struct NDJSONFramer {
    /// A longer line is dropped whole (reported once), so a daemon that never sends a newline
    /// cannot grow the buffer without bound.
    let maxLineLength: Int
    private var buffer: [UInt8] = []
    private var discarding = false

    enum Frame: Equatable {
        case line([UInt8])
        case oversized(prefix: [UInt8])
    }

    init(maxLineLength: Int = 1 << 20) {
        self.maxLineLength = maxLineLength
    }

    mutating func push(_ bytes: some Collection<UInt8>) -> [Frame] {
        var frames: [Frame] = []
        var start = bytes.startIndex
        while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
            if discarding {
                discarding = false
            } else {
                buffer.append(contentsOf: bytes[start..<newline])
                if let frame = takeLine() { frames.append(frame) }
            }
            buffer.removeAll(keepingCapacity: true)
            start = bytes.index(after: newline)
        }
        if !discarding {
            buffer.append(contentsOf: bytes[start...])
            if buffer.count > maxLineLength {
                frames.append(.oversized(prefix: Array(buffer.prefix(256))))
                buffer.removeAll()
                discarding = true
            }
        }
        return frames
    }

    /// The last line when the stream ends without a newline after it.
    mutating func finish() -> Frame? {
        defer { buffer.removeAll() }
        return discarding ? nil : takeLine()
    }

    /// The buffered line without the record separator json-seq puts first and the CR of CRLF;
    /// nil when only whitespace is left.
    private func takeLine() -> Frame? {
        var slice = buffer[...]
        while let first = slice.first,
            first == 0x1E || first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") || first == UInt8(ascii: "\r")
        {
            slice = slice.dropFirst()
        }
        while let last = slice.last,
            last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || last == UInt8(ascii: "\t")
        {
            slice = slice.dropLast()
        }
        return slice.isEmpty ? nil : .line(Array(slice))
    }
}

func decodeEventLine(_ frame: NDJSONFramer.Frame) -> DockerEventItem {
    switch frame {
    case .line(let bytes):
        do {
            return .event(try DockerEvent(json: Data(bytes)))
        } catch let error as DockerError {
            let reason: String
            if case .decoding(_, let field, let detail) = error {
                reason = field.isEmpty ? detail : "field \(field): \(detail)"
            } else {
                reason = error.description
            }
            return .malformed(DockerMalformedEvent(line: excerpt(bytes), reason: reason))
        } catch {
            return .malformed(DockerMalformedEvent(line: excerpt(bytes), reason: "\(error)"))
        }
    case .oversized(let prefix):
        return .malformed(DockerMalformedEvent(line: excerpt(prefix), reason: "line longer than the limit; dropped"))
    }
}

private func excerpt(_ bytes: [UInt8]) -> String {
    String(decoding: bytes.prefix(256), as: UTF8.self)
}

// MARK: - The stream

/// The events of one `GET /events` request, decoded as they arrive.
///
/// The sequence never ends quietly while the daemon is there: when the daemon closes the
/// stream or the connection breaks, iteration throws `DockerError.eventStreamEnded`, and the
/// consumer reconnects and resynchronises. Cancelling the consuming task ends it without error.
/// A line that is not an event is yielded as `.malformed` and the stream goes on.
/// The next chunk is read only when the consumer asks for the next item (backpressure).
public struct DockerEventSequence<Chunks: AsyncSequence>: AsyncSequence where Chunks.Element == ByteBuffer {
    public typealias Element = DockerEventItem

    let chunks: Chunks
    /// For messages: the daemon's address.
    let host: String
    let maxLineLength: Int

    /// Decodes events from any source of byte chunks (the HTTP body; tests feed their own).
    public init(chunks: Chunks, host: String, maxLineLength: Int = 1 << 20) {
        self.chunks = chunks
        self.host = host
        self.maxLineLength = maxLineLength
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: chunks.makeAsyncIterator(), host: host, framer: NDJSONFramer(maxLineLength: maxLineLength))
    }

    public struct Iterator: AsyncIteratorProtocol {
        enum State {
            case reading
            /// Deliver what is pending, then throw this.
            case ending(DockerError)
            case done
        }

        var base: Chunks.AsyncIterator
        let host: String
        var framer: NDJSONFramer
        var pending: [DockerEventItem] = []
        var pendingIndex = 0
        var state = State.reading

        init(base: Chunks.AsyncIterator, host: String, framer: NDJSONFramer) {
            self.base = base
            self.host = host
            self.framer = framer
        }

        public mutating func next() async throws -> DockerEventItem? {
            while true {
                if pendingIndex < pending.count {
                    defer { pendingIndex += 1 }
                    return pending[pendingIndex]
                }
                pending.removeAll(keepingCapacity: true)
                pendingIndex = 0
                switch state {
                case .reading:
                    break
                case .ending(let error):
                    state = .done
                    throw error
                case .done:
                    return nil
                }

                let chunk: ByteBuffer?
                do {
                    chunk = try await base.next()
                } catch {
                    state = .done
                    if error is CancellationError || Task.isCancelled { return nil }
                    // A line cut off by a broken connection is incomplete: it is not delivered.
                    throw DockerError.eventStreamEnded(host: host, reason: describeTransportError(error))
                }
                guard let chunk else {
                    if Task.isCancelled {
                        state = .done
                        return nil
                    }
                    let ended = DockerError.eventStreamEnded(host: host, reason: "the daemon closed the stream")
                    if let last = framer.finish() {
                        pending = [decodeEventLine(last)]
                        state = .ending(ended)
                        continue
                    }
                    state = .done
                    throw ended
                }
                pending = framer.push(chunk.readableBytesView).map(decodeEventLine)
            }
        }
    }
}

extension DockerEventSequence: Sendable where Chunks: Sendable {}
