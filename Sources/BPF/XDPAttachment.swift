// SPDX-License-Identifier: Apache-2.0
//
// XDP attachments through netlink (`bpf_xdp_attach`): one program per
// interface and mode, persisting after the process exits. Replacing and
// detaching can be made conditional on which program is attached, so two
// agents (or an agent and an operator) cannot silently undo each other.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where an XDP program runs.
public enum XDPMode: Sendable, Hashable, CustomStringConvertible {
    /// In the driver (`XDP_FLAGS_DRV_MODE`): before an skb exists.
    case native
    /// In the generic network stack (`XDP_FLAGS_SKB_MODE`): any interface, slower.
    case generic
    /// On the NIC (`XDP_FLAGS_HW_MODE`); only reported, never chosen here.
    case offload

    var flags: UInt32 {
        switch self {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        case .offload: UInt32(XDP_FLAGS_HW_MODE)
        }
    }

    public var description: String {
        switch self {
        case .native: "native"
        case .generic: "generic"
        case .offload: "offload"
        }
    }
}

/// The mode requested when attaching.
public enum XDPAttachMode: Sendable, Hashable {
    case native
    case generic
    /// Native where the driver supports it, generic otherwise (and generic
    /// if a generic program is already attached, since the kernel does not
    /// allow both at once). The resulting `XDPAttachment.mode` says which.
    case auto
}

/// What an attach may replace.
public enum XDPReplacePolicy: Sendable, Hashable {
    /// Whatever is attached in that mode.
    case any
    /// Nothing: fail with `isExists`/EBUSY if a program is attached (`XDP_FLAGS_UPDATE_IF_NOEXIST`).
    case none
    /// Only the program with this id, atomically (`XDP_FLAGS_REPLACE` with
    /// `old_prog_fd`); fail with `isExists` if another one is attached.
    case program(id: UInt32)
}

/// An XDP program attached to an interface.
///
/// All calls act on the calling thread's network namespace; to attach
/// inside another namespace call them in `NetworkNamespace.run { ... }`.
public struct XDPAttachment: Sendable, Hashable, CustomStringConvertible {
    /// The interface, in the namespace the attachment was made in.
    public var ifindex: UInt32
    /// Where the program runs.
    public var mode: XDPMode
    /// The id of the attached program.
    public var programID: UInt32

    /// Describes an attachment (as `attach` and `query` return them).
    public init(ifindex: UInt32, mode: XDPMode, programID: UInt32) {
        self.ifindex = ifindex
        self.mode = mode
        self.programID = programID
    }

    public var description: String {
        "xdp \(mode) on \(describeInterface(ifindex)): program \(programID)"
    }

    /// Attaches `program` (a `SEC("xdp")` program) to an interface (`bpf_xdp_attach`).
    @discardableResult
    public static func attach(
        _ program: BPFProgram,
        ifindex: UInt32,
        mode: XDPAttachMode = .auto,
        replacing: XDPReplacePolicy = .any
    ) throws -> XDPAttachment {
        switch mode {
        case .native:
            return try attach(program, ifindex: ifindex, exactMode: .native, replacing: replacing)
        case .generic:
            return try attach(program, ifindex: ifindex, exactMode: .generic, replacing: replacing)
        case .auto:
            if let current = try query(ifindex: ifindex), current.mode == .generic {
                return try attach(program, ifindex: ifindex, exactMode: .generic, replacing: replacing)
            }
            do {
                return try attach(program, ifindex: ifindex, exactMode: .native, replacing: replacing)
            } catch let error as BPFError where error.errno.isUnsupportedOperation {
                // The driver has no native XDP (EOPNOTSUPP), or refuses this program natively.
                return try attach(program, ifindex: ifindex, exactMode: .generic, replacing: replacing)
            }
        }
    }

    private static func attach(
        _ program: BPFProgram, ifindex: UInt32, exactMode: XDPMode, replacing: XDPReplacePolicy
    ) throws -> XDPAttachment {
        var flags = exactMode.flags
        var opts = bpf_xdp_attach_opts()
        opts.sz = optionsSize(\bpf_xdp_attach_opts.old_prog_fd)
        var expected: BPFProgram?
        switch replacing {
        case .any:
            break
        case .none:
            flags |= UInt32(XDP_FLAGS_UPDATE_IF_NOEXIST)
        case .program(let id):
            do {
                expected = try BPFProgram(id: id)
            } catch let error as BPFError where error.isNotFound {
                throw BPFError(
                    operation: "bpf_prog_get_fd_by_id(\(id))",
                    action: "attaching xdp (\(exactMode)) to \(describeInterface(ifindex)) in place of program \(id)",
                    errno: .fileExists,
                    hint: "program \(id) no longer exists, so it is not the attached one; query and retry")
            }
            // libbpf sets XDP_FLAGS_REPLACE itself when old_prog_fd is given.
            opts.old_prog_fd = expected!.fd
        }
        let (result, log) = withExtendedLifetime(expected) {
            LibBPFLog.capture { bpf_xdp_attach(CInt(bitPattern: ifindex), program.fd, flags, &opts) }
        }
        if result < 0 {
            throw makeError(
                result, "bpf_xdp_attach(\(ifindex), \(program.name), \(exactMode))",
                action: "attaching xdp (\(exactMode)) to \(describeInterface(ifindex))",
                libbpfLog: log.lines
            ) { errno in
                switch errno {
                case .resourceBusy:
                    "a program is already attached and replacing: .none was asked; detach it or replace it explicitly"
                case .fileExists:
                    if case .program(let id) = replacing {
                        "program \(id) is not the one attached (or the other mode has a program); query and retry"
                    } else {
                        "a program is attached in the other mode; the kernel allows native or generic, not both"
                    }
                case .notSupportedOnSocket, .notSupported, .kernelNotSupported:
                    "the driver does not support \(exactMode) XDP; use generic (or auto) mode"
                case .invalidArgument where program.type != .xdp:
                    "program \(program.name) is of type \(program.type); XDP needs a SEC(\"xdp\") program"
                default:
                    interfaceHint(ifindex)(errno)
                }
            }
        }
        log.forward()
        return XDPAttachment(ifindex: ifindex, mode: exactMode, programID: program.id)
    }

