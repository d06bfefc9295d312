// SPDX-License-Identifier: Apache-2.0
//
// tc (cls_bpf, direct action) attachments on a clsact qdisc through libbpf's
// netlink helpers. Debian's libbpf 1.1.2 has no tcx links, so these are plain
// filters: they persist after the process exits (the dataplane outlives the
// agent) and are identified by (interface, direction, handle, priority).
// The clsact qdisc they hang on is created when missing; whoever creates it
// is the one to remove it (`createClsact` says whether that was this call).

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The clsact hook a tc program runs on.
public enum TCDirection: Sendable, Hashable, CustomStringConvertible {
    /// Packets the interface receives (for a container's host-side veth:
    /// what the container sends).
    case ingress
    /// Packets the interface sends.
    case egress

    var attachPoint: bpf_tc_attach_point { self == .ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS }

    var clsactHook: RouteNetlink.ClsactHook { self == .ingress ? .ingress : .egress }

    public var description: String { self == .ingress ? "ingress" : "egress" }
}

/// A tc filter running a BPF program in direct-action mode on an interface's
/// clsact qdisc.
///
/// All calls act on the calling thread's network namespace (netlink sockets
/// belong to the namespace of the thread that opens them). To attach inside
/// another namespace, call them in `NetworkNamespace.run { ... }`.
public struct TCAttachment: Sendable, Hashable, CustomStringConvertible {
    /// The interface, in the namespace the attachment was made in.
    public var ifindex: UInt32
    /// The clsact hook.
    public var direction: TCDirection
    /// The filter handle (`bpf_tc_opts.handle`).
    public var handle: UInt32
    /// The filter priority (`bpf_tc_opts.priority`, 1...65535; lower runs first).
    public var priority: UInt32
    /// The id of the attached program.
    public var programID: UInt32

    /// Describes an attachment (as `attach` and `query` return them).
    public init(ifindex: UInt32, direction: TCDirection, handle: UInt32, priority: UInt32, programID: UInt32) {
        self.ifindex = ifindex
        self.direction = direction
        self.handle = handle
        self.priority = priority
        self.programID = programID
    }

    public var description: String {
        "tc \(direction) on \(describeInterface(ifindex)) handle \(handle) priority \(priority): program \(programID)"
    }

    /// Attaches `program` (a `SEC("tc")` program) to an interface.
    ///
    /// Creates the clsact qdisc if there is none (`bpf_tc_hook_create`; an
    /// existing one is used as it is and never removed, others may have
    /// filters on it), then adds the filter (`bpf_tc_attach`) in
    /// direct-action mode.
    ///
    /// - Parameters:
    ///   - handle, priority: identify the filter; choose fixed values per
    ///     program so a later attach replaces it and a detach finds it.
    ///   - replace: with `true` (`BPF_TC_F_REPLACE`) a filter at the same
    ///     handle and priority is replaced atomically, so no packet passes
    ///     unfiltered; with `false` an existing one makes the call fail
    ///     with `isExists`.
    @discardableResult
    public static func attach(
        _ program: BPFProgram,
        ifindex: UInt32,
        direction: TCDirection = .ingress,
        handle: UInt32 = 1,
        priority: UInt32 = 1,
        replace: Bool = true
    ) throws -> TCAttachment {
        let action = { "attaching tc \(direction) to \(describeInterface(ifindex))" }
        guard (1...0xffff).contains(priority), handle != 0 else {
            throw BPFError(
                operation: "bpf_tc_attach(\(ifindex), handle \(handle), priority \(priority))",
                action: action(), errno: .invalidArgument,
                hint: "handle must be non-zero and priority 1...65535")
        }
        _ = try createClsact(ifindex: ifindex)
        var hook = makeHook(ifindex: ifindex, direction: direction)
        var opts = bpf_tc_opts()
        opts.sz = optionsSize(\bpf_tc_opts.priority)
        opts.prog_fd = program.fd
        opts.handle = handle
        opts.priority = priority
        opts.flags = replace ? UInt32(BPF_TC_F_REPLACE.rawValue) : 0
        let (result, log) = LibBPFLog.capture { bpf_tc_attach(&hook, &opts) }
        if result < 0 {
            throw makeError(
                result,
                "bpf_tc_attach(\(ifindex), \(direction), handle \(handle), priority \(priority), \(program.name))",
                action: action(), libbpfLog: log.lines
            ) { errno in
                switch errno {
                case .fileExists:
                    "a filter with handle \(handle) priority \(priority) exists; attach with replace: true"
                case .invalidArgument where program.type != .schedCLS:
                    "program \(program.name) is of type \(program.type); tc needs a SEC(\"tc\") program (sched_cls)"
                default: interfaceHint(ifindex)(errno)
                }
            }
        }
        log.forward()
        return TCAttachment(
            ifindex: ifindex, direction: direction, handle: opts.handle, priority: opts.priority,
            programID: opts.prog_id)
    }

