// SPDX-License-Identifier: Apache-2.0
//
// The BPF layer against the running kernel (root): loading, maps, per-CPU
// reads, BPF_PROG_TEST_RUN, verifier errors and pins on a private bpffs.

import BPF
import BPFObjects
import CLibBPF
import Foundation
import Synchronization
import SystemPackage
import XCTest

final class BPFObjectLoadTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRoot("loads eBPF programs and maps into the kernel")
    }

    func testLoadGivesProgramsAndMapsWithKernelIdentity() throws {
        let object = try selftestObject()
        XCTAssertTrue(object.isLoaded)
        let xdp = try object.program(named: "bpfnet_empty_xdp")
        XCTAssertEqual(xdp.type, .xdp)
        XCTAssertGreaterThan(xdp.id, 0)
        XCTAssertGreaterThanOrEqual(xdp.fd, 0)
        let tc = try object.program(named: "bpfnet_empty_tc")
        XCTAssertEqual(tc.type, .schedCLS)
        XCTAssertNotEqual(tc.id, xdp.id)

        // st_rejected_tc is SEC("?tc"): not loaded, and asking for it says why.
        XCTAssertThrowsError(try object.program(named: "st_rejected_tc")) { error in
            XCTAssertTrue(String(describing: error).contains("autoload is off"), String(describing: error))
        }
        XCTAssertEqual(
            Set(try object.programs().map(\.name)),
            ["bpfnet_empty_xdp", "bpfnet_empty_tc", "st_count_xdp", "st_count_tc"])

        let verdicts = try object.map(named: "st_verdicts")
        XCTAssertEqual(verdicts.type, .hash)
        XCTAssertEqual(verdicts.keySize, 4)
        XCTAssertEqual(verdicts.valueSize, 4)
        XCTAssertEqual(verdicts.maxEntries, 1024)
        XCTAssertGreaterThan(verdicts.id, 0)

        // The kernel's view by id, as a status tool would read it.
        let info = try BPFProgram.info(id: tc.id)
        XCTAssertEqual(info.id, tc.id)
        XCTAssertEqual(info.type, .schedCLS)
        XCTAssertEqual(info.name, "bpfnet_empty_tc")
        XCTAssertEqual(info.tag.count, 16)
        let counting = try object.program(named: "st_count_tc").info()
        let countersID = try object.map(named: "st_counters").id
        XCTAssertTrue(counting.mapIDs.contains(countersID), "\(counting.mapIDs) lacks \(countersID)")
        XCTAssertEqual(try BPFMapHandle(id: verdicts.id).maxEntries, 1024)
    }

    func testMaxEntriesOverrideReachesTheKernel() throws {
        let object = try selftestObject(options: BPFObject.Options(maxEntries: ["st_verdicts": 3]))
        let verdicts = try BPFMap<UInt32, UInt32>(object, name: "st_verdicts")
        XCTAssertEqual(verdicts.handle.maxEntries, 3)
        for key in UInt32(1)...3 { try verdicts.update(key, key) }
        XCTAssertThrowsError(try verdicts.update(4, 4)) { error in
            guard let error = error as? BPFError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.isNoSpace, "\(error)")
            XCTAssertTrue(error.description.contains("max_entries 3"), error.description)
            XCTAssertTrue(error.description.contains("st_verdicts"), error.description)
        }
    }

    func testVerifierRejectionCarriesTheLog() throws {
        let object = try selftestObject(load: false, options: BPFObject.Options(autoload: ["st_rejected_tc": true]))
        XCTAssertThrowsError(try object.load()) { error in
            guard let error = error as? BPFError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.isVerifierRejection, error.debugDescription)
            XCTAssertFalse(error.isPermission)
            let log = error.verifierLog ?? ""
            XCTAssertTrue(log.contains("invalid access to packet"), log)
            XCTAssertTrue(error.description.contains("program st_rejected_tc was rejected"), error.description)
            XCTAssertTrue(error.description.contains("invalid access to packet"), error.description)
            XCTAssertEqual(error.operation, "bpf_object__load(selftest)")
        }
        XCTAssertFalse(object.isLoaded)
    }

    func testConcurrentLoadsKeepTheirOwnLogs() throws {
        // libbpf has one print callback per process; each failing load must
        // still get its own messages, and a good load none of them.
        let failures = Mutex<[BPFError]>([])
        let successes = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            do {
                let autoload = index % 2 == 0 ? ["st_rejected_tc": true] : [:]
                _ = try selftestObject(options: BPFObject.Options(autoload: autoload))
                successes.withLock { $0 += 1 }
            } catch let error as BPFError {
                failures.withLock { $0.append(error) }
            } catch {
                XCTFail("\(error)")
            }
        }
        XCTAssertEqual(successes.withLock { $0 }, 4)
        let errors = failures.withLock { $0 }
        XCTAssertEqual(errors.count, 4)
        for error in errors {
            XCTAssertTrue((error.verifierLog ?? "").contains("invalid access to packet"), error.debugDescription)
            // One load's messages, not several interleaved.
            XCTAssertEqual(
                error.libbpfLog.filter { $0.contains("failed to load object") }.count, 1,
                error.debugDescription)
        }
    }

    func testRawInstructionsRejectionCarriesTheLog() throws {
        // "exit" with r0 never written: the verifier answers "R0 !read_ok".
        var exit = bpf_insn()
        exit.code = UInt8(BPF_JMP | BPF_EXIT)
        XCTAssertThrowsError(try BPFProgram.load(type: .xdp, name: "st_raw_bad", instructions: [exit])) { error in
            guard let error = error as? BPFError else { return XCTFail("\(error)") }
            XCTAssertTrue((error.verifierLog ?? "").contains("R0 !read_ok"), error.debugDescription)
            XCTAssertTrue(error.description.contains("loading program st_raw_bad"), error.description)
        }
        // r0 = XDP_PASS; exit — accepted, and runs.
        var move = bpf_insn()
        move.code = UInt8(BPF_ALU64 | BPF_MOV | BPF_K)
        move.dst_reg = 0
        move.imm = Int32(Verdict.xdpPass)
        let program = try BPFProgram.load(type: .xdp, name: "st_raw_pass", instructions: [move, exit])
        XCTAssertEqual(try program.testRun(data: udpFrame()).returnValue, Verdict.xdpPass)
    }
}

