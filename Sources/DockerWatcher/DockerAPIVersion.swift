// SPDX-License-Identifier: Apache-2.0
//
// Engine API versions: what the client asks for, after `GET /_ping` told what the daemon speaks.

/// An Engine API version such as 1.41 (dockerd 20.10) or 1.52 (29.0).
public struct DockerAPIVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses "1.41"; nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]),
            major >= 0, minor >= 0
        else { return nil }
        self.init(major, minor)
    }

    /// The newest schema this client has been checked against (dockerd 29.7, `/v1.55`).
    public static let newestKnown = DockerAPIVersion(1, 55)
    /// Used when the daemon does not say (no `Api-Version` header): dockerd 20.10's version,
    /// whose shapes this client reads.
    public static let fallback = DockerAPIVersion(1, 41)
    /// From this version on the top-level `NetworkSettings.IPAddress`/`MacAddress` and the
    /// legacy event fields `status`/`id`/`from` are gone. This client never relies on them.
    public static let withoutLegacyFields = DockerAPIVersion(1, 52)

    /// The version to send: the daemon's, capped at the newest this client knows.
    /// A daemon that does not announce one gets `fallback`.
    public static func negotiated(daemon: DockerAPIVersion?) -> DockerAPIVersion {
        guard let daemon else { return fallback }
        return min(daemon, newestKnown)
    }

    public var description: String { "\(major).\(minor)" }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }
}
