// SPDX-License-Identifier: Apache-2.0
//
// The ext program's routed fast path on the demo host, checked on the wire:
// UDP datagrams from the outside straight to a container address (forward
// policy accept) are captured on the container's eth0 with an AF_PACKET
// socket. The first datagram of the flow goes through the host's stack (which
// creates the conntrack entry), the rest through the fast path; every one of
// them must arrive exactly as the host would have routed it: TTL one less,
// source MAC the bridge's, destination MAC the container's, valid IPv4 header
// and UDP checksums.

import BPF
import BPFNetCore
import BPFNetTestSupport
import DemoHost
import Foundation
import NetLab
import XCTest

final class FastPathRoutedTests: XCTestCase {
    func testRoutedUDPArrivesWithTTLMACAndChecksumsRight() throws {
        try requireRoot("loads eBPF programs in network namespaces and captures in one")
        let lab = try DemoLab()
        defer { lab.close() }
        // The lab's outside sends complete checksums, as a frame off a wire has
        // them (NetLab turns tx offload off there): a veth peer offloading them
        // would leave the ext interface FULL_CSUM-less (docs/verdicts.md,
        // "Fast path"), and nothing would be fast-pathed.
        try lab.load(
            PolicySettings(icc: true, allowList: true, forwardPolicy: .accept), portHook: .tc,
            extraArguments: ["--fast-path", "on"])

        let web = Scenario.address("web")
        let capture = try PacketCapture(namespacePath: lab.topology.namespace("web").path, interface: "eth0")
        let runner = try ProbeRunner()
        let before = try lab.status()
        let count = 12
        for _ in 0..<count {
            let probe = try lab.topology.probe(
                from: "ext", to: web, .udp(9999), sourcePort: 40404,
                sourceAddress: Scenario.allowedSource, label: "ext → web")
            let result = runner.run(probe)
            XCTAssertTrue(result.isAllowed, "\(result)")
        }
        let after = try lab.status()
        let hits = BPFEndToEndTests.delta(before, after, program: "ext-xdp", event: "hit")
        XCTAssertGreaterThanOrEqual(
            hits, UInt64(count - 2),
            "ext-xdp fast path hits: \(after.fastPath?["ext-xdp"] ?? [:])")

        let frames = capture.drain().compactMap(CapturedUDP.init).filter {
            $0.destination == web && $0.destinationPort == 9999 && $0.source == Scenario.allowedSource
        }
        XCTAssertEqual(frames.count, count, "every datagram arrives once")
        let bridgeMAC = MACAddress(dockerStyleFor: Scenario.bridgeAddress.address)
        let webMAC = MACAddress(dockerStyleFor: web)
        for (index, frame) in frames.enumerated() {
            XCTAssertEqual(frame.ttl, 63, "datagram \(index): TTL")
            XCTAssertEqual(frame.sourceMAC, bridgeMAC, "datagram \(index): source MAC")
            XCTAssertEqual(frame.destinationMAC, webMAC, "datagram \(index): destination MAC")
            XCTAssertTrue(frame.ipHeaderChecksumValid, "datagram \(index): IPv4 header checksum")
            XCTAssertTrue(frame.udpChecksumValid, "datagram \(index): UDP checksum")
        }
    }
}

/// An AF_PACKET socket on one interface of another namespace. The socket is
/// created on a thread inside that namespace and keeps belonging to it, so it
/// can be read from here. (Glibc's Swift module lacks <netpacket/packet.h>:
/// struct sockaddr_ll is laid out by hand, 20 bytes.)
private final class PacketCapture {
    private static let ethPAll: UInt16 = 0x0003
    private static let packetOutgoing: UInt8 = 4
    private let fd: Int32

    init(namespacePath: String, interface: String) throws {
        let namespace = try NetworkNamespace(path: namespacePath)
        fd = try namespace.run { () throws -> Int32 in
            let fd = socket(
                AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                Int32(Self.ethPAll.bigEndian))
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            // sll_family, sll_protocol (network order), sll_ifindex; the rest 0.
            var address = [UInt8](repeating: 0, count: 20)
            withUnsafeBytes(of: UInt16(AF_PACKET)) { address.replaceSubrange(0..<2, with: $0) }
            withUnsafeBytes(of: Self.ethPAll.bigEndian) { address.replaceSubrange(2..<4, with: $0) }
            withUnsafeBytes(of: Int32(if_nametoindex(interface))) { address.replaceSubrange(4..<8, with: $0) }
            let bound = address.withUnsafeBytes {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(20))
            }
            guard bound == 0 else {
                let code = errno
                close(fd)
                throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
            }
            return fd
        }
    }

    deinit { close(fd) }

    /// Every frame received so far (incoming only).
    func drain() -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var from = [UInt8](repeating: 0, count: 20)
            var length = socklen_t(20)
            let received = buffer.withUnsafeMutableBytes { bytes in
                from.withUnsafeMutableBytes {
                    recvfrom(
                        fd, bytes.baseAddress, bytes.count, 0,
                        $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
                }
            }
            guard received > 0 else { break }
            if from[10] == Self.packetOutgoing { continue }  // sll_pkttype
            frames.append(Array(buffer[0..<received]))
        }
        return frames
    }
}

/// The fields of an Ethernet + IPv4 + UDP frame the test looks at.
private struct CapturedUDP {
    var destinationMAC: MACAddress
    var sourceMAC: MACAddress
    var ttl: UInt8
    var source: IPv4Address
    var destination: IPv4Address
    var destinationPort: UInt16
    var ipHeaderChecksumValid: Bool
    var udpChecksumValid: Bool

    init?(_ frame: [UInt8]) {
        guard frame.count >= 14 + 20 + 8, frame[12] == 0x08, frame[13] == 0x00 else { return nil }
        let ip = Array(frame[14...])
        let headerLength = Int(ip[0] & 0x0F) * 4
        let totalLength = Int(ip[2]) << 8 | Int(ip[3])
        guard ip[0] >> 4 == 4, headerLength >= 20, ip[9] == 17, totalLength <= ip.count,
            totalLength >= headerLength + 8
        else { return nil }
        func mac(_ offset: Int) -> MACAddress {
            MACAddress(
                frame[offset], frame[offset + 1], frame[offset + 2], frame[offset + 3], frame[offset + 4],
                frame[offset + 5])
        }
        func address(_ offset: Int) -> IPv4Address {
            IPv4Address(ip[offset], ip[offset + 1], ip[offset + 2], ip[offset + 3])
        }
        destinationMAC = mac(0)
        sourceMAC = mac(6)
        ttl = ip[8]
        source = address(12)
        destination = address(16)
        let udp = Array(ip[headerLength..<totalLength])
        destinationPort = UInt16(udp[2]) << 8 | UInt16(udp[3])
        // Summed with their checksum fields in place, valid headers give 0.
        ipHeaderChecksumValid = PacketBuilder.internetChecksum(Array(ip[0..<headerLength])) == 0
        let udpChecksum = UInt16(udp[6]) << 8 | UInt16(udp[7])
        udpChecksumValid =
            udpChecksum != 0
            && PacketBuilder.transportChecksum(udp, proto: 17, source: source, destination: destination) == 0
    }
}
