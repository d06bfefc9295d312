// SPDX-License-Identifier: Apache-2.0
//
// Reads the nftables fallback's tables back from `nft -j list table ...`
// output: the policy (from the typed sets and maps the rules look up, so
// `status` shows what the kernel holds, not what a file said) and the named
// counters.

import Foundation

public enum NFTablesReadback {
    /// The policy held by the two tables; nil when the bridge table is not
    /// bpfnet's (no `settings` set with a readable comment).
    /// - Parameters:
    ///   - bridgeTable: `nft -j list table bridge bpfnet`.
    ///   - ipTable: `nft -j list table ip bpfnet` (nil when it is missing).
    ///   - ip6Table: `nft -j list table ip6 bpfnet` (nil when it is missing): the allow-list's IPv6 part.
    public static func policy(bridgeTable: Data, ipTable: Data?, ip6Table: Data? = nil) throws -> NetfilterPolicy? {
        let bridge = try objects(bridgeTable)
        let ip = try ipTable.map(objects) ?? []
        let ip6 = try ip6Table.map(objects) ?? []
        guard let settings = set(named: "settings", in: bridge),
            let comment = settings["comment"] as? String,
            let base = NetfilterPolicy.settings(from: comment)
        else { return nil }

        var notes: [String: String] = [:]
        for element in elements(settings) {
            guard let comment = (element as? [String: Any]).flatMap(elementComment),
                let colon = comment.firstIndex(of: ":")
            else { continue }
            notes[String(comment[..<colon])] = String(comment[comment.index(after: colon)...]).trimmingCharacters(
                in: .whitespaces)
        }

        var macByAddress: [IPv4Address: MACAddress] = [:]
        for element in elements(set(named: "macs", in: bridge)) {
            guard let pair = element as? [Any], pair.count == 2,
                let mac = (unwrap(pair[0]) as? String).flatMap({ MACAddress($0) }),
                let address = (unwrap(pair[1]) as? String).flatMap({ IPv4Address($0) })
            else { continue }
            macByAddress[address] = mac
        }
        var containers: [NetfilterContainer] = []
        for element in elements(set(named: "ports", in: bridge)) {
            guard let pair = element as? [Any], pair.count == 2, let port = unwrap(pair[0]) as? String,
                let address = (unwrap(pair[1]) as? String).flatMap({ IPv4Address($0) })
            else { continue }
            let name = (pair[0] as? [String: Any]).flatMap(elementComment) ?? address.description
            containers.append(
                NetfilterContainer(
                    name: name, ip: address, mac: macByAddress[address] ?? MACAddress(0, 0, 0, 0, 0, 0),
                    port: port))
        }

        var links: [LinkRule] = []
        for (name, direction) in [
            ("link_forward", LinkDirection.forward), ("link_reverse", .reverse), ("link_pairs", .pair),
        ] {
            for element in elements(set(named: name, in: bridge)) {
                guard let parts = concat(unwrap(element)), parts.count == (direction == .pair ? 3 : 4),
                    let source = (parts[0] as? String).flatMap({ IPv4Address($0) }),
                    let destination = (parts[1] as? String).flatMap({ IPv4Address($0) }),
                    let proto = protocolNumber(parts[2])
                else { continue }
                let port = direction == .pair ? 0 : number(parts[3]).map(UInt16.init) ?? 0
                links.append(
                    LinkRule(source: source, destination: destination, port: port, proto: proto, direction: direction))
            }
        }

        var published: [NetfilterPublished] = []
        for element in elements(set(named: "published_any", in: ip)) {
            guard let pair = element as? [Any], pair.count == 2, let key = concat(unwrap(pair[0])), key.count == 2,
                let value = concat(unwrap(pair[1])), value.count == 2,
                let proto = protocolNumber(key[0]), let hostPort = number(key[1]),
                let address = (value[0] as? String).flatMap({ IPv4Address($0) }), let port = number(value[1])
            else { continue }
            published.append(
                NetfilterPublished(
                    key: PublishedKey(hostAddress: .any, hostPort: UInt16(hostPort), proto: proto),
                    target: PublishedTarget(containerAddress: address, containerPort: UInt16(port))))
        }
        for element in elements(set(named: "published_addr", in: ip)) {
            guard let pair = element as? [Any], pair.count == 2, let key = concat(unwrap(pair[0])), key.count == 3,
                let value = concat(unwrap(pair[1])), value.count == 2,
                let host = (key[0] as? String).flatMap({ IPv4Address($0) }),
                let proto = protocolNumber(key[1]), let hostPort = number(key[2]),
                let address = (value[0] as? String).flatMap({ IPv4Address($0) }), let port = number(value[1])
            else { continue }
            published.append(
                NetfilterPublished(
                    key: PublishedKey(hostAddress: host, hostPort: UInt16(hostPort), proto: proto),
                    target: PublishedTarget(containerAddress: address, containerPort: UInt16(port))))
        }

        var allow: [String: [IPv4CIDR]] = [:]
        for element in elements(set(named: "allow_src", in: ip)) {
            guard let parts = concat(unwrap(element)), parts.count == 2, let interface = parts[0] as? String,
                let prefix = cidr(parts[1])
            else { continue }
            allow[interface, default: []].append(prefix)
        }
        // The list's IPv6 part lives in the ip6 table (`allow_src6`).
        var allow6: [String: [IPv6CIDR]] = [:]
        for element in elements(set(named: "allow_src6", in: ip6)) {
            guard let parts = concat(unwrap(element)), parts.count == 2, let interface = parts[0] as? String,
                let prefix = cidr6(parts[1])
            else { continue }
            allow6[interface, default: []].append(prefix)
        }
        let extInterfaces = elements(set(named: "ext_ifs", in: ip)).compactMap { unwrap($0) as? String }.map { name in
            NetfilterExtInterface(name: name, allowSources: allow[name] ?? [], allowSourcesIPv6: allow6[name] ?? [])
        }

        var result = NetfilterPolicy(
            bridge: base.bridge, bridgeAddress: base.bridgeAddress, icc: base.icc,
            forwardAccept: base.forwardAccept, ipForward: base.ipForward, containers: containers,
            links: links, published: published, extInterfaces: extInterfaces, unusedBackends: notes)
        result.peerAllow = base.peerAllow
        // "NAME ADDRESS" on each subnet of `peer_subnets`; the ways from `peer_ways`.
        var ways: [IPv4CIDR: String] = [:]
        for element in elements(set(named: "peer_ways", in: ip)) {
            guard let parts = concat(unwrap(element)), parts.count == 2, let interface = parts[0] as? String,
                let prefix = cidr(parts[1])
            else { continue }
            ways[prefix] = interface
        }
        var peers: [IPv4Address: NetfilterPeer] = [:]
        for element in elements(set(named: "peer_subnets", in: ip)) {
            guard let comment = (element as? [String: Any]).flatMap(elementComment),
                case let words = comment.split(separator: " "), words.count == 2,
                let address = IPv4Address(words[1]), let subnet = cidr(unwrap(element))
            else { continue }
            var peer = peers[address] ?? NetfilterPeer(name: String(words[0]), address: address, subnets: [])
            peer.subnets = (peer.subnets + [subnet]).sorted()
            peer.interface = peer.interface ?? ways[subnet]
            peers[address] = peer
        }
        result.peers = peers.values.sorted()
        return result
    }

