// SPDX-License-Identifier: Apache-2.0
//
// Which interfaces carry which bpfnet program. The list lives in the pinned
// map bn_attach, written before each attach, so `unload` (even after a crash
// of `load`) detaches exactly what bpfnet attached and nothing of anyone else.
// A record also says whether bpfnet created the interface's clsact qdisc for
// the tc hook: a qdisc bpfnet created goes when its program goes (unless
// someone has put filters of their own on it since); one that was there
// before stays, with whatever else hangs on it.

import BPF
import BPFNetCore
import BPFNetShared
import Logging
import SystemPackage

/// One (interface, program kind) pair.
struct AttachmentKey: Hashable, Comparable {
    var ifindex: UInt32
    var program: bpfnet_program

    var cKey: bpfnet_attach_key { bpfnet_attach_key(ifindex: ifindex, program: program.rawValue) }

    init(ifindex: UInt32, program: bpfnet_program) {
        self.ifindex = ifindex
        self.program = program
    }

    init(_ key: bpfnet_attach_key) {
        self.init(ifindex: key.ifindex, program: bpfnet_program(rawValue: key.program))
    }

    static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.ifindex, lhs.program.rawValue) < (rhs.ifindex, rhs.program.rawValue)
    }

    var isXDP: Bool { program != BPFNET_PROG_PORT_TC }
    var isExt: Bool { program == BPFNET_PROG_EXT_XDP }
}

struct AttachmentTarget: Hashable {
    var interface: String
    /// A bridge port no container of the policy names: it may vanish while
    /// the apply runs (a container that stopped), which fails nothing.
    var optional = false
}

/// What bn_attach holds for one key.
struct AttachmentRecord: Hashable {
    var programID: UInt32
    /// bpfnet created the interface's clsact qdisc (tc hook only).
    var createdClsact: Bool

    init(programID: UInt32, createdClsact: Bool = false) {
        self.programID = programID
        self.createdClsact = createdClsact
    }

    init(_ value: bpfnet_attach_value) {
        self.init(
            programID: value.prog_id, createdClsact: value.flags & BPFNET_ATTACH_CREATED_CLSACT.rawValue != 0)
    }

    var cValue: bpfnet_attach_value {
        bpfnet_attach_value(prog_id: programID, flags: createdClsact ? BPFNET_ATTACH_CREATED_CLSACT.rawValue : 0)
    }
}

/// The pinned attachment list.
struct AttachmentRecords {
    let map: BPFMap<bpfnet_attach_key, bpfnet_attach_value>

    init(pinnedAt pinPath: FilePath) throws {
        map = try BPFMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_ATTACH)))
    }

    func all() throws -> [AttachmentKey: AttachmentRecord] {
        var result: [AttachmentKey: AttachmentRecord] = [:]
        for (key, value) in try map.entries() { result[AttachmentKey(key)] = AttachmentRecord(value) }
        return result
    }

    func record(_ key: AttachmentKey, _ record: AttachmentRecord) throws {
        try map.update(key.cKey, record.cValue)
    }

    func remove(_ key: AttachmentKey) throws {
        try map.delete(key.cKey)
    }

    /// Detaches every recorded attachment that still holds bpfnet's program,
    /// and removes the clsact qdiscs bpfnet created.
    func detachAll(logger: Logger) throws {
        for (key, record) in try all().sorted(by: { $0.key < $1.key }) {
            try Attacher.detach(key, record, logger: logger)
            try remove(key)
        }
    }
}

/// Attaches and detaches one program kind on one interface.
enum Attacher {
    /// Readies `key`'s hook before its record is written: for tc, the
    /// interface's clsact qdisc. Returns whether this created one.
    static func prepare(_ key: AttachmentKey) throws -> Bool {
        guard !key.isXDP else { return false }
        return try TCAttachment.createClsact(ifindex: key.ifindex)
    }

    /// Returns the XDP mode the kernel chose for an ext program (nil for the others).
    @discardableResult
    static func attach(_ program: BPFProgram, _ key: AttachmentKey, replacing previousID: UInt32?) throws -> XDPMode? {
        switch key.program {
        case BPFNET_PROG_PORT_TC:
            try TCAttachment.attach(
                program, ifindex: key.ifindex, direction: .ingress,
                handle: UInt32(BPFNET_TC_HANDLE), priority: UInt32(BPFNET_TC_PRIORITY),
                replace: true)
            return nil
        case BPFNET_PROG_PORT_XDP:
            // Bridge ports are veths, whose driver runs XDP natively.
            try XDPAttachment.attach(
                program, ifindex: key.ifindex, mode: .native,
                replacing: previousID.map { .program(id: $0) } ?? .none)
            return nil
        default:
            // Real NICs may lack native XDP; generic still enforces the policy.
            return try XDPAttachment.attach(
                program, ifindex: key.ifindex, mode: .auto,
                replacing: previousID.map { .program(id: $0) } ?? .none
            ).mode
        }
    }

