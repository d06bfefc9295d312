// SPDX-License-Identifier: Apache-2.0
//
// Policy.validate(): every inconsistency a policy can have, collected (not
// just the first), each naming where it is and what would be accepted.

/// One thing wrong with a policy. `path` uses the policy file's key path
/// ("containers[1].ip"), so the message points at the operator's line whether
/// the policy came from a file or from Docker.
public struct PolicyProblem: Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Thrown by `Policy.validate()`; carries every problem found.
public struct PolicyValidationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var problems: [PolicyProblem]

    public init(problems: [PolicyProblem]) { self.problems = problems }

    public var description: String {
        "invalid policy (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
            + problems.map { "  " + $0.description }.joined(separator: "\n")
    }
}

extension Policy {
    /// Checks everything that can be checked without knowing the bridge's address.
    /// Published container ports missing from `exposed` are not a problem
    /// (see `normalized()`).
    public func validate() throws(PolicyValidationError) {
        let problems = self.problems(bridgeAddress: nil)
        if !problems.isEmpty { throw PolicyValidationError(problems: problems) }
    }

    /// `validate()` plus the checks that need the bridge's address, known only
    /// at load time: no container may have the bridge's address or the
    /// subnet's network or broadcast address.
    public func validate(bridge address: IPv4InterfaceAddress) throws(PolicyValidationError) {
        let problems = self.problems(bridgeAddress: address)
        if !problems.isEmpty { throw PolicyValidationError(problems: problems) }
    }

    /// Docker's own networks: a user-defined network cannot take these names.
    static let reservedNetworkNames: Set<String> = [Policy.defaultNetworkName, "host", "none"]