    /// Named counters of one table: name → value.
    public static func counters(_ table: Data) throws -> [String: NFTablesRuleset.CounterValue] {
        var result: [String: NFTablesRuleset.CounterValue] = [:]
        for object in try objects(table) {
            guard let counter = object["counter"] as? [String: Any], let name = counter["name"] as? String else {
                continue
            }
            result[name] = NFTablesRuleset.CounterValue(
                packets: number(counter["packets"] as Any).map(UInt64.init) ?? 0,
                bytes: number(counter["bytes"] as Any).map(UInt64.init) ?? 0)
        }
        return result
    }

    /// The comment of a table from `nft list table ...` text (JSON omits it in nft 1.0.6).
    public static func tableComment(_ text: String) -> String? {
        for line in text.split(separator: "\n").prefix(4) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("comment \""), trimmed.hasSuffix("\"") {
                return String(trimmed.dropFirst("comment \"".count).dropLast())
            }
        }
        return nil
    }

    // MARK: JSON helpers

    static func objects(_ data: Data) throws -> [[String: Any]] {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let list = root["nftables"] as? [[String: Any]]
        else {
            throw NFTablesReadbackError("nft -j printed something that is not an nftables JSON document")
        }
        return list
    }

    static func set(named name: String, in objects: [[String: Any]]) -> [String: Any]? {
        for object in objects {
            for kind in ["set", "map"] {
                if let set = object[kind] as? [String: Any], set["name"] as? String == name { return set }
            }
        }
        return nil
    }

    static func elements(_ set: [String: Any]?) -> [Any] { set?["elem"] as? [Any] ?? [] }

    /// `{"elem": {"val": X, ...}}` → X.
    static func unwrap(_ value: Any) -> Any {
        if let object = value as? [String: Any], let element = object["elem"] as? [String: Any],
            let inner = element["val"]
        {
            return inner
        }
        return value
    }

    static func elementComment(_ object: [String: Any]) -> String? {
        (object["elem"] as? [String: Any])?["comment"] as? String
    }

    static func concat(_ value: Any) -> [Any]? {
        (value as? [String: Any])?["concat"] as? [Any]
    }

    static func number(_ value: Any) -> Int? {
        if let number = value as? Int { return number }
        if let number = value as? NSNumber { return number.intValue }
        if let text = value as? String { return Int(text) }
        return nil
    }

    static func protocolNumber(_ value: Any) -> UInt8? {
        if let text = value as? String, let proto = TransportProtocol(rawValue: text) { return proto.number }
        return number(value).flatMap { UInt8(exactly: $0) }
    }

    static func cidr(_ value: Any) -> IPv4CIDR? {
        if let text = value as? String { return IPv4CIDR(text) }
        if let object = value as? [String: Any], let prefix = object["prefix"] as? [String: Any],
            let address = (prefix["addr"] as? String).flatMap({ IPv4Address($0) }),
            let length = number(prefix["len"] as Any)
        {
            return IPv4CIDR(address: address, prefixLength: UInt8(clamping: length))
        }
        return nil
    }

    /// An IPv6 prefix as nft's JSON gives it: a plain address (/128) or a prefix object.
    static func cidr6(_ value: Any) -> IPv6CIDR? {
        if let text = value as? String { return IPv6CIDR(text) }
        if let object = value as? [String: Any], let prefix = object["prefix"] as? [String: Any],
            let address = (prefix["addr"] as? String).flatMap({ IPv6Address($0) }),
            let length = number(prefix["len"] as Any)
        {
            return IPv6CIDR(address: address, prefixLength: UInt8(clamping: length))
        }
        return nil
    }
}

public struct NFTablesReadbackError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