    /// The program attached at `key` right now (for tc, under bpfnet's own
    /// handle and priority); nil when there is none or the query fails.
    static func attachedID(_ key: AttachmentKey) -> UInt32? {
        if key.isXDP {
            return (try? XDPAttachment.query(ifindex: key.ifindex))?.programID
        }
        return try? TCAttachment.query(
            ifindex: key.ifindex, direction: .ingress,
            handle: UInt32(BPFNET_TC_HANDLE), priority: UInt32(BPFNET_TC_PRIORITY))
    }

    /// Removes bpfnet's program from `key`, and the clsact qdisc when bpfnet
    /// created it; an interface that is gone (a container that stopped) has
    /// nothing left to detach.
    static func detach(_ key: AttachmentKey, _ record: AttachmentRecord, logger: Logger) throws {
        guard HostSystem.interfaceName(key.ifindex) != nil else { return }
        if key.isXDP {
            // Only if it is still ours: someone may have replaced it since.
            _ = try XDPAttachment.detach(ifindex: key.ifindex, expectedProgramID: record.programID)
        } else {
            // The filter handle/priority pair is bpfnet's own.
            _ = try TCAttachment.detach(
                ifindex: key.ifindex, direction: .ingress,
                handle: UInt32(BPFNET_TC_HANDLE), priority: UInt32(BPFNET_TC_PRIORITY))
            if record.createdClsact { try removeCreatedClsact(ifindex: key.ifindex, logger: logger) }
        }
        logger.debug("detached \(ProgramKind(key.program).name) from if\(key.ifindex)")
    }

    /// Removes a clsact qdisc bpfnet created, unless another tool has put
    /// filters of its own on it since: removing the qdisc would take theirs too.
    static func removeCreatedClsact(ifindex: UInt32, logger: Logger) throws {
        let others =
            try TCAttachment.filters(ifindex: ifindex, direction: .ingress)
            + TCAttachment.filters(ifindex: ifindex, direction: .egress)
        guard others.isEmpty else {
            let kinds = Set(others.map(\.kind)).sorted().joined(separator: ", ")
            logger.info(
                "keeping the clsact qdisc bpfnet created on if\(ifindex): it now holds other filters (\(kinds))")
            return
        }
        if try TCAttachment.removeClsact(ifindex: ifindex) {
            logger.debug("removed the clsact qdisc bpfnet created on if\(ifindex)")
        }
    }
}

/// Brings the attachments in line with the policy.
struct AttachmentManager {
    let records: AttachmentRecords
    let programs: [bpfnet_program: BPFProgram]
    let logger: Logger

    /// Attaches what `desired` lists and detaches what it no longer does. New
    /// attachments come first, so a port switching hooks is never unpoliced.
    /// A failed attach fails the call but takes nothing off again: every
    /// program attached so far keeps policing (fail closed). An optional
    /// target that vanished meanwhile is skipped.
    ///
    /// With `trustingRecords`, a key whose record names the program already
    /// counts as attached: an agent applies once per Docker event, and a
    /// netlink query per port (1,000 of them) would be paid each time.
    /// Without it (a process's first apply, a full resync) the kernel is asked.
    func reconcile(desired: [AttachmentKey: AttachmentTarget], trustingRecords: Bool = false) throws {
        let current = try records.all()
        for (key, target) in desired.sorted(by: { $0.key < $1.key }) {
            let program = programs[key.program]!
            let previous = current[key]
            if previous?.programID == program.id && trustingRecords { continue }
            let attachedID = Attacher.attachedID(key)
            if attachedID == program.id { continue }
            let attaching = "bpf: attaching \(ProgramKind(key.program).name) to \(target.interface)"
            let xdpMode: XDPMode?
            do {
                let created = try Attacher.prepare(key)
                let record = AttachmentRecord(
                    programID: program.id, createdClsact: created || previous?.createdClsact == true)
                try records.record(key, record)
                xdpMode = try Attacher.attach(program, key, replacing: attachedID == nil ? nil : previous?.programID)
            } catch {
                if target.optional && HostSystem.interfaceName(key.ifindex) == nil {
                    logger.info("\(target.interface) went away while \(attaching.dropFirst(5)); skipped")
                    try? records.remove(key)
                    continue
                }
                throw DataplaneError("\(attaching): \(error)", classifying: error)
            }
            if xdpMode == .generic {
                // `status` says it too, next to the interface.
                logger.warning(
                    """
                    attached \(ProgramKind(key.program).name) to \(target.interface) in generic XDP mode: its driver \
                    has no native XDP, so every packet costs more (the policy holds)
                    """)
            } else {
                logger.info("attached \(ProgramKind(key.program).name) to \(target.interface)")
            }
        }
        for (key, record) in current.sorted(by: { $0.key < $1.key }) where desired[key] == nil {
            try Attacher.detach(key, record, logger: logger)
            try records.remove(key)
        }
    }
}
