// SPDX-License-Identifier: Apache-2.0
//
// docs/verdicts.md "Parsing" through the real programs: truncation at every
// header boundary, IPv4 header field errors, options, tags and IPv6 length,
// each with its defined verdict and counter, at both port hooks and the ext
// program.

import BPF
import BPFNetCore
import BPFNetTestSupport
import XCTest

final class MalformedFrameTests: TestRunTestCase {
    /// Port hooks and the ext program on ext0.
    var everyHook: [Hook] { Hook.portHooks + [.ext(ingress: ext0)] }

    func expectEverywhere(
        _ frame: [UInt8], _ expected: Verdict, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for hook in everyHook { expect(hook, frame, expected, label, file: file, line: line) }
    }

    /// A frame whose verdict differs between the port and the ext program.
    func expectEverywhere(
        _ frame: [UInt8], port: Verdict, ext: Verdict, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for hook in Hook.portHooks { expect(hook, frame, port, label, file: file, line: line) }
        expect(.ext(ingress: ext0), frame, ext, label, file: file, line: line)
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        // icc off and forward drop, so that a frame parsed too far or not far
        // enough would show up as a different verdict, not the same pass.
        try apply(icc: false, forward: .drop)
    }

    // MARK: Ethernet

    func testFramesShorterThanAnEthernetHeaderAreRefusedByTheKernel() throws {
        let frame = tcp(app, db, 40000, 5432)
        for length in 0..<14 {
            let cut = PacketBuilder.truncated(frame, to: length)
            XCTAssertEqual(FrameParser.parse(cut), .malformed(.ethernetTruncated), "model, \(length) bytes")
            XCTAssertEqual(
                rig.reference.portVerdict(frame: cut, sender: .unknown), .drop(.malformed), "model, \(length) bytes")
            XCTAssertEqual(
                rig.reference.extVerdict(frame: cut, ingressIfindex: ext0), .drop(.malformed), "model, \(length) bytes")
            let before = try rig.counters()
            for hook in everyHook {
                // BPF_PROG_TEST_RUN refuses data shorter than ETH_HLEN for tc and XDP
                // (bpf_test_init): such a frame cannot reach either program, so the
                // malformed verdict for it exists only in the model.
                XCTAssertThrowsError(try rig.run(hook, cut), "\(hook) accepted a \(length)-byte frame") { error in
                    XCTAssertEqual((error as? BPFError)?.errno, .invalidArgument, "\(hook), \(length) bytes: \(error)")
                }
            }
            XCTAssertEqual(
                try rig.counters().map(\.packets), before.map(\.packets), "no counter moves for \(length) bytes")
        }
        // 14 bytes is the shortest frame the kernel takes.
        expectEverywhere(
            PacketBuilder.truncated(frame, to: 14), .drop(.malformed), "Ethernet header only, IPv4 ethertype")
        expectEverywhere(
            PacketBuilder.truncated(ipv6(to: Fixture.db.mac), to: 14), .drop(.malformed),
            "Ethernet header only, IPv6 ethertype")
        expectEverywhere(
            PacketBuilder.truncated(arp(from: app, target: db.ip), to: 14), .pass(.nonIP),
            "Ethernet header only, ARP ethertype")
    }

    // MARK: Truncation at every length

    /// Cuts `frame` at every length from 14 to its full size; the verdict of
    /// a cut is `malformed` below `complete` bytes and `whole` from there on.
    func checkEveryCut(
        _ frame: [UInt8], complete: Int, port whole: Verdict, ext extWhole: Verdict, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        for length in 14...frame.count {
            let cut = PacketBuilder.truncated(frame, to: length)
            let done = length >= complete
            expectEverywhere(
                cut, port: done ? whole : .drop(.malformed), ext: done ? extWhole : .drop(.malformed),
                "\(label) cut to \(length) of \(frame.count) bytes", file: file, line: line)
        }
    }

