// SPDX-License-Identifier: Apache-2.0
//
// Where the Docker daemon listens: the value of `--docker-host`.

/// The address of a Docker daemon's Engine API, as `docker -H` and `DOCKER_HOST` spell it.
///
/// Accepted: `unix:///absolute/path` (the default is `unix:///var/run/docker.sock`) and, for
/// a daemon that listens on TCP without TLS, `tcp://HOST:PORT` (port 2375 when omitted).
public enum DockerHost: Hashable, Sendable, CustomStringConvertible {
    case unixSocket(path: String)
    case tcp(host: String, port: Int)

    public static let defaultSocketPath = "/var/run/docker.sock"
    public static let `default` = DockerHost.unixSocket(path: defaultSocketPath)

    /// What `--docker-host` accepts, for error messages and help text.
    public static let acceptedForms =
        "unix:///path/to/docker.sock (default unix:///var/run/docker.sock) or tcp://HOST:PORT"

    /// Parses a `--docker-host` value.
    /// - Throws: `DockerError.invalidHost` naming the value and what would be accepted.
    public init(parsing text: String) throws {
        func invalid(_ reason: String) -> DockerError {
            .invalidHost(text, reason: reason)
        }
        guard let schemeEnd = text.range(of: "://") else {
            if text.hasPrefix("/") {
                throw invalid("missing scheme (did you mean unix://\(text)?)")
            }
            throw invalid("missing scheme")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let rest = String(text[schemeEnd.upperBound...])
        switch scheme {
        case "unix":
            guard !rest.isEmpty else { throw invalid("no socket path after unix://") }
            guard rest.hasPrefix("/") else {
                throw invalid("the socket path must be absolute (unix:///\(rest))")
            }
            guard !rest.contains("?"), !rest.contains("#") else {
                throw invalid("a socket path takes no query or fragment")
            }
            self = .unixSocket(path: rest)
        case "tcp":
            var authority = Substring(rest)
            if authority.hasSuffix("/") { authority = authority.dropLast() }
            guard !authority.isEmpty, !authority.contains("/") else {
                throw invalid("expected tcp://HOST:PORT")
            }
            let host: Substring
            var port = 2375
            if authority.hasPrefix("[") {
                // [IPv6]:port
                guard let close = authority.firstIndex(of: "]") else { throw invalid("unterminated [IPv6] address") }
                host = authority[authority.index(after: authority.startIndex)..<close]
                let after = authority[authority.index(after: close)...]
                if !after.isEmpty {
                    guard after.hasPrefix(":"), let parsed = Int(after.dropFirst()), (1...65535).contains(parsed) else {
                        throw invalid("bad port (expected 1-65535)")
                    }
                    port = parsed
                }
            } else if let colon = authority.lastIndex(of: ":") {
                host = authority[..<colon]
                guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else {
                    throw invalid("bad port (expected 1-65535)")
                }
                port = parsed
            } else {
                host = authority
            }
            guard !host.isEmpty else { throw invalid("no host name") }
            self = .tcp(host: String(host), port: port)
        default:
            throw invalid("unsupported scheme '\(scheme)'")
        }
    }

    public var description: String {
        switch self {
        case .unixSocket(let path): "unix://\(path)"
        case .tcp(let host, let port): host.contains(":") ? "tcp://[\(host)]:\(port)" : "tcp://\(host):\(port)"
        }
    }
}
