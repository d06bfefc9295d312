// SPDX-License-Identifier: Apache-2.0
//
// The fast-path decisions of the real port and ext objects through
// BPF_PROG_TEST_RUN (docs/verdicts.md, "Fast path"): a hit returns
// TC_ACT_REDIRECT (bpf_redirect_peer) or XDP_REDIRECT (bn_fp_tx DEVMAP), every
// fallback returns the normal pass untouched and counts its event, and the
// verdict counters are the same with the fast path on and off. Runs inside a
// namespace of its own (the DEVMAP resolves ifindexes there) with a private
// bpffs; root only.

import BPF
import BPFNetCore
import BPFNetDataplane
import BPFNetShared
import BPFNetTestSupport
import Foundation
import SystemPackage
import XCTest

final class FastPathTestRunTests: XCTestCase {
    private static let tcOK: UInt32 = 0, tcShot: UInt32 = 2, tcRedirect: UInt32 = 7
    private static let xdpDrop: UInt32 = 1, xdpPass: UInt32 = 2, xdpRedirect: UInt32 = 4

    private let bridgeMAC = MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x01)
    private let a = Endpoint(mac: MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x02), ip: IPv4Address(10, 88, 0, 2))
    private let b = Endpoint(mac: MACAddress(0x02, 0x42, 0x0a, 0x58, 0x00, 0x03), ip: IPv4Address(10, 88, 0, 3))
    private let outside = Endpoint(
        mac: MACAddress(0x02, 0x00, 0xc6, 0x33, 0x64, 0x02), ip: IPv4Address(198, 51, 100, 2))
    private let extMAC = MACAddress(0x02, 0x00, 0xc6, 0x33, 0x64, 0x01)

    private var lab: FastPathLab!

    override func setUpWithError() throws {
        try requireRoot("test-runs the port and ext programs with pinned maps")
        lab = try FastPathLab.make(in: self)
    }

    // MARK: port program, tc

    func testTCRedirectsBridgedFrameToTheDestinationPort() throws {
        let port = try lab.ifindex("veth0")
        try lab.configure(icc: true, fastPath: true, a: a, b: b, bPort: port)
        let frame = PacketBuilder.udpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 53)
        // Not confirmed by the control plane (no bn_fp_tx entry): the bridge.
        XCTAssertEqual(try lab.runTC(frame), Self.tcOK)
        XCTAssertEqual(try lab.fastPathCount(.portTC, .unconfirmed), 1)
        try lab.addTarget(port)
        XCTAssertEqual(try lab.runTC(frame), Self.tcRedirect)
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 1)
        XCTAssertEqual(try lab.reasonCount(.portTC, .iccAllowed), 2)
    }

    /// A port that goes (its container stopped) leaves bn_fp_tx by itself, so
    /// traffic still addressed to it (bn_containers not yet updated, the
    /// address already reused) takes the bridge instead of being blackholed.
    func testTCNeverRedirectsToAPortThatIsGone() throws {
        let port = try lab.ifindex("veth0")
        try lab.configure(icc: true, fastPath: true, a: a, b: b, bPort: port)
        try lab.addTarget(port)
        let frame = PacketBuilder.udpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 53)
        XCTAssertEqual(try lab.runTC(frame), Self.tcRedirect)
        try lab.deleteInterface("veth0")
        XCTAssertEqual(try lab.runTC(frame), Self.tcOK, "the kernel took the gone port out of bn_fp_tx")
        XCTAssertEqual(try lab.fastPathCount(.portTC, .unconfirmed), 1)
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 1)
    }

    func testTCLinkedPairIsFastPathedAndUnlinkedIsStillDropped() throws {
        let port = try lab.ifindex("veth0")
        try lab.configure(
            icc: false, fastPath: true, a: a, b: b, bPort: port,
            links: [LinkRule(source: a.ip, destination: b.ip, port: 80, proto: 6, direction: .forward)])
        try lab.addTarget(port)
        XCTAssertEqual(
            try lab.runTC(PacketBuilder.tcpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 80)),
            Self.tcRedirect)
        XCTAssertEqual(
            try lab.runTC(PacketBuilder.tcpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 81)),
            Self.tcShot)
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 1, "a drop counts no fast-path event")
        XCTAssertEqual(try lab.fastPathTotal(.portTC), 1)
        XCTAssertEqual(try lab.reasonCount(.portTC, .link), 1)
        XCTAssertEqual(try lab.reasonCount(.portTC, .icc), 1)
    }

    func testTCFallbacksPassUntouchedAndSayWhy() throws {
        try lab.configure(icc: true, fastPath: true, a: a, b: b)
        let cases: [(String, [UInt8], FastPathEvent)] = [
            (
                "for the bridge's MAC (routed by the host)",
                PacketBuilder.udpFrame(
                    from: a, to: Endpoint(mac: bridgeMAC, ip: b.ip), sourcePort: 1, destinationPort: 2), .mac
            ),
            (
                "VLAN-tagged",
                PacketBuilder.udpFrame(from: a, to: b, sourcePort: 1, destinationPort: 2, vlans: [VLANTag(vid: 7)]),
                .vlan
            ),
            (
                "subnet address without a container",
                PacketBuilder.udpFrame(
                    from: a, to: Endpoint(mac: b.mac, ip: IPv4Address(10, 88, 0, 77)), sourcePort: 1,
                    destinationPort: 2), .unknownDestination
            ),
            (
                "broadcast",
                PacketBuilder.udpFrame(
                    from: a,
                    to: Endpoint(
                        mac: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
                        ip: IPv4Address(10, 88, 0, 255)),
                    sourcePort: 1, destinationPort: 2), .unknownDestination
            ),
            (
                "to the outside",
                PacketBuilder.udpFrame(
                    from: a, to: Endpoint(mac: bridgeMAC, ip: IPv4Address(8, 8, 8, 8)),
                    sourcePort: 1, destinationPort: 2), .verdict
            ),
            (
                "to the bridge address",
                PacketBuilder.icmpEchoFrame(from: a, to: Endpoint(mac: bridgeMAC, ip: IPv4Address(10, 88, 0, 1))),
                .verdict
            ),
            (
                "IPv6 to a container MAC", PacketBuilder.ipv6Frame(EthernetHeader(destination: b.mac, source: a.mac)),
                .notIPv4
            ),
            (
                "ARP",
                PacketBuilder.arpFrame(
                    EthernetHeader(destination: MACAddress(0xff, 0xff, 0xff, 0xff, 0xff, 0xff), source: a.mac),
                    senderMAC: a.mac, senderIP: a.ip, targetIP: b.ip), .verdict
            ),
        ]
        for (what, frame, event) in cases {
            let before = try lab.fastPathCount(.portTC, event)
            let (verdict, out) = try lab.runTCWithOutput(frame)
            XCTAssertEqual(verdict, Self.tcOK, what)
            XCTAssertEqual(out, frame, "\(what): a fallback leaves the frame as it was")
            XCTAssertEqual(try lab.fastPathCount(.portTC, event), before + 1, "\(what): expected event \(event)")
        }
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 0)
    }

    func testTCDestinationOnTheIngressPortIsNotRedirected() throws {
        // In a test run the ingress device is lo (ifindex 1): make it b's port.
        try lab.configure(icc: true, fastPath: true, a: a, b: b, bPort: 1)
        XCTAssertEqual(
            try lab.runTC(PacketBuilder.udpFrame(from: a, to: b, sourcePort: 1, destinationPort: 2)), Self.tcOK)
        XCTAssertEqual(try lab.fastPathCount(.portTC, .samePort), 1)
    }

    func testSameVerdictCountersWithFastPathOnAndOff() throws {
        let frames =
            [
                PacketBuilder.udpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 53),
                PacketBuilder.tcpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 80),
                PacketBuilder.tcpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 81),
                PacketBuilder.tcpFrame(from: b, to: a, sourcePort: 80, destinationPort: 5555),
                PacketBuilder.icmpEchoFrame(from: a, to: b),
                PacketBuilder.udpFrame(
                    from: a, to: Endpoint(mac: bridgeMAC, ip: IPv4Address(8, 8, 8, 8)), sourcePort: 1,
                    destinationPort: 2),
            ]
            + PacketBuilder.fragments(
                EthernetHeader(destination: b.mac, source: a.mac), IPv4Header(source: a.ip, destination: b.ip),
                .udp(sourcePort: 4000, destinationPort: 53), payload: [UInt8](repeating: 7, count: 3000),
                fragmentSize: 1400)
        let links = [
            LinkRule(source: a.ip, destination: b.ip, port: 80, proto: 6, direction: .forward),
            LinkRule(source: b.ip, destination: a.ip, port: 80, proto: 6, direction: .reverse),
            LinkRule(source: a.ip, destination: b.ip, port: 53, proto: 17, direction: .forward),
            LinkRule(source: a.ip, destination: b.ip, port: 0, proto: 17, direction: .pair),
        ]
        var results: [Bool: (verdicts: [UInt32], reasons: [String: UInt64])] = [:]
        let port = try lab.ifindex("veth0")
        try lab.addTarget(port)
        for fastPath in [false, true] {
            for icc in [true, false] {
                try lab.resetCounters()
                try lab.configure(icc: icc, fastPath: fastPath, a: a, b: b, bPort: port, links: links)
                var verdicts: [UInt32] = []
                for frame in frames {
                    let verdict = try lab.runTC(frame)
                    // Delivery differs (redirect vs bridge), the verdict does not.
                    verdicts.append(verdict == Self.tcRedirect ? Self.tcOK : verdict)
                }
                let reasons = try lab.reasonCounts(.portTC)
                if let off = results[icc] {
                    XCTAssertEqual(verdicts, off.verdicts, "icc=\(icc): verdicts differ with the fast path on")
                    XCTAssertEqual(reasons, off.reasons, "icc=\(icc): reason counters differ with the fast path on")
                    let passed = verdicts.filter { $0 == Self.tcOK }.count
                    XCTAssertEqual(try lab.fastPathTotal(.portTC), UInt64(passed), "one event per passed packet")
                    XCTAssertGreaterThan(try lab.fastPathCount(.portTC, .hit), 0)
                } else {
                    results[icc] = (verdicts, reasons)
                    XCTAssertEqual(
                        try lab.fastPathCount(.portTC, .disabled), UInt64(verdicts.filter { $0 == Self.tcOK }.count))
                }
            }
        }
    }

    // MARK: port program, XDP

    func testXDPRedirectsThroughTheDevmapOnlyWhenBothEndsAreArranged() throws {
        let port = try lab.ifindex("veth0")
        try lab.configure(icc: true, fastPath: true, a: a, b: b, bPort: port)
        let frame = PacketBuilder.udpFrame(from: a, to: b, sourcePort: 4000, destinationPort: 53)

        // Nothing arranged: frames from lo may carry partial checksums.
        XCTAssertEqual(try lab.runXDP(program: .port, frame, ingress: 1), Self.xdpPass)
        XCTAssertEqual(try lab.fastPathCount(.portXDP, .partialChecksum), 1)

        // Full checksums at the source, but the destination has no NAPI (no bn_fp_tx entry).
        try lab.setInterface(1, flags: BPFNET_FP_IF_FULL_CSUM.rawValue)
        XCTAssertEqual(try lab.runXDP(program: .port, frame, ingress: 1), Self.xdpPass)
        XCTAssertEqual(try lab.fastPathCount(.portXDP, .noNAPI), 1)

        try lab.addTarget(port)
        XCTAssertEqual(try lab.runXDP(program: .port, frame, ingress: 1), Self.xdpRedirect)
        XCTAssertEqual(try lab.fastPathCount(.portXDP, .hit), 1)

        // Off: the bridge again.
        try lab.configure(icc: true, fastPath: false, a: a, b: b, bPort: port)
        XCTAssertEqual(try lab.runXDP(program: .port, frame, ingress: 1), Self.xdpPass)
        XCTAssertEqual(try lab.fastPathCount(.portXDP, .disabled), 1)
    }

    // MARK: ext program

    func testExtRoutedFallbacksLeaveTheFrameUntouched() throws {
        let port = try lab.ifindex("veth0")
        let ext = try lab.ifindex("veth1")
        try lab.configure(icc: true, fastPath: true, forwardAccept: true, a: a, b: b, bPort: port, extIfindex: ext)
        try lab.addTarget(port)
        let toB = Endpoint(mac: extMAC, ip: b.ip)
        func udp(ttl: UInt8 = 64, options: [UInt8] = [], moreFragments: Bool = false, dst: MACAddress? = nil) -> [UInt8]
        {
            var ip = IPv4Header(source: outside.ip, destination: b.ip, proto: 17, ttl: ttl)
            ip.options = options
            ip.moreFragments = moreFragments
            return PacketBuilder.ipv4Frame(
                EthernetHeader(destination: dst ?? toB.mac, source: outside.mac), ip,
                .udp(sourcePort: 5000, destinationPort: 9999), payload: [1, 2, 3, 4])
        }
        // Before bn_fp_ifs knows the ingress interface: nothing was arranged there.
        try expectExt(udp(), ingress: ext, .partialChecksum)
        try lab.setInterface(ext, flags: BPFNET_FP_IF_FULL_CSUM.rawValue, mac: extMAC)
        try expectExt(udp(ttl: 1), ingress: ext, .ttl)
        try expectExt(udp(options: [1, 1, 1, 0]), ingress: ext, .ipOptions)
        try expectExt(udp(moreFragments: true), ingress: ext, .fragment)
        try expectExt(udp(dst: MACAddress(0x02, 0, 0, 0, 0, 0x99)), ingress: ext, .mac)
        try expectExt(
            PacketBuilder.ipv4Frame(
                EthernetHeader(destination: toB.mac, source: outside.mac),
                IPv4Header(source: outside.ip, destination: b.ip),
                .tcp(sourcePort: 5000, destinationPort: 80)), ingress: ext, .proto)
        // Everything else fits, but conntrack has not seen the flow opened (the
        // first datagram always goes through the stack, which creates the entry).
        try expectExt(udp(), ingress: ext, .conntrack)
        XCTAssertEqual(try lab.reasonCount(.extXDP, .forwardAccept), 7, "every one of them passed")

        try lab.configure(icc: true, fastPath: false, forwardAccept: true, a: a, b: b, bPort: port, extIfindex: ext)
        try expectExt(udp(), ingress: ext, .disabled)
        try lab.configure(icc: true, fastPath: true, forwardAccept: false, a: a, b: b, bPort: port, extIfindex: ext)
        XCTAssertEqual(try lab.runXDP(program: .ext, udp(), ingress: ext), Self.xdpDrop, "forward policy drop")
        XCTAssertEqual(try lab.fastPathCount(.extXDP, .hit), 0)
    }

    // MARK: cross-host (peers)

    private let peerContainer = IPv4Address(10, 18, 0, 2)
    private let routerMAC = MACAddress(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)

    /// The lab as host1 of a pair: br0 (10.88.0.1/24, bridge MAC, b resolved
    /// behind it, veth0 its port), veth1 the external interface on
    /// 10.250.0.0/24, where the router 10.250.0.254 is also peer host2
    /// (10.18.0.0/16 routed via it).
    private func crossHostLab(icc: Bool = true, peerAllow: Bool = false, fastPath: Bool = true) throws -> (
        port: UInt32, ext: UInt32, extMAC: MACAddress
    ) {
        try lab.crossHostTopology(bridgeMAC: bridgeMAC, b: b, routerMAC: routerMAC)
        let port = try lab.ifindex("veth0")
        let ext = try lab.ifindex("veth1")
        try lab.configure(
            icc: icc, fastPath: fastPath, a: a, b: b, bPort: port, extIfindex: ext,
            bridgeIfindex: try lab.ifindex("br0"), bridgeMAC: bridgeMAC,
            peers: [IPv4CIDR("10.18.0.0/16")!: IPv4Address(10, 250, 0, 254)], peerAllow: peerAllow)
        return (port, ext, try lab.mac("veth1"))
    }

    /// Container → peer's container, tc: out of veth1 as the host would route
    /// it (the router's MAC, veth1's MAC, TTL − 1, header checksum still
    /// right), everything past the IPv4 header untouched.
    func testTCCrossHostLeavesByTheExtInterfaceRewrittenAsRouted() throws {
        let (_, _, extMAC) = try crossHostLab()
        for (label, transport) in [
            ("TCP", Transport.tcp(sourcePort: 40000, destinationPort: 80)),
            ("UDP", .udp(sourcePort: 40000, destinationPort: 53)), ("ICMP", .icmpEcho(identifier: 7, sequence: 1)),
        ] {
            let frame = PacketBuilder.ipv4Frame(
                EthernetHeader(destination: bridgeMAC, source: a.mac),
                IPv4Header(source: a.ip, destination: peerContainer, proto: transport.proto, ttl: 64), transport,
                payload: [1, 2, 3, 4, 5])
            let (verdict, out) = try lab.runTCWithOutput(frame)
            XCTAssertEqual(verdict, Self.tcRedirect, label)
            try Self.expectRouted(frame, out, source: extMAC, destination: routerMAC, label)
        }
        XCTAssertEqual(try lab.fastPathCount(.portTC, .hit), 3)
        XCTAssertEqual(try lab.reasonCount(.portTC, .outside), 3, "the verdict is row 7's, as before")
    }

    func testTCCrossHostFallbacksPassUntouchedAndSayWhy() throws {
        try crossHostLab()
        func toPeer(_ destination: IPv4Address = IPv4Address(10, 18, 0, 2), ttl: UInt8 = 64, mac: MACAddress? = nil)
            -> [UInt8]
        {
            PacketBuilder.ipv4Frame(
                EthernetHeader(destination: mac ?? bridgeMAC, source: a.mac),
                IPv4Header(source: a.ip, destination: destination, proto: 6, ttl: ttl),
                .tcp(sourcePort: 40000, destinationPort: 80))
        }
        func expect(_ frame: [UInt8], _ event: FastPathEvent, _ what: String, line: UInt = #line) throws {
            let before = try lab.fastPathCount(.portTC, event)
            let (verdict, out) = try lab.runTCWithOutput(frame)
            XCTAssertEqual(verdict, Self.tcOK, what, line: line)
            XCTAssertEqual(out, frame, "\(what): a fallback leaves the frame as it was", line: line)
            XCTAssertEqual(try lab.fastPathCount(.portTC, event), before + 1, "\(what): \(event)", line: line)
        }
        try expect(toPeer(IPv4Address(198, 51, 100, 9)), .verdict, "the outside: routed and masqueraded by the host")
        try expect(toPeer(ttl: 1), .ttl, "TTL 1: the host sends time exceeded")
        try expect(toPeer(mac: MACAddress(0x02, 0, 0, 0, 0, 0x77)), .mac, "not sent to the gateway")
        try lab.inNamespace(["ip", "route", "replace", "blackhole", "10.18.0.0/16"])
        try expect(toPeer(), .fib, "a blackhole route")
        try lab.inNamespace(["ip", "route", "replace", "10.18.0.0/16", "via", "10.250.0.9", "dev", "veth1"])
        try expect(toPeer(), .noNeighbour, "the next hop not resolved yet: the stack ARPs")
        try lab.inNamespace(["ip", "route", "replace", "10.18.0.0/16", "via", "10.88.0.3", "dev", "br0"])
        try expect(toPeer(), .fib, "routed somewhere that is no ext interface")
        try lab.inNamespace(["ip", "route", "replace", "10.18.0.0/16", "via", "10.250.0.254", "dev", "veth1"])
        try lab.inNamespace(["sysctl", "-qw", "net.ipv4.conf.br0.forwarding=0"])
        try expect(toPeer(), .forwardingDisabled, "forwarding off on the bridge")
        try lab.inNamespace(["sysctl", "-qw", "net.ipv4.conf.br0.forwarding=1"])

        // icc off: the peer's replies come back as conntrack replies, so the stack sees the flow.
        try crossHostLab(icc: false)
        try expect(toPeer(), .peerState, "icc off, peerPolicy icc")
        try crossHostLab(icc: false, peerAllow: true)
        XCTAssertEqual(try lab.runTC(toPeer()), Self.tcRedirect, "peerPolicy allow: replies need no state")
        try crossHostLab(fastPath: false)
        try expect(toPeer(), .disabled, "fast path off")
        // XDP port hook: there is no XDP way out of the ext interface arranged.
        try lab.setInterface(1, flags: BPFNET_FP_IF_FULL_CSUM.rawValue)
        try crossHostLab()
        XCTAssertEqual(try lab.runXDP(program: .port, toPeer(), ingress: 1), Self.xdpPass)
        XCTAssertEqual(try lab.fastPathCount(.portXDP, .noNAPI), 1)
    }

    /// Peer's container → local container, TCP, XDP on the ext interface:
    /// redirected into the container's port without asking conntrack, as the
    /// host would route it (the bridge's MAC, the container's MAC, TTL − 1).
    func testExtCrossHostTCPIsRedirectedToTheContainer() throws {
        let (port, ext, extMAC) = try crossHostLab()
        try lab.addTarget(port)
        try lab.setInterface(ext, flags: BPFNET_FP_IF_FULL_CSUM.rawValue, mac: extMAC)
        let frame = PacketBuilder.ipv4Frame(
            EthernetHeader(destination: extMAC, source: routerMAC),
            IPv4Header(source: peerContainer, destination: b.ip, proto: 6, ttl: 61),
            .tcp(sourcePort: 40000, destinationPort: 80), payload: [9, 8, 7])
        let (verdict, out) = try lab.runXDPWithOutput(program: .ext, frame, ingress: ext)
        XCTAssertEqual(verdict, Self.xdpRedirect)
        try Self.expectRouted(frame, out, source: bridgeMAC, destination: b.mac, "peer → b")
        XCTAssertEqual(try lab.reasonCount(.extXDP, .peer), 1)
        XCTAssertEqual(try lab.fastPathCount(.extXDP, .hit), 1)

        // Forward-accept TCP from a stranger still stays with the stack (and
        // icc off makes the same peer frame a drop: no event at all).
        try crossHostLab(icc: false)
        XCTAssertEqual(try lab.runXDP(program: .ext, frame, ingress: ext), Self.xdpDrop)
        XCTAssertEqual(try lab.reasonCount(.extXDP, .icc), 1)
    }

    /// `out` is `frame` routed by one hop: MACs replaced, TTL one less with a
    /// valid header checksum, every other byte the same.
    private static func expectRouted(
        _ frame: [UInt8], _ out: [UInt8], source: MACAddress, destination: MACAddress, _ label: String,
        line: UInt = #line
    ) throws {
        XCTAssertEqual(out.count, frame.count, label, line: line)
        guard out.count == frame.count else { return }
        XCTAssertEqual(Array(out[0..<6]), destination.array, "\(label): destination MAC", line: line)
        XCTAssertEqual(Array(out[6..<12]), source.array, "\(label): source MAC", line: line)
        XCTAssertEqual(out[22], frame[22] - 1, "\(label): TTL", line: line)
        XCTAssertEqual(PacketBuilder.internetChecksum(Array(out[14..<34])), 0, "\(label): header checksum", line: line)
        var rest = out
        var original = frame
        for index in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 22, 24, 25] {
            rest[index] = 0
            original[index] = 0
        }
        XCTAssertEqual(rest, original, "\(label): nothing else changes", line: line)
    }

    private func expectExt(
        _ frame: [UInt8], ingress: UInt32, _ event: FastPathEvent,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let before = try lab.fastPathCount(.extXDP, event)
        let (verdict, out) = try lab.runXDPWithOutput(program: .ext, frame, ingress: ingress)
        XCTAssertEqual(verdict, Self.xdpPass, "\(event)", file: file, line: line)
        XCTAssertEqual(out, frame, "\(event): the frame must be unchanged", file: file, line: line)
        XCTAssertEqual(
            try lab.fastPathCount(.extXDP, event), before + 1, "expected event \(event)", file: file, line: line)
    }
}