    func testTruncationAtEveryHeaderBoundary() throws {
        // IPv4 with tot_len intact: every cut is shorter than tot_len claims.
        let link = tcp(app, db, 40000, 5432)
        checkEveryCut(link, complete: link.count, port: .pass(.link), ext: .drop(.forward), "TCP SYN")
        let tagged = tcp(app, db, 40000, 5432, vlans: [q8021Q])
        checkEveryCut(tagged, complete: tagged.count, port: .pass(.link), ext: .drop(.forward), "802.1Q TCP SYN")
        let doubleTagged = udp(app, db, 40000, 53, vlans: [q8021ad, q8021Q])
        checkEveryCut(
            doubleTagged, complete: doubleTagged.count, port: .pass(.link), ext: .drop(.forward), "802.1ad+802.1Q UDP")
        let withOptions = PacketBuilder.ipv4Frame(
            EthernetHeader(destination: db.mac, source: app.mac),
            IPv4Header(source: app.ip, destination: db.ip, options: [0x94, 0x04, 0, 0, 1, 1, 1, 0]),
            .sctp(sourcePort: 40000, destinationPort: 9899))
        checkEveryCut(withOptions, complete: withOptions.count, port: .pass(.link), ext: .drop(.forward), "SCTP, IHL 7")
        // IPv6: the 40-byte header must be there, its payload need not.
        let v6 = ipv6(to: Fixture.db.mac)
        checkEveryCut(v6, complete: 14 + 40, port: .drop(.icc), ext: .pass(.ipv6), "IPv6 to a container")
        let v6Tagged = ipv6(to: Fixture.db.mac, vlans: [q8021ad, q8021Q])
        checkEveryCut(v6Tagged, complete: 22 + 40, port: .drop(.icc), ext: .pass(.ipv6), "double-tagged IPv6")
        // Non-IP: nothing past the ethertype is read; a tag must be complete.
        checkEveryCut(arp(from: app, target: db.ip), complete: 14, port: .pass(.nonIP), ext: .pass(.nonIP), "ARP")
        checkEveryCut(
            arp(from: app, target: db.ip, vlans: [q8021Q]), complete: 18, port: .pass(.nonIP), ext: .pass(.nonIP),
            "802.1Q ARP")
        // Three tags: the first two must be complete, the third is not read
        // (encapsulation the programs do not look into).
        let threeTags = tcp(app, db, 40000, 5432, vlans: [q8021ad, q8021Q, VLANTag(vid: 3)])
        checkEveryCut(
            PacketBuilder.truncated(threeTags, to: 40), complete: 22, port: .drop(.encap), ext: .drop(.encap),
            "three tags")
    }

    /// Cuts the L4 header while tot_len says the same (so the IPv4 checks pass).
    func coherent(_ frame: [UInt8], keepingL4 keep: Int) -> [UInt8] {
        guard case .ipv4(let packet) = FrameParser.parse(frame) else { preconditionFailure("not IPv4") }
        let headerLength = Int(frame[packet.offset] & 0x0f) * 4
        var cut = Array(frame.prefix(packet.offset + headerLength + keep))
        let total = UInt16(headerLength + keep)
        cut[packet.offset + 2] = UInt8(total >> 8)
        cut[packet.offset + 3] = UInt8(total & 0xff)
        cut[packet.offset + 10] = 0
        cut[packet.offset + 11] = 0
        let checksum = PacketBuilder.internetChecksum(Array(cut[packet.offset..<(packet.offset + headerLength)]))
        cut[packet.offset + 10] = UInt8(checksum >> 8)
        cut[packet.offset + 11] = UInt8(checksum & 0xff)
        return cut
    }

    func testL4HeaderMustLieWithinTheFrameAndTotLen() throws {
        let cases: [(String, [UInt8], Int, Verdict)] = [
            ("TCP", tcp(app, db, 40000, 5432), 20, .pass(.link)),
            ("UDP", udp(app, db, 40000, 53), 8, .pass(.link)),
            ("SCTP", sctp(app, db, 40000, 9899), 12, .pass(.link)),
            ("802.1Q TCP", tcp(app, db, 40000, 5432, vlans: [q8021Q]), 20, .pass(.link)),
            (
                "TCP after 40 bytes of options",
                PacketBuilder.ipv4Frame(
                    EthernetHeader(destination: db.mac, source: app.mac),
                    IPv4Header(source: app.ip, destination: db.ip, options: Array(repeating: 1, count: 40)),
                    .tcp(sourcePort: 40000, destinationPort: 5432)), 20, .pass(.link)
            ),
        ]
        for (name, frame, minimum, verdict) in cases {
            for keep in 0..<minimum {
                expectEverywhere(coherent(frame, keepingL4: keep), .drop(.malformed), "\(name) with \(keep) L4 bytes")
            }
            expectEverywhere(
                coherent(frame, keepingL4: minimum), port: verdict, ext: .drop(.forward),
                "\(name) with exactly \(minimum) L4 bytes")
            // The header is in the frame, but tot_len ends before it: trailing bytes are padding.
            var short = frame
            guard case .ipv4(let packet) = FrameParser.parse(frame) else { return XCTFail("\(name) is not IPv4") }
            let headerLength = Int(frame[packet.offset] & 0x0f) * 4
            let total = UInt16(headerLength + minimum - 1)
            short[packet.offset + 2] = UInt8(total >> 8)
            short[packet.offset + 3] = UInt8(total & 0xff)
            expectEverywhere(short, .drop(.malformed), "\(name): L4 header beyond tot_len, within the frame")
        }
        // Protocols without ports have no length check.
        expectEverywhere(
            coherent(icmp(app, db), keepingL4: 0), port: .drop(.icc), ext: .drop(.forward), "ICMP with no payload")
        expectEverywhere(
            coherent(raw(app, db), keepingL4: 0), port: .drop(.icc), ext: .drop(.forward), "GRE with no payload")
        // A non-first fragment carries no L4 header, so none is required.
        var fragment = IPv4Header(source: app.ip, destination: db.ip, fragmentOffset: 1)
        fragment.proto = IPProtocol.udp
        expectEverywhere(
            PacketBuilder.ethernet(
                EthernetHeader(destination: db.mac, source: app.mac), etherType: EtherType.ipv4,
                payload: PacketBuilder.ipv4(fragment, payload: [])),
            port: .pass(.linkFragment), ext: .pass(.fragment), "UDP non-first fragment with no payload")
    }