    /// The id of the program in the filter at (handle, priority), or nil if
    /// there is no such filter (or no clsact qdisc) (`bpf_tc_query`).
    public static func query(
        ifindex: UInt32, direction: TCDirection = .ingress, handle: UInt32 = 1, priority: UInt32 = 1
    ) throws -> UInt32? {
        var hook = makeHook(ifindex: ifindex, direction: direction)
        var opts = bpf_tc_opts()
        opts.sz = optionsSize(\bpf_tc_opts.priority)
        opts.handle = handle
        opts.priority = priority
        let (result, log) = LibBPFLog.capture { bpf_tc_query(&hook, &opts) }
        if isAbsentFilter(result, log) { return nil }
        if result < 0 {
            throw makeError(
                result, "bpf_tc_query(\(ifindex), \(direction), handle \(handle), priority \(priority))",
                action: "querying tc \(direction) on \(describeInterface(ifindex))",
                libbpfLog: log.lines, hint: interfaceHint(ifindex))
        }
        return opts.prog_id
    }

    /// Removes the filter at (handle, priority) (`bpf_tc_detach`). Returns
    /// false if there was none. The clsact qdisc stays.
    @discardableResult
    public static func detach(
        ifindex: UInt32, direction: TCDirection = .ingress, handle: UInt32 = 1, priority: UInt32 = 1
    ) throws -> Bool {
        var hook = makeHook(ifindex: ifindex, direction: direction)
        var opts = bpf_tc_opts()
        opts.sz = optionsSize(\bpf_tc_opts.priority)
        opts.handle = handle
        opts.priority = priority
        let (result, log) = LibBPFLog.capture { bpf_tc_detach(&hook, &opts) }
        if result == 0 { return true }
        if isAbsentFilter(result, log) { return false }
        throw makeError(
            result, "bpf_tc_detach(\(ifindex), \(direction), handle \(handle), priority \(priority))",
            action: "detaching tc \(direction) from \(describeInterface(ifindex))",
            libbpfLog: log.lines, hint: interfaceHint(ifindex))
    }

    /// Removes this filter if it still runs the program it was attached
    /// with (so a newer attachment that replaced it stays). Returns false if
    /// it was gone or replaced.
    @discardableResult
    public func detach() throws -> Bool {
        guard
            let current = try TCAttachment.query(
                ifindex: ifindex, direction: direction, handle: handle,
                priority: priority),
            current == programID
        else { return false }
        return try TCAttachment.detach(ifindex: ifindex, direction: direction, handle: handle, priority: priority)
    }

    // MARK: The clsact qdisc

    /// Creates the interface's clsact qdisc unless it has one
    /// (`bpf_tc_hook_create`). Returns true when this call created it, false
    /// when one was there: a qdisc someone else created may carry their
    /// filters, and only its creator should remove it.
    public static func createClsact(ifindex: UInt32) throws -> Bool {
        var hook = makeHook(ifindex: ifindex, direction: .ingress)
        let (result, log) = LibBPFLog.capture { bpf_tc_hook_create(&hook) }
        if result == -EEXIST { return false }
        if result < 0 {
            throw makeError(
                result, "bpf_tc_hook_create(\(ifindex), clsact)",
                action: "creating the clsact qdisc on \(describeInterface(ifindex))",
                libbpfLog: log.lines, hint: interfaceHint(ifindex))
        }
        log.forward()
        return true
    }

