// SPDX-License-Identifier: Apache-2.0
//
// The pin directory: where the dataplane's state lives between processes.

import BPF
import Foundation
import SystemPackage

enum Pins {
    /// Makes `path` a directory on a bpffs: creates it inside an existing
    /// bpffs, or mounts a private bpffs on it when its parent is not one
    /// (a host without /sys/fs/bpf mounted, or a test's temporary directory).
    static func prepare(_ path: FilePath) throws {
        try FileManager.default.createDirectory(atPath: path.string, withIntermediateDirectories: true)
        if try !BPFFileSystem.isBPFFS(path) {
            _ = try BPFFileSystem.ensureMounted(at: path)
        }
    }

    /// Removes every pin under `path`, then the directory itself (unmounting
    /// it first when it is a bpffs mount of its own).
    static func remove(at path: FilePath) throws {
        let manager = FileManager.default
        guard manager.fileExists(atPath: path.string) else { return }
        // The root of a bpffs mount holds the kernel's own maps.debug and
        // progs.debug (BPF preload); they cannot be unlinked and go with the mount.
        for name in try manager.contentsOfDirectory(atPath: path.string) where !name.hasSuffix(".debug") {
            try BPFFileSystem.removePin(at: path.appending(name))
        }
        let parent = path.removingLastComponent()
        if try BPFFileSystem.isBPFFS(path), try !BPFFileSystem.isBPFFS(parent) {
            try BPFFileSystem.unmount(path)
        }
        try? manager.removeItem(atPath: path.string)
    }
}
