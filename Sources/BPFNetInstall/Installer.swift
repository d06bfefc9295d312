// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet install` and `bpfnet uninstall` (docs/cli.md, "`install` and `uninstall`"): the
// binaries into PREFIX/bin, the systemd unit into ROOT/etc/systemd/system and,
// when asked, `"iptables": false` into ROOT/etc/docker/daemon.json; and back.
//
// PREFIX is where the binaries go on this host and what the unit runs (an
// absolute path, not under ROOT); ROOT relocates /etc only. So an install
// into scratch directories gives a unit whose ExecStart names a binary that
// exists, which is what `systemd-analyze verify` wants.
//
// Everything is checked before anything is written: a daemon.json that is not
// a JSON object, a pin path off bpffs, a settings file that does not exist.
// The unit is written last and records what the install created (directories,
// binaries, daemon.json), so that uninstall removes exactly that and needs no
// other file; an install over an earlier one keeps the earlier record.
//
// daemon.json: the operator's file is copied byte for byte to
// daemon.json.bpfnet-backup before it is changed (once: a second install keeps
// the first backup, which holds the file as it was before bpfnet). Uninstall
// puts the backup's bytes back when daemon.json still says only what the
// install made of it; when the operator changed it since, their changes stay
// and only "iptables" is set back to what it was (or removed). A daemon.json
// the install created (there was none) is removed again, or, if the operator
// has added keys since, loses "iptables" only.

import Foundation

#if canImport(Glibc)
import Glibc
#endif

public enum InstallError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Bad input: nothing was changed (exit 2).
    case badInput(String)
    /// A file could not be written, read or removed (exit 1).
    case failed(String)

    public var description: String {
        switch self {
        case .badInput(let message), .failed(let message): message
        }
    }

    public var isBadInput: Bool {
        if case .badInput = self { true } else { false }
    }
}

public struct InstallOptions: Hashable, Sendable {
    /// The files to put into PREFIX/bin (the running bpfnet, bpfnet-probe beside it).
    public var binaries: [String]
    public var dockerHost: String
    public var pinPath: String
    /// The settings file for `run --config`, as the host sees it (not under ROOT);
    /// nil: `Installer.defaultSettingsFile` when it exists under ROOT, else none.
    public var settingsFile: String?
    /// Merge `"iptables": false` into ROOT/etc/docker/daemon.json.
    public var dockerDaemonJSON: Bool

    public init(
        binaries: [String], dockerHost: String = Installer.defaultDockerHost,
        pinPath: String = Installer.defaultPinPath, settingsFile: String? = nil, dockerDaemonJSON: Bool = false
    ) {
        self.binaries = binaries
        self.dockerHost = dockerHost
        self.pinPath = pinPath
        self.settingsFile = settingsFile
        self.dockerDaemonJSON = dockerDaemonJSON
    }
}

public struct Installer: Sendable {
    public static let defaultPrefix = "/usr/local"
    public static let defaultRoot = "/"
    public static let defaultSettingsFile = "/etc/bpfnet/settings.yaml"
    public static let defaultDockerHost = "unix:///var/run/docker.sock"
    public static let defaultPinPath = "/sys/fs/bpf/bpfnet"
    public static let unitName = "bpfnet.service"
    public static let backupSuffix = ".bpfnet-backup"
    /// The binaries uninstall removes when no unit of bpfnet's records them.
    public static let binaryNames = ["bpfnet", "bpfnet-probe"]

    public let prefix: String
    public let root: String

    public init(prefix: String = defaultPrefix, root: String = defaultRoot) throws(InstallError) {
        for (name, value) in [("--prefix", prefix), ("--root", root)] where !value.hasPrefix("/") {
            throw .badInput("\(name) '\(value)' must be an absolute path")
        }
        self.prefix = Self.trimmed(prefix)
        self.root = Self.trimmed(root)
    }

    // MARK: Paths

    /// A path of the host's /etc, under ROOT.
    public func underRoot(_ path: String) -> String { root == "/" ? path : root + path }
    public var binDirectory: String { prefix == "/" ? "/bin" : prefix + "/bin" }
    public var unitPath: String { underRoot("/etc/systemd/system/" + Self.unitName) }
    public var daemonJSONPath: String { underRoot("/etc/docker/daemon.json") }
    public var backupPath: String { daemonJSONPath + Self.backupSuffix }

    // MARK: Install

