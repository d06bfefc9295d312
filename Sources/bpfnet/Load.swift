// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import BPFNetCore
import BPFNetDataplane

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the programs, attach them and fill the maps from a policy file (YAML).",
        discussion: "Running it again replaces the policy, changing only what differs; the dataplane keeps enforcing in between.")

    @Option(help: ArgumentHelp("The policy file (DESIGN.md section 4 keys).", valueName: "FILE"))
    var config: String

    @OptionGroup var policyOptions: PolicyOptions
    @OptionGroup var dataplaneOptions: DataplaneOptions

    func run() throws {
        let policy = try policyOptions.overrides.apply(to: PolicyFile.load(contentsOf: config))
        try requireRoot("load")
        let dataplane = try dataplaneOptions.makeDataplane()
        try dataplane.apply(policy)
        let status = try dataplane.status()
        print("bpfnet: loaded (\(status.backend), port hook \(policy.portHook.rawValue)) on \(status.bridge): "
            + "\(status.containers.count) containers, \(status.links.count) links, "
            + "\(status.published.count) published ports, \(status.extInterfaces.count) external interfaces; "
            + "icc \(status.icc), forward policy \(status.forwardPolicy), fast path \(policy.fastPath ? "on" : "off")")
    }
}

struct Unload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach everything, remove the pins and bpfnet's nftables table.")

    @OptionGroup var dataplaneOptions: DataplaneOptions

    func run() throws {
        try requireRoot("unload")
        try dataplaneOptions.makeDataplane().unload()
        print("bpfnet: unloaded")
    }
}
