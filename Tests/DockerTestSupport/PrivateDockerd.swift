// SPDX-License-Identifier: Apache-2.0
//
// A dockerd of a test's own, the way that works on these hosts (docs/testing.md): Debian's
// dockerd started with `nsenter --net` into a network namespace the test made (`ip netns exec`
// fails with "Devices cgroup isn't mounted"), so docker0 and everything dockerd does to
// networking stays inside it; private data root, exec root, socket, CLI config and containerd
// namespace under one directory; an image imported from busybox-static because no registry is
// reachable. It can be stopped and started again with other flags (the data root, and the
// image in it, stay). `destroy()` removes all of it, also after a failure; only processes it
// started (by pid, or whose command line names its own directory) are ever signalled. Nothing
// here touches the root namespace's networking or the host's /var/run/docker.sock.
//
// Shared by the Docker client's tests and the real-Docker end-to-end suite.

import Foundation
import LinuxNet
import NetLab

#if canImport(Glibc)
import Glibc
#endif

public struct DockerdFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public final class PrivateDockerd {
    /// What the tests need installed.
    public static let installHint = "apt-get install -y docker.io docker-compose busybox-static iproute2 util-linux"
    /// PATH for dockerd (it finds docker-proxy and containerd in sbin) and the docker CLI.
    public static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    static let busybox = "/bin/busybox"

    public let base: String
    public var dataRoot: String { base + "/data" }
    public var execRoot: String { base + "/exec" }
    public var socket: String { base + "/docker.sock" }
    /// `-H` value for the docker CLI, `--docker-host` for bpfnet.
    public var host: String { "unix://\(socket)" }
    public private(set) var namespace: NetworkNamespace?
    private var process: BackgroundProcess?
    private var image: String?
    private let tag: String

