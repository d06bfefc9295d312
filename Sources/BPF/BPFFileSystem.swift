// SPDX-License-Identifier: Apache-2.0
//
// The BPF filesystem, where maps and programs are pinned so that they outlive
// the process that loaded them.

import CLibBPF
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Mounting and checking bpffs, and removing pins.
public enum BPFFileSystem {
    /// `BPF_FS_MAGIC`, statfs(2)'s f_type of a bpffs.
    public static let magic = Int(BPF_FS_MAGIC)

    /// Whether `path` lies on a bpffs (`statfs` f_type == 0xcafe4a11).
    /// Throws if `path` does not exist.
    public static func isBPFFS(_ path: FilePath) throws -> Bool {
        var stats = statfs()
        let result = path.withCString { statfs($0, &stats) }
        if result != 0 {
            throw systemError("statfs(\(path))", action: "checking whether \(path) is a bpffs")
        }
        return Int(stats.f_type) == magic
    }

    /// Makes sure `path` is a directory on a bpffs: creates it (and its
    /// parents) if needed and mounts a new bpffs on it unless it already is
    /// on one (for example /sys/fs/bpf itself or a directory inside it).
    ///
    /// - Returns: true if this call mounted a bpffs (the caller may want to
    ///   `unmount` it later), false if one was already there.
    @discardableResult
    public static func ensureMounted(at path: FilePath, mode: UInt32 = 0o700) throws -> Bool {
        try makeDirectories(path, mode: mode_t(mode))
        if try isBPFFS(path) { return false }
        let options = "mode=\(String(mode, radix: 8))"
        let result = path.withCString { cPath in
            options.withCString { mount("bpf", cPath, "bpf", 0, $0) }
        }
        if result != 0 {
            throw systemError("mount(bpf, \(path))", action: "mounting a bpffs at \(path)") { errno in
                errno == .notPermitted ? "mounting needs CAP_SYS_ADMIN (run as root)" : nil
            }
        }
        return true
    }

    /// Unmounts the bpffs at `path` (`umount2`). Pins in it are removed with
    /// the mount (objects stay alive while otherwise referenced).
    /// Refuses paths that are not a bpffs, so a wrong path never unmounts
    /// something else.
    public static func unmount(_ path: FilePath, lazily: Bool = false) throws {
        guard try isBPFFS(path) else {
            throw BPFError(
                operation: "umount2(\(path))", action: "unmounting the bpffs at \(path)",
                errno: .invalidArgument, hint: "\(path) is not a bpffs mount")
        }
        let result = path.withCString { umount2($0, lazily ? CInt(MNT_DETACH) : 0) }
        if result != 0 {
            throw systemError("umount2(\(path))", action: "unmounting the bpffs at \(path)") { errno in
                errno == .resourceBusy ? "something still uses the mount; pass lazily: true to detach it" : nil
            }
        }
    }

    /// Removes the pin at `path` (unlink). The object stays alive while
    /// attached or referenced by an fd.
    public static func removePin(at path: FilePath) throws {
        if path.withCString({ unlink($0) }) != 0 {
            throw systemError("unlink(\(path))", action: "removing the pin \(path)") { errno in
                errno == .noSuchFileOrDirectory ? "nothing is pinned at \(path)" : nil
            }
        }
    }

    /// mkdir -p.
    static func makeDirectories(_ path: FilePath, mode: mode_t) throws {
        var current = FilePath(root: path.root)
        for component in path.components {
            current.append(component)
            if current.withCString({ mkdir($0, mode) }) != 0 && Glibc.errno != EEXIST {
                throw systemError("mkdir(\(current))", action: "creating directory \(current)")
            }
        }
    }
}
