// SPDX-License-Identifier: Apache-2.0
//
// The Engine API client: async-http-client over the daemon's unix socket (or plain TCP),
// version-prefixed paths after negotiating with `GET /_ping`, a deadline on every request and
// response, none on the event stream.

import AsyncHTTPClient
import BPFNetCore
import Foundation
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The event stream of a live daemon (see `DockerEventSequence`).
public typealias DockerEventStream = DockerEventSequence<HTTPClientResponse.Body>

/// What `GET /_ping` tells.
public struct DockerPing: Hashable, Sendable {
    /// The `Api-Version` header: the newest version the daemon speaks.
    public var apiVersion: DockerAPIVersion?
    /// The `Server` header, e.g. "Docker/20.10.24+dfsg1 (linux)".
    public var server: String?

    public init(apiVersion: DockerAPIVersion?, server: String?) {
        self.apiVersion = apiVersion
        self.server = server
    }
}

/// A client for one Docker daemon. Call `shutdown()` when done (or use `withClient`).
public actor DockerClient {
    public struct Configuration: Sendable {
        /// Whole request and response, connecting included. Not applied to the event stream
        /// once its response head has arrived.
        public var requestTimeout: Duration
        /// Establishing a connection.
        public var connectTimeout: Duration
        /// A larger answer is an error (a list of 1,000 containers is about 2 MB).
        public var maxResponseBytes: Int
        /// A longer event line is reported as malformed and dropped.
        public var maxEventLineBytes: Int

        public init(
            requestTimeout: Duration = .seconds(30), connectTimeout: Duration = .seconds(5),
            maxResponseBytes: Int = 64 << 20, maxEventLineBytes: Int = 1 << 20
        ) {
            self.requestTimeout = requestTimeout
            self.connectTimeout = connectTimeout
            self.maxResponseBytes = maxResponseBytes
            self.maxEventLineBytes = maxEventLineBytes
        }
    }

    /// `GET /containers/json` filters for the containers the policy is about.
    public static let runningOnDefaultBridge: [String: [String]] = [
        "network": [dockerDefaultBridgeNetwork], "status": ["running"],
    ]

    /// `GET /containers/json` filters for containers that run, on any network: the list is
    /// narrowed to those with an IPv4 address somewhere (`isAddressed`), and each inspect
    /// says on which bridge networks.
    public static let running: [String: [String]] = ["status": ["running"]]

    public nonisolated let host: DockerHost
    public nonisolated let configuration: Configuration
    private nonisolated let http: HTTPClient
    private nonisolated let logger: Logger
    /// The version requests are sent with; nil until negotiated (the first request negotiates).
    public private(set) var apiVersion: DockerAPIVersion?

    public init(
        host: DockerHost = .default, configuration: Configuration = .init(),
        logger: Logger = Logger(label: "bpfnet.docker")
    ) {
        self.host = host
        self.configuration = configuration
        self.logger = logger
        var httpConfiguration = HTTPClient.Configuration()
        // No read timeout on the connection: the event stream may be silent for hours. Requests
        // get their deadline from `requestTimeout` instead.
        httpConfiguration.timeout = .init(connect: timeAmount(configuration.connectTimeout), read: nil)
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.decompression = .disabled
        httpConfiguration.httpVersion = .http1Only
        http = HTTPClient(
            eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: httpConfiguration,
            backgroundActivityLogger: logger)
    }

    /// Runs `body` with a client and shuts it down afterwards, also when `body` throws.
    public static func withClient<T: Sendable>(
        host: DockerHost = .default, configuration: Configuration = .init(),
        logger: Logger = Logger(label: "bpfnet.docker"),
        _ body: (DockerClient) async throws -> T
    ) async throws -> T {
        let client = DockerClient(host: host, configuration: configuration, logger: logger)
        let result: T
        do {
            result = try await body(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        return result
    }

    /// Closes the connections, the event stream's included.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    // MARK: Endpoints

    /// `GET /_ping` (unversioned, as every daemon answers it).
    public func ping() async throws -> DockerPing {
        try checkReachable()
        let response = try await send(path: "/_ping", versioned: false)
        return DockerPing(
            apiVersion: response.headers["api-version"].flatMap { DockerAPIVersion($0) },
            server: response.headers["server"])
    }

    /// Pings the daemon and settles the version later requests use: the daemon's, capped at
    /// `DockerAPIVersion.newestKnown`; `DockerAPIVersion.fallback` when it does not say.
    /// Call it again after reconnecting: the daemon may have been upgraded.
    @discardableResult
    public func negotiateAPIVersion() async throws -> DockerAPIVersion {
        let ping = try await ping()
        let version = DockerAPIVersion.negotiated(daemon: ping.apiVersion)
        if let announced = ping.apiVersion {
            logger.debug(
                "docker daemon at \(host): API \(announced), using \(version)",
                metadata: ["server": "\(ping.server ?? "?")"])
        } else {
            logger.warning("docker daemon at \(host) sent no Api-Version header; using API \(version)")
        }
        apiVersion = version
        return version
    }

    /// `GET /version`.
    public func version() async throws -> DockerVersionInfo {
        try DockerVersionInfo(json: try await send(path: "/version").body)
    }

    /// `GET /info`.
    public func info() async throws -> DockerDaemonInfo {
        try DockerDaemonInfo(json: try await send(path: "/info").body)
    }

    /// `GET /containers/json` with `filters` (by default: running, on the default bridge).
    public func listContainers(filters: [String: [String]] = DockerClient.runningOnDefaultBridge) async throws
        -> [DockerContainerSummary]
    {
        var query: [(String, String)] = []
        if !filters.isEmpty { query.append(("filters", filtersJSON(filters))) }
        return try DockerContainerSummary.list(fromJSON: try await send(path: "/containers/json", query: query).body)
    }

    /// `GET /containers/{id}/json`. A container that is gone throws a `DockerError` whose
    /// `isNotFound` is true.
    public func inspectContainer(_ idOrName: String) async throws -> DockerContainer {
        let response = try await send(path: "/containers/\(percentEncoded(idOrName))/json")
        return try DockerContainer(inspectJSON: response.body)
    }

    /// `GET /networks/bridge`: the default bridge.
    public func bridgeNetwork() async throws -> DockerBridgeNetwork {
        try DockerBridgeNetwork(json: try await send(path: "/networks/\(dockerDefaultBridgeNetwork)").body)
    }

    /// `GET /networks?filters={"driver":["bridge"]}`: every bridge network, the default one
    /// included; networks of other drivers are left out.
    public func bridgeNetworks() async throws -> [DockerBridgeNetwork] {
        let query = [("filters", filtersJSON(["driver": [dockerBridgeDriver]]))]
        return try DockerBridgeNetwork.list(fromJSON: try await send(path: "/networks", query: query).body)
    }

    /// `GET /events`, returned once the daemon has answered with its response head.
    ///
    /// Open it before listing (and pass `since` = a moment before opening): the daemon replays
    /// events since then, so nothing that happens while the list is read is lost.
    public func events(
        since: Date? = nil,
        filters: DockerEventFilters = .bridgePolicy
    ) async throws -> DockerEventStream {
        var query: [(String, String)] = []
        if let since { query.append(("since", dockerTimestamp(since))) }
        if !filters.filters.isEmpty { query.append(("filters", filters.json)) }
        let path = "/v\(try await currentAPIVersion())/events" + queryString(query)
        let (response, requestLine) = try await open(path)
        logger.debug("docker event stream open", metadata: ["request": "\(requestLine)"])
        return DockerEventSequence(
            chunks: response.body, host: host.description,
            maxLineLength: configuration.maxEventLineBytes)
    }

    // MARK: Transport

    struct Response: Sendable {
        var status: Int
        /// Lowercased names; the first value of each.
        var headers: [String: String]
        var body: Data
    }

    private func currentAPIVersion() async throws -> DockerAPIVersion {
        if let apiVersion { return apiVersion }
        return try await negotiateAPIVersion()
    }

    /// GET `path` (prefixed with the API version unless `versioned` is false), body read; non-2xx throws.
    private func send(path: String, query: [(String, String)] = [], versioned: Bool = true) async throws -> Response {
        let fullPath = (versioned ? "/v\(try await currentAPIVersion())" : "") + path + queryString(query)
        let (head, requestLine) = try await open(fullPath)
        let body = try await withinDeadline(requestLine) { [configuration] in
            try await head.body.collect(upTo: configuration.maxResponseBytes)
        }
        var headers: [String: String] = [:]
        for (name, value) in head.headers where headers[name.lowercased()] == nil {
            headers[name.lowercased()] = value
        }
        return Response(status: Int(head.status.code), headers: headers, body: Data(body.readableBytesView))
    }

    /// GET `fullPath`, returned once the daemon has answered with its response
    /// head (the body is the caller's to read or stream); a non-2xx status
    /// throws with what the body says. Also returns the request line, for errors.
    private func open(_ fullPath: String) async throws -> (HTTPClientResponse, String) {
        let requestLine = "GET \(fullPath)"
        let request = makeRequest(fullPath)
        logger.trace("docker request", metadata: ["request": "\(requestLine)"])
        let response = try await withinDeadline(requestLine) { [http, configuration] in
            try await http.execute(request, timeout: timeAmount(configuration.requestTimeout))
        }
        guard (200..<300).contains(response.status.code) else {
            let body = try? await withinDeadline(requestLine) { [configuration] in
                try await response.body.collect(upTo: configuration.maxResponseBytes)
            }
            throw httpStatusError(
                requestLine, status: Int(response.status.code),
                body: body.map { Data($0.readableBytesView) } ?? Data())
        }
        return (response, requestLine)
    }

    private nonisolated func makeRequest(_ pathAndQuery: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url(pathAndQuery))
        request.method = .GET
        // Go's HTTP server rejects an HTTP/1.1 request without Host; a unix socket has none.
        request.headers.add(name: "Host", value: "docker")
        request.headers.add(name: "User-Agent", value: "bpfnet")
        request.headers.add(name: "Accept", value: "application/json")
        return request
    }

    private nonisolated func url(_ pathAndQuery: String) -> String {
        switch host {
        case .unixSocket(let path):
            // async-http-client's form: the socket path, percent-encoded, as the host of http+unix.
            return URL(httpURLWithSocketPath: path, uri: pathAndQuery)?.absoluteString
                ?? "http+unix://\(percentEncoded(path))\(pathAndQuery)"
        case .tcp(let name, let port):
            return name.contains(":")
                ? "http://[\(name)]:\(port)\(pathAndQuery)" : "http://\(name):\(port)\(pathAndQuery)"
        }
    }

    private nonisolated func httpStatusError(_ request: String, status: Int, body: Data) -> DockerError {
        let message =
            dockerErrorMessage(from: body)
            ?? String(decoding: body.prefix(512), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return .httpStatus(request: request, status: status, message: message)
    }

    /// A unix socket that is missing, not a socket, or refuses connections fails at once with
    /// the reason (async-http-client would retry until the connect timeout and say less).
    private nonisolated func checkReachable() throws {
        guard case .unixSocket(let path) = host else { return }
        if let reason = probeUnixSocket(path) {
            throw DockerError.daemonUnreachable(host: host.description, reason: reason)
        }
    }

    /// Turns a transport failure into a `DockerError`; a connection that cannot be made is
    /// `daemonUnreachable` with the socket's own reason.
    private nonisolated func classify(_ error: any Error, request: String) -> DockerError {
        if case .unixSocket(let path) = host, let reason = probeUnixSocket(path) {
            return .daemonUnreachable(host: host.description, reason: reason)
        }
        if let httpError = error as? HTTPClientError, httpError == .connectTimeout {
            return .daemonUnreachable(host: host.description, reason: "connect timed out")
        }
        // async-http-client's own deadline (the same as ours) may fire first.
        if let httpError = error as? HTTPClientError, httpError == .deadlineExceeded {
            return .timedOut(host: host.description, request: request, seconds: seconds(configuration.requestTimeout))
        }
        if let ioError = error as? IOError,
            [ECONNREFUSED, ENOENT, EHOSTUNREACH, ENETUNREACH].contains(ioError.errnoCode)
        {
            return .daemonUnreachable(host: host.description, reason: errnoText(ioError.errnoCode))
        }
        return .transport(host: host.description, request: request, reason: describeTransportError(error))
    }

    /// `body` within the request timeout; transport failures become `DockerError`s.
    private nonisolated func withinDeadline<T: Sendable>(
        _ request: String, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let host = host.description
        let timeout = configuration.requestTimeout
        do {
            return try await withThrowingTaskGroup(of: T.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw DockerError.timedOut(host: host, request: request, seconds: seconds(timeout))
                }
                defer { group.cancelAll() }
                guard let result = try await group.next() else { throw CancellationError() }
                return result
            }
        } catch let error as DockerError {
            throw error
        } catch {
            throw classify(error, request: request)
        }
    }
}

// MARK: - Helpers

func timeAmount(_ duration: Duration) -> TimeAmount {
    let (wholeSeconds, attoseconds) = duration.components
    return .nanoseconds(wholeSeconds * 1_000_000_000 + attoseconds / 1_000_000_000)
}

func seconds(_ duration: Duration) -> Double {
    let (wholeSeconds, attoseconds) = duration.components
    return Double(wholeSeconds) + Double(attoseconds) / 1e18
}

/// Docker's `since`/`until` form: seconds.nanoseconds since the epoch.
func dockerTimestamp(_ date: Date) -> String {
    let interval = date.timeIntervalSince1970
    var wholeSeconds = Int64(interval.rounded(.down))
    var nanos = Int64(((interval - Double(wholeSeconds)) * 1e9).rounded())
    if nanos >= 1_000_000_000 {
        wholeSeconds += 1
        nanos -= 1_000_000_000
    }
    let fraction = String(nanos)
    return "\(wholeSeconds).\(String(repeating: "0", count: 9 - fraction.count))\(fraction)"
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
func percentEncoded(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "_"), UInt8(ascii: "~"):
            result.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            result += "%" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return result
}

func queryString(_ items: [(String, String)]) -> String {
    items.isEmpty ? "" : "?" + items.map { "\(percentEncoded($0.0))=\(percentEncoded($0.1))" }.joined(separator: "&")
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Why a unix socket cannot be connected to; nil when it can.
func probeUnixSocket(_ path: String) -> String? {
    var status = stat()
    guard stat(path, &status) == 0 else { return errnoText(errno) }
    guard status.st_mode & S_IFMT == S_IFSOCK else { return "not a socket" }
    #if canImport(Glibc) || canImport(Musl)
    let fd = socket(
        AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    #else
    let fd = socket(AF_UNIX, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { return nil }  // cannot probe; let the request tell
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    let pathBytes = Array(path.utf8)
    guard pathBytes.count < capacity else { return "socket path longer than \(capacity - 1) bytes" }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: pathBytes)
        raw[pathBytes.count] = 0
    }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    if result == 0 { return nil }
    let code = errno
    // A full backlog (EAGAIN) or a connect in progress still means someone listens.
    if code == EAGAIN || code == EINPROGRESS || code == EINTR { return nil }
    return errnoText(code)
}

/// A readable reason for a failure below HTTP.
func describeTransportError(_ error: any Error) -> String {
    if let httpError = error as? HTTPClientError {
        switch httpError {
        case .remoteConnectionClosed: return "the daemon closed the connection"
        case .readTimeout: return "read timed out"
        case .connectTimeout: return "connect timed out"
        case .deadlineExceeded: return "deadline exceeded"
        case .cancelled: return "cancelled"
        case .alreadyShutdown: return "the client was shut down"
        default: return "\(httpError)"
        }
    }
    if let ioError = error as? IOError { return "\(errnoText(ioError.errnoCode)) (\(ioError))" }
    if let channelError = error as? ChannelError {
        switch channelError {
        case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed:
            return "the connection was closed"
        default: return "\(channelError)"
        }
    }
    return "\(error)"
}