final class BPFMapTests: XCTestCase {
    var object: BPFObject!

    override func setUpWithError() throws {
        try requireRoot("creates BPF maps in the kernel")
        object = try selftestObject()
    }

    override func tearDown() {
        object = nil
    }

    func testCRUDAndSentinels() throws {
        let verdicts = try BPFMap<UInt32, UInt32>(object, name: "st_verdicts")
        let key = ipv4Key(10, 0, 0, 2)
        XCTAssertNil(try verdicts.lookup(key))
        try verdicts.update(key, Verdict.tcShot)
        XCTAssertEqual(try verdicts.lookup(key), Verdict.tcShot)

        XCTAssertThrowsError(try verdicts.update(key, 1, flags: .noExist)) { error in
            XCTAssertTrue((error as? BPFError)?.isExists ?? false, "\(error)")
        }
        XCTAssertThrowsError(try verdicts.update(ipv4Key(10, 9, 9, 9), 1, flags: .exist)) { error in
            XCTAssertTrue((error as? BPFError)?.isNotFound ?? false, "\(error)")
            XCTAssertTrue(String(describing: error).contains("key 0a090909"), "\(error)")
        }
        try verdicts.update(key, Verdict.tcOK, flags: .exist)
        XCTAssertEqual(try verdicts.lookup(key), Verdict.tcOK)

        XCTAssertTrue(try verdicts.delete(key))
        XCTAssertFalse(try verdicts.delete(key))
        XCTAssertNil(try verdicts.lookup(key))

        // Arrays: every index exists; out of range is "no space"; no deletes.
        let config = try BPFMap<UInt32, UInt32>(object, name: "st_config")
        XCTAssertEqual(try config.lookup(0), 0)
        XCTAssertNil(try config.lookup(4))
        XCTAssertThrowsError(try config.update(4, 1)) { error in
            XCTAssertTrue((error as? BPFError)?.isNoSpace ?? false, "\(error)")
        }
        XCTAssertThrowsError(try config.delete(0)) { error in
            XCTAssertTrue(String(describing: error).contains("cannot delete"), "\(error)")
        }
    }