    /// Installs; returns what it did, one line each.
    /// - Throws: `.badInput` before anything was written; `.failed` when writing failed.
    public func install(_ options: InstallOptions) throws(InstallError) -> [String] {
        // Checks first: nothing is written unless all of it can be.
        guard options.pinPath.hasPrefix("/sys/fs/bpf/"), !options.pinPath.contains("/../") else {
            throw .badInput(
                "--pin-path '\(options.pinPath)' must be a directory under /sys/fs/bpf (bpffs), so that the pinned "
                    + "maps outlive the service and a restart takes them over")
        }
        let settingsFile = try resolvedSettingsFile(options.settingsFile)
        var binaries: [(source: String, destination: String)] = []
        for source in options.binaries {
            guard FileManager.default.isExecutableFile(atPath: source) else {
                throw .badInput("\(source) is not an executable file")
            }
            binaries.append((source, binDirectory + "/" + URL(fileURLWithPath: source).lastPathComponent))
        }
        guard let bpfnet = binaries.first(where: { $0.destination.hasSuffix("/bpfnet") })?.destination else {
            throw .badInput("nothing to install: no bpfnet binary among \(options.binaries)")
        }
        let daemonJSON = try options.dockerDaemonJSON ? plannedDaemonJSON() : nil
        let unitText = try? String(contentsOfFile: unitPath, encoding: .utf8)
        if let unitText, SystemdUnit.record(in: unitText) == nil {
            throw .badInput("\(unitPath) exists and was not written by bpfnet install; move it away first")
        }

        var record = unitText.flatMap(SystemdUnit.record(in:)) ?? []
        var done: [String] = []
        func note(_ entry: String) { if !record.contains(entry) { record.append(entry) } }

        for directory in try makeDirectories(binDirectory) { note("directory \(directory)") }
        for binary in binaries {
            try copyExecutable(binary.source, to: binary.destination)
            note("binary \(binary.destination)")
            done.append("installed \(binary.destination)")
        }
        if let daemonJSON {
            for directory in try makeDirectories(underRoot("/etc/docker")) { note("directory \(directory)") }
            // An earlier install's backup, or its record that there was no file, stays: it says
            // what daemon.json was before bpfnet.
            let createdBefore = record.contains("daemon-json-created \(daemonJSONPath)")
            if let original = daemonJSON.original, !createdBefore, !FileManager.default.fileExists(atPath: backupPath) {
                try write(original, to: backupPath, mode: daemonJSON.mode)
                done.append("backed up \(daemonJSONPath) to \(backupPath)")
            }
            if daemonJSON.original == nil, !FileManager.default.fileExists(atPath: backupPath) {
                note("daemon-json-created \(daemonJSONPath)")
            }
            note("daemon-json \(daemonJSONPath)")
            try write(daemonJSON.merged, to: daemonJSONPath, mode: daemonJSON.mode)
            done.append(
                daemonJSON.original == nil
                    ? "created \(daemonJSONPath) with \"iptables\": false"
                    : "set \"iptables\": false in \(daemonJSONPath), other keys kept")
        }
        for directory in try makeDirectories(underRoot("/etc/systemd/system")) { note("directory \(directory)") }
        let unit = SystemdUnit(
            binary: bpfnet, dockerHost: options.dockerHost, pinPath: options.pinPath, settingsFile: settingsFile,
            record: record)
        try write(Data(unit.text.utf8), to: unitPath, mode: 0o644)
        done.append(
            "wrote \(unitPath) (bpfnet run, settings: \(settingsFile ?? "none"), pins at \(options.pinPath))")
        return done
    }

    /// The settings file the unit names, as the host sees it.
    func resolvedSettingsFile(_ given: String?) throws(InstallError) -> String? {
        guard let given else {
            return FileManager.default.fileExists(atPath: underRoot(Self.defaultSettingsFile))
                ? Self.defaultSettingsFile : nil
        }
        guard given.hasPrefix("/") else { throw .badInput("--config '\(given)' must be an absolute path") }
        guard FileManager.default.fileExists(atPath: underRoot(given)) else {
            throw .badInput("--config \(underRoot(given)) does not exist")
        }
        return given
    }

    /// The settings file as this process reads it (under ROOT), for checking it.
    public func settingsFileToCheck(_ given: String?) throws(InstallError) -> String? {
        try resolvedSettingsFile(given).map(underRoot)
    }

    private func plannedDaemonJSON() throws(InstallError) -> (original: Data?, merged: Data, mode: Int) {
        let original = FileManager.default.contents(atPath: daemonJSONPath)
        if original == nil, FileManager.default.fileExists(atPath: daemonJSONPath) {
            throw .failed("cannot read \(daemonJSONPath)")
        }
        let merged = try DaemonJSON.merged(original, path: daemonJSONPath)
        let mode =
            (try? FileManager.default.attributesOfItem(atPath: daemonJSONPath)[.posixPermissions] as? Int) ?? 0o644
        return (original, merged, mode)
    }

    // MARK: Uninstall

