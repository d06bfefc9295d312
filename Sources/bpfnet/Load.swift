// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import BPFNetCore
import BPFNetDataplane
import Foundation
import SystemPackage

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the programs, attach them and fill the maps from a policy file (YAML).",
        discussion:
            "Running it again replaces the policy, changing only what differs; the dataplane keeps enforcing in between."
    )

    @Option(
        help: ArgumentHelp("The policy file (YAML; every key is described in docs/policy-file.md).", valueName: "FILE"))
    var config: String

    @Flag(
        help: ArgumentHelp(
            "Stay in the foreground: attach the port program to every port the moment it joins the bridge "
                + "(eBPF backend; SIGTERM ends it and the dataplane stays, SIGHUP reads the policy file again)."))
    var watch = false

    @OptionGroup var policyOptions: PolicyOptions
    @OptionGroup var dataplaneOptions: DataplaneOptions

    func run() throws {
        let readPolicy = { [config, policyOptions] in
            try policyOptions.overrides.apply(to: PolicyFile.load(contentsOf: config))
        }
        let policy = try readPolicy()
        try requireRoot("load")
        // The agent would overwrite the policy this writes at its next event.
        try AgentFiles(pinPath: FilePath(dataplaneOptions.pinPath)).refuseWhileAgentRuns(then: "load")
        let dataplane = try dataplaneOptions.makeDataplane()
        try dataplane.apply(policy)
        let status = try dataplane.status()
        for (backend, reason) in (status.unusedBackends ?? [:]).sorted(by: { $0.key < $1.key }) {
            FileHandle.standardError.write(Data("bpfnet: --backend auto: \(backend) not used: \(reason)\n".utf8))
        }
        let hook = status.backend == Backend.bpf.rawValue ? ", port hook \(policy.portHook.rawValue)" : ""
        print(
            "bpfnet: loaded (\(status.backend)\(hook)) on \(status.bridge): "
                + "\(status.containers.count) containers, \(status.links.count) links, "
                + "\(status.published.count) published ports, \(status.extInterfaces.count) external interfaces; "
                + "icc \(status.icc), forward policy \(status.forwardPolicy), fast path \(policy.fastPath ? "on" : "off"), "
                + "nat \(status.nat ?? NATMode.netfilter.rawValue)\(policy.nat == .auto ? " (auto)" : "")"
        )
        if policy.nat == .ebpf && status.nat != NATMode.ebpf.rawValue {
            FileHandle.standardError.write(
                Data("bpfnet: --nat ebpf needs the eBPF backend: \(status.backend) translates with netfilter\n".utf8))
        }
        guard watch else { return }
        guard status.backend == Backend.bpf.rawValue else {
            print(
                "bpfnet: --watch: nothing to watch: the \(status.backend) backend's rules hold every port from the moment it exists"
            )
            return
        }
        try LoadWatcher.run(policy: policy, reload: readPolicy, dataplane: dataplane, pinPath: dataplaneOptions.pinPath)
    }
}

struct Unload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach everything, remove the pins and bpfnet's nftables tables or iptables rules.",
        discussion: "Without --backend every backend found is unloaded.")

    @OptionGroup var dataplaneOptions: DataplaneOptions

    func run() throws {
        try requireRoot("unload")
        try dataplaneOptions.unload()
        print("bpfnet: unloaded")
    }
}