    func testTypedViewChecksSizesAgainstTheKernel() throws {
        let verdicts = try object.map(named: "st_verdicts")
        XCTAssertThrowsError(try BPFMap<UInt64, UInt32>(verdicts)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("st_verdicts"), text)
            XCTAssertTrue(text.contains("key UInt64 is 8 bytes but the map's key_size is 4"), text)
        }
        XCTAssertThrowsError(try BPFMap<UInt32, UInt64>(object, name: "st_counters")) { error in
            XCTAssertTrue(String(describing: error).contains("use BPFPerCPUMap"), "\(error)")
        }
        XCTAssertThrowsError(try BPFPerCPUMap<UInt32, UInt32>(object, name: "st_counters")) { error in
            XCTAssertTrue(String(describing: error).contains("value UInt32 is 4 bytes but the map's value_size is 8"))
        }
    }

    func testKeysSurviveDeletionDuringIteration() throws {
        let verdicts = try BPFMap<UInt32, UInt32>(object, name: "st_verdicts")
        let keys = (1...200).map { UInt32($0) }
        for key in keys { try verdicts.update(key, key * 2) }
        let listed = try verdicts.keys()
        XCTAssertEqual(listed.count, 200)
        XCTAssertEqual(Set(listed), Set(keys))

        // Delete every other key while walking: the walk is a snapshot.
        for key in try verdicts.keys() where key % 2 == 0 {
            XCTAssertTrue(try verdicts.delete(key))
        }
        XCTAssertEqual(Set(try verdicts.keys()), Set(keys.filter { $0 % 2 == 1 }))

        let entries = try verdicts.entries()
        XCTAssertEqual(entries.count, 100)
        XCTAssertTrue(entries.allSatisfy { $0.value == $0.key * 2 })

        XCTAssertEqual(try verdicts.removeAll(), 100)
        XCTAssertEqual(try verdicts.keys(), [])

        // Arrays list every index.
        XCTAssertEqual(try BPFMap<UInt32, UInt32>(object, name: "st_config").keys(), [0, 1, 2, 3])
    }

    func testBatchUpdateLookupDeleteOnAThousandEntries() throws {
        let verdicts = try BPFMap<UInt32, UInt32>(object, name: "st_verdicts")
        let keys = (0..<1000).map { UInt32($0) + 0x0a00_0000 }
        try verdicts.update(keys: keys, values: keys.map { $0 & 0xff })
        let entries = try verdicts.entries()
        XCTAssertEqual(entries.count, 1000)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) })[0x0a00_0105], 0x05)

        // Batch delete skips absent keys and reports how many went.
        let toDelete = Array(keys.prefix(500)) + [1, 2, 3]
        XCTAssertEqual(try verdicts.delete(keys: toDelete), 500)
        XCTAssertEqual(try verdicts.keys().count, 500)

        // Filling past max_entries (1024) fails as "no space" and keeps what fit.
        let more = (0..<600).map { UInt32($0) + 0x0b00_0000 }
        XCTAssertThrowsError(try verdicts.update(keys: more, values: more)) { error in
            XCTAssertTrue((error as? BPFError)?.isNoSpace ?? false, "\(error)")
        }
        XCTAssertEqual(try verdicts.keys().count, 1024)
    }

    func testLPMTrieFallsBackFromBatchAndIterates() throws {
        let marks = try BPFMap<SelftestLPMKey, UInt32>(object, name: "st_marks")
        let prefixes = [
            SelftestLPMKey(prefixLength: 8, address: (10, 0, 0, 0)),
            SelftestLPMKey(prefixLength: 24, address: (10, 1, 2, 0)),
            SelftestLPMKey(prefixLength: 32, address: (10, 1, 2, 3)),
        ]
        try marks.update(keys: prefixes, values: [8, 24, 32])
        XCTAssertEqual(try marks.lookup(SelftestLPMKey(prefixLength: 32, address: (10, 1, 2, 3))), 32)
        XCTAssertEqual(try marks.lookup(SelftestLPMKey(prefixLength: 32, address: (10, 1, 2, 4))), 24)
        XCTAssertEqual(try marks.lookup(SelftestLPMKey(prefixLength: 32, address: (10, 9, 9, 9))), 8)
        XCTAssertNil(try marks.lookup(SelftestLPMKey(prefixLength: 32, address: (192, 168, 0, 1))))
        let keys = try marks.keys()
        XCTAssertEqual(keys.count, 3)
        for prefix in prefixes { XCTAssertTrue(keys.contains(prefix), "\(keys) lacks \(prefix)") }
        XCTAssertEqual(try marks.entries().count, 3)
        XCTAssertEqual(try marks.delete(keys: prefixes), 3)
        XCTAssertEqual(try marks.keys().count, 0)
    }
}

