// SPDX-License-Identifier: Apache-2.0
//
// Rows 12 and 13 (docs/policy.md, "Peers") through the real ext program:
// traffic from a peer host's container subnet to a local container passes by
// the destination's icc (or peerPolicy allow) only when it arrives the way
// the namespace routes towards the peer (ext1, the router's MAC as neighbour);
// from another interface or another L2 source it is dropped as peer-spoofed.
// Every expectation is also put to the reference model.

import BPFNetCore
import BPFNetTestSupport
import XCTest

final class PeerTestRunTests: TestRunTestCase {
    /// A container of peer host2, and a source in host3's subnet (no route to host3).
    let peerContainer = endpoint(IPv4Address(10, 18, 0, 2))
    let host3Container = endpoint(IPv4Address(10, 19, 0, 7))
    let stranger = MACAddress(0x52, 0x54, 0x00, 0x66, 0x66, 0x66)

    override func setUpWithError() throws {
        try super.setUpWithError()
        try rig.routePeer(Fixture.peerHost, via: "ext1", mac: Fixture.routerMAC, localAddress: "10.250.0.1/24")
    }

    @discardableResult
    func applyPeers(
        icc: Bool, forward: ForwardPolicy = .drop, peerPolicy: PeerPolicy = .icc, networks: Bool = false
    ) throws -> MapState {
        var policy = Fixture.policy(icc: icc, forward: forward)
        if networks { policy = Fixture.withNetworks(policy) }
        policy.peers = Fixture.peers
        policy.peerPolicy = peerPolicy
        return try rig.write(Fixture.compile(policy, namespace: rig.namespace))
    }

    func spoofing(_ source: Endpoint) -> Endpoint { Endpoint(mac: stranger, ip: source.ip) }

    func testRow12FromThePeersRouteIccOn() throws {
        try applyPeers(icc: true)
        for (frame, label) in [
            (tcp(peerContainer, web, 50000, 80), "TCP"), (udp(peerContainer, db, 5000, 53), "UDP"),
            (icmp(peerContainer, other), "ICMP"), (sctp(peerContainer, db, 1, 9899), "SCTP"),
        ] {
            expectExt([ext1], frame, .pass(.peer), "peer container → local container, \(label)")
        }
        // Not the forward policy (drop) nor the allow-list: 10.18/16 is in none.
        expectExt([ext1], tcp(peerContainer, web, 50000, 9999), .pass(.peer), "any port")
    }

    func testRow13FromAnotherL2SourceOrInterfaceIsSpoofed() throws {
        try applyPeers(icc: true, forward: .accept, peerPolicy: .allow)
        let frame = tcp(spoofing(peerContainer), web, 50000, 80)
        expectExt([ext1], frame, .drop(.peerSpoofed), "another MAC on the peer's interface")
        // The router's MAC, but on interfaces the route to the peer does not leave by.
        expectExt(
            [ext0, ext2, loopback], tcp(peerContainer, web, 50000, 80), .drop(.peerSpoofed), "another interface")
        // host3 has no route in the namespace: nothing can confirm it.
        expectExt(everyIngress, udp(host3Container, db, 5000, 53), .drop(.peerSpoofed), "a peer without a route")
        // Not to a container: rows 8-11 as for anyone (the published 8080 on ext1, no list there).
        expectExt([ext1], tcp(spoofing(peerContainer), host, 50000, 8080), .pass(.published), "to a published port")
        expectExt([ext1], tcp(spoofing(peerContainer), host, 50000, 22), .pass(.local), "to the host")
    }

    func testIccOffDropsPeersUnlessPeerPolicyAllow() throws {
        try applyPeers(icc: false)
        expectExt([ext1], tcp(peerContainer, web, 50000, 80), .drop(.icc), "icc off: inter-container traffic")
        // Links do not cross hosts: app → db is linked, a peer's container is not app.
        expectExt([ext1], tcp(peerContainer, db, 50000, 5432), .drop(.icc), "a link's port")
        expectExt([ext1], tcp(spoofing(peerContainer), web, 50000, 80), .drop(.peerSpoofed), "spoofed, icc off")
        try applyPeers(icc: false, peerPolicy: .allow)
        expectExt([ext1], tcp(peerContainer, web, 50000, 80), .pass(.peer), "peerPolicy allow")
        expectExt([ext1], tcp(spoofing(peerContainer), web, 50000, 80), .drop(.peerSpoofed), "spoofed, allow")
    }

