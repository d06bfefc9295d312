// SPDX-License-Identifier: Apache-2.0
//
// Row 10: replies to connections opened from this side pass, whatever rows
// 8-9 say, with reason `reply`.
//
// A test run cannot fake a conntrack entry, so the test makes real ones: in
// the private namespace an nftables rule with a `ct` expression turns
// conntrack on (only that namespace's: hooks are registered per namespace on
// demand), addresses on loopback stand for a container (10.88.0.2), the host
// (198.51.100.1) and someone outside (100.64.0.9), and real sockets open
// flows between them. The ext program's test run then happens on a thread in
// that namespace, with ingress ext0, so `bpf_xdp_ct_lookup` (BPF_F_CURRENT_NETNS
// = the ingress device's namespace) sees exactly these entries.

import BPFNetCore
import BPFNetTestSupport
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class ConntrackReplyTests: TestRunTestCase {
    let container = Fixture.web.ip  // 10.88.0.2
    let outside = refused.ip  // 100.64.0.9, not in ext0's allow-list

    /// Sockets kept open until the test ends, so TCP stays established.
    private var sockets: [CInt] = []

    override func tearDown() {
        for fd in sockets { close(fd) }
        sockets = []
        super.tearDown()
    }

    // MARK: Sockets (called on a thread inside the namespace)

    struct SocketError: Error, CustomStringConvertible {
        var description: String
    }

    private func socketAddress(_ ip: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr = in_addr(s_addr: ip.networkOrder)
        return address
    }

    private func check(_ result: CInt, _ what: String) throws {
        if result < 0 { throw SocketError(description: "\(what): \(String(cString: strerror(errno)))") }
    }

    private func withSockaddr<R>(_ ip: IPv4Address, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R)
        -> R
    {
        var address = socketAddress(ip, port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// A socket bound to ip:port (kept open until teardown).
    private func bound(_ type: Int32, _ proto: Int32 = 0, _ ip: IPv4Address, _ port: UInt16) throws -> CInt {
        let fd = socket(AF_INET, type, proto)
        try check(fd, "socket")
        sockets.append(fd)
        var one: CInt = 1
        try check(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)), "SO_REUSEADDR")
        try check(withSockaddr(ip, port) { Glibc.bind(fd, $0, $1) }, "bind \(ip):\(port)")
        return fd
    }

    private func udpFlow(from source: IPv4Address, _ sport: UInt16, to destination: IPv4Address, _ dport: UInt16) throws
    {
        let server = try bound(Int32(SOCK_DGRAM.rawValue), 0, destination, dport)
        let client = try bound(Int32(SOCK_DGRAM.rawValue), 0, source, sport)
        let sent = withSockaddr(destination, dport) { sendto(client, "hello", 5, 0, $0, $1) }
        try check(CInt(sent), "sendto \(destination):\(dport)")
        var buffer = [UInt8](repeating: 0, count: 16)
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try check(CInt(recv(server, &buffer, buffer.count, 0)), "receiving at \(destination):\(dport)")
    }

    private func tcpConnection(from source: IPv4Address, _ sport: UInt16, to destination: IPv4Address, _ dport: UInt16)
        throws
    {
        let listener = try bound(Int32(SOCK_STREAM.rawValue), 0, destination, dport)
        try check(listen(listener, 4), "listen \(destination):\(dport)")
        let client = try bound(Int32(SOCK_STREAM.rawValue), 0, source, sport)
        try check(withSockaddr(destination, dport) { connect(client, $0, $1) }, "connect \(destination):\(dport)")
        let accepted = accept(listener, nil, nil)
        try check(accepted, "accept at \(destination):\(dport)")
        sockets.append(accepted)
    }

    private func ping(from source: IPv4Address, to destination: IPv4Address, identifier: UInt16) throws {
        let fd = try bound(Int32(SOCK_RAW.rawValue), CInt(IPPROTO_ICMP), source, 0)
        let echo = PacketBuilder.segment(
            .icmpEcho(identifier: identifier, sequence: 1), source: source,
            destination: destination, payload: Array(repeating: 0x42, count: 8))
        let sent = echo.withUnsafeBytes { bytes in
            withSockaddr(destination, 0) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, $1) }
        }
        try check(CInt(sent), "sending an echo request to \(destination)")
    }

    // MARK: The test

    func testRow10RepliesToConnectionsOpenedFromThisSidePass() throws {
        let namespace = rig.namespace
        for address in ["10.88.0.2/32", "198.51.100.1/32", "100.64.0.9/32"] {
            try namespace.ip("addr", "add", address, "dev", "lo")
        }
        // Conntrack is on in a namespace only once something there needs it.
        do {
            try runCommand(
                ["ip", "netns", "exec", namespace.name, "nft", "-f", "-"],
                input: """
                    table inet bntr_conntrack {
                        chain output {
                            type filter hook output priority 0;
                            ct state new counter
                        }
                    }

                    """)
        } catch {
            // Without nftables (or conntrack) in this kernel the flows below
            // would not be tracked and row 10 could not be shown here; the
            // end-to-end suite shows it with real traffic.
            return XCTFail("cannot turn conntrack on in \(namespace.name) with nft: \(error)")
        }

        // The flows, and the tuples of their replies as they arrive from outside.
        let udpReply = FlowTuple(
            source: Fixture.hostAddress, destination: container, sourcePort: 53, destinationPort: 40000,
            proto: IPProtocol.udp)
        let tcpReply = FlowTuple(
            source: Fixture.hostAddress, destination: container, sourcePort: 8000, destinationPort: 40001,
            proto: IPProtocol.tcp)
        let refusedUDPReply = FlowTuple(
            source: outside, destination: container, sourcePort: 7000, destinationPort: 40003,
            proto: IPProtocol.udp)
        let publishedReply = FlowTuple(
            source: outside, destination: Fixture.hostAddress, sourcePort: 443, destinationPort: 8080,
            proto: IPProtocol.tcp)
        let replies: Set<FlowTuple> = [udpReply, tcpReply, refusedUDPReply, publishedReply]

        let table = try namespace.run { () throws -> String in
            // A container asks a server (DNS over UDP, TCP), and someone outside the allow-list.
            try udpFlow(from: container, 40000, to: Fixture.hostAddress, 53)
            try tcpConnection(from: container, 40001, to: Fixture.hostAddress, 8000)
            try udpFlow(from: container, 40003, to: outside, 7000)
            // The host (a masqueraded connection) from the published port 8080 to outside.
            try tcpConnection(from: Fixture.hostAddress, 8080, to: outside, 443)
            // Someone outside opened a flow to the container: its own direction is original, not reply.
            try udpFlow(from: outside, 5555, to: container, 80)
            try ping(from: container, to: Fixture.hostAddress, identifier: 0x4d4d)
            return (try? String(contentsOfFile: "/proc/thread-self/net/nf_conntrack", encoding: .utf8))
                ?? "(unreadable)"
        }
        for needle in [
            "sport=40000 dport=53", "sport=40001 dport=8000", "sport=40003 dport=7000", "sport=8080 dport=443",
            "sport=5555 dport=80", "type=8 code=0 id=19789",
        ] {
            XCTAssertTrue(table.contains(needle), "conntrack in \(namespace.name) lacks \(needle):\n\(table)")
        }
        let conntrack: (FlowTuple) -> Bool = { replies.contains($0) }

        func reply(_ tuple: FlowTuple, flags: TCPFlags = [.syn, .ack]) -> [UInt8] {
            let s = endpoint(tuple.source)
            let d = Endpoint(mac: Fixture.hostMAC, ip: tuple.destination)
            return tuple.proto == IPProtocol.tcp
                ? tcp(s, d, tuple.sourcePort, tuple.destinationPort, flags: flags)
                : udp(s, d, tuple.sourcePort, tuple.destinationPort)
        }

        for forward in ForwardPolicy.allCases {
            try apply(icc: false, forward: forward)
            let label = "forward=\(forward)"
            // Row 9 for a source outside ext0's list (198.51.100.1 is not in 198.51.100.128/25).
            let row9: Verdict = forward == .accept ? .drop(.source) : .drop(.forward)
            // Row 9 would drop these (forward, or source under accept): conntrack knows them as replies.
            expectExt(
                [ext0], reply(udpReply), .pass(.reply), "UDP reply to a container's DNS query, \(label)",
                conntrack: conntrack)
            // Without a list, forward accept passes it before conntrack is asked.
            expectExt(
                [ext1, ext2], reply(udpReply), forward == .accept ? .pass(.forwardAccept) : .pass(.reply),
                "the same on an interface without a list, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], reply(tcpReply), .pass(.reply), "TCP SYN-ACK to a container, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], reply(tcpReply, flags: .ack), .pass(.reply), "TCP ACK to a container, \(label)",
                conntrack: conntrack)
            expectExt(
                [ext0], reply(refusedUDPReply), .pass(.reply),
                "reply from a source outside the allow-list to a container, \(label)", conntrack: conntrack)
            if forward == .accept {
                expectExt(
                    [ext1, ext2], reply(refusedUDPReply), .pass(.forwardAccept),
                    "no list there: no drop, so conntrack is not asked, \(label)", conntrack: conntrack)
            }
            // Row 8 would drop this (refused source on a published port): a reply to the host's own connection.
            expectExt(
                [ext0], reply(publishedReply), .pass(.reply), "reply to the host from 8080's peer, \(label)",
                conntrack: conntrack)
            expectExt(
                [ext1], reply(publishedReply), .pass(.published), "the same where no list applies, \(label)",
                conntrack: conntrack)

            // Not replies: the original direction, an untracked port, the wrong protocol, ICMP.
            expectExt(
                [ext0], udp(refused, endpoint(container, mac: Fixture.hostMAC), 5555, 80),
                row9, "the original direction of a flow opened from outside, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], udp(endpoint(Fixture.hostAddress), endpoint(container, mac: Fixture.hostMAC), 53, 40002),
                row9, "an untracked port, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], tcp(endpoint(Fixture.hostAddress), endpoint(container, mac: Fixture.hostMAC), 53, 40000),
                row9, "TCP on a UDP flow's tuple, \(label)", conntrack: conntrack)
            expectExt(
                [ext0],
                PacketBuilder.ipv4Frame(
                    EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC),
                    IPv4Header(source: Fixture.hostAddress, destination: container),
                    .icmpEcho(identifier: 0x4d4d, sequence: 1, reply: true),
                    payload: Array(repeating: 0x42, count: 8)),
                row9,
                "ICMP echo reply to a tracked ping (the conntrack kfuncs take TCP and UDP only), \(label)",
                conntrack: conntrack)

            // ICMP errors about a datagram the container sent on a flow it opened
            // (path MTU discovery from a router no list admits): related, they pass.
            func icmpError(type: UInt8, quotingSourcePort sourcePort: UInt16, to destination: IPv4Address = container)
                -> [UInt8]
            {
                PacketBuilder.ipv4Frame(
                    EthernetHeader(destination: Fixture.hostMAC, source: Fixture.routerMAC),
                    IPv4Header(source: refused.ip, destination: destination),
                    .icmpError(type: type, code: type == 3 ? 4 : 0, mtu: type == 3 ? 1400 : 0),
                    payload: PacketBuilder.icmpErrorQuote(
                        IPv4Header(source: container, destination: outside),
                        .udp(sourcePort: sourcePort, destinationPort: 7000)))
            }
            expectExt(
                [ext0], icmpError(type: 3, quotingSourcePort: 40003), .pass(.related),
                "fragmentation needed about the container's tracked UDP flow, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], icmpError(type: 11, quotingSourcePort: 40003), .pass(.related),
                "time exceeded about the same flow, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], icmpError(type: 3, quotingSourcePort: 40009), row9,
                "an ICMP error about a flow conntrack does not know, \(label)", conntrack: conntrack)
            expectExt(
                [ext0], icmpError(type: 3, quotingSourcePort: 40003, to: IPv4Address(10, 88, 0, 3)), row9,
                "an ICMP error sent to another container than the quoted source, \(label)", conntrack: conntrack)
        }
    }
}
