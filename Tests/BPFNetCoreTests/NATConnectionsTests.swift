// SPDX-License-Identifier: Apache-2.0
//
// bn_nat's entries as `status --connections` pairs them: one row per live
// connection, everything else (timed out, or half of a pair) due for deletion.

import BPFNetCore
import BPFNetShared
import XCTest

final class NATConnectionsTests: XCTestCase {
    private let second: UInt64 = 1_000_000_000
    private let client = IPv4Address(203, 0, 113, 7)
    private let host = IPv4Address(198, 51, 100, 1)
    private let container = IPv4Address(10, 88, 0, 2)

    private func pair(proto: UInt8 = 6, state: UInt8, seen: UInt64, sport: UInt16 = 40000) -> [(NATKey, NATEntry)] {
        let original = NATKey(source: client, destination: host, sourcePort: sport, destinationPort: 8080, proto: proto)
        let reply = NATKey(source: container, destination: client, sourcePort: 80, destinationPort: sport, proto: proto)
        var forward = bpfnet_nat_entry()
        forward.created_ns = 5 * second
        forward.seen_ns = seen
        forward.other = reply.cValue
        forward.addr = container.networkOrder
        forward.port = UInt16(80).bigEndian
        forward.direction = UInt8(BPFNET_NAT_ORIGINAL.rawValue)
        forward.state = state
        forward.packets = 3
        var back = bpfnet_nat_entry()
        back.other = original.cValue
        back.addr = host.networkOrder
        back.port = UInt16(8080).bigEndian
        back.direction = UInt8(BPFNET_NAT_REPLY.rawValue)
        back.packets = 2
        return [(original, NATEntry(forward)), (reply, NATEntry(back))]
    }

    func testLiveConnectionsArePairedWithTheirStateAndTimeLeft() {
        let replied = NATState.replied.rawValue
        let table = NATConnectionTable(entries: pair(state: replied, seen: 100 * second), now: 110 * second)
        XCTAssertEqual(table.expired, [])
        XCTAssertEqual(table.connections.count, 1)
        let connection = table.connections[0]
        XCTAssertEqual(connection.proto, "tcp")
        XCTAssertEqual(connection.outside, "203.0.113.7:40000")
        XCTAssertEqual(connection.published, "198.51.100.1:8080")
        XCTAssertEqual(connection.container, "10.88.0.2:80")
        XCTAssertEqual(connection.state, "established")
        XCTAssertEqual(connection.ageSeconds, 105)
        XCTAssertEqual(connection.expiresInSeconds, 432_000 - 10)
        XCTAssertEqual(connection.packetsIn, 3)
        XCTAssertEqual(connection.packetsOut, 2)
    }

    func testTimeoutsFollowConntrackDefaults() {
        let cases: [(UInt8, NATState, UInt64, String)] = [
            (6, [], 120, "syn-sent"), (6, .replied, 432_000, "established"),
            (6, [.replied, .finOutside], 120, "fin-wait"), (6, [.replied, .finOutside, .finInside], 120, "time-wait"),
            (6, [.replied, .reset], 10, "close"), (17, [], 30, "unreplied"), (17, .replied, 120, "replied"),
        ]
        for (proto, state, timeout, name) in cases {
            XCTAssertEqual(state.timeoutSeconds(proto: proto), timeout, name)
            XCTAssertEqual(state.name(proto: proto), name)
            let live = NATConnectionTable(
                entries: pair(proto: proto, state: state.rawValue, seen: 0), now: timeout * second)
            XCTAssertEqual(live.connections.count, 1, "\(name): live at exactly its timeout")
            let over = NATConnectionTable(
                entries: pair(proto: proto, state: state.rawValue, seen: 0), now: (timeout + 1) * second)
            XCTAssertEqual(over.connections.count, 0, "\(name): over after it")
            XCTAssertEqual(over.expired.count, 2, "\(name): both entries go")
            let sweep = NATConnectionTable.sweep(
                entries: pair(proto: proto, state: state.rawValue, seen: 0), now: (timeout + 1) * second)
            XCTAssertEqual(sweep.expired.count, 2, "\(name): the sweep deletes what the table calls over")
            XCTAssertEqual(sweep.liveConnections, 0)
        }
    }

    func testHalfAPairOrAForeignPartnerIsExpired() {
        let entries = pair(state: 0, seen: 0)
        XCTAssertEqual(NATConnectionTable(entries: [entries[1]], now: 1).expired, [entries[1].0], "reply alone")
        XCTAssertEqual(NATConnectionTable(entries: [entries[0]], now: 1).expired, [entries[0].0], "original alone")
        // The reply tuple was taken by a connection to another published port: the first one is over.
        var taken = entries[1].1
        taken.other = NATKey(source: client, destination: host, sourcePort: 40000, destinationPort: 8081, proto: 6)
        let table = NATConnectionTable(entries: [entries[0], (entries[1].0, taken)], now: 1)
        XCTAssertEqual(table.connections.count, 0)
        XCTAssertEqual(Set(table.expired), [entries[0].0, entries[1].0])
    }
}
