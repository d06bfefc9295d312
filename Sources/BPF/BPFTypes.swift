// SPDX-License-Identifier: Apache-2.0
//
// Swift-cased wrappers over the kernel's program and map type enums. They are
// structs over the raw value (not Swift enums) so that types this module has
// no name for still round-trip, as swift-system does for flags and errno.

import CLibBPF

/// A program type (`enum bpf_prog_type`).
public struct BPFProgramType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    init(_ type: bpf_prog_type) { self.rawValue = type.rawValue }

    /// `BPF_PROG_TYPE_XDP`.
    public static let xdp = Self(BPF_PROG_TYPE_XDP)
    /// `BPF_PROG_TYPE_SCHED_CLS`: tc classifiers (`SEC("tc")`).
    public static let schedCLS = Self(BPF_PROG_TYPE_SCHED_CLS)
    /// `BPF_PROG_TYPE_SCHED_ACT`: tc actions.
    public static let schedACT = Self(BPF_PROG_TYPE_SCHED_ACT)
    /// `BPF_PROG_TYPE_SOCKET_FILTER`.
    public static let socketFilter = Self(BPF_PROG_TYPE_SOCKET_FILTER)
    /// `BPF_PROG_TYPE_CGROUP_SKB`.
    public static let cgroupSKB = Self(BPF_PROG_TYPE_CGROUP_SKB)
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
    public static let rawTracepoint = Self(BPF_PROG_TYPE_RAW_TRACEPOINT)

    /// libbpf's name for the type (`libbpf_bpf_prog_type_str`), e.g. "xdp", "sched_cls".
    public var description: String {
        if let name = libbpf_bpf_prog_type_str(bpf_prog_type(rawValue)) {
            return String(cString: name)
        }
        return "prog_type(\(rawValue))"
    }
}

/// A map type (`enum bpf_map_type`).
public struct BPFMapType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    init(_ type: bpf_map_type) { self.rawValue = type.rawValue }

    /// `BPF_MAP_TYPE_HASH`.
    public static let hash = Self(BPF_MAP_TYPE_HASH)
    /// `BPF_MAP_TYPE_ARRAY`: keys 0..<max_entries, preallocated, no deletes.
    public static let array = Self(BPF_MAP_TYPE_ARRAY)
    /// `BPF_MAP_TYPE_PROG_ARRAY`: tail-call targets.
    public static let progArray = Self(BPF_MAP_TYPE_PROG_ARRAY)
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    public static let perCPUHash = Self(BPF_MAP_TYPE_PERCPU_HASH)
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    public static let perCPUArray = Self(BPF_MAP_TYPE_PERCPU_ARRAY)
    /// `BPF_MAP_TYPE_LRU_HASH`: evicts least recently used entries when full.
    public static let lruHash = Self(BPF_MAP_TYPE_LRU_HASH)
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
    public static let lruPerCPUHash = Self(BPF_MAP_TYPE_LRU_PERCPU_HASH)
    /// `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match; keys start with a u32 prefix length.
    public static let lpmTrie = Self(BPF_MAP_TYPE_LPM_TRIE)
    /// `BPF_MAP_TYPE_DEVMAP`: redirect targets by index.
    public static let devmap = Self(BPF_MAP_TYPE_DEVMAP)
    /// `BPF_MAP_TYPE_DEVMAP_HASH`: redirect targets by key.
    public static let devmapHash = Self(BPF_MAP_TYPE_DEVMAP_HASH)
    /// `BPF_MAP_TYPE_RINGBUF`.
    public static let ringbuf = Self(BPF_MAP_TYPE_RINGBUF)

    /// Per-CPU maps hold one value per possible CPU; read them with `BPFPerCPUMap`.
    public var isPerCPU: Bool {
        self == .perCPUHash || self == .perCPUArray || self == .lruPerCPUHash
            || rawValue == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE.rawValue
    }

    /// Arrays have every key from 0 to max_entries-1 and cannot delete.
    public var isArray: Bool {
        self == .array || self == .perCPUArray
    }

    /// libbpf's name for the type (`libbpf_bpf_map_type_str`), e.g. "hash", "lpm_trie".
    public var description: String {
        if let name = libbpf_bpf_map_type_str(bpf_map_type(rawValue)) {
            return String(cString: name)
        }
        return "map_type(\(rawValue))"
    }
}
