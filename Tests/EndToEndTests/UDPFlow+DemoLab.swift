// SPDX-License-Identifier: Apache-2.0
//
// NetLab's UDP flows (numbered datagrams, counted where they arrive) between
// the demo host's namespaces.

import BPFNetCore
import DemoHost
import NetLab

extension UDPFlow {
    static func startReceiver(_ lab: DemoLab, in role: String, port: Int) throws -> BackgroundProcess {
        let process = try lab.topology.startProcess(in: role, receiverArguments(port: port), captureOutput: true)
        try waitUntilListening(process)
        return process
    }

    /// Starts sending `packets` datagrams at `rate` per second.
    static func startSender(
        _ lab: DemoLab, from role: String = "client", to address: IPv4Address, port: Int, packets: Int, rate: Int
    ) throws -> BackgroundProcess {
        try lab.topology.startProcess(
            in: role, senderArguments(to: address, port: port, packets: packets, rate: rate), captureOutput: true)
    }
}