final class BPFProgramTestRunTests: XCTestCase {
    var object: BPFObject!

    override func setUpWithError() throws {
        try requireRoot("runs programs with BPF_PROG_TEST_RUN")
        object = try selftestObject()
    }

    override func tearDown() {
        object = nil
    }

    func testEmptyProgramsReturnTheirVerdict() throws {
        let frame = udpFrame()
        XCTAssertEqual(frame.count, 60)
        let xdp = try object.program(named: "bpfnet_empty_xdp")
        let result = try xdp.testRun(data: frame, options: BPFTestRunOptions(repeatCount: 100))
        XCTAssertEqual(result.returnValue, Verdict.xdpPass)
        XCTAssertEqual(result.dataOut, [])
        XCTAssertEqual(try object.program(named: "bpfnet_empty_tc").testRun(data: frame).returnValue, Verdict.tcOK)
    }

    func testXDPCountsPerCPUSwapsMACsAndFollowsItsConfig() throws {
        let program = try object.program(named: "st_count_xdp")
        let counters = try BPFPerCPUMap<UInt32, UInt64>(object, name: "st_counters")
        let config = try BPFMap<UInt32, UInt32>(object, name: "st_config")
        let frame = udpFrame()

        let result = try program.testRun(
            data: frame, dataOutCapacity: 128,
            options: BPFTestRunOptions(repeatCount: 1000))
        XCTAssertEqual(result.returnValue, Verdict.xdpPass)
        XCTAssertEqual(result.dataOut.count, 60)
        // Each repetition swaps the addresses again: after 1000 (even) they are back.
        XCTAssertEqual(result.dataOut, frame)
        let once = try program.testRun(data: frame, dataOutCapacity: 60)
        XCTAssertEqual(Array(once.dataOut[0..<6]), Array(frame[6..<12]))
        XCTAssertEqual(Array(once.dataOut[6..<12]), Array(frame[0..<6]))

        let packets = try XCTUnwrap(counters.lookup(SelftestCounter.xdpPackets.rawValue))
        XCTAssertEqual(packets.count, counters.possibleCPUs)
        XCTAssertEqual(packets.reduce(0, +), 1001)
        XCTAssertEqual(try XCTUnwrap(counters.lookup(SelftestCounter.xdpBytes.rawValue)).reduce(0, +), 1001 * 60)
        XCTAssertEqual(try counters.keys(), [0, 1, 2, 3])
        XCTAssertEqual(try counters.entries().count, 4)

        try config.update(0, Verdict.xdpDrop)
        XCTAssertEqual(try program.testRun(data: frame).returnValue, Verdict.xdpDrop)

        // Reset, and per-CPU writes round-trip.
        try counters.zero(SelftestCounter.xdpPackets.rawValue)
        XCTAssertEqual(try XCTUnwrap(counters.lookup(SelftestCounter.xdpPackets.rawValue)).reduce(0, +), 0)
        let perCPU = (0..<counters.possibleCPUs).map { UInt64($0 + 1) }
        try counters.update(SelftestCounter.tcBytes.rawValue, perCPU: perCPU)
        XCTAssertEqual(try counters.lookup(SelftestCounter.tcBytes.rawValue), perCPU)
        XCTAssertThrowsError(try counters.update(0, perCPU: [1]))
    }

    func testXDPContextCarriesTheIngressInterface() throws {
        let program = try object.program(named: "bpfnet_empty_xdp")
        let frame = udpFrame()
        var context = xdp_md()
        context.data = 0
        context.data_end = UInt32(frame.count)
        context.ingress_ifindex = 1  // lo, in the test's own namespace
        let result = try program.testRun(data: frame, context: &context)
        XCTAssertEqual(result.returnValue, Verdict.xdpPass)
        XCTAssertEqual(context.ingress_ifindex, 1)

        // A context with a field test runs do not take is refused, with advice.
        context.egress_ifindex = 1
        XCTAssertThrowsError(try program.testRun(data: frame, context: &context)) { error in
            XCTAssertEqual((error as? BPFError)?.errno, .invalidArgument)
            XCTAssertTrue(
                String(describing: error).contains("context fields the program type does not accept"),
                "\(error)")
        }
        // An ingress interface that does not exist in this namespace.
        context.egress_ifindex = 0
        context.ingress_ifindex = 99999
        XCTAssertThrowsError(try program.testRun(data: frame, context: &context)) { error in
            XCTAssertEqual((error as? BPFError)?.errno, .operationNotSupportedByDevice, "\(error)")
        }
    }

