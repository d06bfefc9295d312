// SPDX-License-Identifier: Apache-2.0
//
// Which interfaces carry which bpfnet program. The list lives in the pinned
// map bn_attach, written before each attach, so `unload` (even after a crash
// of `load`) detaches exactly what bpfnet attached and nothing of anyone else.

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
}

struct AttachmentTarget: Hashable {
    var interface: String
}

/// The pinned attachment list.
struct AttachmentRecords {
    let map: BPFMap<bpfnet_attach_key, bpfnet_attach_value>

    init(pinnedAt pinPath: FilePath) throws {
        map = try BPFMap(pinnedAt: pinPath.appending(MapKind.name(of: BPFNET_MAP_ID_ATTACH)))
    }

    func all() throws -> [AttachmentKey: UInt32] {
        var result: [AttachmentKey: UInt32] = [:]
        for (key, value) in try map.entries() { result[AttachmentKey(key)] = value.prog_id }
        return result
    }

    func record(_ key: AttachmentKey, programID: UInt32) throws {
        try map.update(key.cKey, bpfnet_attach_value(prog_id: programID, flags: 0))
    }

    func remove(_ key: AttachmentKey) throws {
        try map.delete(key.cKey)
    }

    /// Detaches every recorded attachment that still holds bpfnet's program.
    func detachAll(logger: Logger) throws {
        for (key, programID) in try all().sorted(by: { $0.key < $1.key }) {
            try Attacher.detach(key, programID: programID, logger: logger)
            try remove(key)
        }
    }
}

/// Attaches and detaches one program kind on one interface.
enum Attacher {
    static func attach(_ program: BPFProgram, _ key: AttachmentKey, replacing previousID: UInt32?) throws {
        switch key.program {
        case BPFNET_PROG_PORT_TC:
            try TCAttachment.attach(
                program, ifindex: key.ifindex, direction: .ingress,
                handle: UInt32(BPFNET_TC_HANDLE), priority: UInt32(BPFNET_TC_PRIORITY),
                replace: true)
        case BPFNET_PROG_PORT_XDP:
            // Bridge ports are veths, whose driver runs XDP natively.
            try XDPAttachment.attach(
                program, ifindex: key.ifindex, mode: .native,
                replacing: previousID.map { .program(id: $0) } ?? .none)
        default:
            // Real NICs may lack native XDP; generic still enforces the policy.
            try XDPAttachment.attach(
                program, ifindex: key.ifindex, mode: .auto,
                replacing: previousID.map { .program(id: $0) } ?? .none)
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

    /// Removes bpfnet's program from `key`; an interface that is gone (a
    /// container that stopped) has nothing left to detach.
    static func detach(_ key: AttachmentKey, programID: UInt32, logger: Logger) throws {
        guard HostSystem.interfaceName(key.ifindex) != nil else { return }
        if key.isXDP {
            // Only if it is still ours: someone may have replaced it since.
            _ = try XDPAttachment.detach(ifindex: key.ifindex, expectedProgramID: programID)
        } else {
            // The filter handle/priority pair is bpfnet's own.
            _ = try TCAttachment.detach(
                ifindex: key.ifindex, direction: .ingress,
                handle: UInt32(BPFNET_TC_HANDLE), priority: UInt32(BPFNET_TC_PRIORITY))
        }
        logger.debug("detached \(ProgramKind(key.program).name) from if\(key.ifindex)")
    }
}

/// Brings the attachments in line with the policy.
struct AttachmentManager {
    let records: AttachmentRecords
    let programs: [bpfnet_program: BPFProgram]
    let logger: Logger

    /// Attaches what `desired` lists and detaches what it no longer does. New
    /// attachments come first, so a port switching hooks is never unpoliced;
    /// if any attach fails, the ones this call added are taken off again.
    ///
    /// With `trustingRecords`, a key whose record names the program already
    /// counts as attached: an agent applies once per Docker event, and a
    /// netlink query per port (1,000 of them) would be paid each time.
    /// Without it (a process's first apply, a full resync) the kernel is asked.
    func reconcile(desired: [AttachmentKey: AttachmentTarget], trustingRecords: Bool = false) throws {
        let current = try records.all()
        var added: [AttachmentKey] = []
        do {
            for (key, target) in desired.sorted(by: { $0.key < $1.key }) {
                let program = programs[key.program]!
                let previousID = current[key]
                if previousID == program.id && trustingRecords { continue }
                let attachedID = Attacher.attachedID(key)
                if attachedID == program.id { continue }
                // Recorded before attaching: a crash in between leaves a record
                // that `unload` can act on, never an unrecorded program.
                try records.record(key, programID: program.id)
                if previousID == nil { added.append(key) }
                do {
                    // Replacing what is there only if it is ours; with nothing
                    // attached (someone detached it), a plain attach repairs it.
                    try Attacher.attach(program, key, replacing: attachedID == nil ? nil : previousID)
                } catch {
                    let attaching = "bpf: attaching \(ProgramKind(key.program).name) to \(target.interface)"
                    throw DataplaneError("\(attaching): \(error)", classifying: error)
                }
                logger.info("attached \(ProgramKind(key.program).name) to \(target.interface)")
            }
        } catch {
            for key in added {
                try? Attacher.detach(key, programID: programs[key.program]!.id, logger: logger)
                try? records.remove(key)
            }
            throw error
        }
        for (key, programID) in current.sorted(by: { $0.key < $1.key }) where desired[key] == nil {
            try Attacher.detach(key, programID: programID, logger: logger)
            try records.remove(key)
        }
    }
}
