// SPDX-License-Identifier: Apache-2.0
//
// A dockerd of a test's own, the way that works on these hosts (DESIGN.md section 5): Debian's
// dockerd started with `nsenter --net=/run/netns/NAME` (`ip netns exec` fails with "Devices
// cgroup isn't mounted"), so docker0 and everything dockerd does to networking stays inside a
// namespace the test created; private data root, exec root, socket and containerd namespace;
// an image imported from busybox-static because no registry is reachable. `destroy()` removes
// all of it, also after a failure. Nothing here touches the root namespace's networking or
// the host's /var/run/docker.sock.
//
// Self-contained (Foundation and Glibc only, no project module) so that it can move to a
// shared test-support target as it is.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class PrivateDockerd: @unchecked Sendable {
    struct Options: Sendable {
        /// Besides the private paths. The default keeps dockerd's hands off netfilter (the
        /// default bridge is still created, inside the namespace).
        var extraArguments: [String] = ["--iptables=false"]
        var startTimeout: Duration = .seconds(90)
        /// dockerd's `--shutdown-timeout`: how long it lets containers stop when it stops.
        var containerShutdownSeconds = 2
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What a test needs installed: `apt-get install -y docker.io busybox-static`.
    static let installHint = "apt-get install -y docker.io busybox-static iproute2 util-linux"

    let namespace: String
    var namespacePath: String { "/run/netns/\(namespace)" }
    let baseDirectory: String
    var dataRoot: String { baseDirectory + "/data" }
    var execRoot: String { baseDirectory + "/exec" }
    var socketPath: String { baseDirectory + "/docker.sock" }
    var pidFile: String { baseDirectory + "/docker.pid" }
    var logFile: String { baseDirectory + "/dockerd.log" }
    /// `-H` value for the docker CLI.
    var host: String { "unix://\(socketPath)" }

    private let lock = NSLock()
    private var process: Process?
    private var namespaceCreated = false
    private var destroyed = false

    /// dockerd's pid while it runs.
    var pid: Int32? { lock.withLock { process.map(\.processIdentifier) } }

    // MARK: Requirements

    /// Why a private dockerd cannot be started here; nil when it can. Root is checked separately.
    static func missingRequirements() -> String? {
        var missing: [String] = []
        for tool in ["dockerd", "nsenter", "ip", "tar"] where Tools.find(tool) == nil {
            missing.append(tool)
        }
        if Tools.dockerCLI == nil { missing.append("docker (CLI)") }
        if let problem = Tools.staticBusyboxProblem() { missing.append(problem) }
        return missing.isEmpty ? nil : "missing: " + missing.joined(separator: ", ")
    }

    // MARK: Lifecycle

    private static let prefix = "bpfnet-dockerd-"

    private init() throws {
        var template = Array("/tmp/\(Self.prefix)XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure(description: "mkdtemp: \(String(cString: strerror(errno)))") }
        baseDirectory = String(cString: made)
        // The owner's pid in the name lets a later run tell an orphan from a sibling's daemon.
        namespace = "\(Self.prefix)\(getpid())-\(baseDirectory.suffix(6))"
    }

    /// Creates the namespace and directories and starts dockerd; returns once it answers.
    /// On failure everything made so far is removed again.
    static func start(_ options: Options = Options()) async throws -> PrivateDockerd {
        reapOrphans()
        let dockerd = try PrivateDockerd()
        do {
            try await dockerd.launch(options)
            return dockerd
        } catch {
            dockerd.destroy()
            throw error
        }
    }

    private func launch(_ options: Options) async throws {
        guard let dockerdPath = Tools.find("dockerd"), let nsenter = Tools.find("nsenter") else {
            throw Failure(description: "dockerd or nsenter not found — \(Self.installHint)")
        }
        try Tools.run("ip", ["netns", "add", namespace])
        lock.withLock { namespaceCreated = true }
        for directory in [dataRoot, execRoot] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        // dockerd keeps the bridge's state in <data-root>/network; a stale one confuses it.
        try? FileManager.default.removeItem(atPath: dataRoot + "/network")
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: nsenter)
        // nsenter execs dockerd (no --fork for a network namespace): its pid is dockerd's.
        process.arguments = ["--net=\(namespacePath)", "--", dockerdPath,
                             "--data-root", dataRoot, "--exec-root", execRoot, "--pidfile", pidFile,
                             "-H", host,
                             "--containerd-namespace", namespace,
                             "--containerd-plugins-namespace", namespace + "-plugins",
                             "--shutdown-timeout", String(options.containerShutdownSeconds)]
            + options.extraArguments
        process.environment = Tools.environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()  // dockerd has its own copy
        lock.withLock { self.process = process }

        let deadline = ContinuousClock.now + options.startTimeout
        while true {
            if !process.isRunning {
                throw Failure(description: "dockerd exited with status \(process.terminationStatus) while starting:\n\(recentLog())")
            }
            if FileManager.default.fileExists(atPath: socketPath),
               (try? docker("version", "--format", "{{.Server.APIVersion}}")) != nil {
                return
            }
            if ContinuousClock.now > deadline {
                throw Failure(description: "dockerd did not answer on \(socketPath) within \(options.startTimeout):\n\(recentLog())")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// SIGTERM to the dockerd this helper started, then waits for it to exit (SIGKILL after
    /// `timeout`). Safe to call more than once.
    func stop(timeout: Duration = .seconds(60)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                stopBlocking(timeout: timeout)
                continuation.resume()
            }
            thread.start()
        }
    }

    private func stopBlocking(timeout: Duration) {
        guard let process = lock.withLock({ self.process }), process.isRunning else { return }
        let pid = process.processIdentifier
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { usleep(50_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            while process.isRunning { usleep(50_000) }
            // A killed dockerd leaves its containerd and shims behind.
            Self.killProcessesUsing(baseDirectory)
        }
    }

    /// Stops dockerd and removes the namespace, mounts and directories. Never throws; safe
    /// to call more than once (tests call it from a teardown block).
    func destroy() {
        let first = lock.withLock { () -> Bool in
            defer { destroyed = true }
            return !destroyed
        }
        guard first else { return }
        stopBlocking(timeout: .seconds(60))
        Self.killProcessesUsing(baseDirectory)
        Self.unmountEverything(under: baseDirectory)
        if lock.withLock({ namespaceCreated }) {
            _ = try? Tools.run("ip", ["netns", "del", namespace])
        }
        try? FileManager.default.removeItem(atPath: baseDirectory)
    }

    // MARK: Using it

    /// Runs the docker CLI against this daemon; returns its standard output, trimmed.
    @discardableResult
    func docker(_ arguments: String...) throws -> String {
        try docker(arguments)
    }

    @discardableResult
    func docker(_ arguments: [String]) throws -> String {
        guard let cli = Tools.dockerCLI else { throw Failure(description: "no docker CLI — \(Self.installHint)") }
        var environment = Tools.environment
        environment["DOCKER_CONFIG"] = baseDirectory + "/cli-config"  // not ~/.docker
        environment.removeValue(forKey: "DOCKER_HOST")
        return try Tools.run(cli, ["-H", host] + arguments, environment: environment)
    }

    /// Imports an image holding only a static busybox and its applet links; returns the tag.
    @discardableResult
    func importBusyboxImage(tag: String = "bpfnet-busybox:test",
                            applets: [String] = ["sh", "sleep", "nc", "cat", "echo", "ls", "ip", "ifconfig",
                                                 "ping", "true", "false", "env", "ps", "kill", "httpd", "udhcpc"]) throws -> String {
        let root = baseDirectory + "/image-root"
        let bin = root + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: bin + "/busybox")
        try FileManager.default.copyItem(atPath: Tools.busyboxPath, toPath: bin + "/busybox")
        for applet in applets where !FileManager.default.fileExists(atPath: bin + "/" + applet) {
            try FileManager.default.createSymbolicLink(atPath: bin + "/" + applet, withDestinationPath: "busybox")
        }
        let tarball = baseDirectory + "/busybox-image.tar"
        try Tools.run("tar", ["-C", root, "-cf", tarball, "."])
        try docker("import", tarball, tag)
        return tag
    }

    /// The last lines of dockerd's log, for failure messages.
    func recentLog(lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    // MARK: Cleanup helpers

    /// Removes what earlier runs left behind when their test process died before `destroy()`
    /// (a crash, a kill): only namespaces whose owning process is gone, with their daemon's
    /// processes, mounts and directory.
    static func reapOrphans() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/run/netns") else { return }
        for name in names where name.hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count).split(separator: "-")
            guard parts.count == 2, let owner = Int32(parts[0]), parts[1].count == 6,
                  kill(owner, 0) != 0, errno == ESRCH else { continue }
            let base = "/tmp/\(prefix)\(parts[1])"
            killProcessesUsing(base)
            unmountEverything(under: base)
            _ = try? Tools.run("ip", ["netns", "del", name])
            try? FileManager.default.removeItem(atPath: base)
        }
    }

    /// Ends the processes whose command line names `path` (containerd and shims of a killed
    /// dockerd, all started by this helper's dockerd), each by its own pid.
    private static func killProcessesUsing(_ path: String) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        let me = getpid()
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let text = String(decoding: cmdline.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
            if text.contains(path) { kill(pid, SIGKILL) }
        }
    }

    /// Lazily unmounts whatever is still mounted below `path`, deepest first.
    private static func unmountEverything(under path: String) {
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
}

