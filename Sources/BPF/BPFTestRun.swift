// SPDX-License-Identifier: Apache-2.0
//
// BPF_PROG_TEST_RUN: running a loaded program on a packet in the kernel,
// into caller-provided buffers (a tight loop allocates nothing) or into new
// arrays, with its options and results. The differential and test-run
// suites and the bench's packet generator (live frames) use it.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension BPFProgram {
    /// Runs the program on `data` in the kernel (`bpf_prog_test_run_opts`)
    /// without copying anything out, into caller-provided buffers. Nothing is
    /// allocated, so it can run in a tight loop.
    ///
    /// - Parameters:
    ///   - data: the packet (for XDP and tc at least an Ethernet header, 14 bytes).
    ///   - dataOut: receives the packet after the program ran (it may have
    ///     rewritten or resized it). Too small a buffer fails with ENOSPC.
    ///   - context: the program's context in, e.g. the bytes of a
    ///     `struct xdp_md` (data 0, data_end = data.count, ingress_ifindex)
    ///     or a `struct __sk_buff` (mark, priority, ifindex, cb, ...).
    ///   - contextOut: receives the context after the run.
    ///   - options: repeat count, flags (live frames), cpu, batch size.
    public func testRun(
        data: UnsafeRawBufferPointer,
        dataOut: UnsafeMutableRawBufferPointer? = nil,
        context: UnsafeRawBufferPointer? = nil,
        contextOut: UnsafeMutableRawBufferPointer? = nil,
        options: BPFTestRunOptions = BPFTestRunOptions()
    ) throws -> BPFTestRunRawResult {
        var opts = bpf_test_run_opts()
        opts.sz = optionsSize(\bpf_test_run_opts.batch_size)
        opts.data_in = data.baseAddress
        opts.data_size_in = UInt32(data.count)
        opts.data_out = dataOut?.baseAddress
        opts.data_size_out = UInt32(dataOut?.count ?? 0)
        opts.ctx_in = context?.baseAddress
        opts.ctx_size_in = UInt32(context?.count ?? 0)
        opts.ctx_out = contextOut?.baseAddress
        opts.ctx_size_out = UInt32(contextOut?.count ?? 0)
        opts.repeat = CInt(clamping: options.repeatCount)
        var flags = options.flags
        if let cpu = options.cpu {
            flags.insert(.runOnCPU)
            opts.cpu = cpu
        }
        opts.flags = flags.rawValue
        opts.batch_size = options.batchSize
        let result = bpf_prog_test_run_opts(fd, &opts)
        if result < 0 {
            let needed = Int(opts.data_size_out)
            throw makeError(
                result, "bpf_prog_test_run_opts(\(name))",
                action: "test-running program \(name) on \(data.count) bytes"
            ) { errno in
                switch errno {
                case .noSpace:
                    return "dataOut holds \(dataOut?.count ?? 0) bytes but the program produced \(needed);"
                        + " pass a larger output buffer"
                case .operationNotSupportedByDevice:
                    return "the context's ingress interface does not exist in this network namespace"
                case .invalidArgument:
                    return "check the input: XDP and tc need at least 14 bytes of data; an xdp_md context needs"
                        + " data 0 and data_end = data length; context fields the program type does not accept"
                        + " must be 0; live frames take no dataOut/contextOut"
                case .notSupported, .notSupportedOnSocket, .kernelNotSupported:
                    return "this program type (\(self.type)) or flag is not supported by BPF_PROG_TEST_RUN here"
                case .notPermitted where options.flags.contains(.xdpLiveFrames) && geteuid() == 0:
                    return "this kernel refuses XDP live frames (BPF_F_TEST_XDP_LIVE_FRAMES) even to root;"
                        + " some hardened builds do"
                default:
                    return nil
                }
            }
        }
        return BPFTestRunRawResult(
            returnValue: opts.retval, duration: opts.duration,
            dataOutCount: dataOut == nil ? 0 : Int(opts.data_size_out),
            contextOutCount: contextOut == nil ? 0 : Int(opts.ctx_size_out))
    }

    /// Runs the program on `data` (`bpf_prog_test_run_opts`) and returns the
    /// verdict, the kernel-measured duration and, if asked for, the packet and
    /// context after the run.
    ///
    /// - Parameters:
    ///   - dataOutCapacity: bytes to reserve for the packet after the run
    ///     (0: do not copy it out; a program that grows the packet needs more
    ///     than `data.count`).
    ///   - context: context bytes in (see the raw variant).
    ///   - contextOutCapacity: bytes to reserve for the context after the run.
    public func testRun(
        data: [UInt8],
        dataOutCapacity: Int = 0,
        context: [UInt8]? = nil,
        contextOutCapacity: Int = 0,
        options: BPFTestRunOptions = BPFTestRunOptions()
    ) throws -> BPFTestRunResult {
        var dataOut = [UInt8](repeating: 0, count: dataOutCapacity)
        var contextOut = [UInt8](repeating: 0, count: contextOutCapacity)
        let raw = try data.withUnsafeBytes { dataIn in
            try dataOut.withUnsafeMutableBytes { dataOutBuffer in
                try contextOut.withUnsafeMutableBytes { contextOutBuffer in
                    try withOptionalBytes(context) { contextIn in
                        try testRun(
                            data: dataIn,
                            dataOut: dataOutCapacity > 0 ? dataOutBuffer : nil,
                            context: contextIn,
                            contextOut: contextOutCapacity > 0 ? contextOutBuffer : nil,
                            options: options)
                    }
                }
            }
        }
        dataOut.removeLast(dataOut.count - min(raw.dataOutCount, dataOut.count))
        contextOut.removeLast(contextOut.count - min(raw.contextOutCount, contextOut.count))
        return BPFTestRunResult(
            returnValue: raw.returnValue, duration: raw.duration,
            dataOut: dataOut, contextOut: contextOut)
    }

    /// Runs the program with a typed context (e.g. `xdp_md`, `__sk_buff`),
    /// which is passed in and replaced by the context after the run.
    ///
    /// Build the context with `Context()` (all zero) and set fields in
    /// place: the kernel refuses non-zero bytes in fields a test run does
    /// not take, reserved bit-fields included.
    ///
    /// `Context` must be a trivial C struct. It is not constrained to
    /// `BitwiseCopyable` because Swift does not infer that for imported
    /// structs with unions, such as `__sk_buff`; it is checked at run time.
    public func testRun<Context>(
        data: [UInt8],
        context: inout Context,
        dataOutCapacity: Int = 0,
        options: BPFTestRunOptions = BPFTestRunOptions()
    ) throws -> BPFTestRunResult {
        precondition(_isPOD(Context.self), "testRun(context:): \(Context.self) must be a trivial C struct")
        var dataOut = [UInt8](repeating: 0, count: dataOutCapacity)
        var contextOut = context
        let raw = try data.withUnsafeBytes { dataIn in
            try dataOut.withUnsafeMutableBytes { dataOutBuffer in
                try withUnsafeBytes(of: context) { contextIn in
                    try withUnsafeMutableBytes(of: &contextOut) { contextOutBuffer in
                        try testRun(
                            data: dataIn,
                            dataOut: dataOutCapacity > 0 ? dataOutBuffer : nil,
                            context: contextIn,
                            contextOut: options.flags.contains(.xdpLiveFrames) ? nil : contextOutBuffer,
                            options: options)
                    }
                }
            }
        }
        if !options.flags.contains(.xdpLiveFrames) { context = contextOut }
        dataOut.removeLast(dataOut.count - min(raw.dataOutCount, dataOut.count))
        return BPFTestRunResult(
            returnValue: raw.returnValue, duration: raw.duration,
            dataOut: dataOut, contextOut: [])
    }
}

