// SPDX-License-Identifier: Apache-2.0
//
// Every failure of the Docker client, each saying what failed, with which value, and what
// to do about it where there is something to do.

public enum DockerError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A `--docker-host` value that cannot be used.
    case invalidHost(String, reason: String)
    /// Nothing answers at the daemon's address (socket missing, connection refused, ...).
    case daemonUnreachable(host: String, reason: String)
    /// A request got no complete answer in time.
    case timedOut(host: String, request: String, seconds: Double)
    /// The daemon answered with a non-2xx status; `message` is its JSON `message`.
    case httpStatus(request: String, status: Int, message: String)
    /// The daemon's answer is not what the Engine API documents; `field` is the JSON path.
    case decoding(what: String, field: String, reason: String)
    /// The connection broke or the daemon sent something that is not HTTP.
    case transport(host: String, request: String, reason: String)
    /// The event stream ended: the daemon closed it (stopping, restarting) or the connection broke.
    case eventStreamEnded(host: String, reason: String)

    /// True for a 404: the container (or network) is gone, which is normal in a race with `rm`.
    public var isNotFound: Bool {
        if case .httpStatus(_, 404, _) = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .invalidHost(let value, let reason):
            "docker host '\(value)': \(reason) — expected \(DockerHost.acceptedForms)"
        case .daemonUnreachable(let host, let reason):
            "docker daemon not reachable at \(host): \(reason) — is dockerd running? use --docker-host"
        case .timedOut(let host, let request, let seconds):
            "docker daemon at \(host): \(request) got no complete answer within \(formatSeconds(seconds)) s"
        case .httpStatus(let request, let status, let message):
            "docker: \(request): HTTP \(status)\(message.isEmpty ? "" : ": \(message)")"
        case .decoding(let what, let field, let reason):
            "docker: cannot decode \(what): field \(field.isEmpty ? "(top level)" : field): \(reason)"
        case .transport(let host, let request, let reason):
            "docker daemon at \(host): \(request): \(reason)"
        case .eventStreamEnded(let host, let reason):
            "docker daemon at \(host): event stream ended: \(reason)"
        }
    }
}

private func formatSeconds(_ value: Double) -> String {
    value == value.rounded() ? String(Int(value)) : String(value)
}
