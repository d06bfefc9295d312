// SPDX-License-Identifier: Apache-2.0
//
// The routes to peers' container subnets that bpfnet installs for peers with
// `routes: true` (docs/policy.md, "Routes to peers").
//
// Each subnet is routed the way this host reaches the peer's own address
// (`ip route get ADDRESS`): through the same device and, where the peer is
// behind a router, the same gateway; on a shared link, via the peer itself.
// The routes go into the main table under bpfnet's own route protocol number
// (`routeProtocol`), which is how bpfnet knows its own routes: it changes and
// removes only routes with that number, and leaves a route someone else made
// to the same subnet alone (a warning says so). `unload` removes them all.

import BPFNetCore
import CLinuxNet
import Foundation
import LinuxNet
import Logging

enum PeerRoutes {
    /// rtm_protocol of bpfnet's routes (`ip route show proto 191`): a number
    /// no routing daemon in iproute2's rt_protos list uses.
    static let routeProtocol: UInt8 = 191

    /// One route bpfnet wants: `subnet` via `gateway` out of `device`.
    struct Plan: Hashable {
        var peer: String
        var subnet: IPv4CIDR
        var gateway: IPv4Address
        var deviceIndex: Int32

        var route: RouteNetlink.Route {
            RouteNetlink.Route(
                family: AF_INET, destination: subnet.address.bytes, prefixLength: subnet.prefixLength,
                gateway: gateway.bytes, outputIndex: deviceIndex, origin: PeerRoutes.routeProtocol)
        }
    }

    /// Why there is no way to a peer's address.
    enum NoWay: Error {
        /// No route (ENETUNREACH and the like).
        case unreachable(LinuxNetError)
        /// A route, but not out of an interface: "an address of this host", "not unicast".
        case notUnicast(String)
    }

    /// The way the kernel routes to `address` now (`ip route get`): the
    /// interface and, behind a router, the gateway.
    private static func way(
        to address: IPv4Address, using netlink: RouteNetlink
    ) -> Result<(device: Int32, gateway: IPv4Address?), NoWay> {
        let found: RouteNetlink.Route?
        do { found = try netlink.route(to: address.bytes, family: AF_INET) } catch {
            return .failure(.unreachable(error))
        }
        guard let found, found.type == UInt8(RTN_UNICAST), let device = found.outputIndex else {
            return .failure(.notUnicast(found?.type == UInt8(RTN_LOCAL) ? "an address of this host" : "not unicast"))
        }
        return .success((device, found.gateway.flatMap(IPv4Address.init(bytes:))))
    }

    /// The routes for every peer with `routes: true`, resolved before the
    /// kernel is touched: a peer whose address this host cannot reach over
    /// one of its own interfaces is bad input, with the peer named.
    static func plan(_ peers: [Peer]) throws(DataplaneError) -> [Plan] {
        let routed = peers.filter(\.routes)
        guard !routed.isEmpty else { return [] }
        let netlink: RouteNetlink
        do { netlink = try RouteNetlink() } catch { throw .runtime("peer routes: \(error)") }
        var plans: [Plan] = []
        for peer in routed {
            let found: (device: Int32, gateway: IPv4Address?)
            switch way(to: peer.address, using: netlink) {
            case .success(let way): found = way
            case .failure(.notUnicast(let what)):
                throw .badInput(
                    "peer \(peer.name): routes: true, but the peer's address \(peer.address) is \(what) "
                        + "here; give the peer host's own address")
            case .failure(.unreachable(let error)):
                throw .badInput(
                    "peer \(peer.name): routes: true, but this host has no route to the peer's address "
                        + "\(peer.address) (\(error.message)); route the peer's own address first "
                        + "(bpfnet routes its container subnets the same way)")
            }
            // On a shared link (no gateway) the route goes via the peer itself.
            let gateway = found.gateway ?? peer.address
            let device = found.device
            for subnet in peer.subnets {
                plans.append(Plan(peer: peer.name, subnet: subnet, gateway: gateway, deviceIndex: device))
            }
        }
        return plans
    }

    /// Makes bpfnet's routes in the main table exactly `plans`: removes its
    /// routes no plan wants (or wants another way), adds the missing ones,
    /// and leaves routes of other origins alone. Returns what it left alone.
    static func reconcile(_ plans: [Plan]) throws(DataplaneError) -> [String] {
        do {
            let netlink = try RouteNetlink()
            let table = try netlink.routes(family: AF_INET)
            let ours = table.filter { $0.origin == routeProtocol && $0.type == UInt8(RTN_UNICAST) }
            let wanted = Set(plans.map(\.route))
            for route in ours where !wanted.contains(comparable(route)) {
                try netlink.deleteRoute(route)
            }
            var leftAlone: [String] = []
            let present = Set(ours.map(comparable))
            for plan in plans where !present.contains(plan.route) {
                if let other = table.first(where: {
                    $0.origin != routeProtocol && $0.destination == plan.route.destination
                        && $0.prefixLength == plan.subnet.prefixLength
                }) {
                    leftAlone.append(
                        "peer \(plan.peer): \(plan.subnet) is routed already (\(describe(other))); "
                            + "bpfnet leaves routes it did not make alone")
                    continue
                }
                try netlink.addRoute(plan.route)
            }
            return leftAlone
        } catch {
            throw .runtime("peer routes: \(error)")
        }
    }

