// SPDX-License-Identifier: Apache-2.0
//
// The HTTP endpoint of `bpfnet run --metrics-address`: `GET /metrics` answers
// with the exposition the render closure builds for that very scrape; every
// other path is 404, every other method 405. SwiftNIO's HTTP/1 codec parses
// the requests (keep-alive and pipelining included); this file only routes.

import NIOCore
import NIOHTTP1
import NIOPosix

/// Where the endpoint listens: "127.0.0.1:9469", "[::1]:9469", or ":9469"
/// (loopback, the default host).
public struct MetricsAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public static let defaultHost = "127.0.0.1"

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(MetricsAddressError) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw MetricsAddressError(text: text)
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else {
                throw MetricsAddressError(text: text)
            }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let number = Int(port), (0...65535).contains(number) else { throw MetricsAddressError(text: text) }
        self.host = host.isEmpty ? Self.defaultHost : String(host)
        self.port = number
    }

    /// Whether the host is a loopback address (127.0.0.0/8, ::1, localhost).
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct MetricsAddressError: Error, CustomStringConvertible {
    public var text: String
    public var description: String {
        "--metrics-address '\(text)': expected HOST:PORT (127.0.0.1:9469, [::1]:9469) or :PORT for loopback"
    }
}

/// An HTTP/1.1 server with one resource, `/metrics`.
public final class MetricsServer: Sendable {
    /// Builds the exposition for one scrape.
    public typealias Render = @Sendable () async -> [UInt8]
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    private let channel: NIOAsyncChannel<Connection, Never>
    private let render: Render

    /// The address it listens on (the port the kernel chose for port 0).
    public let localAddress: SocketAddress?

    private init(channel: NIOAsyncChannel<Connection, Never>, render: @escaping Render) {
        self.channel = channel
        self.render = render
        localAddress = channel.channel.localAddress
    }

    /// Binds now (so that a taken port fails at start); `run()` serves.
    public static func bind(
        _ address: MetricsAddress, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        render: @escaping Render
    ) async throws -> MetricsServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: address.host, port: address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
        return MetricsServer(channel: channel, render: render)
    }

    /// Serves until the task is cancelled, then closes the socket.
    public func run() async throws {
        let render = render
        try await withThrowingDiscardingTaskGroup { group in
            try await channel.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await Self.serve(connection, render: render) }
                }
            }
        }
    }

    /// Answers the requests of one connection, in order, until it closes.
    private static func serve(_ connection: Connection, render: Render) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            for try await part in inbound {
                switch part {
                case .head(let request):
                    head = request
                case .body:
                    continue
                case .end:
                    guard let request = head else { return }
                    head = nil
                    let response = await respond(method: request.method, uri: request.uri, render: render)
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: response.contentType)
                    headers.add(name: "Content-Length", value: String(response.body.count))
                    if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
                    try await outbound.write(
                        .head(HTTPResponseHead(version: request.version, status: response.status, headers: headers)))
                    if request.method != .HEAD {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: response.body))))
                    }
                    try await outbound.write(.end(nil))
                    if !request.isKeepAlive { return }
                }
            }
        }
    }

    /// What the server answers to a request; apart from the socket, for the tests.
    public static func respond(
        method: HTTPMethod, uri: String, render: Render
    ) async -> (status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return (.notFound, "text/plain; charset=utf-8", Array("not found: bpfnet serves /metrics\n".utf8))
        }
        guard method == .GET || method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", Array("only GET and HEAD\n".utf8))
        }
        return (.ok, contentType, await render())
    }
}
