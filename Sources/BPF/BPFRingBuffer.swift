// SPDX-License-Identifier: Apache-2.0
//
// A consumer of a BPF_MAP_TYPE_RINGBUF map (libbpf's ring_buffer__*): the
// kernel side reserves and submits records, this side polls and hands each
// record's bytes to a closure.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Reads records from a ring buffer map. Not thread-safe: poll from one thread.
public final class BPFRingBuffer {
    /// The map the records come from.
    public let handle: BPFMapHandle
    private var ring: OpaquePointer?
    private let box: Box

    /// Holds the closure for the C callback (`ctx` is an unretained pointer to it).
    private final class Box {
        let body: (UnsafeRawBufferPointer) -> Bool
        init(_ body: @escaping (UnsafeRawBufferPointer) -> Bool) { self.body = body }
    }

    /// Consumes `handle` (a RINGBUF map), calling `onRecord` with each record's
    /// bytes; returning false from it stops the current poll early
    /// (`ring_buffer__new`).
    public init(_ handle: BPFMapHandle, onRecord: @escaping (UnsafeRawBufferPointer) -> Bool) throws {
        guard handle.type == .ringbuf else {
            throw BPFError(
                operation: "ring_buffer__new(\(handle.name))",
                action: "reading \(handle.type) map \(handle.name) as a ring buffer",
                errno: .invalidArgument, hint: "the map must be a BPF_MAP_TYPE_RINGBUF")
        }
        self.handle = handle
        box = Box(onRecord)
        let context = Unmanaged.passUnretained(box).toOpaque()
        let callback: ring_buffer_sample_fn = { context, data, size in
            guard let context, let data else { return 0 }
            let box = Unmanaged<Box>.fromOpaque(context).takeUnretainedValue()
            // A negative return ends ring_buffer__poll's loop for now.
            return box.body(UnsafeRawBufferPointer(start: data, count: size)) ? 0 : -1
        }
        guard let ring = ring_buffer__new(handle.fd, callback, context, nil) else {
            throw systemError("ring_buffer__new(\(handle.name))", action: "opening ring buffer \(handle.name)")
        }
        self.ring = ring
    }

    /// The ring buffer pinned at `path`.
    public convenience init(pinnedAt path: FilePath, onRecord: @escaping (UnsafeRawBufferPointer) -> Bool) throws {
        try self.init(BPFMapHandle(pinnedAt: path), onRecord: onRecord)
    }

    deinit {
        if let ring { ring_buffer__free(ring) }
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever) for records and
    /// consumes what is there; returns how many records were handled
    /// (`ring_buffer__poll`). EINTR counts as zero records.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) throws -> Int {
        let result = ring_buffer__poll(ring, timeoutMilliseconds)
        if result == -EINTR { return 0 }
        // -1 from our callback ends the loop early; libbpf reports it as is.
        if result == -1 { return 0 }
        return Int(try check(result, "ring_buffer__poll(\(handle.name))", action: "reading ring buffer \(handle.name)"))
    }
}