    // MARK: IPv4 header fields

    func ipv4(
        _ header: IPv4Header, _ transport: Transport = .tcp(sourcePort: 40000, destinationPort: 5432),
        vlans: [VLANTag] = [], padding: Int = 0
    ) -> [UInt8] {
        PacketBuilder.ipv4Frame(EthernetHeader(destination: db.mac, source: app.mac, vlans: vlans), header, transport)
            + Array(repeating: 0, count: padding)
    }

    var linkHeader: IPv4Header { IPv4Header(source: app.ip, destination: db.ip) }

    func testIPv4HeaderErrorsAreMalformed() throws {
        for tags in [[], [q8021Q], [q8021ad, q8021Q]] as [[VLANTag]] {
            let tagged = "\(tags.count) tag(s)"
            for ihl in UInt8(0)...4 {
                var header = linkHeader
                header.headerLengthOverride = ihl
                expectEverywhere(ipv4(header, vlans: tags), .drop(.malformed), "IHL \(ihl), \(tagged)")
            }
            for version in [UInt8(0), 1, 5, 6, 15] {
                var header = linkHeader
                header.versionOverride = version
                expectEverywhere(ipv4(header, vlans: tags), .drop(.malformed), "version \(version), \(tagged)")
            }
            for total in [UInt16(0), 1, 19] {
                var header = linkHeader
                header.totalLengthOverride = total
                expectEverywhere(ipv4(header, vlans: tags), .drop(.malformed), "tot_len \(total) < 20, \(tagged)")
            }
            var withOptions = linkHeader
            withOptions.options = Array(repeating: 1, count: 12)
            withOptions.totalLengthOverride = 31
            expectEverywhere(ipv4(withOptions, vlans: tags), .drop(.malformed), "tot_len 31 < IHL 8 × 4, \(tagged)")
            let exact = ipv4(linkHeader, vlans: tags)
            var header = linkHeader
            header.totalLengthOverride = UInt16(exact.count - 14 - 4 * tags.count + 1)
            expectEverywhere(
                ipv4(header, vlans: tags), .drop(.malformed), "tot_len one byte beyond the frame, \(tagged)")
            header.totalLengthOverride = 0xffff
            expectEverywhere(ipv4(header, vlans: tags), .drop(.malformed), "tot_len 65535, \(tagged)")
            // Frames longer than tot_len are padded (Ethernet's 60-byte minimum and more): fine.
            expectEverywhere(
                ipv4(linkHeader, vlans: tags, padding: 6), port: .pass(.link), ext: .drop(.forward),
                "6 bytes of padding, \(tagged)")
            expectEverywhere(
                ipv4(linkHeader, vlans: tags, padding: 900), port: .pass(.link), ext: .drop(.forward),
                "900 bytes of padding, \(tagged)")
            // IHL claims options the frame does not have (tot_len matches the IHL, the frame stops at 20).
            for ihl in UInt8(6)...15 {
                var claimed = linkHeader
                claimed.headerLengthOverride = ihl
                claimed.totalLengthOverride = UInt16(ihl) * 4
                let frame = PacketBuilder.ethernet(
                    EthernetHeader(destination: db.mac, source: app.mac, vlans: tags),
                    etherType: EtherType.ipv4, payload: PacketBuilder.ipv4(claimed, payload: []))
                expectEverywhere(frame, .drop(.malformed), "IHL \(ihl) with a 20-byte header, \(tagged)")
            }
        }
    }

