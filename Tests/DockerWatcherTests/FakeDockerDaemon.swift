// SPDX-License-Identifier: Apache-2.0
//
// A stand-in for dockerd on a unix socket: plain blocking sockets on threads of its own,
// canned HTTP/1.1 answers, and chunked bodies cut wherever a test wants. It lets the client's
// negotiation, errors, timeouts and event framing be tested through real HTTP without root.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

final class FakeDockerDaemon: @unchecked Sendable {
    enum Reply: Sendable {
        /// A complete answer with Content-Length.
        case full(status: Int, headers: [(String, String)] = [], body: String)
        /// A chunked answer: each piece is written as its own HTTP chunk after `delay`; then
        /// the body ends cleanly (`endCleanly`) or the connection is cut.
        case chunked(
            status: Int, pieces: [(delay: Duration, bytes: String)], endCleanly: Bool, thenWait: Duration = .zero)
        /// Read the request and never answer (until the daemon stops).
        case hang
    }

    let socketPath: String
    private let directory: String
    private let lock = NSLock()
    private var routes: [(prefix: String, reply: Reply)] = []
    private var apiVersionHeader: String?
    private var requests: [String] = []
    private var listenFD: Int32 = -1
    private var connections: [Int32] = []
    private var stopped = false

    /// - Parameter apiVersion: the `Api-Version` header on every answer; nil sends none.
    init(apiVersion: String? = "1.41") throws {
        var template = Array("/tmp/bpfnet-fake-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        directory = String(cString: made)
        socketPath = directory + "/docker.sock"
        apiVersionHeader = apiVersion
        try listen()
    }

    /// Requests whose path (after the version prefix, without the query) starts with `prefix`
    /// get `reply`; the first matching route wins.
    func route(_ prefix: String, _ reply: Reply) {
        lock.withLock { routes.append((prefix, reply)) }
    }

    /// Request targets received so far ("/v1.41/containers/json?filters=...").
    var receivedRequests: [String] { lock.withLock { requests } }

    func stop() {
        lock.withLock {
            // Once only; and under the lock, so no descriptor is closed (and its number
            // reused) between being listed here and being shut down.
            if stopped { return }
            stopped = true
            for fd in connections + [listenFD] where fd >= 0 {
                shutdown(fd, Int32(SHUT_RDWR))
            }
            connections = []
            listenFD = -1
        }
        unlink(socketPath)
        rmdir(directory)
    }

    deinit { stop() }

    // MARK: Serving

    private func listen() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        listenFD = fd
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.start()
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                close(fd)
                return
            }
            let accepted = lock.withLock { () -> Bool in
                if stopped { return false }
                connections.append(client)
                return true
            }
            guard accepted else {
                close(client)
                continue
            }
            let thread = Thread { [self] in serve(client) }
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer {
            lock.withLock {
                connections.removeAll { $0 == fd }
                close(fd)
            }
        }
        // One request per connection ("Connection: close" on every answer).
        guard let target = readRequestTarget(fd) else { return }
        let reply: Reply = lock.withLock {
            requests.append(target)
            var path = String(target.split(separator: "?", maxSplits: 1)[0])
            if path.hasPrefix("/v"), let slash = path.dropFirst().firstIndex(of: "/") {
                path = String(path[slash...])
            }
            return routes.first { path.hasPrefix($0.prefix) }?.reply
                ?? .full(status: 404, body: #"{"message":"page not found"}"#)
        }
        switch reply {
        case .full(let status, let headers, let body):
            var head = statusLine(status) + commonHeaders()
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
            write(fd, head + body)
        case .chunked(let status, let pieces, let endCleanly, let thenWait):
            write(
                fd,
                statusLine(status) + commonHeaders()
                    + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in pieces {
                sleep(piece.delay)
                write(fd, String(piece.bytes.utf8.count, radix: 16) + "\r\n" + piece.bytes + "\r\n")
            }
            if endCleanly { write(fd, "0\r\n\r\n") }
            sleep(thenWait)
        case .hang:
            var byte: UInt8 = 0
            _ = recv(fd, &byte, 1, 0)  // returns when the daemon stops (shutdown) or the client goes
        }
    }

    private func statusLine(_ status: Int) -> String {
        let reason =
            [200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"][status] ?? "Status"
        return "HTTP/1.1 \(status) \(reason)\r\n"
    }

    private func commonHeaders() -> String {
        var headers = "Server: FakeDocker/1.0 (linux)\r\nConnection: close\r\n"
        if let apiVersionHeader { headers += "Api-Version: \(apiVersionHeader)\r\n" }
        return headers
    }

    private func readRequestTarget(_ fd: Int32) -> String? {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !received.containsHeaderEnd {
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { return nil }
            received.append(contentsOf: buffer[0..<count])
        }
        let firstLine = String(decoding: received.prefix { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
        let parts = firstLine.split(separator: " ")
        return parts.count >= 2 ? String(parts[1]) : nil
    }

    private func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }

    private func sleep(_ duration: Duration) {
        guard duration > .zero else { return }
        let (seconds, attoseconds) = duration.components
        usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }
}

extension [UInt8] {
    fileprivate var containsHeaderEnd: Bool {
        count >= 4
            && (0...(count - 4)).contains {
                self[$0] == 13 && self[$0 + 1] == 10 && self[$0 + 2] == 13 && self[$0 + 3] == 10
            }
    }
}