    /// Every problem, in file order; empty when the policy is consistent.
    /// `networkAddresses`: the bridge address of each user-defined network, by
    /// network name, where known.
    public func problems(
        bridgeAddress: IPv4InterfaceAddress?, networkAddresses: [String: IPv4InterfaceAddress] = [:]
    ) -> [PolicyProblem] {
        var problems: [PolicyProblem] = []
        func add(_ path: String, _ message: String) { problems.append(PolicyProblem(path: path, message: message)) }

        // Every backend names the bridge in netfilter text (the NAT table, the
        // eBPF backend's guard): it must be a name that needs no escaping there.
        if let problem = NetfilterName.problem(bridge) { add("bridge", problem) }

        // The container's replies are translated back on tc (helpers that keep
        // an offloaded checksum right, bpf_redirect to the outside); the XDP
        // port hook has neither, and its replies would leave untranslated.
        if nat == .ebpf && portHook == .xdp {
            add("nat", "nat ebpf needs portHook tc: the replies are translated back by the port program on tc")
        }

        // External interfaces.
        var extByName: [String: Int] = [:]
        for (i, ext) in extInterfaces.enumerated() {
            let path = "extInterfaces[\(i)].name"
            if let problem = InterfaceName.problem(ext.name) {
                add(path, problem)
                continue
            }
            if ext.name == bridge {
                add(
                    path,
                    "'\(ext.name)' is the bridge; an external interface must be an interface towards the outside, not the bridge"
                )
            }
            if let first = extByName[ext.name] {
                add(
                    path,
                    "'\(ext.name)' is listed twice (also extInterfaces[\(first)]); list each interface once and merge their allowSources"
                )
            } else {
                extByName[ext.name] = i
            }
        }

        // User-defined networks.
        var networkByName: [String: Int] = [:]
        var networkByBridge: [String: Int] = [bridge: -1]
        for (i, network) in networks.enumerated() {
            let base = "networks[\(i)]"
            if ContainerName.normalized(network.name) != network.name {
                add("\(base).name", "'\(network.name)' is not a valid network name; use \(ContainerName.accepted)")
            } else if Self.reservedNetworkNames.contains(network.name) {
                add(
                    "\(base).name",
                    "'\(network.name)' is Docker's own network; the default bridge is set by the top-level bridge and icc, "
                        + "and host and none have no bridge to police")
            } else if let first = networkByName[network.name] {
                add(
                    "\(base).name",
                    "'\(network.name)' is already the name of networks[\(first)]; list each network once")
            } else {
                networkByName[network.name] = i
            }
            if let problem = NetfilterName.problem(network.bridge) {
                add("\(base).bridge", problem)
            } else if let first = networkByBridge[network.bridge] {
                add(
                    "\(base).bridge",
                    "'\(network.bridge)' is already the bridge of "
                        + (first < 0 ? "the default network (bridge)" : "networks[\(first)]")
                        + "; every network has its own bridge")
            } else if let ext = extByName[network.bridge] {
                add(
                    "\(base).bridge",
                    "'\(network.bridge)' is an external interface (extInterfaces[\(ext)]), not a bridge")
            } else {
                networkByBridge[network.bridge] = i
            }
        }

        // Dual-stack networks: an IPv6 gateway address inside a subnet no
        // other network shares.
        var subnets6: [(path: String, subnet: IPv6CIDR)] = []
        let ipv6Networks =
            [("bridgeIPv6", bridgeIPv6)]
            + networks.enumerated().map { ("networks[\($0.offset)].ipv6", $0.element.ipv6) }
        for case (let path, let gateway?) in ipv6Networks {
            let address = gateway.address
            if gateway.prefixLength < 8 || gateway.prefixLength > 126 {
                add(path, "\(gateway): a network's IPv6 prefix length must be 8-126 (Docker's are /64 and longer)")
            } else if address.isLinkLocal || address.isMulticast || address.isUnspecified {
                add(path, "\(gateway) cannot be a network's IPv6 gateway (link-local, multicast and :: are not)")
            } else if address == gateway.network.address {
                add(
                    path,
                    "\(gateway) is the subnet's own address; the gateway is a host address such as \(gateway.network.address)1"
                )
            } else if let clash = subnets6.first(where: { $0.subnet.overlaps(gateway.network) }) {
                add(
                    path,
                    "the IPv6 subnet \(gateway.network) overlaps \(clash.subnet) of \(clash.path); "
                        + "Docker networks never share addresses")
            } else {
                subnets6.append((path, gateway.network))
            }
        }

        // Containers.
        var byName: [String: Int] = [:]
        var byIP: [IPv4Address: Int] = [:]
        var byIPv6: [IPv6Address: Int] = [:]
        var byMAC: [MACAddress: Int] = [:]
        var byPort: [String: Int] = [:]
        func who(_ index: Int) -> String { "containers[\(index)] '\(containers[index].name)'" }

        for (i, container) in containers.enumerated() {
            let base = "containers[\(i)]"
            if let network = container.network, networkByName[network] == nil {
                let known = networks.map(\.name).sorted().joined(separator: ", ")
                add(
                    "\(base).network",
                    "no network is named '\(network)'; "
                        + (networks.isEmpty
                            ? "there are no networks (leave network out for the default bridge)"
                            : "known networks: \(known) (leave network out for the default bridge)"))
            }
            // A name is unique per network: a container on two networks is two entries.
            let nameKey = container.name + "\u{0}" + (container.network ?? "")
            if ContainerName.normalized(container.name) == nil {
                add("\(base).name", "'\(container.name)' is not a valid container name; use \(ContainerName.accepted)")
            } else if let first = byName[nameKey] {
                add(
                    "\(base).name",
                    "'\(container.name)' is already the name of containers[\(first)] on the same network; "
                        + "container names must be unique on a network")
            } else {
                byName[nameKey] = i
            }

            if !container.ip.isUsableUnicast {
                add(
                    "\(base).ip",
                    "\(container.ip) cannot be a container's address (not a unicast address: "
                        + "0.0.0.0/8, 127.0.0.0/8, multicast and 240.0.0.0/4 are not); use an address of the bridge subnet"
                )
            } else if let first = byIP[container.ip] {
                add(
                    "\(base).ip",
                    "\(container.ip) is already the address of \(who(first)); every container needs its own address")
            } else {
                byIP[container.ip] = i
            }
            let ownBridge =
                container.network.map { name in networks.first { $0.name == name }?.bridge ?? name } ?? bridge
            if let bridgeAddress = container.network.map({ networkAddresses[$0] }) ?? bridgeAddress {
                if container.ip == bridgeAddress.address {
                    add(
                        "\(base).ip",
                        "\(container.ip) is the bridge's own address (\(ownBridge) has \(bridgeAddress)); use another address of \(bridgeAddress.network)"
                    )
                } else if bridgeAddress.prefixLength <= 30, bridgeAddress.network.contains(container.ip) {
                    if container.ip == bridgeAddress.network.address {
                        add(
                            "\(base).ip",
                            "\(container.ip) is the network address of the bridge subnet \(bridgeAddress.network); use a host address"
                        )
                    } else if container.ip == bridgeAddress.broadcast {
                        add(
                            "\(base).ip",
                            "\(container.ip) is the broadcast address of the bridge subnet \(bridgeAddress.network); use a host address"
                        )
                    }
                }
            }

            if let ipv6 = container.ipv6 {
                let gateway = ipv6Gateway(of: container)
                if ipv6.isLinkLocal || ipv6.isMulticast || ipv6.isUnspecified || ipv6 == IPv6Address(high: 0, low: 1) {
                    add(
                        "\(base).ipv6",
                        "\(ipv6) cannot be a container's IPv6 address (link-local, multicast, :: and ::1 are not); "
                            + "use an address of its network's IPv6 subnet")
                } else if let first = byIPv6[ipv6] {
                    add(
                        "\(base).ipv6",
                        "\(ipv6) is already the IPv6 address of \(who(first)); every container needs its own address")
                } else if let gateway, ipv6 == gateway.address {
                    add(
                        "\(base).ipv6",
                        "\(ipv6) is the network's IPv6 gateway (\(gateway)); use another address of \(gateway.network)")
                } else if let gateway, !gateway.network.contains(ipv6) {
                    add(
                        "\(base).ipv6",
                        "\(ipv6) is outside its network's IPv6 subnet \(gateway.network); Docker gives containers "
                            + "addresses of that subnet")
                } else if gateway == nil, container.network == nil || networkByName[container.network!] != nil {
                    add(
                        "\(base).ipv6",
                        "\(ipv6) needs an IPv6 network, but "
                            + (container.network.map { "network '\($0)' has no ipv6" }
                                ?? "the default bridge has no bridgeIPv6")
                            + " (Docker: --ipv6 on the network or the daemon)")
                } else {
                    byIPv6[ipv6] = i
                }
            }

            if container.mac.isMulticast || container.mac.isZero {
                add(
                    "\(base).mac",
                    "\(container.mac) is not a unicast MAC address (the lowest bit of the first byte must be 0, "
                        + "and it cannot be all zeros); Docker's addresses look like 02:42:ac:11:00:02")
            } else if let first = byMAC[container.mac] {
                add(
                    "\(base).mac",
                    "\(container.mac) is already the MAC of \(who(first)); every container needs its own MAC")
            } else {
                byMAC[container.mac] = i
            }

            if let problem = InterfaceName.problem(container.port) {
                add("\(base).port", problem)
            } else if networkByBridge[container.port] != nil {
                add(
                    "\(base).port",
                    "'\(container.port)' is a bridge itself; port is the container's host-side veth enslaved to the bridge"
                )
            } else if let ext = extByName[container.port] {
                add(
                    "\(base).port",
                    "'\(container.port)' is an external interface (extInterfaces[\(ext)]); port is the container's host-side veth enslaved to the bridge"
                )
            } else if let first = byPort[container.port] {
                add(
                    "\(base).port",
                    "'\(container.port)' is already the port of \(who(first)); every container has its own veth")
            } else {
                byPort[container.port] = i
            }

            for (k, spec) in container.exposed.enumerated() where spec.port == 0 {
                add("\(base).exposed[\(k)]", "port 0 cannot be exposed; use 1-65535")
            }
            for (k, binding) in container.published.enumerated() {
                let path = "\(base).published[\(k)]"
                if binding.hostPort == 0 { add("\(path).hostPort", "0 is not a host port; use 1-65535") }
                if binding.containerPort == 0 { add("\(path).containerPort", "0 is not a container port; use 1-65535") }
                if let hostIP = binding.hostIP, hostIP.isMulticast || hostIP.value >> 28 == 0xF {
                    add(
                        "\(path).hostIP",
                        "\(hostIP) cannot be bound; use a unicast address of this host, or leave hostIP out for every address"
                    )
                }
            }
        }

        // Published host ports: (hostIP or every address, port, proto) must not collide,
        // and a binding on every address collides with any specific one.
        struct Binding {
            var container: Int
            var index: Int
            var published: PublishedPort
        }
        var bindings: [PortSpec: [Binding]] = [:]
        for (i, container) in containers.enumerated() {
            for (k, binding) in container.published.enumerated() where binding.hostPort != 0 {
                let spec = PortSpec(binding.hostPort, binding.proto)
                let ownIP = binding.hostIP == .any ? nil : binding.hostIP
                for other in bindings[spec, default: []] {
                    let otherIP = other.published.hostIP == .any ? nil : other.published.hostIP
                    guard ownIP == nil || otherIP == nil || ownIP == otherIP else { continue }
                    let on = ownIP.map { "on \($0)" } ?? "on every address"
                    let otherOn = otherIP.map { "on \($0)" } ?? "on every address"
                    add(
                        "containers[\(i)].published[\(k)]",
                        "host port \(spec) \(on) collides with \(who(other.container)) published[\(other.index)] (\(otherOn)); "
                            + "each host address, port and protocol can be published once")
                    break
                }
                bindings[spec, default: []].append(Binding(container: i, index: k, published: binding))
            }
        }

        problems += peerProblems(bridgeAddress: bridgeAddress, networkAddresses: networkAddresses)

        // Links.
        var seenLinks: [String: Int] = [:]
        // Docker has links on the default bridge only.
        let onDefaultBridge = containers.filter { $0.network == nil }
        let known = Set(onDefaultBridge.map(\.name)).sorted().joined(separator: ", ")
        for (i, link) in links.enumerated() {
            let base = "links[\(i)]"
            var bothKnown = true
            for (key, name) in [("parent", link.parent), ("child", link.child)] where byName[name + "\u{0}"] == nil {
                bothKnown = false
                let elsewhere = containers.contains { $0.name == name }
                add(
                    "\(base).\(key)",
                    elsewhere
                        ? "'\(name)' is not on the default bridge; links join containers of the default bridge only "
                            + "(Docker has no links on user-defined networks)"
                        : "no container is named '\(name)'"
                            + (onDefaultBridge.isEmpty
                                ? "; there are no containers on the default bridge"
                                : "; known containers: \(known)"))
            }
            if link.parent == link.child {
                add(base, "'\(link.parent)' is linked to itself; parent and child must be different containers")
                continue
            }
            guard bothKnown else { continue }
            let key = link.parent + "\u{0}" + link.child
            if let first = seenLinks[key] {
                add(base, "\(link.parent) → \(link.child) is already linked by links[\(first)]; list each link once")
            } else {
                seenLinks[key] = i
            }
        }
        return problems
    }

