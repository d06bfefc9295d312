// SPDX-License-Identifier: Apache-2.0
//
// Docker's bridge networks: `GET /networks?filters={"driver":["bridge"]}` decoded into
// DockerBridgeNetwork (DockerDecoding.swift converts one entry), and what the policy model
// makes of each: the default bridge ("bridge") is `Policy.bridge`, every other bridge
// network a `BridgeNetwork` (docs/docker.md, "Networks"). Networks of other drivers (host,
// null, macvlan, overlay, ...) have no Linux bridge of Docker's to police: skipped, even if
// a daemon ignores the filter.

import BPFNetCore
import Foundation

/// The Docker network driver whose networks bpfnet polices.
public let dockerBridgeDriver = "bridge"

extension DockerBridgeNetwork {
    /// Decodes `GET /networks` (filtered or not), keeping the bridge-driver networks in the
    /// daemon's order. An entry that is not a network at all (no `Id`) fails the list.
    public static func list(fromJSON data: Data) throws -> [DockerBridgeNetwork] {
        let raw = try decodeJSON([RawNetwork].self, from: data, what: "network list")
        var result: [DockerBridgeNetwork] = []
        for (index, entry) in raw.enumerated() where (entry.driver ?? "") == dockerBridgeDriver {
            do {
                result.append(try DockerBridgeNetwork(raw: entry))
            } catch DockerError.decoding(_, let field, let reason) {
                throw DockerError.decoding(what: "network list", field: "[\(index)].\(field)", reason: reason)
            }
        }
        return result
    }

    /// Docker's default bridge network ("bridge", normally on docker0).
    public var isDefaultBridge: Bool { name == dockerDefaultBridgeNetwork }

    /// The policy model's network, for a user-defined network. The SNAT source is
    /// `com.docker.network.host_ipv4`; `host_binding_ipv4` only changes where published
    /// ports bind, which each container's port bindings already say.
    public var model: BridgeNetwork {
        BridgeNetwork(
            name: name, bridge: bridgeName, icc: iccEnabled, internal: `internal`, masquerade: ipMasquerade,
            hostIPv4: hostIPv4, ipv6: ipv6Gateway)
    }
}

extension DockerContainerSummary {
    /// Running with an IPv4 address on some network: worth an inspect.
    public var isAddressed: Bool { !addressedNetworks.isEmpty }
}