    /// Removes what `install` put there and puts daemon.json back; returns what it did.
    public func uninstall() throws(InstallError) -> [String] {
        var done: [String] = []
        let unitText = try? String(contentsOfFile: unitPath, encoding: .utf8)
        let record = unitText.flatMap(SystemdUnit.record(in:))
        if unitText != nil, record == nil {
            done.append("left \(unitPath): bpfnet install did not write it")
        }
        func recorded(_ kind: String) -> [String] {
            (record ?? []).filter { $0.hasPrefix(kind + " ") }.map { String($0.dropFirst(kind.count + 1)) }
        }

        let created = recorded("daemon-json-created").contains(daemonJSONPath)
        if FileManager.default.fileExists(atPath: backupPath) || created {
            done += try restoreDaemonJSON(created: created)
        }
        // Without a unit of ours: the binaries install would have put here.
        let binaries = record != nil ? recorded("binary") : Self.binaryNames.map { binDirectory + "/" + $0 }
        for binary in binaries where FileManager.default.fileExists(atPath: binary) {
            try remove(binary)
            done.append("removed \(binary)")
        }
        if record != nil {
            try remove(unitPath)
            done.append("removed \(unitPath)")
        }
        // Deepest first; only when empty (something else may have been put there since).
        for directory in recorded("directory").sorted(by: { $0.count > $1.count }) {
            let contents = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
            if contents.isEmpty {
                try remove(directory)
                done.append("removed the directory \(directory)")
            }
        }
        if done.isEmpty { done.append("nothing to remove: bpfnet is not installed with this --prefix and --root") }
        return done
    }

    private func restoreDaemonJSON(created: Bool) throws(InstallError) -> [String] {
        let original = created ? nil : FileManager.default.contents(atPath: backupPath)
        if !created, original == nil { throw .failed("cannot read \(backupPath)") }
        var done: [String] = []
        if let current = FileManager.default.contents(atPath: daemonJSONPath) {
            let untouched =
                (try? DaemonJSON.merged(original, path: daemonJSONPath)).map { DaemonJSON.sameContent($0, current) }
                ?? false
            if untouched, let original {
                try write(original, to: daemonJSONPath, mode: mode(of: backupPath))
                done.append("restored \(daemonJSONPath) from \(backupPath)")
            } else if untouched {
                try remove(daemonJSONPath)
                done.append("removed \(daemonJSONPath) (bpfnet install had created it)")
            } else {
                // The operator changed it since: keep their changes, put back only the key.
                let restored = try DaemonJSON.restoringKey(in: current, from: original, path: daemonJSONPath)
                if original == nil, DaemonJSON.sameContent(restored, Data("{}".utf8)) {
                    try remove(daemonJSONPath)
                    done.append("removed \(daemonJSONPath) (bpfnet install had created it)")
                } else {
                    try write(restored, to: daemonJSONPath, mode: mode(of: daemonJSONPath))
                    done.append(
                        "\(daemonJSONPath) was changed since the install: kept the changes, put \"iptables\" back "
                            + (original == nil ? "(removed)" : "as it was"))
                }
            }
        } else if let original {
            try write(original, to: daemonJSONPath, mode: mode(of: backupPath))
            done.append("restored \(daemonJSONPath) from \(backupPath)")
        }
        if FileManager.default.fileExists(atPath: backupPath) {
            try remove(backupPath)
            done.append("removed \(backupPath)")
        }
        return done
    }

    // MARK: Files

    /// Creates `path` and its missing parents; returns the ones it created, outermost first.
    private func makeDirectories(_ path: String) throws(InstallError) -> [String] {
        var missing: [String] = []
        var current = path
        while current != "/" && !current.isEmpty && !FileManager.default.fileExists(atPath: current) {
            missing.append(current)
            current = (current as NSString).deletingLastPathComponent
        }
        for directory in missing.reversed() {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
            } catch {
                throw .failed("cannot create the directory \(directory): \(error.localizedDescription)")
            }
        }
        return missing.reversed()
    }

    private func copyExecutable(_ source: String, to destination: String) throws(InstallError) {
        // Reinstalling from the installed binary itself: already there.
        if URL(fileURLWithPath: source).resolvingSymlinksInPath().path
            == URL(fileURLWithPath: destination).resolvingSymlinksInPath().path
        {
            return
        }
        guard let data = FileManager.default.contents(atPath: source) else {
            throw .failed("cannot read \(source)")
        }
        try write(data, to: destination, mode: 0o755)
    }

    /// Writes through a temporary file and rename(2): a reader (dockerd, systemd)
    /// sees the old file or the new one, never half of it; a running binary
    /// being replaced keeps its old inode.
    private func write(_ data: Data, to path: String, mode: Int) throws(InstallError) {
        let temporary = path + ".bpfnet-tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: mode])
        else {
            throw .failed("cannot write \(temporary): \(String(cString: strerror(errno)))")
        }
        // createFile's permissions go through the umask; set them exactly.
        _ = chmod(temporary, mode_t(mode))
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .failed("cannot write \(path): \(reason)")
        }
    }

    private func remove(_ path: String) throws(InstallError) {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw .failed("cannot remove \(path): \(error.localizedDescription)")
        }
    }

    private func mode(of path: String) -> Int {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0o644
    }

    private static func trimmed(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }
}
