// SPDX-License-Identifier: Apache-2.0
//
// A Docker host in network namespaces of the test's own (DESIGN.md section 5):
//
//   namespace D ("docker host"): dockerd (started with nsenter --net, its
//     docker0 and containers live here), ext0 198.51.100.1/24, and — in the
//     bpfnet phase — `bpfnet run` with a private pin path;
//   namespace X ("outside"): ext1 with 198.51.100.2 (the allowed source) and
//     198.51.100.3 (not allowed), a route to the bridge subnet via D for the
//     direct-routing probes, and a probe server on 7777.
//
// dockerd's data root outlives the namespaces (the busybox image is imported
// once); <data-root>/network is wiped before every daemon with other flags.
// Everything is removed in `destroy()`, also after a failure, and only
// processes this helper started (by pid, or whose command line names its own
// temporary directory) are ever signalled.

import BPFNetCore
import Foundation
import NetLab
#if canImport(Glibc)
import Glibc
#endif

struct LabFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum LabAddresses {
    static let host = IPv4Address(198, 51, 100, 1)
    static let allowed = IPv4Address(198, 51, 100, 2)
    static let other = IPv4Address(198, 51, 100, 3)
    /// dockerd --bip: inside the namespace, away from anything on the machine.
    static let bridge = "10.47.0.1/24"
    static let bridgeSubnet = "10.47.0.0/24"
    static let externalPort: UInt16 = 7777
}

