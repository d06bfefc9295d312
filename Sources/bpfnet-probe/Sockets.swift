// SPDX-License-Identifier: Apache-2.0
//
// Thin helpers over the BSD socket calls the probe needs. Glibc only: the
// probe is started hundreds of times per test run, so it must not pay for
// Foundation's start-up.

#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 endpoint in host byte order.
struct Endpoint: Equatable, CustomStringConvertible {
    var address: UInt32
    var port: UInt16

    static let any = Endpoint(address: 0, port: 0)

    /// Parses "a.b.c.d".
    static func parseAddress(_ text: String) -> UInt32? {
        var addr = in_addr()
        guard inet_pton(AF_INET, text, &addr) == 1 else { return nil }
        return UInt32(bigEndian: addr.s_addr)
    }

    /// Parses "a.b.c.d:port" (port 1-65535).
    static func parse(_ text: String) -> Endpoint? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        guard let address = parseAddress(String(text[..<colon])),
            let port = UInt16(text[text.index(after: colon)...]), port != 0
        else { return nil }
        return Endpoint(address: address, port: port)
    }

    init(address: UInt32, port: UInt16) {
        self.address = address
        self.port = port
    }

    init(_ sa: sockaddr_in) {
        address = UInt32(bigEndian: sa.sin_addr.s_addr)
        port = UInt16(bigEndian: sa.sin_port)
    }

    var sockaddr: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr = in_addr(s_addr: address.bigEndian)
        return sa
    }

    static func format(_ address: UInt32) -> String {
        "\(address >> 24).\(address >> 16 & 0xFF).\(address >> 8 & 0xFF).\(address & 0xFF)"
    }

    var addressText: String { Endpoint.format(address) }
    var description: String { "\(addressText):\(port)" }
}

/// The text of `errno` (or of an explicit error number).
func errorText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}

/// A failure that is ours, not the network's: bad socket call, bind conflict.
struct LocalError: Error {
    var message: String
    init(_ call: String, _ code: Int32 = errno) {
        message = "\(call): \(errorText(code))"
    }
}

func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws {
    var v = value
    if setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) != 0 {
        throw LocalError("setsockopt(\(level), \(name))")
    }
}

func bindSocket(_ fd: Int32, _ endpoint: Endpoint) throws {
    var sa = endpoint.sockaddr
    let rc = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if rc != 0 { throw LocalError("bind \(endpoint)") }
}

/// `connect(2)`; returns 0 or the errno (EINPROGRESS for a non-blocking socket).
func connectSocket(_ fd: Int32, _ endpoint: Endpoint) -> Int32 {
    var sa = endpoint.sockaddr
    let rc = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    return rc == 0 ? 0 : errno
}

func localEndpoint(_ fd: Int32) -> Endpoint {
    var sa = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Endpoint(sa)
}

func socketError(_ fd: Int32) -> Int32 {
    var err: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 { return errno }
    return err
}

/// Milliseconds on the monotonic clock.
func nowMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

func nowMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// Waits for `events` on one descriptor until `deadline` (monotonic ms).
/// Returns the revents, or 0 on timeout.
func waitFor(_ fd: Int32, _ events: Int32, until deadline: Int64) -> Int16 {
    while true {
        let remaining = deadline - nowMilliseconds()
        if remaining <= 0 { return 0 }
        var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
        let rc = poll(&pfd, 1, Int32(min(remaining, Int64(Int32.max))))
        if rc > 0 { return pfd.revents }
        if rc == 0 { return 0 }
        if errno != EINTR { return Int16(POLLERR) }
    }
}

/// Writes all of `bytes` to standard output in one go (no stdio buffering,
/// so a parent reading a pipe sees whole lines).
func emit(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += n
    }
}

func emitError(_ line: String) {
    let text = line.hasSuffix("\n") ? line : line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