// MARK: - Lab: a namespace with a veth pair, the loaded objects, their maps

final class FastPathLab: @unchecked Sendable {
    enum Program { case port, ext }

    let namespaceName: String
    let namespace: NetworkNamespace
    let bpffs: FilePath
    let dataplane: LoadedDataplane
    let fpIfs: BPFMap<UInt32, bpfnet_fp_if>
    let fpTx: BPFMap<UInt32, UInt32>
    /// The ext object's own bn_fp_tx.
    let fpTxExt: BPFMap<UInt32, UInt32>
    let fpCounters: BPFPerCPUMap<UInt32, bpfnet_counter>

    static func make(in testCase: XCTestCase) throws -> FastPathLab {
        let lab = try FastPathLab()
        testCase.addTeardownBlock { lab.destroy() }
        return lab
    }

    private init() throws {
        namespaceName = "bnfp-\(getpid())-\(UInt32.random(in: 0..<1_000_000))"
        try runCommand(["ip", "netns", "add", namespaceName])
        var template = Array("/tmp/bnfp-bpffs-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            _ = try? runCommand(["ip", "netns", "del", namespaceName])
            throw POSIXError(.EIO)
        }
        bpffs = FilePath(String(cString: made))
        do {
            try runCommand(["ip", "-n", namespaceName, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"])
            for device in ["lo", "veth0", "veth1"] {
                try runCommand(["ip", "-n", namespaceName, "link", "set", device, "up"])
            }
            namespace = try NetworkNamespace(named: namespaceName)
            _ = try BPFFileSystem.ensureMounted(at: bpffs)
            let pins = bpffs.appending("pins")
            dataplane = try LoadedDataplane.load(pinPath: pins)
            fpIfs = try BPFMap(pinnedAt: pins.appending("bn_fp_ifs"))
            fpTx = try BPFMap(dataplane.port.map(named: "bn_fp_tx"))
            fpTxExt = try BPFMap(dataplane.ext.map(named: "bn_fp_tx"))
            fpCounters = try BPFPerCPUMap(pinnedAt: pins.appending("bn_fp_counters"))
        } catch {
            _ = try? runCommand(["ip", "netns", "del", namespaceName])
            try? BPFFileSystem.unmount(bpffs, lazily: true)
            rmdir(bpffs.string)
            throw error
        }
    }

    func destroy() {
        _ = try? runCommand(["ip", "netns", "del", namespaceName])
        try? BPFFileSystem.unmount(bpffs, lazily: true)
        rmdir(bpffs.string)
    }

    func ifindex(_ name: String) throws -> UInt32 {
        try namespace.run { try NetworkInterface.index(named: name) }
    }

    func mac(_ name: String) throws -> MACAddress {
        let text = try runCommand(["ip", "-n", namespaceName, "-br", "link", "show", name])
        let field = text.split(separator: " ", omittingEmptySubsequences: true).dropFirst(2).first ?? ""
        guard let mac = MACAddress(String(field)) else { throw POSIXError(.EINVAL) }
        return mac
    }

    /// `command` run inside the lab's namespace.
    func inNamespace(_ command: [String]) throws {
        try runCommand(["ip", "netns", "exec", namespaceName] + command)
    }

    /// br0 (10.88.0.1/24 with `bridgeMAC`, veth0 its port, b's neighbour entry)
    /// and veth1 on 10.250.0.1/24 with the router 10.250.0.254 resolved and
    /// 10.18.0.0/16 routed via it; forwarding on. Idempotent.
    func crossHostTopology(bridgeMAC: MACAddress, b: Endpoint, routerMAC: MACAddress) throws {
        if (try? ifindex("br0")) == nil {
            try inNamespace(["ip", "link", "add", "br0", "type", "bridge"])
            try inNamespace(["ip", "link", "set", "br0", "address", bridgeMAC.description, "up"])
            try inNamespace(["ip", "link", "set", "veth0", "master", "br0"])
            try inNamespace(["ip", "addr", "add", "10.88.0.1/24", "dev", "br0"])
            try inNamespace(["ip", "addr", "add", "10.250.0.1/24", "dev", "veth1"])
        }
        try inNamespace(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        try inNamespace([
            "ip", "neigh", "replace", b.ip.description, "lladdr", b.mac.description, "dev", "br0", "nud", "permanent",
        ])
        try inNamespace([
            "ip", "neigh", "replace", "10.250.0.254", "lladdr", routerMAC.description, "dev", "veth1", "nud",
            "permanent",
        ])
        try inNamespace(["ip", "route", "replace", "10.18.0.0/16", "via", "10.250.0.254", "dev", "veth1"])
    }

    /// Writes config, containers (a on port 101, b on `bPort`), links and peers.
    func configure(
        icc: Bool, fastPath: Bool, forwardAccept: Bool = false, a: Endpoint, b: Endpoint,
        bPort: UInt32 = 102, links: [LinkRule] = [], extIfindex: UInt32? = nil, bridgeIfindex: UInt32 = 99,
        bridgeMAC: MACAddress = .zero, peers: [IPv4CIDR: IPv4Address] = [:], peerAllow: Bool = false,
        extraFlags: ConfigFlags = [], published: [PublishedKey: PublishedTarget] = [:]
    ) throws {
        var flags: ConfigFlags = [.loaded]
        flags.formUnion(extraFlags)
        if icc { flags.insert(.icc) }
        if fastPath { flags.insert(.fastPath) }
        if forwardAccept { flags.insert(.forwardAccept) }
        if !peers.isEmpty { flags.insert(.peers) }
        if peerAllow { flags.insert(.peerAllow) }
        var desired = MapState(
            config: ConfigRecord(
                flags: flags, bridgeAddress: IPv4Address(10, 88, 0, 1),
                bridgeSubnet: IPv4Address(10, 88, 0, 0),
                bridgeNetmask: IPv4Address(255, 255, 255, 0), bridgeIfindex: bridgeIfindex, bridgeMAC: bridgeMAC))
        // The default bridge's network record: what the port program reads.
        desired.networks[0] = NetworkRecord(
            flags: icc ? [.icc] : [], bridgeAddress: desired.config.bridgeAddress,
            subnet: desired.config.bridgeSubnet, netmask: desired.config.bridgeNetmask, bridgeIfindex: bridgeIfindex,
            bridgeMAC: bridgeMAC)
        desired.peers = peers
        desired.containers = [
            a.ip: ContainerRecord(portIfindex: 101, mac: a.mac),
            b.ip: ContainerRecord(portIfindex: bPort, mac: b.mac),
        ]
        desired.macs = [a.mac: a.ip, b.mac: b.ip]
        desired.links = Set(links)
        desired.published = published
        if let extIfindex { desired.extInterfaces = [extIfindex: ExtInterfaceRecord()] }
        var maps = dataplane.maps
        try maps.apply(try MapState(reading: maps).changes(to: desired))
    }

    func setInterface(_ ifindex: UInt32, flags: UInt32, mac: MACAddress = MACAddress(0, 0, 0, 0, 0, 0)) throws {
        var record = try fpIfs.lookup(ifindex) ?? bpfnet_fp_if()
        record.flags = flags | (record.flags & BPFNET_FP_IF_NAPI.rawValue)
        record.mac = mac.bytes
        try fpIfs.update(ifindex, record)
    }

    /// Marks `ifindex` NAPI-ready as the control plane does: the bn_fp_ifs flag
    /// (ext program) and the port object's DEVMAP entry (XDP port hook). A
    /// DEVMAP entry resolves the ifindex in the caller's namespace: added from inside.
    /// `ip link del NAME` in the lab's namespace (a veth takes its peer with it).
    func deleteInterface(_ name: String) throws {
        try runCommand(["ip", "-n", namespaceName, "link", "del", name])
    }

    func addTarget(_ ifindex: UInt32) throws {
        var record = try fpIfs.lookup(ifindex) ?? bpfnet_fp_if()
        record.flags |= BPFNET_FP_IF_NAPI.rawValue
        try fpIfs.update(ifindex, record)
        try namespace.run {
            try fpTx.update(ifindex, ifindex)
            try fpTxExt.update(ifindex, ifindex)
        }
    }

    func runTC(_ frame: [UInt8]) throws -> UInt32 { try runTCWithOutput(frame).0 }

    /// Makes the container `frame` claims to come from the one behind `port`
    /// (its bn_ports entry), so the port program's sender check passes.
    func claim(_ frame: [UInt8], port: UInt32) throws {
        guard case .container(let record) = PortSender.claimed(by: frame) else { return }
        var maps = dataplane.maps
        try maps.upsert(.port(ifindex: port, record))
    }

    func runTCWithOutput(_ frame: [UInt8]) throws -> (UInt32, [UInt8]) {
        let program = try dataplane.portTC
        try claim(frame, port: try ifindex("lo"))  // a tc test run enters on the loopback device
        let result = try namespace.run { try program.testRun(data: frame, dataOutCapacity: frame.count + 256) }
        return (result.returnValue, result.dataOut)
    }

    func runXDP(program: Program, _ frame: [UInt8], ingress: UInt32) throws -> UInt32 {
        try runXDPWithOutput(program: program, frame, ingress: ingress).0
    }

    func runXDPWithOutput(program which: Program, _ frame: [UInt8], ingress: UInt32) throws -> (UInt32, [UInt8]) {
        let program = which == .port ? try dataplane.portXDP : try dataplane.extXDP
        if which == .port { try claim(frame, port: ingress) }
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        var context: [UInt8] = []
        for field in [0, UInt32(frame.count), 0, ingress, 0, 0] as [UInt32] {
            withUnsafeBytes(of: field.littleEndian) { context += $0 }
        }
        return try namespace.run {
            let result = try program.testRun(data: frame, dataOutCapacity: frame.count + 256, context: context)
            return (result.returnValue, result.dataOut)
        }
    }

    func fastPathCount(_ program: ProgramKind, _ event: FastPathEvent) throws -> UInt64 {
        let perCPU = try fpCounters.lookup(UInt32(program.fastPathIndex(event))) ?? []
        return perCPU.reduce(0) { $0 + $1.packets }
    }

    func fastPathTotal(_ program: ProgramKind) throws -> UInt64 {
        try (0..<UInt32(FastPathEvent.slotsPerProgram)).reduce(0) {
            $0 + (try fastPathCount(program, FastPathEvent(rawValue: $1)))
        }
    }

    func reasonCount(_ program: ProgramKind, _ reason: Reason) throws -> UInt64 {
        let perCPU = try dataplane.counters.lookup(UInt32(program.counterIndex(reason))) ?? []
        return perCPU.reduce(0) { $0 + $1.packets }
    }

    func reasonCounts(_ program: ProgramKind) throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for reason in Reason.allKnown {
            let count = try reasonCount(program, reason)
            if count > 0 { result[reason.name] = count }
        }
        return result
    }

    func resetCounters() throws {
        for index in 0..<UInt32(ProgramKind.fastPathSlots) { try fpCounters.zero(index) }
        for index in 0..<UInt32(ProgramKind.counterSlots) { try dataplane.counters.zero(index) }
    }
}
