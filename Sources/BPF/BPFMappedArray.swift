// SPDX-License-Identifier: Apache-2.0
//
// An ARRAY map created with BPF_F_MMAPABLE, read through its memory: scanning
// every slot of a large, mostly empty array is a walk over a mapping instead
// of a batch lookup that copies every element through the syscall (~200 ns a
// slot). Writes still go through bpf_map_update_elem.

import CLibBPF

#if canImport(Glibc)
import Glibc
#endif

/// A read-only view of a `BPF_F_MMAPABLE` ARRAY's values.
public final class BPFMappedArray: @unchecked Sendable {
    /// The map (kept open while mapped).
    public let handle: BPFMapHandle
    /// Bytes from one slot to the next: the value size rounded up to 8, as the kernel lays the array out.
    public let stride: Int
    private let base: UnsafeRawPointer
    private let length: Int

    public init(_ handle: BPFMapHandle) throws {
        guard handle.type == .array, handle.flags & UInt32(BPF_F_MMAPABLE) != 0 else {
            throw BPFError(
                operation: "mmap(\(handle.name))", action: "mapping \(handle.type) map \(handle.name)",
                errno: .invalidArgument, hint: "only an ARRAY created with BPF_F_MMAPABLE can be mapped")
        }
        stride = (handle.valueSize + 7) & ~7
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        length = (stride * Int(handle.maxEntries) + page - 1) / page * page
        guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, handle.fd, 0), mapped != MAP_FAILED else {
            throw systemError("mmap(\(handle.name))", action: "mapping the values of \(handle.name)")
        }
        base = UnsafeRawPointer(mapped)
        self.handle = handle
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), length) }

    /// The indexes whose value has one of `bits` set in its byte at `offset`,
    /// with their values (copied out).
    public func slots(flaggedAt offset: Int, bits: UInt8) -> [(index: UInt32, value: [UInt8])] {
        precondition(offset < handle.valueSize, "the flag byte lies outside the value")
        var result: [(index: UInt32, value: [UInt8])] = []
        let flags = base.assumingMemoryBound(to: UInt8.self) + offset
        for index in 0..<Int(handle.maxEntries) where flags[index * stride] & bits != 0 {
            result.append(
                (UInt32(index), Array(UnsafeRawBufferPointer(start: base + index * stride, count: handle.valueSize))))
        }
        return result
    }
}