    /// Removes the interface's clsact qdisc, and with it every filter on
    /// either hook (`bpf_tc_hook_destroy` for ingress and egress). Returns
    /// false when there was none.
    @discardableResult
    public static func removeClsact(ifindex: UInt32) throws -> Bool {
        var hook = makeHook(ifindex: ifindex, direction: .ingress)
        hook.attach_point = bpf_tc_attach_point(BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
        let (result, log) = LibBPFLog.capture { bpf_tc_hook_destroy(&hook) }
        if result == 0 { return true }
        if isAbsentQdisc(result, log) { return false }
        throw makeError(
            result, "bpf_tc_hook_destroy(\(ifindex), clsact)",
            action: "removing the clsact qdisc from \(describeInterface(ifindex))",
            libbpfLog: log.lines, hint: interfaceHint(ifindex))
    }

    /// Every filter on the interface's clsact hook `direction`, whoever put it
    /// there (an rtnetlink dump; libbpf can only ask for one filter by handle
    /// and priority). Empty when the interface has no clsact qdisc.
    public static func filters(ifindex: UInt32, direction: TCDirection) throws -> [RouteNetlink.TrafficFilter] {
        try RouteNetlink().filters(index: Int32(bitPattern: ifindex), hook: direction.clsactHook)
    }

    private static func makeHook(ifindex: UInt32, direction: TCDirection) -> bpf_tc_hook {
        var hook = bpf_tc_hook()
        hook.sz = optionsSize(\bpf_tc_hook.parent)
        hook.ifindex = CInt(bitPattern: ifindex)
        hook.attach_point = direction.attachPoint
        return hook
    }
}

/// Whether a failed tc query or detach means "no such filter". The kernel
/// answers ENOENT when the filter is missing, but EINVAL with an extended ack
/// ("Cannot find specified filter chain", "Filter with specified
/// priority/protocol not found") when the chain or the clsact qdisc is. An
/// EINVAL without a kernel message comes from libbpf's own argument checks
/// and stays an error.
private func isAbsentFilter(_ result: CInt, _ log: CapturedLog) -> Bool {
    if result == -ENOENT { return true }
    guard result == -EINVAL,
        let message = BPFError(operation: "", errno: .invalidArgument, libbpfLog: log.lines).kernelMessage?.lowercased()
    else { return false }
    return message.contains("cannot find") || message.contains("not found") || message.contains("exist")
}

/// Whether a failed clsact removal means "there is none": without a clsact
/// qdisc the ingress slot holds the kernel's placeholder, whose handle is not
/// clsact's, and the kernel answers EINVAL "Invalid handle" (or ENOENT).
private func isAbsentQdisc(_ result: CInt, _ log: CapturedLog) -> Bool {
    if result == -ENOENT { return true }
    guard result == -EINVAL,
        let message = BPFError(operation: "", errno: .invalidArgument, libbpfLog: log.lines).kernelMessage?.lowercased()
    else { return false }
    return message.contains("invalid handle") || message.contains("cannot find")
}

/// Hints for netlink errors that concern an interface.
func interfaceHint(_ ifindex: UInt32) -> (Errno) -> String? {
    { errno in
        switch errno {
        case .noSuchFileOrDirectory, .operationNotSupportedByDevice:
            (try? NetworkInterface.name(index: ifindex)) == nil
                ? "interface \(ifindex) does not exist in this network namespace"
                    + " (attach inside the interface's namespace with NetworkNamespace.run)"
                : nil
        case .notPermitted, .permissionDenied:
            BPFError.privilegeHint
        default:
            nil
        }
    }
}
