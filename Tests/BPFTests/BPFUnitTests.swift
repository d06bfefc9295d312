// SPDX-License-Identifier: Apache-2.0
//
// Tests that need no privileges: error text and classification, the typed
// map size check, and opening (not loading) an ELF object.

import BPFObjects
import CLibBPF
import Synchronization
import SystemPackage
import XCTest

@testable import BPF

final class BPFErrorTests: XCTestCase {
    func testDescriptionReadsLikeAnOperatorMessage() {
        let error = BPFError(
            operation: "bpf_tc_attach(7, ingress, handle 1, priority 1, port)",
            action: "attaching tc ingress to vethab12", errno: .notPermitted)
        XCTAssertEqual(
            error.description,
            "bpf: attaching tc ingress to vethab12: Operation not permitted — run as root or grant CAP_BPF and CAP_NET_ADMIN"
        )
        XCTAssertTrue(error.isPermission)
        XCTAssertFalse(error.isNotFound)
        XCTAssertTrue(error.debugDescription.contains("bpf_tc_attach(7, ingress"))
    }

    func testOperationStandsInForAMissingAction() {
        let error = BPFError(operation: "bpf_map_lookup_elem(st_config)", errno: .badFileDescriptor)
        XCTAssertEqual(error.description, "bpf: bpf_map_lookup_elem(st_config): Bad file descriptor")
        XCTAssertNil(error.hint)
    }

    func testClassification() {
        XCTAssertTrue(BPFError(operation: "x", errno: .noSuchFileOrDirectory).isNotFound)
        XCTAssertTrue(BPFError(operation: "x", errno: .fileExists).isExists)
        XCTAssertTrue(BPFError(operation: "x", errno: .argListTooLong).isNoSpace)
        XCTAssertTrue(BPFError(operation: "x", errno: .noSpace).isNoSpace)
        XCTAssertTrue(BPFError(operation: "x", errno: .permissionDenied).isPermission)
        // The verifier also says EACCES; that is not a privilege problem.
        let rejected = BPFError(operation: "x", errno: .permissionDenied, verifierLog: "0: R1 invalid mem access\n")
        XCTAssertFalse(rejected.isPermission)
        XCTAssertTrue(rejected.isVerifierRejection)
    }

    func testLibbpfOwnErrorCodesAreSpelledOut() {
        let error = BPFError(
            operation: "bpf_object__open_mem(x)",
            errno: Errno(rawValue: CInt(LIBBPF_ERRNO__FORMAT.rawValue)))
        XCTAssertEqual(error.libbpfMessage, "BPF object format invalid")
        let notSupported = BPFError(operation: "bpf_map_update_batch(x)", errno: Errno(rawValue: 524))
        XCTAssertFalse(notSupported.libbpfMessage.isEmpty)
    }

    func testVerifierSummaryShowsTheComplaintNotTheStatistics() {
        let log = """
            0: R1=ctx() R10=fp0
            0: (61) r2 = *(u32 *)(r1 +76)         ; R1=ctx() R2_w=pkt(r=0)
            1: (71) r0 = *(u8 *)(r2 +12)
            invalid access to packet, off=12 size=1, R2(id=0,off=12,r=0)
            R2 offset is outside of the packet
            processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0

            """
        let error = BPFError(
            operation: "bpf_object__load(selftest)", action: "loading", errno: .permissionDenied,
            verifierLog: log)
        XCTAssertTrue(error.description.contains("R2 offset is outside of the packet"), error.description)
        XCTAssertFalse(error.description.contains("processed 2 insns"), error.description)
        XCTAssertTrue(error.debugDescription.contains("processed 2 insns"))
    }

    func testKernelNetlinkMessageIsShown() {
        let error = BPFError(
            operation: "bpf_xdp_attach(3)", action: "attaching xdp (native) to eth0",
            errno: .fileExists,
            libbpfLog: ["Kernel error message: native and generic XDP can't be active at the same time"])
        XCTAssertTrue(error.description.contains("(kernel: native and generic XDP can't be active at the same time)"))
    }
}