    func testTCVerdictFromHashAndMarkFromLPM() throws {
        let program = try object.program(named: "st_count_tc")
        let verdicts = try BPFMap<UInt32, UInt32>(object, name: "st_verdicts")
        let marks = try BPFMap<SelftestLPMKey, UInt32>(object, name: "st_marks")
        let counters = try BPFPerCPUMap<UInt32, UInt64>(object, name: "st_counters")
        let frame = udpFrame(source: (10, 1, 2, 3), destination: (10, 0, 0, 2))

        var skb = __sk_buff()
        var result = try program.testRun(data: frame, context: &skb)
        XCTAssertEqual(result.returnValue, Verdict.tcOK)
        XCTAssertEqual(skb.mark, 0)

        try verdicts.update(ipv4Key(10, 0, 0, 2), Verdict.tcShot)
        try marks.update(SelftestLPMKey(prefixLength: 16, address: (10, 1, 0, 0)), 0xbeef)
        skb = __sk_buff()
        result = try program.testRun(data: frame, context: &skb)
        XCTAssertEqual(result.returnValue, Verdict.tcShot)
        XCTAssertEqual(skb.mark, 0xbeef)

        // Not IPv4 (ARP): counted, untouched.
        var arp = frame
        arp[12] = 0x08
        arp[13] = 0x06
        skb = __sk_buff()
        XCTAssertEqual(try program.testRun(data: arp, context: &skb).returnValue, Verdict.tcOK)
        XCTAssertEqual(skb.mark, 0)
        XCTAssertEqual(try XCTUnwrap(counters.lookup(SelftestCounter.tcPackets.rawValue)).reduce(0, +), 3)
    }

    func testTooSmallOutputBufferSaysHowMuchIsNeeded() throws {
        let program = try object.program(named: "st_count_xdp")
        XCTAssertThrowsError(try program.testRun(data: udpFrame(), dataOutCapacity: 20)) { error in
            XCTAssertTrue((error as? BPFError)?.isNoSpace ?? false, "\(error)")
            XCTAssertTrue(String(describing: error).contains("holds 20 bytes but the program produced 60"), "\(error)")
        }
    }

    func testHundredThousandRunsInALoop() throws {
        let program = try object.program(named: "bpfnet_empty_xdp")
        let frame = udpFrame()
        var passed = 0
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            try frame.withUnsafeBytes { data in
                for _ in 0..<100_000 where try program.testRun(data: data).returnValue == Verdict.xdpPass {
                    passed += 1
                }
            }
        }
        XCTAssertEqual(passed, 100_000)
        // One bpf(2) call each: a few µs on this VM. The bound only catches
        // gross per-call overhead (allocations, locks, logging).
        XCTAssertLessThan(elapsed, .seconds(30), "100k test runs took \(elapsed)")
        print("100k BPF_PROG_TEST_RUN calls of bpfnet_empty_xdp: \(elapsed)")
    }
}

