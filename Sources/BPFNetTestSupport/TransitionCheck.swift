// SPDX-License-Identifier: Apache-2.0
//
// The reconciler's promise, made checkable: apply a list of map writes one at
// a time and, after every single write, ask the reference dataplane whether a
// packet that both the old and the new state allow is still allowed.

import BPFNetCore

/// A frame and the program that judges it.
public struct ProbeFrame: Hashable, Sendable {
    public enum Program: Hashable, Sendable {
        case port
        case ext(ingressIfindex: UInt32)
    }

    public var program: Program
    public var frame: [UInt8]
    /// Human-readable summary for failure messages.
    public var label: String

    public init(program: Program, frame: [UInt8], label: String) {
        self.program = program
        self.frame = frame
        self.label = label
    }

    public func verdict(in dataplane: ReferenceDataplane) -> Verdict {
        verdict(in: dataplane, parsed: FrameParser.parse(frame))
    }

    func verdict(in dataplane: ReferenceDataplane, parsed: ParsedFrame) -> Verdict {
        switch program {
        case .port:
            let ethernet = EthernetAddresses(of: frame)
            return dataplane.portVerdict(
                parsed: parsed, ethernet: ethernet, sender: Self.sender(from: ethernet.source, in: dataplane.state))
        case .ext(let ifindex):
            return dataplane.extVerdict(parsed: parsed, ingressIfindex: ifindex)
        }
    }
}

extension ProbeFrame {
    /// Probes are sent by the container whose MAC they carry, on its own
    /// port: the `bn_ports` entry with that MAC, as `state` holds it (an
    /// unknown port while there is none).
    static func sender(from mac: MACAddress, in state: MapState) -> PortSender {
        guard let port = state.ports.values.first(where: { $0.mac == mac }) else { return .unknown }
        return .container(port)
    }
}

/// A packet allowed before and after a change but dropped in between.
public struct TransitionViolation: Hashable, Sendable, CustomStringConvertible {
    /// Index of the write after which the drop happened.
    public var step: Int
    public var change: MapChange
    public var probe: ProbeFrame
    public var before: Verdict
    public var after: Verdict
    public var intermediate: Verdict

    public var description: String {
        "after write #\(step) (\(change)): \(probe.label) was \(before) before and \(after) after, but \(intermediate) in between"
    }
}

/// What happened to the probes while a list of writes was applied.
public struct TransitionReport: Hashable, Sendable {
    /// Probes allowed before and after but dropped after some write.
    public var drops: [TransitionViolation]
    /// Probes dropped before and after but passed after some write.
    public var openings: [TransitionViolation]
    /// Probes the final state judges differently from the desired state
    /// (the writes do not reach the desired state).
    public var mismatches: [TransitionViolation]
}

public enum TransitionCheck {
    /// Applies `changes` (default: `current.changes(to: desired)`) to `current`
    /// one write at a time through `InMemoryMaps`; returns every probe that is
    /// allowed in `current` and in `desired` but dropped in some intermediate
    /// state, plus any probe the final state judges differently from `desired`.
    public static func violations(
        from current: MapState, to desired: MapState, changes: [MapChange]? = nil,
        probes: [ProbeFrame]? = nil
    ) -> [TransitionViolation] {
        let report = run(from: current, to: desired, changes: changes, probes: probes)
        return report.drops + report.mismatches
    }

    /// The full report: drops, openings (the converse: traffic neither policy
    /// admits getting through in between) and mismatches.
    public static func run(
        from current: MapState, to desired: MapState, changes: [MapChange]? = nil,
        probes: [ProbeFrame]? = nil
    ) -> TransitionReport {
        let changes = changes ?? current.changes(to: desired)
        let probes = probes ?? probeFrames(for: [current, desired])
        let parsed = probes.map { FrameParser.parse($0.frame) }
        let before = probes.indices.map {
            probes[$0].verdict(in: ReferenceDataplane(state: current), parsed: parsed[$0])
        }
        let after = probes.indices.map {
            probes[$0].verdict(in: ReferenceDataplane(state: desired), parsed: parsed[$0])
        }
        let watched = probes.indices.filter { before[$0].action == after[$0].action }

        var report = TransitionReport(drops: [], openings: [], mismatches: [])
        var reported = Set<Int>()
        var maps = InMemoryMaps(state: current)
        var step = 0
        maps.afterEachWrite = { state, change in
            let dataplane = ReferenceDataplane(state: state)
            for index in watched where !reported.contains(index) {
                let verdict = probes[index].verdict(in: dataplane, parsed: parsed[index])
                guard verdict.action != before[index].action else { continue }
                reported.insert(index)
                let violation = TransitionViolation(
                    step: step, change: change, probe: probes[index],
                    before: before[index], after: after[index], intermediate: verdict)
                if verdict.action == .drop { report.drops.append(violation) } else { report.openings.append(violation) }
            }
            step += 1
        }
        try? maps.apply(changes)
        let final = ReferenceDataplane(state: maps.state)
        for index in probes.indices {
            let verdict = probes[index].verdict(in: final, parsed: parsed[index])
            if verdict != after[index], let last = changes.last {
                report.mismatches.append(
                    TransitionViolation(
                        step: changes.count - 1, change: last, probe: probes[index],
                        before: before[index], after: after[index], intermediate: verdict))
            }
        }
        return report
    }

