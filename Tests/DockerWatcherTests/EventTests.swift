// SPDX-License-Identifier: Apache-2.0

import BPFNetCore
import Foundation
import NIOCore
import XCTest

@testable import DockerWatcher

final class EventTests: XCTestCase {
    // MARK: Recorded streams

    func testEveryRecordedEventDecodes() throws {
        for name in ["events_all.jsonl", "events_filtered.jsonl", "events_29_v1.55.jsonl"] {
            let lines = try Fixture.lines(name)
            XCTAssertFalse(lines.isEmpty, name)
            for (index, line) in lines.enumerated() {
                XCTAssertNoThrow(try DockerEvent(json: line), "\(name) line \(index + 1)")
            }
        }
    }

    func testEvents2010() throws {
        let events = try Fixture.lines("events_all.jsonl").map { try DockerEvent(json: $0) }
        let child = "8d43f5ead98de994773415eb28cba3d2c6ba1e972bc90a98e1a68107f8d9be4a"
        XCTAssertEqual(
            events[0],
            DockerEvent(
                type: .container, action: .create, actorID: child,
                attributes: ["image": "bb:local", "name": "ce"],
                timeNano: 1_795_751_701_745_412_541))
        let connect = events[1]
        XCTAssertEqual(connect.type, .network)
        XCTAssertEqual(connect.action, .connect)
        XCTAssertEqual(connect.containerID, child)
        XCTAssertEqual(connect.networkName, "bridge")
        XCTAssertTrue(connect.isDefaultBridgeNetworkEvent)
        XCTAssertNil(connect.containerName)
        XCTAssertEqual(events[2].action, .start)
        XCTAssertEqual(events[2].containerName, "ce")
        XCTAssertEqual(events[2].containerID, child)

        // User-defined bridge networks have the same driver type; only the name tells.
        let testnet = events.first { $0.type == .network && $0.networkName == "testnet" && $0.action == .connect }
        XCTAssertEqual(testnet?.isDefaultBridgeNetworkEvent, false)

        let die = try XCTUnwrap(events.first { $0.action == .die })
        XCTAssertEqual(die.exitCode, 137)
        // destroy matches the network's destroy too: the type tells them apart.
        let destroys = events.filter { $0.action == .destroy }
        XCTAssertEqual(Set(destroys.map(\.type)), [.container, .network])
        XCTAssertNil(destroys.first { $0.type == .network }?.containerID)
        XCTAssertTrue(events.contains { $0.action == .restart })
        XCTAssertTrue(events.contains { $0.action == .stop })
        XCTAssertTrue(events.contains { $0.action == .disconnect })
    }

    func testEvents29WithoutLegacyFields() throws {
        let lines = try Fixture.lines("events_29_v1.55.jsonl")
        XCTAssertNil(try Fixture.json(lines[2])["status"], "the recording should lack the legacy fields")
        let events = try lines.map { try DockerEvent(json: $0) }
        XCTAssertEqual(
            events.map(\.action.rawValue),
            ["create", "connect", "start", "kill", "kill", "disconnect", "stop", "die", "destroy"])
        XCTAssertEqual(events[2].containerName, "ev1")
        XCTAssertEqual(events[7].exitCode, 137)
        XCTAssertEqual(events[7].attributes["execDuration"], "0")
        XCTAssertEqual(events[5].containerID, "cde8a66b7e970496990e6fe1c657336d318031064b79deb146d223764aa929fa")
    }