private func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
    guard let bytes else { return try body(nil) }
    return try bytes.withUnsafeBytes { try body($0) }
}

/// Options of one `BPF_PROG_TEST_RUN`.
public struct BPFTestRunOptions: Sendable, Hashable {
    /// Flags of `bpf_test_run_opts.flags`.
    public struct Flags: OptionSet, Sendable, Hashable {
        public var rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// `BPF_F_TEST_RUN_ON_CPU`: run on `cpu` (set automatically when `cpu` is given).
        public static let runOnCPU = Flags(rawValue: UInt32(BPF_F_TEST_RUN_ON_CPU))
        /// `BPF_F_TEST_XDP_LIVE_FRAMES`: XDP only; every repetition is a real
        /// frame that XDP_TX / XDP_REDIRECT / XDP_PASS send on (the packet
        /// generator). The receiving veth needs NAPI (GRO or an XDP program on
        /// the peer) or frames are dropped silently. Returns no data or context.
        public static let xdpLiveFrames = Flags(rawValue: UInt32(BPF_F_TEST_XDP_LIVE_FRAMES))
    }

    /// How many times the kernel runs the program (`repeat`); `duration` is
    /// the average. With live frames: the number of frames sent.
    public var repeatCount: Int
    public var flags: Flags
    /// Run on this CPU (`BPF_F_TEST_RUN_ON_CPU`; not every program type allows it).
    public var cpu: UInt32?
    /// Frames per batch for live frames (`batch_size`; 0 = kernel default, 64).
    public var batchSize: UInt32

    public init(repeatCount: Int = 1, flags: Flags = [], cpu: UInt32? = nil, batchSize: UInt32 = 0) {
        self.repeatCount = repeatCount
        self.flags = flags
        self.cpu = cpu
        self.batchSize = batchSize
    }
}

/// The outcome of `testRun` into caller-provided buffers.
public struct BPFTestRunRawResult: Sendable, Hashable {
    /// The program's return value (XDP_PASS, TC_ACT_OK, ...).
    public var returnValue: UInt32
    /// Average run time per repetition in nanoseconds, as the kernel measured it.
    public var duration: UInt32
    /// Bytes written to `dataOut`.
    public var dataOutCount: Int
    /// Bytes written to `contextOut`.
    public var contextOutCount: Int
}

/// The outcome of `testRun`.
public struct BPFTestRunResult: Sendable, Hashable {
    /// The program's return value (XDP_PASS, TC_ACT_OK, ...).
    public var returnValue: UInt32
    /// Average run time per repetition in nanoseconds, as the kernel measured it.
    public var duration: UInt32
    /// The packet after the run (empty unless an output capacity was given).
    public var dataOut: [UInt8]
    /// The context after the run (empty unless an output capacity was given).
    public var contextOut: [UInt8]
}