/// Finding and running the command-line tools.
enum Tools {
    static let searchPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    static let busyboxPath = "/bin/busybox"

    /// The test's environment with the sbin directories on PATH (dockerd finds docker-proxy there).
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        let path = environment["PATH"].map { $0.split(separator: ":").map(String.init) } ?? []
        environment["PATH"] = (path + searchPath.filter { !path.contains($0) }).joined(separator: ":")
        return environment
    }

    static func find(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        return path.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Debian's docker.io CLI (it matches its dockerd) before any other docker on PATH.
    static var dockerCLI: String? {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/docker") ? "/usr/bin/docker" : find("docker")
    }

    /// busybox must be static: the image has no C library.
    static func staticBusyboxProblem() -> String? {
        guard let handle = FileHandle(forReadingAtPath: busyboxPath) else { return "\(busyboxPath) (busybox-static)" }
        defer { try? handle.close() }
        let head = handle.readData(ofLength: 8192)
        if head.range(of: Data("ld-linux".utf8)) != nil || head.range(of: Data("/lib/ld-".utf8)) != nil {
            return "a static \(busyboxPath) (busybox-static; this one is dynamically linked)"
        }
        return nil
    }

    /// Runs a tool to completion; returns standard output, trimmed; throws with standard error
    /// when it fails.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        guard let executable = find(tool) else {
            throw PrivateDockerd.Failure(description: "\(tool) not found — \(PrivateDockerd.installHint)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment ?? Self.environment
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read both pipes at once: either may fill while the other is read.
        let errorData = LockedData()
        let errorReader = Thread {
            errorData.set(errors.fileHandleForReading.readDataToEndOfFile())
        }
        errorReader.start()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errorText = errorData.waitForText()
        let outputText = String(decoding: outputData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw PrivateDockerd.Failure(description:
                "\(([executable] + arguments).joined(separator: " ")) failed (status \(process.terminationStatus)): \(errorText.isEmpty ? outputText : errorText)")
        }
        return outputText
    }
}

/// Standard error collected on another thread.
private final class LockedData: @unchecked Sendable {
    private let condition = NSCondition()
    private var data: Data?

    func set(_ value: Data) {
        condition.withLock {
            data = value
            condition.broadcast()
        }
    }

    func waitForText() -> String {
        condition.withLock {
            while data == nil { condition.wait() }
            return String(decoding: data!, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