    func testLegacyOnlyEvent() throws {
        let event = try DockerEvent(json: Data(#"{"status":"start","id":"abc","from":"img","time":5}"#.utf8))
        XCTAssertEqual(event, DockerEvent(type: .container, action: .start, actorID: "abc", timeNano: 5_000_000_000))
    }

    func testUnknownActionsPassThrough() throws {
        let event = try DockerEvent(
            json: Data(#"{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"x"}}"#.utf8))
        XCTAssertEqual(event.action, .other("health_status: healthy"))
        let image = try DockerEvent(json: Data(#"{"Type":"image","Action":"pull","Actor":{"ID":"busybox"}}"#.utf8))
        XCTAssertEqual(image.type, .other("image"))
        XCTAssertNil(image.containerID)
    }

    func testFiltersJSON() {
        XCTAssertEqual(
            DockerEventFilters.bridgePolicy.json,
            #"{"event":["start","die","stop","destroy","connect","disconnect","restart","create"],"type":["container","network"]}"#
        )
    }

    // MARK: The stream: framing and errors

    func testStreamReassemblesEventsSplitAcrossChunks() async throws {
        let recorded = try Fixture.lines("events_all.jsonl")
        let expected = try recorded.map { DockerEventItem.event(try DockerEvent(json: $0)) }
        var stream = Data()
        for line in recorded { stream += line + Data("\n".utf8) }
        // One byte at a time, a prime size that splits every object, and everything at once.
        for size in [1, 7, 61, 500, stream.count] {
            let chunks = stride(from: 0, to: stream.count, by: size).map { stream[$0..<min($0 + size, stream.count)] }
            let (items, error) = await collect(chunks.map { Array($0) })
            XCTAssertEqual(items, expected, "chunk size \(size)")
            assertStreamEnded(error)
        }
    }

    func testSeveralEventsInOneChunkAndOneAcrossTwo() async throws {
        let a = #"{"Type":"container","Action":"start","Actor":{"ID":"a","Attributes":{"name":"a"}}}"#
        let b = #"{"Type":"container","Action":"die","Actor":{"ID":"b","Attributes":{"name":"b","exitCode":"0"}}}"#
        let c =
            #"{"Type":"network","Action":"connect","Actor":{"ID":"n","Attributes":{"container":"c","name":"bridge","type":"bridge"}}}"#
        let whole = a + "\n" + b + "\r\n" + c + "\n"
        let cut = whole.utf8.count - 40
        let (items, error) = await collect([Array(whole.utf8.prefix(cut)), Array(whole.utf8.dropFirst(cut))])
        XCTAssertEqual(items.compactMap(\.event).map(\.actorID), ["a", "b", "n"])
        XCTAssertEqual(items.compactMap(\.event).last?.containerID, "c")
        assertStreamEnded(error)
    }

    func testGarbageLinesAreReportedAndSkipped() async throws {
        let good = #"{"Type":"container","Action":"start","Actor":{"ID":"ok"}}"#
        let lines = [
            "not json at all",
            good,
            "{}",
            #"{"Type":"container","Action":"start"}"#,
            #"{"Type":"container","Action":"start","Actor":{"ID":"x","Attributes":{"exitCode":1}}}"#,
            "{\"Type\":\"container\",",  // cut short
            "",
            "   ",
            "\u{1E}" + good,  // json-seq record separator
            good,
        ]
        let (items, error) = await collect([Array(lines.joined(separator: "\n").utf8) + [UInt8(ascii: "\n")]])
        assertStreamEnded(error)
        XCTAssertEqual(items.count, 8)
        XCTAssertEqual(items.compactMap(\.event).map(\.actorID), ["ok", "ok", "ok"])
        let malformed = items.compactMap { item -> DockerMalformedEvent? in
            if case .malformed(let value) = item { return value }
            return nil
        }
        XCTAssertEqual(malformed.map(\.line), [lines[0], lines[2], lines[3], lines[4], lines[5]])
        XCTAssertTrue(malformed[1].reason.contains("field Type: missing"), malformed[1].reason)
        XCTAssertTrue(malformed[2].reason.contains("field Actor.ID: missing"), malformed[2].reason)
        XCTAssertTrue(malformed[3].reason.contains("Actor.Attributes.exitCode"), malformed[3].reason)
    }

    func testLastLineWithoutNewlineIsDeliveredBeforeTheEnd() async throws {
        let (items, error) = await collect([Array(#"{"Type":"container","Action":"die","Actor":{"ID":"z"}}"#.utf8)])
        XCTAssertEqual(items.compactMap(\.event).map(\.actorID), ["z"])
        assertStreamEnded(error)
    }

    func testOverlongLineIsDroppedAndTheStreamRecovers() async throws {
        let good = #"{"Type":"container","Action":"start","Actor":{"ID":"after"}}"#
        let junk = [UInt8](repeating: UInt8(ascii: "x"), count: 5000)
        let chunks =
            stride(from: 0, to: junk.count, by: 1000).map { Array(junk[$0..<$0 + 1000]) }
            + [Array(("\n" + good + "\n").utf8)]
        let (items, _) = await collect(chunks, maxLineLength: 2048)
        XCTAssertEqual(items.count, 2)
        guard case .malformed(let dropped) = items[0] else { return XCTFail("\(items)") }
        XCTAssertTrue(dropped.reason.contains("longer than the limit"))
        XCTAssertEqual(items[1].event?.actorID, "after")
    }

    func testBrokenConnectionThrows() async throws {
        struct Reset: Error {}
        let good = #"{"Type":"container","Action":"start","Actor":{"ID":"a"}}"#
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        continuation.yield(ByteBuffer(string: good + "\n" + #"{"Type":"conta"#))
        continuation.finish(throwing: Reset())
        var items: [DockerEventItem] = []
        do {
            for try await item in DockerEventSequence(chunks: stream, host: "unix:///test.sock") { items.append(item) }
            XCTFail("the stream should throw")
        } catch let DockerError.eventStreamEnded(host, _) {
            XCTAssertEqual(host, "unix:///test.sock")
        }
        // The half object before the break is not delivered.
        XCTAssertEqual(items.compactMap(\.event).map(\.actorID), ["a"])
    }

    func testCancellingTheConsumerEndsWithoutError() async throws {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        continuation.yield(ByteBuffer(string: #"{"Type":"container","Action":"start","Actor":{"ID":"a"}}"# + "\n"))
        let consumer = Task { () -> (Int, (any Error)?) in
            var count = 0
            do {
                for try await _ in DockerEventSequence(chunks: stream, host: "h") { count += 1 }
                return (count, nil)
            } catch {
                return (count, error)
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        consumer.cancel()
        let (count, error) = await consumer.value
        XCTAssertEqual(count, 1)
        XCTAssertNil(error)
    }

    // MARK: Helpers

    private func collect(_ chunks: [[UInt8]], maxLineLength: Int = 1 << 20) async -> ([DockerEventItem], (any Error)?) {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        for chunk in chunks { continuation.yield(ByteBuffer(bytes: chunk)) }
        continuation.finish()
        var items: [DockerEventItem] = []
        do {
            for try await item in DockerEventSequence(
                chunks: stream, host: "unix:///test.sock", maxLineLength: maxLineLength)
            {
                items.append(item)
            }
            return (items, nil)
        } catch {
            return (items, error)
        }
    }

    private func assertStreamEnded(_ error: (any Error)?, file: StaticString = #filePath, line: UInt = #line) {
        guard case .eventStreamEnded(let host, let reason)? = error as? DockerError else {
            return XCTFail("expected eventStreamEnded, got \(String(describing: error))", file: file, line: line)
        }
        XCTAssertEqual(host, "unix:///test.sock", file: file, line: line)
        XCTAssertEqual(reason, "the daemon closed the stream", file: file, line: line)
    }
}
