// SPDX-License-Identifier: Apache-2.0
//
// The pin directory: where the dataplane's state lives between processes.

import BPF
import Foundation
import SystemPackage

enum Pins {
    static let preloaded: Set<String> = ["maps.debug", "progs.debug"]

    /// Removes every pin under `path`, then the directory itself (unmounting
    /// it first when it is a bpffs mount of its own).
    static func remove(at path: FilePath) throws {
        let manager = FileManager.default
        guard manager.fileExists(atPath: path.string) else { return }
        // A fresh bpffs mount shows bpf_preload's iterators (maps.debug,
        // progs.debug); they cannot be unlinked and go with the unmount.
        for name in try manager.contentsOfDirectory(atPath: path.string) where !preloaded.contains(name) {
            try BPFFileSystem.removePin(at: path.appending(name))
        }
        let parent = path.removingLastComponent()
        if try BPFFileSystem.isBPFFS(path), try !BPFFileSystem.isBPFFS(parent) {
            try BPFFileSystem.unmount(path)
        }
        try? manager.removeItem(atPath: path.string)
    }
}