    /// Creates `base` (data root, exec root, CLI config); `tag` names the containerd namespaces.
    public init(base: String, tag: String) throws {
        self.base = base
        self.tag = tag
        for directory in [dataRoot, execRoot, base + "/cli-config"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    /// Why a private dockerd cannot run here (`tools` besides dockerd's own); nil when it can.
    public static func missingRequirements(tools: [String] = []) -> String? {
        var missing = (["dockerd", "docker", "nsenter", "ip", "tar"] + tools).filter { ProcessRunner.locate($0) == nil }
        if let problem = staticBusyboxProblem() { missing.append(problem) }
        return missing.isEmpty ? nil : "missing: " + missing.joined(separator: ", ")
    }

    /// busybox must be static: the image has no C library.
    static func staticBusyboxProblem() -> String? {
        guard let handle = FileHandle(forReadingAtPath: busybox) else { return "\(busybox) (busybox-static)" }
        defer { try? handle.close() }
        let head = handle.readData(ofLength: 8192)
        if head.range(of: Data("ld-linux".utf8)) != nil || head.range(of: Data("/lib/ld-".utf8)) != nil {
            return "a static \(busybox) (busybox-static; this one is dynamically linked)"
        }
        return nil
    }

    /// Starts dockerd in `namespace` with `flags`; returns once it answers. `wipeNetwork`
    /// removes the bridge's remembered state first (a daemon with other flags).
    public func start(
        in namespace: NetworkNamespace, flags: [String], wipeNetwork: Bool = true,
        timeout: Duration = .seconds(60)
    ) throws {
        precondition(process == nil, "dockerd already runs")
        if wipeNetwork { try? FileManager.default.removeItem(atPath: dataRoot + "/network") }
        try? FileManager.default.removeItem(atPath: socket)
        let dockerd = ProcessRunner.locate("dockerd") ?? "dockerd"
        // nsenter execs dockerd (no --fork for a network namespace): the pid is dockerd's.
        let arguments = namespace.nsenter(
            [
                dockerd, "--data-root", dataRoot, "--exec-root", execRoot, "--pidfile", base + "/docker.pid",
                "-H", host, "--containerd-namespace", "bpfnet-\(tag)", "--containerd-plugins-namespace",
                "bpfnet-\(tag)-p",
                "--shutdown-timeout", "1",
            ] + flags)
        let started = try BackgroundProcess(Command(arguments, environment: ["PATH": Self.path]), captureOutput: false)
        process = started
        self.namespace = namespace
        let deadline = ContinuousClock.now + timeout
        while true {
            if !started.isRunning {
                throw DockerdFailure("dockerd exited while starting: \(started.logContents(maxBytes: 3000))")
            }
            if FileManager.default.fileExists(atPath: socket),
                (try? docker(["version", "--format", "{{.Server.Version}}"])) != nil
            {
                return
            }
            if ContinuousClock.now > deadline {
                throw DockerdFailure("dockerd did not answer within \(timeout): \(started.logContents(maxBytes: 3000))")
            }
            usleep(100_000)
        }
    }

    /// SIGTERM, and waits for it (containers get --shutdown-timeout to stop). With
    /// `keepContainers` (dockerd --live-restore) its containerd and shims are left running,
    /// as the next dockerd takes them over. Safe to call when it does not run.
    public func stop(keepContainers: Bool = false) {
        guard let process else { return }
        process.stop(grace: .seconds(40))
        self.process = nil
        if !keepContainers { killLeftovers() }
    }

    /// dockerd's pid while it runs.
    public var pid: Int32? { process?.pid }

    /// The end of dockerd's log, for failure messages.
    public var log: String { process?.logContents(maxBytes: 4000) ?? "" }

    /// Runs the docker CLI against this daemon (its own config, not ~/.docker); returns its
    /// standard output, trimmed; throws with its standard error.
    @discardableResult
    public func docker(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> String {
        let result = try ProcessRunner.run(
            Command(
                ["docker", "-H", host] + arguments, timeout: timeout,
                environment: ["DOCKER_CONFIG": base + "/cli-config", "PATH": Self.path]))
        guard result.succeeded else {
            throw DockerdFailure(
                "`\(result.command)` failed (\(result.status)\(result.timedOut ? ", timed out" : "")): "
                    + (result.stderr.isEmpty ? result.stdout : result.stderr))
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @discardableResult
    public func docker(_ arguments: String...) throws -> String { try docker(arguments) }

    /// Runs Debian's `docker-compose` (v1) against this daemon (`DOCKER_HOST`) with the compose
    /// file `file` as project `project`; returns its standard output; throws with its errors.
    @discardableResult
    public func compose(
        _ arguments: [String], file: String, project: String, timeout: Duration = .seconds(120)
    ) throws -> String {
        let result = try ProcessRunner.run(
            Command(
                ["docker-compose", "--no-ansi", "-f", file, "-p", project] + arguments, timeout: timeout,
                environment: [
                    "DOCKER_HOST": host, "DOCKER_CONFIG": base + "/cli-config", "PATH": Self.path, "HOME": base,
                ]))
        guard result.succeeded else {
            throw DockerdFailure(
                "`\(result.command)` failed (\(result.status)\(result.timedOut ? ", timed out" : "")): "
                    + result.stderr + result.stdout)
        }
        return result.stdout
    }

    /// Imports (once) an image holding only a static busybox and `applets` linked to it;
    /// returns its tag.
    public func importBusybox(applets: [String] = ["sh", "sleep", "nc", "true"]) throws -> String {
        if let image { return image }
        let root = base + "/image-root"
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: root + "/bin/busybox")
        try FileManager.default.copyItem(atPath: Self.busybox, toPath: root + "/bin/busybox")
        for applet in applets where !FileManager.default.fileExists(atPath: root + "/bin/" + applet) {
            try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox")
        }
        _ = try ProcessRunner.runChecked(Command(["tar", "-C", root, "-cf", base + "/busybox.tar", "."]))
        let name = "bpfnet-busybox:\(tag)"
        try docker(["import", base + "/busybox.tar", name])
        image = name
        return name
    }

    /// Kills what a dockerd of ours left behind (containerd, shims): processes whose command
    /// line names this helper's own directory.
    public func killLeftovers() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        let me = getpid()
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { continue }
            let text = String(decoding: cmdline.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
            if text.contains(base) { kill(pid, SIGKILL) }
        }
    }

    /// Stops everything and removes mounts and files. Never throws; safe to call twice.
    public func destroy() {
        stop()
        killLeftovers()
        unmountEverything(under: base)
        try? FileManager.default.removeItem(atPath: base)
    }
}

/// Lazily unmounts whatever is still mounted below `path`, deepest first.
public func unmountEverything(under path: String) {
    guard let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return }
    let points = mountinfo.split(separator: "\n").compactMap { line -> String? in
        let fields = line.split(separator: " ")
        guard fields.count > 4 else { return nil }
        let point = fields[4].replacingOccurrences(of: "\\040", with: " ")
        return point == path || point.hasPrefix(path + "/") ? point : nil
    }
    for point in points.sorted(by: { $0.count > $1.count }) {
        _ = umount2(point, Int32(MNT_DETACH))
    }
}
