// SPDX-License-Identifier: Apache-2.0
//
// The sections of a policy file: an external interface, a container, a
// published port (as a mapping or in Docker's `[HOSTIP:]HOSTPORT:CONTAINERPORT`
// syntax) and a link, each built from its keys' values.

import Yams

extension PolicyFileReader {
    mutating func extInterface(_ node: Node, path: String) -> ExternalInterface? {
        if case .scalar = node {  // "- eth0": an interface admitting every source
            return interfaceName(node, path: "\(path).name").map { ExternalInterface(name: $0) }
        }
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.extInterfaceKeys, required: ["name"],
                what: "external interface settings (name, allowSources)")
        else { return nil }
        let name = keys["name"].flatMap { interfaceName($0, path: "\(path).name") }
        let sources =
            keys["allowSources"].map {
                scalarList($0, path: "\(path).allowSources") { reader, item, itemPath in
                    reader.sourcePrefix(item, path: itemPath)
                }
            } ?? []
        return name.map {
            ExternalInterface(
                name: $0, allowSources: sources.compactMap(\.v4), allowSourcesIPv6: sources.compactMap(\.v6))
        }
    }

    mutating func network(_ node: Node, path: String) -> BridgeNetwork? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.networkKeys, aliases: PolicyFile.networkKeyAliases,
                required: ["name", "bridge"],
                what: "network settings (\(PolicyFile.networkKeys.joined(separator: ", ")))")
        else { return nil }
        let name = keys["name"].flatMap { text($0, path: "\(path).name", expected: "a network name") }
        let bridge = keys["bridge"].flatMap { interfaceName($0, path: "\(path).bridge") }
        guard let name, let bridge else { return nil }
        var network = BridgeNetwork(name: name, bridge: bridge)
        if let node = keys["icc"], let value = bool(node, path: "\(path).icc") { network.icc = value }
        if let node = keys["internal"], let value = bool(node, path: "\(path).internal") { network.internal = value }
        if let node = keys["masquerade"], let value = bool(node, path: "\(path).masquerade") {
            network.masquerade = value
        }
        if keys["hostIPv4"] != nil, keys["hostBindingIPv4"] != nil {
            fail(
                "\(path).hostBindingIPv4", keys["hostBindingIPv4"],
                "hostBindingIPv4 is the old name of hostIPv4 and both are given; keep hostIPv4")
        } else if let key = ["hostIPv4", "hostBindingIPv4"].first(where: { keys[$0] != nil }), let node = keys[key] {
            network.hostIPv4 = ipv4(node, path: "\(path).\(key)")
        }
        if let node = keys["ipv6"] { network.ipv6 = ipv6InterfaceAddress(node, path: "\(path).ipv6") }
        return network
    }

    mutating func container(_ node: Node, path: String) -> Container? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.containerKeys,
                required: ["name", "ip", "mac", "port"],
                what: "container settings (\(PolicyFile.containerKeys.joined(separator: ", ")))")
        else { return nil }
        var name: String?
        var ip: IPv4Address?
        var macAddress: MACAddress?
        var port: String?
        if let node = keys["name"] { name = containerName(node, path: "\(path).name") }
        if let node = keys["ip"] { ip = ipv4(node, path: "\(path).ip") }
        if let node = keys["mac"] { macAddress = mac(node, path: "\(path).mac") }
        if let node = keys["port"] { port = interfaceName(node, path: "\(path).port") }
        let network = keys["network"].flatMap { text($0, path: "\(path).network", expected: "a network name") }
        let exposed =
            keys["exposed"].map {
                scalarList($0, path: "\(path).exposed") { reader, item, itemPath in
                    reader.portSpec(item, path: itemPath)
                }
            } ?? []
        let published =
            keys["published"].map {
                list($0, path: "\(path).published") { reader, item, itemPath in
                    reader.publishedPort(item, path: itemPath)
                }
            } ?? []
        let ipv6 = keys["ipv6"].flatMap { ipv6Address($0, path: "\(path).ipv6") }
        guard let name, let ip, let macAddress, let port else { return nil }
        return Container(
            name: name, ip: ip, mac: macAddress, port: port, exposed: exposed, published: published, network: network,
            ipv6: ipv6)
    }

    mutating func publishedPort(_ node: Node, path: String) -> PublishedPort? {
        if case .scalar(let scalar) = node, !Self.isNull(node) {
            // Docker's own notation: [hostIP:]hostPort:containerPort[/proto].
            guard let binding = Self.parseDockerBinding(scalar.string) else {
                fail(
                    path, node,
                    "'\(scalar.string)' is not a published port; expected a mapping "
                        + "{hostIP: optional, hostPort: N, containerPort: N, proto: tcp|udp|sctp} "
                        + "or Docker's notation [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO] such as 8080:80/tcp")
                return nil
            }
            return binding
        }
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.publishedKeys,
                required: ["hostPort", "containerPort"],
                what: "published port settings (hostIP, hostPort, containerPort, proto)")
        else { return nil }
        var hostIP: IPv4Address?
        var hostIPFailed = false
        if let node = keys["hostIP"], !Self.isNull(node) {
            hostIP = ipv4(node, path: "\(path).hostIP")
            hostIPFailed = hostIP == nil
        }
        let hostPort = keys["hostPort"].flatMap { port($0, path: "\(path).hostPort") }
        let containerPort = keys["containerPort"].flatMap { port($0, path: "\(path).containerPort") }
        var proto: TransportProtocol? = .tcp
        if let node = keys["proto"], !Self.isNull(node) { proto = transport(node, path: "\(path).proto") }
        guard !hostIPFailed, let hostPort, let containerPort, let proto else { return nil }
        return PublishedPort(hostIP: hostIP, hostPort: hostPort, containerPort: containerPort, proto: proto)
    }

    static func parseDockerBinding(_ text: String) -> PublishedPort? {
        let protoSplit = text.split(separator: "/", omittingEmptySubsequences: false)
        guard protoSplit.count <= 2 else { return nil }
        var proto = TransportProtocol.tcp
        if protoSplit.count == 2 {
            guard let parsed = TransportProtocol(rawValue: protoSplit[1].lowercased()) else { return nil }
            proto = parsed
        }
        let parts = protoSplit[0].split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        var hostIP: IPv4Address?
        if parts.count == 3 {
            guard let ip = IPv4Address(parts[0]) else { return nil }
            hostIP = ip
        }
        let hostText = parts[parts.count - 2]
        let containerText = parts[parts.count - 1]
        guard hostText.allSatisfy(\.isASCIIDigit), containerText.allSatisfy(\.isASCIIDigit),
            let hostPort = UInt16(hostText), hostPort != 0,
            let containerPort = UInt16(containerText), containerPort != 0
        else { return nil }
        return PublishedPort(hostIP: hostIP, hostPort: hostPort, containerPort: containerPort, proto: proto)
    }

    mutating func link(_ node: Node, path: String) -> Link? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.linkKeys, required: ["parent", "child"],
                what: "link settings (parent, child, alias)")
        else { return nil }
        let parent = keys["parent"].flatMap { containerName($0, path: "\(path).parent") }
        let child = keys["child"].flatMap { containerName($0, path: "\(path).child") }
        var alias: String?
        if let node = keys["alias"], !Self.isNull(node) {
            alias = text(node, path: "\(path).alias", expected: "an alias name")
            if let value = alias, value.isEmpty || value.contains(where: \.isWhitespace) {
                fail("\(path).alias", node, "'\(value)' is not a usable alias; expected a host name without spaces")
            }
        }
        guard let parent, let child else { return nil }
        return Link(parent: parent, child: child, alias: alias)
    }

    mutating func peer(_ node: Node, path: String) -> Peer? {
        guard
            let keys = mapping(
                node, path: path, allowed: PolicyFile.peerKeys, required: ["name", "address", "subnets"],
                what: "peer settings (name, address, subnets)")
        else { return nil }
        let name = keys["name"].flatMap { text($0, path: "\(path).name", expected: "a peer name") }
        let address = keys["address"].flatMap { ipv4($0, path: "\(path).address") }
        let subnets =
            keys["subnets"].map {
                scalarList($0, path: "\(path).subnets") { reader, item, itemPath in
                    reader.cidr(item, path: itemPath)
                }
            } ?? []
        let routes = keys["routes"].flatMap { bool($0, path: "\(path).routes") } ?? false
        guard let name, let address else { return nil }
        return Peer(name: name, address: address, subnets: subnets, routes: routes)
    }
}