final class BPFMapLayoutTests: XCTestCase {
    func testMatchingSizesPass() throws {
        try checkMapLayout(UInt32.self, UInt64.self, mapName: "m", type: .hash, keySize: 4, valueSize: 8, perCPU: false)
        try checkMapLayout(
            SelftestLPMKey.self, UInt32.self, mapName: "m", type: .lpmTrie, keySize: 8, valueSize: 4,
            perCPU: false)
        try checkMapLayout(
            UInt32.self, UInt64.self, mapName: "c", type: .perCPUArray, keySize: 4, valueSize: 8,
            perCPU: true)
    }

    func testSizeMismatchNamesTheMapAndBothSizes() {
        XCTAssertThrowsError(
            try checkMapLayout(
                UInt64.self, UInt32.self, mapName: "st_verdicts", type: .hash, keySize: 4,
                valueSize: 4, perCPU: false)
        ) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("st_verdicts"), text)
            XCTAssertTrue(text.contains("key UInt64 is 8 bytes but the map's key_size is 4"), text)
            XCTAssertFalse(text.contains("value UInt32"), text)
        }
        XCTAssertThrowsError(
            try checkMapLayout(
                UInt32.self, UInt16.self, mapName: "v", type: .array, keySize: 4, valueSize: 4,
                perCPU: false)
        ) { error in
            XCTAssertTrue(String(describing: error).contains("value UInt16 is 2 bytes but the map's value_size is 4"))
        }
    }

    func testPerCPUMapsNeedThePerCPUView() {
        XCTAssertThrowsError(
            try checkMapLayout(
                UInt32.self, UInt64.self, mapName: "st_counters", type: .perCPUArray, keySize: 4,
                valueSize: 8, perCPU: false)
        ) { error in
            XCTAssertTrue(String(describing: error).contains("use BPFPerCPUMap"))
        }
        XCTAssertThrowsError(
            try checkMapLayout(
                UInt32.self, UInt64.self, mapName: "h", type: .hash, keySize: 4, valueSize: 8,
                perCPU: true)
        ) { error in
            XCTAssertTrue(String(describing: error).contains("use BPFMap"))
        }
    }
}

/// Opening parses the ELF in user space: no privileges, no kernel objects.
final class BPFObjectOpenTests: XCTestCase {
    func testOpenListsProgramsAndMapDefinitions() throws {
        let object = try selftestObject(load: false)
        XCTAssertEqual(
            Set(object.programNames),
            ["bpfnet_empty_xdp", "bpfnet_empty_tc", "st_count_xdp", "st_count_tc", "st_rejected_tc"])
        let maps = Dictionary(uniqueKeysWithValues: object.mapDefinitions.map { ($0.name, $0) })
        XCTAssertEqual(maps["st_counters"]?.type, .perCPUArray)
        XCTAssertEqual(maps["st_counters"]?.valueSize, 8)
        XCTAssertEqual(maps["st_config"]?.type, .array)
        XCTAssertEqual(maps["st_verdicts"]?.type, .hash)
        XCTAssertEqual(maps["st_verdicts"]?.maxEntries, 1024)
        XCTAssertEqual(maps["st_marks"]?.type, .lpmTrie)
        XCTAssertEqual(maps["st_marks"]?.keySize, 8)
        XCTAssertNil(maps["st_pinned"]?.pinPath, "pinning off without a pin root")
        XCTAssertFalse(object.isLoaded)

        // libbpf's default pin root; opening touches nothing there.
        let defaults = try BPFObject(bytes: BPFObjects.selftest.bytes, name: "selftest")
        XCTAssertEqual(
            defaults.mapDefinitions.first { $0.name == "st_pinned" }?.pinPath,
            FilePath("/sys/fs/bpf/st_pinned"))
    }

    func testOptionsApplyBeforeLoad() throws {
        let object = try selftestObject(
            load: false,
            options: BPFObject.Options(
                pinRoot: FilePath("/tmp/somewhere"), maxEntries: ["st_verdicts": 4096]))
        let maps = Dictionary(uniqueKeysWithValues: object.mapDefinitions.map { ($0.name, $0) })
        XCTAssertEqual(maps["st_verdicts"]?.maxEntries, 4096)
        XCTAssertEqual(maps["st_pinned"]?.pinPath, FilePath("/tmp/somewhere/st_pinned"))
        try object.setMaxEntries(16, forMap: "st_marks")
        XCTAssertEqual(object.mapDefinitions.first { $0.name == "st_marks" }?.maxEntries, 16)
    }

