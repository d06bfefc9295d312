// SPDX-License-Identifier: Apache-2.0
//
// What a BPFObject is opened with (pin root, max_entries overrides, autoload,
// the verifier log) and what it declares (its maps as the ELF defines them).

import SystemPackage

extension BPFObject {
    /// Options for opening an object.
    public struct Options: Sendable {
        /// Directory for maps declared with `__uint(pinning, LIBBPF_PIN_BY_NAME)`
        /// (`bpf_object_open_opts.pin_root_path`): such a map is reused from
        /// `<pinRoot>/<map name>` when it is pinned there and has the same
        /// type, sizes, max_entries and flags, and is created and pinned there
        /// otherwise. `nil` means libbpf's default, /sys/fs/bpf. The directory
        /// must be on a bpffs (see `BPFFileSystem.ensureMounted(at:)`).
        public var pinRoot: FilePath?
        /// max_entries overrides by map name, applied before load
        /// (`bpf_map__set_max_entries`).
        public var maxEntries: [String: UInt32]
        /// Programs to load or skip by name (`bpf_program__set_autoload`);
        /// programs declared `SEC("?...")` are skipped unless enabled here.
        public var autoload: [String: Bool]
        /// `false` ignores `LIBBPF_PIN_BY_NAME`: every map is created private
        /// to this object and nothing is pinned or reused
        /// (`bpf_map__set_pin_path(map, NULL)`), e.g. for test runs that must
        /// not share state.
        public var pinMaps: Bool
        /// Size of the buffer for the verifier log of a program that fails to
        /// load (`kernel_log_buf`). libbpf loads without a log first and
        /// retries with log level 1 into this buffer only on failure, so it
        /// costs nothing when programs load. The kernel keeps the tail of a
        /// longer log.
        public var verifierLogSize: Int

        /// Options with libbpf's defaults: pins under /sys/fs/bpf, declared
        /// sizes, every non-"?" program, a 16 MiB verifier log buffer.
        public init(
            pinRoot: FilePath? = nil,
            maxEntries: [String: UInt32] = [:],
            autoload: [String: Bool] = [:],
            pinMaps: Bool = true,
            verifierLogSize: Int = 16 << 20
        ) {
            self.pinRoot = pinRoot
            self.pinMaps = pinMaps
            self.maxEntries = maxEntries
            self.autoload = autoload
            self.verifierLogSize = verifierLogSize
        }
    }

    /// A map as declared in the object (valid before and after load).
    public struct MapDefinition: Sendable, Hashable {
        /// The map's name in the ELF (the kernel keeps at most 15 characters).
        public var name: String
        public var type: BPFMapType
        /// Key and value sizes in bytes (`bpf_map__key_size`, `bpf_map__value_size`).
        public var keySize: Int
        public var valueSize: Int
        /// Capacity, with `Options.maxEntries` overrides applied.
        public var maxEntries: UInt32
        /// `map_flags` (BPF_F_NO_PREALLOC, ...).
        public var flags: UInt32
        /// libbpf's own maps for global variables (.bss, .data, .rodata).
        public var isInternal: Bool
        /// Where the map is (or will be) pinned, for LIBBPF_PIN_BY_NAME maps.
        public var pinPath: FilePath?
    }
}