    /// The peers: unique names and addresses, subnets that overlap neither
    /// each other nor a local network's subnet (where known) nor a local
    /// container, and host addresses outside every container subnet (the
    /// check of a peer's traffic routes towards its address).
    func peerProblems(
        bridgeAddress: IPv4InterfaceAddress?, networkAddresses: [String: IPv4InterfaceAddress]
    ) -> [PolicyProblem] {
        var problems: [PolicyProblem] = []
        func add(_ path: String, _ message: String) { problems.append(PolicyProblem(path: path, message: message)) }
        // Local container subnets known here: the default bridge's, each network's.
        var local: [(IPv4CIDR, String)] = []
        if let bridgeAddress { local.append((bridgeAddress.network, "the subnet of \(bridge)")) }
        for network in networks {
            if let address = networkAddresses[network.name] {
                local.append((address.network, "the subnet of network '\(network.name)'"))
            }
        }
        var byName: [String: Int] = [:]
        var byAddress: [IPv4Address: Int] = [:]
        var claimed: [(IPv4CIDR, String)] = []
        for (i, peer) in peers.enumerated() {
            let base = "peers[\(i)]"
            if ContainerName.normalized(peer.name) != peer.name {
                add("\(base).name", "'\(peer.name)' is not a valid peer name; use \(ContainerName.accepted)")
            } else if let first = byName[peer.name] {
                add("\(base).name", "'\(peer.name)' is already the name of peers[\(first)]; list each peer once")
            } else {
                byName[peer.name] = i
            }
            if !peer.address.isUsableUnicast {
                add(
                    "\(base).address",
                    "\(peer.address) cannot be a host's address (not a unicast address); use the peer host's own IPv4 address"
                )
            } else if let first = byAddress[peer.address] {
                add(
                    "\(base).address",
                    "\(peer.address) is already the address of peers[\(first)] '\(peers[first].name)'; list each host once"
                )
            } else {
                byAddress[peer.address] = i
            }
            if peer.subnets.isEmpty {
                add("\(base).subnets", "a peer needs at least one container subnet, such as 172.18.0.0/16")
            }
            for (k, subnet) in peer.subnets.enumerated() {
                let path = "\(base).subnets[\(k)]"
                if subnet.prefixLength < 8 {
                    add(
                        path,
                        "\(subnet) is wider than a /8; list the peer's container subnets, not a route to everything")
                } else if let clash = local.first(where: { $0.0.overlaps(subnet) }) {
                    add(
                        path,
                        "\(subnet) overlaps \(clash.1) (\(clash.0)); a peer's subnets are the other host's, never this one's"
                    )
                } else if let clash = claimed.first(where: { $0.0.overlaps(subnet) }) {
                    add(path, "\(subnet) overlaps \(clash.0) of \(clash.1); every subnet belongs to one peer")
                } else if let container = containers.first(where: { subnet.contains($0.ip) }) {
                    add(
                        path,
                        "\(subnet) holds the address \(container.ip) of local container '\(container.name)'; "
                            + "a peer's subnets are the other host's")
                }
                claimed.append((subnet, "peers[\(i)] '\(peer.name)'"))
            }
        }
        // A host address inside a container subnet could be claimed by a container.
        for (i, peer) in peers.enumerated() {
            let inside = (local + claimed).first { $0.0.contains(peer.address) }
            if let inside {
                add(
                    "peers[\(i)].address",
                    "\(peer.address) lies in \(inside.1) (\(inside.0)); a peer's host address is outside every container subnet"
                )
            }
        }
        return problems
    }
}