    func testUnknownNamesListWhatExists() throws {
        let object = try selftestObject(load: false)
        XCTAssertThrowsError(try object.setMaxEntries(1, forMap: "nope")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("finding map nope in selftest"), text)
            XCTAssertTrue(text.contains("st_verdicts"), text)
            XCTAssertTrue((error as? BPFError)?.isNotFound ?? false)
        }
        XCTAssertThrowsError(try object.program(named: "nope")) { error in
            XCTAssertTrue(String(describing: error).contains("bpfnet_empty_xdp"))
        }
        XCTAssertThrowsError(try object.map(named: "st_config")) { error in
            XCTAssertTrue(String(describing: error).contains("call load() first"), String(describing: error))
        }
    }

    func testOpenFromAFileTakesTheNameFromIt() throws {
        let path = FilePath("/tmp/bpftest-\(getpid())-selftest.bpf.o")
        let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { unlink(path.string) }
        try fd.closeAfter { _ = try fd.writeAll(BPFObjects.selftest.bytes) }
        let object = try BPFObject(path: path)
        XCTAssertEqual(object.name, "bpftest-\(getpid())-selftest")
        XCTAssertTrue(object.programNames.contains("bpfnet_empty_xdp"))
        XCTAssertThrowsError(try BPFObject(path: "/tmp/bpftest-no-such-object.o"))
    }

    /// As root (CI), the check runs in a child of this test binary that
    /// `setpriv` has turned into nobody with no capability left.
    func testLoadWithoutPrivilegesSaysWhatToDo() throws {
        if geteuid() == 0 {
            let test = "BPFTests.\(Self.self)/testLoadWithoutPrivilegesSaysWhatToDo"
            let output = try runCommand([
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", try ownExecutable(), test,
            ])
            XCTAssertTrue(output.contains("Executed 1 test, with 0 failures"), output)
            XCTAssertFalse(output.contains("skipped"), output)
            return
        }
        let object = try selftestObject(load: false)
        XCTAssertThrowsError(try object.load()) { error in
            guard let error = error as? BPFError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.isPermission, error.debugDescription)
            XCTAssertTrue(error.description.contains("run as root or grant CAP_BPF"), error.description)
        }
    }

    func testGarbageIsNotAnObject() {
        XCTAssertThrowsError(try BPFObject(bytes: Array("not an ELF file".utf8), name: "garbage")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("opening eBPF object garbage (15 bytes)"), text)
        }
    }

    func testInterfaceLookupNamesTheMissingInterface() throws {
        XCTAssertEqual(try NetworkInterface.index(named: "lo"), 1)
        XCTAssertEqual(try NetworkInterface.name(index: 1), "lo")
        XCTAssertThrowsError(try NetworkInterface.index(named: "nosuchif0")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("nosuchif0"), text)
            XCTAssertTrue(text.contains("network namespace"), text)
        }
    }
}

final class LibBPFLogTests: XCTestCase {
    func testMessagesGoToTheHandlerAndFailuresKeepTheirOwn() throws {
        let received = Mutex<[String]>([])
        LibBPFLog.setHandler { level, message in
            received.withLock { $0.append("\(level): \(message)") }
        }
        defer { LibBPFLog.setHandler(LibBPFLog.standardError) }

        // A failing open through the BPF layer: libbpf's complaints go into
        // the error, not to the handler.
        XCTAssertThrowsError(try BPFObject(bytes: Array("garbage!".utf8), name: "garbage")) { error in
            XCTAssertFalse((error as? BPFError)?.libbpfLog.isEmpty ?? true, "\(error)")
        }
        XCTAssertEqual(received.withLock { $0 }, [])

        // libbpf called directly (outside any BPF call): the handler gets it,
        // without libbpf's "libbpf: " prefix and trailing newline.
        let garbage = Array("garbage!".utf8)
        XCTAssertNil(garbage.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, nil) })
        let lines = received.withLock { $0 }
        XCTAssertFalse(lines.isEmpty)
        XCTAssertTrue(lines.allSatisfy { !$0.hasSuffix("\n") && !$0.contains("libbpf: ") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("warning: ") }, "\(lines)")

        LibBPFLog.silence()
        received.withLock { $0 = [] }
        XCTAssertNil(garbage.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, nil) })
        XCTAssertEqual(received.withLock { $0 }, [])
    }
}