    /// The program attached to the interface and its mode, or nil
    /// (`bpf_xdp_query`). With several (XDP_ATTACHED_MULTI) the native one wins.
    public static func query(ifindex: UInt32) throws -> XDPAttachment? {
        var opts = bpf_xdp_query_opts()
        opts.sz = optionsSize(\bpf_xdp_query_opts.attach_mode)
        let (result, log) = LibBPFLog.capture { bpf_xdp_query(CInt(bitPattern: ifindex), 0, &opts) }
        if result < 0 {
            throw makeError(
                result, "bpf_xdp_query(\(ifindex))", action: "querying xdp on \(describeInterface(ifindex))",
                libbpfLog: log.lines, hint: interfaceHint(ifindex))
        }
        switch UInt32(opts.attach_mode) {
        case UInt32(XDP_ATTACHED_DRV):
            return XDPAttachment(ifindex: ifindex, mode: .native, programID: opts.prog_id)
        case UInt32(XDP_ATTACHED_SKB):
            return XDPAttachment(ifindex: ifindex, mode: .generic, programID: opts.prog_id)
        case UInt32(XDP_ATTACHED_HW):
            return XDPAttachment(ifindex: ifindex, mode: .offload, programID: opts.prog_id)
        case UInt32(XDP_ATTACHED_MULTI):
            if opts.drv_prog_id != 0 {
                return XDPAttachment(ifindex: ifindex, mode: .native, programID: opts.drv_prog_id)
            }
            if opts.skb_prog_id != 0 {
                return XDPAttachment(ifindex: ifindex, mode: .generic, programID: opts.skb_prog_id)
            }
            return XDPAttachment(ifindex: ifindex, mode: .offload, programID: opts.hw_prog_id)
        default:
            return nil
        }
    }

    /// Detaches the XDP program of an interface (`bpf_xdp_detach`).
    ///
    /// - Parameters:
    ///   - mode: the mode it was attached in; nil: whichever `query` reports.
    ///   - expectedProgramID: detach only if this program is the attached
    ///     one; the check is atomic in the kernel (`XDP_FLAGS_REPLACE` with
    ///     the expected program's fd), so a program someone attached in the
    ///     meantime stays. nil: detach whatever is attached.
    /// - Returns: false if nothing was detached (nothing attached, or not
    ///   the expected program).
    @discardableResult
    public static func detach(ifindex: UInt32, mode: XDPMode? = nil, expectedProgramID: UInt32? = nil) throws -> Bool {
        guard let current = try query(ifindex: ifindex) else { return false }
        // Detaching a mode that has no program is a no-op for the kernel;
        // report it as "nothing detached" rather than success.
        if let mode, mode != current.mode { return false }
        let detachMode = mode ?? current.mode
        var opts = bpf_xdp_attach_opts()
        opts.sz = optionsSize(\bpf_xdp_attach_opts.old_prog_fd)
        var expected: BPFProgram?
        if let id = expectedProgramID {
            guard current.programID == id else { return false }
            guard let program = try? BPFProgram(id: id) else { return false }
            expected = program
            opts.old_prog_fd = program.fd
        }
        let (result, log) = withExtendedLifetime(expected) {
            LibBPFLog.capture { bpf_xdp_detach(CInt(bitPattern: ifindex), detachMode.flags, &opts) }
        }
        if result == 0 {
            log.forward()
            return true
        }
        // The expected program was replaced between our query and the detach.
        if result == -EEXIST && expectedProgramID != nil { return false }
        throw makeError(
            result, "bpf_xdp_detach(\(ifindex), \(detachMode))",
            action: "detaching xdp (\(detachMode)) from \(describeInterface(ifindex))",
            libbpfLog: log.lines, hint: interfaceHint(ifindex))
    }

    /// Detaches this attachment if its program is still the attached one.
    @discardableResult
    public func detach() throws -> Bool {
        try XDPAttachment.detach(ifindex: ifindex, mode: mode, expectedProgramID: programID)
    }
}