    func testValidOptionsAtEveryIHLShiftThePorts() throws {
        for ihl in 6...15 {
            let count = (ihl - 5) * 4
            // Router Alert (type 0x94, length 4, value 0x1538), then NOPs: where a
            // parser that ignored the IHL would read a destination port, it
            // would find 5432. The real ports follow the options.
            let options = [0x94, 0x04, 0x15, 0x38] + [UInt8](repeating: 1, count: count - 4)
            var header = linkHeader
            header.options = options
            expectEverywhere(
                ipv4(header, .tcp(sourcePort: 40000, destinationPort: 5432)), port: .pass(.link),
                ext: .drop(.forward), "IHL \(ihl): TCP to 5432 after options")
            expectEverywhere(
                ipv4(header, .tcp(sourcePort: 40000, destinationPort: 5433)), port: .drop(.icc),
                ext: .drop(.forward), "IHL \(ihl): TCP to 5433 after options that read like 5432")
            expectEverywhere(
                ipv4(header, .udp(sourcePort: 40000, destinationPort: 53)), port: .pass(.link),
                ext: .drop(.forward), "IHL \(ihl): UDP to 53 after options")
            var toHost = IPv4Header(source: refused.ip, destination: host.ip, options: options)
            toHost.ttl = 9
            expectEverywhere(
                PacketBuilder.ipv4Frame(
                    EthernetHeader(destination: host.mac, source: refused.mac), toHost,
                    .tcp(sourcePort: 50000, destinationPort: 8080)),
                port: .pass(.outside), ext: .drop(.source), "IHL \(ihl): to a published port after options")
        }
    }

    // MARK: Fragments

    func testFragmentFlagsAndOffsets() throws {
        func fragment(
            _ s: Endpoint, _ d: Endpoint, offset: UInt16, more: Bool, dontFragment: Bool = false,
            _ transport: Transport = .udp(sourcePort: 40000, destinationPort: 53)
        ) -> [UInt8] {
            let header = IPv4Header(
                source: s.ip, destination: d.ip, dontFragment: dontFragment, moreFragments: more,
                fragmentOffset: offset)
            return PacketBuilder.ipv4Frame(
                EthernetHeader(destination: d.mac, source: s.mac), header, transport,
                payload: Array(repeating: 0x22, count: 16))
        }
        // Offset 0 with MF is a first fragment: ports are read, the link decides.
        expectEverywhere(
            fragment(app, db, offset: 0, more: true), port: .pass(.link), ext: .drop(.forward),
            "first fragment app→db:53")
        expectEverywhere(
            fragment(other, db, offset: 0, more: true), port: .drop(.icc), ext: .drop(.forward),
            "first fragment other→db:53")
        // Any non-zero offset is non-first, MF or not; DF is irrelevant.
        for offset: UInt16 in [1, 2, 185, 0x1fff] {
            for more in [false, true] {
                expectEverywhere(
                    fragment(app, db, offset: offset, more: more), port: .pass(.linkFragment), ext: .pass(.fragment),
                    "offset \(offset) MF=\(more), linked pair")
                expectEverywhere(
                    fragment(other, db, offset: offset, more: more), port: .drop(.icc), ext: .pass(.fragment),
                    "offset \(offset) MF=\(more), unlinked pair")
            }
        }
        expectEverywhere(
            fragment(app, db, offset: 0, more: false, dontFragment: true), port: .pass(.link), ext: .drop(.forward),
            "DF, not a fragment")
        expectEverywhere(
            fragment(app, db, offset: 3, more: false, dontFragment: true), port: .pass(.linkFragment),
            ext: .pass(.fragment), "DF with an offset (inconsistent, still non-first)")
        // The reserved (evil) bit is not part of the offset.
        var evil = fragment(other, db, offset: 0, more: false)
        evil[14 + 6] |= 0x80
        evil[14 + 10] = 0
        evil[14 + 11] = 0
        let checksum = PacketBuilder.internetChecksum(Array(evil[14..<34]))
        evil[14 + 10] = UInt8(checksum >> 8)
        evil[14 + 11] = UInt8(checksum & 0xff)
        expectEverywhere(evil, port: .drop(.icc), ext: .drop(.forward), "reserved flag bit set, offset 0")
    }
}
