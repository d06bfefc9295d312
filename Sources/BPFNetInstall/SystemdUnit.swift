// SPDX-License-Identifier: Apache-2.0
//
// The systemd unit `bpfnet install` writes: `bpfnet run` before dockerd, with
// the capabilities it needs and no more, and a record of what the install
// created, so that `bpfnet uninstall` removes exactly that and leaves no
// other file behind (the record lives in the unit, which goes last).

import Foundation

public struct SystemdUnit: Hashable, Sendable {
    /// The first line of every unit bpfnet writes; uninstall removes only such a unit.
    public static let marker =
        "# Written by `bpfnet install`; `bpfnet uninstall` removes it (docs/cli.md, \"install and uninstall\")."
    static let recordPrefix = "# bpfnet-install: "

    /// The binary ExecStart runs.
    public var binary: String
    public var dockerHost: String
    public var pinPath: String
    /// The settings file `run --config` reads, as the host sees it; nil: none.
    public var settingsFile: String?
    /// What the install created, for uninstall: `created-directory PATH`, `binary PATH`, ...
    public var record: [String]

    public init(binary: String, dockerHost: String, pinPath: String, settingsFile: String?, record: [String] = []) {
        self.binary = binary
        self.dockerHost = dockerHost
        self.pinPath = pinPath
        self.settingsFile = settingsFile
        self.record = record
    }

    /// The capabilities `bpfnet run` keeps, each with why (written into the unit).
    public static let capabilities: [(name: String, why: String)] = [
        ("CAP_BPF", "load the programs and create, pin and update the maps (bpf(2), kernel 5.8 and later)"),
        ("CAP_NET_ADMIN", "attach tc and XDP programs, create clsact qdiscs, the nftables NAT table, ip_forward"),
        (
            "CAP_PERFMON",
            "with CAP_BPF the verifier trusts the loader: without it, it may refuse pointer comparisons and "
                + "patches Spectre v1/v4 mitigations into the programs"
        ),
        (
            "CAP_SYS_ADMIN",
            "mount bpffs at /sys/fs/bpf when it is not mounted, setns(2) into containers' network namespaces, "
                + "and bpf(2) itself on kernels older than 5.8 (no CAP_BPF)"
        ),
        (
            "CAP_SYS_PTRACE",
            "open /proc/PID/ns/net of a container whose process runs as another user (USER in the image)"
        ),
        ("CAP_NET_RAW", "the iptables fallback backend: legacy iptables talks to the kernel over a raw socket"),
    ]

    public var text: String {
        var exec = ["\(binary)", "run", "--docker-host", dockerHost, "--pin-path", pinPath]
        if let settingsFile { exec += ["--config", settingsFile] }
        let capabilityList = Self.capabilities.map(\.name).joined(separator: " ")
        var lines = [
            Self.marker,
            "# Settings: \(settingsFile ?? "none (Docker's defaults); write /etc/bpfnet/settings.yaml and run `bpfnet install` again"). "
                + "`systemctl reload bpfnet` re-reads them and resyncs with Docker.",
        ]
        lines += record.map { Self.recordPrefix + $0 }
        lines += [
            "",
            "[Unit]",
            "Description=bpfnet: Docker's bridge policy enforced with eBPF",
            // Before dockerd, so that containers dockerd restarts at boot are policed from their first packet.
            "# Before dockerd (run with \"iptables\": false): containers it restarts at boot are policed at once.",
            "Before=docker.service",
            "",
            "[Service]",
            "Type=simple",
            "ExecStart=\(exec.map(Self.quoted).joined(separator: " "))",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "RestartSec=2",
            "# The maps are pinned on bpffs at --pin-path: the dataplane keeps enforcing while the service",
            "# restarts, and the next start takes over what is pinned. So no PrivateTmp, ProtectSystem or",
            "# PrivateNetwork: the agent works in the host's network namespace and on the host's /sys/fs/bpf.",
            "LimitMEMLOCK=infinity",
        ]
        lines += Self.capabilities.map { "# \($0.name): \($0.why)." }
        lines += [
            "CapabilityBoundingSet=\(capabilityList)",
            "AmbientCapabilities=\(capabilityList)",
            "NoNewPrivileges=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
        return lines.joined(separator: "\n")
    }

    /// The record lines of a unit bpfnet wrote; nil when `text` is not such a unit.
    public static func record(in text: String) -> [String]? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.first == marker else { return nil }
        return lines.filter { $0.hasPrefix(recordPrefix) }.map { String($0.dropFirst(recordPrefix.count)) }
    }

    /// systemd's quoting for one ExecStart word: `%` (specifiers) and `$`
    /// (variables) doubled, quotes when it has anything but the plain characters.
    static func quoted(_ word: String) -> String {
        let word = word.replacing("%", with: "%%").replacing("$", with: "$$")
        let plain = word.allSatisfy { $0.isLetter || $0.isNumber || "/-_.:=@+,".contains($0) }
        if plain && !word.isEmpty { return word }
        return "\"" + word.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }
}
