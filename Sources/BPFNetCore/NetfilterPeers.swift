// SPDX-License-Identifier: Apache-2.0
//
// Peers in the netfilter fallbacks (docs/fallback.md, "Peers"): rows 12 and
// 13 of docs/policy.md as netfilter can check them. The eBPF program confirms
// a peer's packet by the route towards the peer's address: the ingress
// interface and the neighbour's MAC. The fallbacks check the interface, which
// the dataplane resolves when it applies (`ip route get ADDRESS`, again on
// every apply and resync), not the MAC: a host on that same link can claim a
// peer's subnet there.

/// A peer host as the fallbacks' rules see it.
public struct NetfilterPeer: Hashable, Sendable, Comparable {
    public var name: String
    public var address: IPv4Address
    /// Sorted.
    public var subnets: [IPv4CIDR]
    /// The interface the route to `address` leaves through; nil when there
    /// is none (then everything claimed from its subnets is `peer-spoofed`).
    public var interface: String?

    public init(name: String, address: IPv4Address, subnets: [IPv4CIDR], interface: String? = nil) {
        self.name = name
        self.address = address
        self.subnets = subnets.sorted()
        self.interface = interface
    }

    public static func < (lhs: NetfilterPeer, rhs: NetfilterPeer) -> Bool { lhs.address < rhs.address }
}

extension NetfilterPolicy {
    /// `bn_peers` grouped by peer (address), named by `bn_names`.
    static func peers(of state: MapState) -> [NetfilterPeer] {
        Dictionary(grouping: state.peers.keys) { state.peers[$0]! }.map { address, subnets in
            NetfilterPeer(name: state.names[address] ?? address.description, address: address, subnets: subnets)
        }.sorted()
    }

    /// Every peer's subnets.
    public var peerSubnets: [IPv4CIDR] { peers.flatMap(\.subnets).sorted() }

    /// Where a peer's container may not go whatever its way in: internal
    /// networks (their subnets, and containers of theirs outside them).
    public var peerInternalDestinations: [IPv4CIDR] {
        destinations { _, network in network?.internal ?? false }
    }

    /// Where `peerPolicy: icc` refuses a peer's containers: networks with icc
    /// off (not internal ones, refused already). Empty with `peerPolicy: allow`.
    public var peerICCOffDestinations: [IPv4CIDR] {
        guard !peerAllow else { return [] }
        return destinations { icc, network in !icc && !(network?.internal ?? false) }
    }

    /// The subnets (and containers outside them, as /32) of the networks,
    /// the default bridge included (nil network), that `include` picks.
    private func destinations(_ include: (Bool, NetfilterNetwork?) -> Bool) -> [IPv4CIDR] {
        var result: [IPv4CIDR] = []
        if include(icc, nil), let bridgeSubnet { result.append(bridgeSubnet) }
        for network in networks where include(network.icc, network) {
            if let subnet = network.subnet { result.append(subnet) }
        }
        for container in containers where !(subnet(ofBridge: container.bridge)?.contains(container.ip) ?? false) {
            let network = network(onBridge: container.bridge)
            if include(network?.icc ?? icc, network) {
                result.append(IPv4CIDR(address: container.ip, prefixLength: 32)!)
            }
        }
        return result
    }
}