/// Runs a tool and returns its standard output; throws with its standard error.
@discardableResult
func sh(_ arguments: [String], input: String? = nil, environment: [String: String] = [:],
        timeout: Duration = .seconds(60)) throws -> String {
    let result = try ProcessRunner.run(Command(arguments, input: input, timeout: timeout, environment: environment))
    guard result.succeeded else {
        throw LabFailure("`\(result.command)` failed (\(result.status)\(result.timedOut ? ", timed out" : "")): "
            + (result.stderr.isEmpty ? result.stdout : result.stderr))
    }
    return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The two namespaces and the veth between them.
final class LabNamespaces {
    let docker: NetNamespace
    let outside: NetNamespace
    private var outsideServer: BackgroundProcess?

    init(tag: String, probe: ProbeRunner) throws {
        docker = NetNamespace(named: "bpfnet-dkd-\(tag)")
        outside = NetNamespace(named: "bpfnet-dkx-\(tag)")
        do {
            try sh(["ip", "netns", "add", docker.name])
            try sh(["ip", "netns", "add", outside.name])
            try sh(["ip", "-n", docker.name, "-batch", "-"], input: """
                link set lo up
                link add ext0 type veth peer name ext1 netns \(outside.name)
                addr add \(LabAddresses.host)/24 dev ext0
                link set ext0 up

                """)
            try sh(["ip", "-n", outside.name, "-batch", "-"], input: """
                link set lo up
                addr add \(LabAddresses.allowed)/24 dev ext1
                addr add \(LabAddresses.other)/24 dev ext1
                link set ext1 up
                route add \(LabAddresses.bridgeSubnet) via \(LabAddresses.host)

                """)
            let server = try BackgroundProcess(Command(outside.enter(
                probe.serveArguments(tcp: [LabAddresses.externalPort], udp: [LabAddresses.externalPort], name: "outside"))))
            _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
            outsideServer = server
        } catch {
            destroy()
            throw error
        }
    }

    func destroy() {
        outsideServer?.stop()
        outsideServer = nil
        for namespace in [docker, outside] where namespace.exists {
            _ = try? ProcessRunner.run(Command(["ip", "netns", "del", namespace.name]))
        }
    }
}

/// dockerd inside namespace D, restartable with other flags.
final class LabDockerd {
    static let installHint = "apt-get install -y docker.io busybox-static"

    let base: String
    var dataRoot: String { base + "/data" }
    var execRoot: String { base + "/exec" }
    var socket: String { base + "/docker.sock" }
    var host: String { "unix://\(socket)" }
    private(set) var process: BackgroundProcess?
    private(set) var namespace: NetNamespace?
    private(set) var image: String?
    private let tag: String

    init(base: String, tag: String) throws {
        self.base = base
        self.tag = tag
        for directory in [dataRoot, execRoot, base + "/cli-config"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    static func missingRequirements() -> String? {
        var missing: [String] = []
        for tool in ["dockerd", "docker", "nsenter", "ip", "iptables", "tar", "nft"] where which(tool) == nil {
            missing.append(tool)
        }
        if !FileManager.default.fileExists(atPath: "/bin/busybox") { missing.append("/bin/busybox (busybox-static)") }
        return missing.isEmpty ? nil : "missing: " + missing.joined(separator: ", ")
    }

    static func which(_ tool: String) -> String? {
        for directory in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        where FileManager.default.isExecutableFile(atPath: directory + "/" + tool) {
            return directory + "/" + tool
        }
        return nil
    }

    /// Starts dockerd in `namespace` with `flags`; `wipeNetwork` removes the
    /// bridge's remembered state first (a daemon with other flags).
    func start(in namespace: NetNamespace, flags: [String], wipeNetwork: Bool) throws {
        precondition(process == nil, "dockerd already runs")
        if wipeNetwork { try? FileManager.default.removeItem(atPath: dataRoot + "/network") }
        try? FileManager.default.removeItem(atPath: socket)
        let dockerd = Self.which("dockerd") ?? "dockerd"
        let arguments = namespace.enter([
            dockerd, "--data-root", dataRoot, "--exec-root", execRoot, "--pidfile", base + "/docker.pid",
            "-H", host, "--containerd-namespace", "bpfnet-e2e-\(tag)", "--containerd-plugins-namespace", "bpfnet-e2e-\(tag)-p",
            "--shutdown-timeout", "1", "--bip", LabAddresses.bridge,
        ] + flags)
        let started = try BackgroundProcess(Command(arguments, environment: ["PATH": Self.path]), captureOutput: false)
        process = started
        self.namespace = namespace
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if !started.isRunning {
                throw LabFailure("dockerd exited while starting: \(started.logContents(maxBytes: 3000))")
            }
            if FileManager.default.fileExists(atPath: socket), (try? docker(["version", "--format", "{{.Server.Version}}"])) != nil {
                return
            }
            if ContinuousClock.now > deadline {
                throw LabFailure("dockerd did not answer within 60 s: \(started.logContents(maxBytes: 3000))")
            }
            usleep(100_000)
        }
    }

    /// SIGTERM, and waits for it (containers get --shutdown-timeout to stop).
    /// With `keepContainers` (dockerd --live-restore) its containerd and shims
    /// are left running, as the next dockerd takes them over.
    func stop(keepContainers: Bool = false) {
        guard let process else { return }
        process.stop(grace: .seconds(40))
        self.process = nil
        if !keepContainers { killLeftovers() }
    }

    var log: String { process?.logContents(maxBytes: 4000) ?? "" }

    static let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    @discardableResult
    func docker(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> String {
        try sh(["docker", "-H", host] + arguments,
               environment: ["DOCKER_CONFIG": base + "/cli-config", "PATH": Self.path], timeout: timeout)
    }

    /// Imports an image holding only a static busybox (no registry is reachable).
    func importBusybox() throws -> String {
        if let image { return image }
        let root = base + "/image-root"
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: root + "/bin/busybox")
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root + "/bin/busybox")
        for applet in ["sh", "sleep", "nc", "true"] where !FileManager.default.fileExists(atPath: root + "/bin/" + applet) {
            try FileManager.default.createSymbolicLink(atPath: root + "/bin/" + applet, withDestinationPath: "busybox")
        }
        try sh(["tar", "-C", root, "-cf", base + "/busybox.tar", "."])
        try docker(["import", base + "/busybox.tar", "bpfnet-e2e-busybox:\(tag)"])
        image = "bpfnet-e2e-busybox:\(tag)"
        return image!
    }

    /// Kills what a dockerd of ours left behind (containerd, shims): processes
    /// whose command line names this helper's own directory.
    func killLeftovers() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        let me = getpid()
        for entry in entries {
            guard let pid = Int32(entry), pid != me,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let text = String(decoding: cmdline.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
            if text.contains(base) { kill(pid, SIGKILL) }
        }
    }

    /// Stops everything and removes mounts and files.
    func destroy() {
        stop()
        killLeftovers()
        unmountEverything(under: base)
        try? FileManager.default.removeItem(atPath: base)
    }
}

/// Lazily unmounts whatever is still mounted below `path`, deepest first.
func unmountEverything(under path: String) {
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

/// The scenario's containers by name (a reference, so closures and helpers share it).
final class LabContainers {
    private(set) var byName: [String: LabContainer] = [:]

    subscript(name: String) -> LabContainer? {
        get { byName[name] }
        set { byName[name] = newValue }
    }

    var names: [String] { byName.keys.sorted() }
    var all: [LabContainer] { Array(byName.values) }

    func removeAll() { byName = [:] }
}

/// A container of the scenario with its probe server running in its namespace.
final class LabContainer {
    let name: String
    let tcp: [UInt16]
    let udp: [UInt16]
    private(set) var pid: Int32 = 0
    private(set) var ip = IPv4Address(0)
    private var server: BackgroundProcess?

    init(name: String, tcp: [UInt16], udp: [UInt16]) {
        self.name = name
        self.tcp = tcp
        self.udp = udp
    }

    var namespace: NetNamespace { NetNamespace(path: "/proc/\(pid)/ns/net", name: name) }

    /// Reads pid and address from Docker and (re)starts the probe server inside.
    func refresh(_ dockerd: LabDockerd, probe: ProbeRunner) throws {
        let fields = try dockerd.docker(["inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.Networks.bridge.IPAddress}}", name])
            .split(separator: " ")
        guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, let ip = IPv4Address(fields[1]) else {
            throw LabFailure("docker inspect \(name): unexpected '\(fields.joined(separator: " "))'")
        }
        self.pid = pid
        self.ip = ip
        stopServer()
        let server = try BackgroundProcess(Command(namespace.enter(probe.serveArguments(tcp: tcp, udp: udp, name: name))))
        _ = try server.waitForLine(prefix: "ready", timeout: .seconds(10))
        self.server = server
    }

    func stopServer() {
        server?.stop()
        server = nil
    }
}