    /// Removes every route bpfnet made (unload, or a backend without peers).
    static func removeAll() throws(DataplaneError) {
        try _ = reconcile([])
    }

    /// The interface the route to each address leaves through (`ip route
    /// get`, one netlink socket for all); absent when there is no unicast
    /// route (the netfilter fallbacks' peer check).
    static func interfaces(towards addresses: [IPv4Address]) -> [IPv4Address: String] {
        guard !addresses.isEmpty, let netlink = try? RouteNetlink() else { return [:] }
        var result: [IPv4Address: String] = [:]
        for address in addresses {
            guard case .success(let way) = way(to: address, using: netlink) else { continue }
            result[address] = HostSystem.interfaceName(UInt32(bitPattern: way.device))
        }
        return result
    }

    /// Fills each peer's `routes` in a status from the kernel's table.
    static func addInstalledRoutes(to status: inout DataplaneStatus, name: (UInt32) -> String?) {
        guard let peers = status.peers else { return }
        let routes = installed(name: name)
        status.peers = peers.map { peer in
            var peer = peer
            let found = peer.subnets.compactMap { text in
                IPv4CIDR(text).flatMap { routes[$0] }.map { "\(text) \($0)" }
            }
            peer.routes = found.isEmpty ? nil : found
            return peer
        }
    }

    /// bpfnet's routes now, as `ip route` would print them, by destination.
    static func installed(name: (UInt32) -> String?) -> [IPv4CIDR: String] {
        guard let netlink = try? RouteNetlink(), let table = try? netlink.routes(family: AF_INET) else { return [:] }
        var result: [IPv4CIDR: String] = [:]
        for route in table where route.origin == routeProtocol {
            guard let address = IPv4Address(bytes: route.destination),
                let subnet = IPv4CIDR(address: address, prefixLength: route.prefixLength)
            else { continue }
            result[subnet] = describe(route, name: name)
        }
        return result
    }

    /// A route as read back, reduced to what a plan sets (the kernel adds
    /// nothing that matters for telling them apart, but normalises nothing either).
    private static func comparable(_ route: RouteNetlink.Route) -> RouteNetlink.Route {
        RouteNetlink.Route(
            family: route.family, destination: route.destination, prefixLength: route.prefixLength,
            gateway: route.gateway, outputIndex: route.outputIndex, origin: route.origin)
    }

    static func describe(_ route: RouteNetlink.Route, name: (UInt32) -> String? = HostSystem.interfaceName) -> String {
        var text = ""
        if let gateway = route.gateway.flatMap(IPv4Address.init(bytes:)) { text += "via \(gateway) " }
        if let index = route.outputIndex {
            text += "dev \(name(UInt32(bitPattern: index)) ?? "#\(index)") "
        }
        return text + "proto " + (protocolNames[route.origin] ?? String(route.origin))
    }

    /// The names `ip route` prints for the common protocol numbers (rt_protos).
    private static let protocolNames: [UInt8: String] = [
        UInt8(RTPROT_KERNEL): "kernel", UInt8(RTPROT_BOOT): "boot", UInt8(RTPROT_STATIC): "static",
        UInt8(RTPROT_DHCP): "dhcp",
    ]
}

/// What every backend's apply does with the routes to peers: plan them
/// before the kernel is touched, reconcile them once the rules that judge
/// peer traffic are in force, and skip that when nothing changed since this
/// process's last apply (`forget` makes the next one look again).
final class PeerRouteKeeper {
    private var last: [PeerRoutes.Plan]?

    func plan(_ peers: [Peer]) throws(DataplaneError) -> [PeerRoutes.Plan] { try PeerRoutes.plan(peers) }

    func reconcile(_ plans: [PeerRoutes.Plan], logger: Logger) throws(DataplaneError) {
        guard plans != last else { return }
        for problem in try PeerRoutes.reconcile(plans) { logger.warning("\(problem)") }
        last = plans
    }

    func forget() { last = nil }
}

extension IPv4Address {
    /// The address in network byte order, as netlink carries it.
    fileprivate var bytes: [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    fileprivate init?(bytes: [UInt8]) {
        guard bytes.count == 4 else { return nil }
        self.init(bytes[0], bytes[1], bytes[2], bytes[3])
    }
}