final class BPFPinTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRoot("mounts a private bpffs and pins maps and programs")
    }

    func testPinByNameReuseAndReopen() throws {
        let bpffs = try PrivateBPFFS.make(in: self)
        XCTAssertTrue(try BPFFileSystem.isBPFFS(bpffs.path))
        XCTAssertFalse(try BPFFileSystem.ensureMounted(at: bpffs.path), "already a bpffs: no second mount")

        let pinRoot = bpffs.path.appending("selftest")
        XCTAssertFalse(try BPFFileSystem.ensureMounted(at: pinRoot), "a directory inside a bpffs needs no mount")
        let options = BPFObject.Options(pinRoot: pinRoot)
        var first: BPFObject? = try selftestObject(options: options)
        let pinned = try BPFMap<UInt32, UInt64>(first!, name: "st_pinned")
        try pinned.update(7, 700)

        // Another "process": open the pin by path.
        let reopened = try BPFMap<UInt32, UInt64>(pinnedAt: pinRoot.appending("st_pinned"))
        XCTAssertEqual(try reopened.lookup(7), 700)
        XCTAssertEqual(reopened.handle.id, pinned.handle.id)
        XCTAssertEqual(reopened.name, "st_pinned")

        // A second load reuses the pinned map: the value survives the first object.
        first = nil
        let second = try selftestObject(options: options)
        XCTAssertEqual(try BPFMap<UInt32, UInt64>(second, name: "st_pinned").lookup(7), 700)

        // Programs pin too; the pin keeps the same program.
        let program = try second.program(named: "st_count_tc")
        let programPin = bpffs.path.appending("st_count_tc")
        try program.pin(at: programPin)
        let reopenedProgram = try BPFProgram(pinnedAt: programPin)
        XCTAssertEqual(reopenedProgram.id, program.id)
        XCTAssertEqual(reopenedProgram.type, .schedCLS)
        XCTAssertThrowsError(try program.pin(at: programPin)) { error in
            XCTAssertTrue((error as? BPFError)?.isExists ?? false, "\(error)")
        }
        // The wrong kind of pin is refused by name.
        XCTAssertThrowsError(try BPFMapHandle(pinnedAt: programPin)) { error in
            XCTAssertTrue(String(describing: error).contains("holds a bpf-prog, not a bpf-map"), "\(error)")
        }
        try program.unpin(at: programPin)
        XCTAssertThrowsError(try BPFProgram(pinnedAt: programPin)) { error in
            XCTAssertTrue((error as? BPFError)?.isNotFound ?? false, "\(error)")
            XCTAssertTrue(String(describing: error).contains("nothing is pinned at"), "\(error)")
        }

        // Maps pin and unpin by hand as well.
        let handle = try second.map(named: "st_verdicts")
        let mapPin = bpffs.path.appending("verdicts")
        try handle.pin(at: mapPin)
        XCTAssertEqual(try BPFMapHandle(pinnedAt: mapPin).id, handle.id)
        try handle.unpin(at: mapPin)
        XCTAssertThrowsError(try handle.unpin(at: mapPin))
    }

    func testPinnedMapWithOtherParametersIsAClearError() throws {
        let bpffs = try PrivateBPFFS.make(in: self)
        _ = try selftestObject(options: BPFObject.Options(pinRoot: bpffs.path))
        let resized = try selftestObject(
            load: false,
            options: BPFObject.Options(
                pinRoot: bpffs.path, maxEntries: ["st_pinned": 128]))
        XCTAssertThrowsError(try resized.load()) { error in
            guard let error = error as? BPFError else { return XCTFail("\(error)") }
            let text = error.description
            XCTAssertTrue(text.contains("map st_pinned is pinned at \(bpffs.path.appending("st_pinned"))"), text)
            XCTAssertTrue(text.contains("unload"), text)
            XCTAssertFalse(error.isVerifierRejection)
        }
    }

    func testNothingPinnedAndNotABPFFS() throws {
        XCTAssertThrowsError(try BPFMapHandle(pinnedAt: "/tmp/bpftest-surely-not-pinned")) { error in
            XCTAssertTrue((error as? BPFError)?.isNotFound ?? false, "\(error)")
        }
        XCTAssertFalse(try BPFFileSystem.isBPFFS("/proc"))
        XCTAssertThrowsError(try BPFFileSystem.unmount("/proc")) { error in
            XCTAssertTrue(String(describing: error).contains("is not a bpffs mount"), "\(error)")
        }
    }
}

final class BPFPinRootTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRoot("loads an object whose pin root is not a bpffs")
    }

    func testPinRootOutsideBPFFSIsExplained() throws {
        let directory = FilePath("/tmp/bpftest-not-bpffs-\(getpid())")
        mkdir(directory.string, 0o700)
        defer { rmdir(directory.string) }
        let object = try selftestObject(load: false, options: BPFObject.Options(pinRoot: directory))
        XCTAssertThrowsError(try object.load()) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("pinning map st_pinned at \(directory)/st_pinned"), text)
            XCTAssertTrue(text.contains("is not on a bpffs"), text)
        }
    }
}
