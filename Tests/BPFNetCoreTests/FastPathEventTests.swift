import BPFNetShared
import XCTest

@testable import BPFNetCore

/// Fast-path events (bpfnet_shared.h `enum bpfnet_fastpath_event`), their
/// counters in `bpfnet status`, the policy switch and its file key.
final class FastPathEventTests: XCTestCase {
    func testEventsMirrorTheEnum() {
        XCTAssertEqual(FastPathEvent.hit.rawValue, 1)
        XCTAssertEqual(FastPathEvent.redirect.rawValue, 19)
        XCTAssertEqual(FastPathEvent.slotsPerProgram, 24)
        XCTAssertEqual(Set(FastPathEvent.allKnown.map(\.name)).count, FastPathEvent.allKnown.count, "names are unique")
        for event in FastPathEvent.allKnown {
            XCTAssertLessThan(Int(event.rawValue), FastPathEvent.slotsPerProgram)
            XCTAssertFalse(event.name.hasPrefix("event-"), "\(event.rawValue) has no name")
        }
        XCTAssertEqual(FastPathEvent(rawValue: 23).name, "event-23")
        XCTAssertEqual(ProgramKind.extXDP.fastPathIndex(.hit), 2 * 24 + 1)
        XCTAssertEqual(ProgramKind.fastPathSlots, 72)
        XCTAssertEqual(MemoryLayout<bpfnet_fp_if>.size, 16)
        XCTAssertEqual(MapKind.name(of: BPFNET_MAP_ID_FP_COUNTERS), "bn_fp_counters")
        XCTAssertEqual(MapKind.name(of: BPFNET_MAP_ID_FP_IFS), "bn_fp_ifs")
    }

    func testStatusCarriesFastPathCountersAndSwitch() throws {
        var state = MapState()
        state.config = ConfigRecord(flags: [.loaded, .fastPath])
        var status = DataplaneStatus(backend: "bpf", state: state, bridge: "docker0") { _ in nil }
        XCTAssertEqual(status.fastPathEnabled, true)
        var slots = [bpfnet_counter](repeating: bpfnet_counter(), count: ProgramKind.fastPathSlots)
        slots[ProgramKind.portTC.fastPathIndex(.hit)] = bpfnet_counter(packets: 9, bytes: 900)
        slots[ProgramKind.extXDP.fastPathIndex(.conntrack)] = bpfnet_counter(packets: 1, bytes: 60)
        status.setFastPathCounters(slots: slots)
        XCTAssertEqual(status.fastPath, ["port-tc": ["hit": 9], "ext-xdp": ["conntrack": 1]])

        let json = try JSONEncoder().encode(status)
        let decoded = try JSONDecoder().decode(DataplaneStatus.self, from: json)
        XCTAssertEqual(decoded.fastPath, status.fastPath)
        XCTAssertEqual(decoded.fastPathEnabled, true)

        // A document of a bpfnet without a fast path still decodes.
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any])
        object["fastPath"] = nil
        object["fastPathEnabled"] = nil
        let older = try JSONDecoder().decode(DataplaneStatus.self, from: JSONSerialization.data(withJSONObject: object))
        XCTAssertNil(older.fastPath)
        XCTAssertNil(older.fastPathEnabled)
    }

    func testSwitchDefaultsOnAndCompilesIntoTheConfig() throws {
        XCTAssertTrue(Policy().fastPath)
        let facts = HostFacts(bridgeIfindex: 3, bridgeAddress: nil, interfaces: [:])
        XCTAssertTrue(PolicyCompiler.config(for: Policy(), facts: facts).flags.contains(.fastPath))
        XCTAssertFalse(PolicyCompiler.config(for: Policy(fastPath: false), facts: facts).flags.contains(.fastPath))
        XCTAssertFalse(ConfigFlags.relaxing.contains(.fastPath), "delivery, not policy: no ordering constraint")
    }

    func testPolicyFileKeyAndOverride() throws {
        XCTAssertFalse(try PolicyFile.load(yaml: "fastPath: false", file: "f").fastPath)
        XCTAssertTrue(try PolicyFile.load(yaml: "fastPath: true", file: "f").fastPath)
        XCTAssertThrowsError(try PolicyFile.load(yaml: "fastPath: maybe", file: "f")) { error in
            XCTAssertTrue("\(error)".contains("fastPath"), "\(error)")
        }
        let off = try PolicyOverrides(fastPath: false).apply(to: Policy())
        XCTAssertFalse(off.fastPath)
        XCTAssertTrue(try PolicyOverrides().apply(to: Policy()).fastPath)
    }
}
