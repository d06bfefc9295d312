// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet install` and `bpfnet uninstall`: put bpfnet on a host as a systemd
// service in front of dockerd, and take it off again (docs/cli.md, "`install` and `uninstall`").
// The work is BPFNetInstall's Installer; this file parses and prints.

import ArgumentParser
import BPFNetAgent
import BPFNetCore
import BPFNetInstall
import Foundation

/// `--prefix` and `--root`, the same for both commands.
struct InstallLocationOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Where the binaries go (PREFIX/bin) and what the unit runs; an absolute path.", valueName: "PREFIX"))
    var prefix: String = Installer.defaultPrefix

    @Option(
        help: ArgumentHelp(
            "Where /etc is (the unit, daemon.json, the settings file): for images and tests; an absolute path.",
            valueName: "ROOT"))
    var root: String = Installer.defaultRoot

    func installer() throws -> Installer { try Installer(prefix: prefix, root: root) }
}

struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install bpfnet as a systemd service that starts before dockerd.",
        discussion: """
            Copies this bpfnet (and bpfnet-probe beside it, when there is one) into PREFIX/bin and writes \
            ROOT/etc/systemd/system/bpfnet.service, which runs `bpfnet run` with the Docker socket, the pin path and \
            /etc/bpfnet/settings.yaml when that file exists (or --config). With --docker-daemon-json it also sets \
            "iptables": false in ROOT/etc/docker/daemon.json, keeping the other keys, after a backup \
            (daemon.json.bpfnet-backup); a daemon.json that is not a JSON object is refused and left untouched. \
            Nothing is written unless all of it can be. `bpfnet uninstall` takes it all away again.
            """)

    @OptionGroup var location: InstallLocationOptions

    @Flag(
        name: .customLong("docker-daemon-json"),
        help: "Also set \"iptables\": false in ROOT/etc/docker/daemon.json (backed up first).")
    var dockerDaemonJSON = false

    @Option(
        help: ArgumentHelp(
            "The settings file the service passes to `bpfnet run --config` (default: /etc/bpfnet/settings.yaml "
                + "when it exists, else none).", valueName: "FILE"))
    var config: String?

    @Option(
        name: .customLong("docker-host"),
        help: ArgumentHelp("The Docker daemon the service follows.", valueName: "URL"))
    var dockerHost: String = Installer.defaultDockerHost

    @OptionGroup var pins: PinPathOption

    func run() throws {
        let installer = try location.installer()
        // A settings file that `run` would refuse fails here, not at boot.
        if let settings = try installer.settingsFileToCheck(config) {
            _ = try AgentSettings.load(configFile: settings, overrides: PolicyOverrides())
        }
        let binary = try Self.runningBinary()
        var binaries = [binary]
        let probe = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("bpfnet-probe").path
        if FileManager.default.isExecutableFile(atPath: probe) { binaries.append(probe) }
        let done = try installer.install(
            InstallOptions(
                binaries: binaries, dockerHost: dockerHost, pinPath: pins.pinPath, settingsFile: config,
                dockerDaemonJSON: dockerDaemonJSON))
        for line in done { print("bpfnet install: \(line)") }
        print(
            """
            Next:
              systemctl daemon-reload
              systemctl enable --now bpfnet
            """)
        if dockerDaemonJSON {
            print("  systemctl restart docker          # dockerd reads \"iptables\": false at start")
        } else {
            print("  (dockerd must run with \"iptables\": false: --docker-daemon-json, or set it yourself)")
        }
        print(
            """
              bpfnet status                     # what is enforced; journalctl -u bpfnet for the log
              systemctl reload bpfnet           # after editing the settings file
            """)
    }

    /// The file this process runs from (argv[0] may be relative or a name on PATH).
    static func runningBinary() throws -> String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        guard let path, path.hasPrefix("/") else {
            throw InstallError.failed("cannot tell where this bpfnet binary is (/proc/self/exe)")
        }
        return path
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove what `bpfnet install` put on the host and put daemon.json back.",
        discussion: """
            Removes the binaries and the unit that install wrote, and the directories it created when they are \
            empty; restores daemon.json from daemon.json.bpfnet-backup (if it was changed since, only "iptables" \
            is put back), or removes it if install created it. Stop the service first (systemctl disable --now \
            bpfnet) and `bpfnet unload` if the dataplane should go too. Use the same --prefix and --root as install.
            """)

    @OptionGroup var location: InstallLocationOptions

    func run() throws {
        let done = try location.installer().uninstall()
        for line in done { print("bpfnet uninstall: \(line)") }
        print(
            """
            Next:
              systemctl daemon-reload
              systemctl restart docker          # dockerd puts its own iptables rules back
            """)
    }
}