    func testPerNetworkIccAndInternalNetworks() throws {
        // docker0 icc off, front icc on, back internal.
        try applyPeers(icc: false, peerPolicy: .icc, networks: true)
        let f1 = endpoint(IPv4Address(10, 90, 0, 2))
        let b1 = endpoint(IPv4Address(10, 91, 0, 2))
        expectExt([ext1], tcp(peerContainer, f1, 50000, 80), .pass(.peer), "front has icc on")
        expectExt([ext1], tcp(peerContainer, web, 50000, 80), .drop(.icc), "docker0 has icc off")
        expectExt([ext1], tcp(peerContainer, b1, 50000, 6379), .drop(.internal), "never into an internal network")
        try applyPeers(icc: false, peerPolicy: .allow, networks: true)
        expectExt([ext1], tcp(peerContainer, b1, 50000, 6379), .drop(.internal), "not even with allow")
    }

    /// An ICMP error about a local container's datagram to a peer's containers
    /// passes without conntrack (the cross-host fast path never shows it the
    /// flow): path MTU discovery from any router on the way. Without peers, or
    /// quoting a datagram to anyone else, it is the forward policy's.
    func testICMPErrorsAboutCrossHostDatagramsNeedNoState() throws {
        func error(quoting destination: IPv4Address, to target: Endpoint = web, type: UInt8 = 3) -> [UInt8] {
            PacketBuilder.ipv4Frame(
                EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC),
                IPv4Header(source: IPv4Address(203, 0, 113, 9), destination: target.ip),
                .icmpError(type: type, code: type == 3 ? 4 : 0, mtu: type == 3 ? 1400 : 0),
                payload: PacketBuilder.icmpErrorQuote(
                    IPv4Header(source: target.ip, destination: destination),
                    .tcp(sourcePort: 40000, destinationPort: 80)))
        }
        try applyPeers(icc: true)
        expectExt(everyIngress, error(quoting: peerContainer.ip), .pass(.related), "fragmentation needed, to host2")
        expectExt(everyIngress, error(quoting: host3Container.ip, type: 11), .pass(.related), "time exceeded, host3")
        expectExt([ext1], error(quoting: IPv4Address(198, 51, 100, 7)), .drop(.forward), "about the outside")
        // The quoted datagram must come from the error's destination.
        var forged = error(quoting: peerContainer.ip)
        let quotedSource = 14 + 20 + 8 + 12
        forged.replaceSubrange(
            quotedSource..<quotedSource + 4, with: withUnsafeBytes(of: db.ip.value.bigEndian, Array.init))
        expectExt([ext1], forged, .drop(.forward), "quoting another container's datagram")
        // Never into an internal network (back): its containers reach no peer.
        try applyPeers(icc: true, networks: true)
        let b1 = endpoint(IPv4Address(10, 91, 0, 2))
        expectExt(everyIngress, error(quoting: peerContainer.ip, to: b1), .drop(.forward), "into an internal network")
        expectExt([ext1], error(quoting: peerContainer.ip), .pass(.related), "docker0 with networks")
        try apply(icc: true, forward: .drop)
        expectExt([ext1], error(quoting: peerContainer.ip), .drop(.forward), "no peers declared")
    }

    /// Without the peer declared, the same frame is any outside source's.
    func testWithoutPeersTheForwardPolicyDecides() throws {
        try apply(icc: true, forward: .drop)
        expectExt([ext1], tcp(peerContainer, web, 50000, 80), .drop(.forward), "no peers: forward drop")
        try apply(icc: true, forward: .accept)
        expectExt([ext1], tcp(spoofing(peerContainer), web, 50000, 80), .pass(.forwardAccept), "no peers: accept")
    }
}