    /// Frames that exercise every rule of the given states: between every pair
    /// of known containers (and towards the bridge, broadcast, multicast and
    /// outside) on every link port and some others, in both directions, TCP,
    /// UDP, SCTP, ICMP and non-first fragments, IPv6 to every container MAC;
    /// and from sources at every allow-list edge, on every ext interface, to
    /// every container and published port.
    public static func probeFrames(for states: [MapState]) -> [ProbeFrame] {
        var containerIPs = Set<IPv4Address>()
        var macs: [MACAddress: IPv4Address] = [:]
        var linkPorts: Set<UInt16> = [80, 40000]
        var published = Set<PublishedKey>()
        var ifindexes: Set<UInt32> = [4242]
        var sources: Set<IPv4Address> = [IPv4Address(198, 51, 100, 200), IPv4Address(203, 0, 113, 250)]
        var specials: Set<IPv4Address> = [
            IPv4Address(255, 255, 255, 255), IPv4Address(224, 0, 0, 251),
            IPv4Address(198, 51, 100, 9),
        ]
        for state in states {
            containerIPs.formUnion(state.containers.keys)
            macs.merge(state.macs) { first, _ in first }
            for rule in state.links where rule.port != 0 { linkPorts.insert(rule.port) }
            published.formUnion(state.published.keys)
            ifindexes.formUnion(state.extInterfaces.keys)
            for source in state.allowSources {
                sources.insert(source.prefix.address)
                sources.insert(IPv4Address(source.prefix.address.value | ~source.prefix.netmask))
                sources.insert(IPv4Address(source.prefix.address.value &- 1))
            }
            specials.insert(state.config.bridgeAddress)
            if state.config.bridgeNetmask.value != 0 {
                specials.insert(IPv4Address(state.config.bridgeSubnet.value | ~state.config.bridgeNetmask.value))
            }
        }
        let macOf = Dictionary(macs.map { ($0.value, $0.key) }, uniquingKeysWith: { first, _ in first })
        func endpoint(_ ip: IPv4Address) -> Endpoint {
            Endpoint(mac: macOf[ip] ?? MACAddress(0x02, 0x00, 0, 0, 0, 0x99), ip: ip)
        }

        var probes: [ProbeFrame] = []
        let ports = linkPorts.sorted()
        let l4Kinds: [(String, (UInt16, UInt16) -> Transport)] = [
            ("tcp", { .tcp(sourcePort: $0, destinationPort: $1) }),
            ("udp", { .udp(sourcePort: $0, destinationPort: $1) }),
            ("sctp", { .sctp(sourcePort: $0, destinationPort: $1) }),
        ]

        // Port program.
        for s in containerIPs.sorted() {
            for d in containerIPs.union(specials).sorted() where d != s {
                let eth = EthernetHeader(destination: endpoint(d).mac, source: endpoint(s).mac)
                let ip = IPv4Header(source: s, destination: d)
                for (name, make) in l4Kinds {
                    for port in ports {
                        for (sport, dport) in [(UInt16(45678), port), (port, UInt16(45678))] {
                            probes.append(
                                ProbeFrame(
                                    program: .port, frame: PacketBuilder.ipv4Frame(eth, ip, make(sport, dport)),
                                    label: "port \(name) \(s):\(sport) → \(d):\(dport)"))
                        }
                    }
                    var fragment = ip
                    fragment.fragmentOffset = 4
                    probes.append(
                        ProbeFrame(
                            program: .port,
                            frame: PacketBuilder.ipv4Frame(
                                eth, fragment, .raw(proto: make(1, 1).proto),
                                payload: Array(repeating: 7, count: 16)),
                            label: "port \(name) non-first fragment \(s) → \(d)"))
                }
                probes.append(
                    ProbeFrame(
                        program: .port, frame: PacketBuilder.icmpEchoFrame(from: endpoint(s), to: endpoint(d)),
                        label: "port icmp \(s) → \(d)"))
            }
            for (mac, ip) in macs.sorted(by: { $0.value < $1.value }) where ip != s {
                probes.append(
                    ProbeFrame(
                        program: .port,
                        frame: PacketBuilder.ipv6Frame(EthernetHeader(destination: mac, source: endpoint(s).mac)),
                        label: "port ipv6 \(s) → mac \(mac)"))
            }
        }

        // Ext program.
        var destinations = containerIPs.union(specials)
        destinations.insert(IPv4Address(203, 0, 113, 1))  // some host address
        for key in published where key.hostAddress != .any { destinations.insert(key.hostAddress) }
        var dports = Set(published.map(\.hostPort))
        dports.insert(22)
        for ifindex in ifindexes.sorted() {
            for s in sources.sorted() {
                for d in destinations.sorted() {
                    let eth = EthernetHeader(
                        destination: MACAddress(0x02, 0, 0, 0, 0, 1), source: MACAddress(0x02, 0, 0, 0, 0, 2))
                    let ip = IPv4Header(source: s, destination: d)
                    for (name, make) in l4Kinds {
                        for dport in dports.sorted() {
                            probes.append(
                                ProbeFrame(
                                    program: .ext(ingressIfindex: ifindex),
                                    frame: PacketBuilder.ipv4Frame(eth, ip, make(50000, dport)),
                                    label: "ext if\(ifindex) \(name) \(s) → \(d):\(dport)"))
                        }
                    }
                    probes.append(
                        ProbeFrame(
                            program: .ext(ingressIfindex: ifindex),
                            frame: PacketBuilder.ipv4Frame(eth, ip, .icmpEcho()),
                            label: "ext if\(ifindex) icmp \(s) → \(d)"))
                }
            }
        }
        return probes
    }
}
