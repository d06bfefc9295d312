// SPDX-License-Identifier: Apache-2.0
//
// Traffic across the agent's and the daemon's restarts (issue 13, item 2):
// `bpfnet run` next to a private dockerd (--iptables=false --live-restore),
// with numbered UDP flows between real containers running the whole time
// while the agent is killed with SIGKILL and started again, dockerd stops and
// starts under it, the agent resyncs on SIGHUP, and ends with SIGTERM and is
// started again. The policy is the same before and after every step, so a
// flow it allows must lose nothing and a flow it forbids must get nothing.

import BPFNetCore
import DockerTestSupport
import Foundation
import LinuxNet
import NetLab
import XCTest

final class AgentRestartTrafficTests: XCTestCase {
    private let rate = 1000  // datagrams per second and flow

    func testKillsAndRestartsLoseNothingAllowedAndPassNothingForbidden() throws {
        guard try RealDockerHost.canRun(tools: ["busybox", "python3"]) else { return }
        let host = try RealDockerHost(name: "restarts")
        defer { host.close() }
        let (dockerd, lab, bpfnet, probe, work) = (host.dockerd, host.lab, host.bpfnet, host.probe, host.work)
        var containers: [LabContainer] = []
        host.atClose { for container in containers { container.stopServer() } }
        let flags = ["--iptables=false", "--live-restore"]
        try host.startDockerd(flags)
        let image = try dockerd.importBusybox()
        let config = work + "/run-policy.yaml"
        try "icc: false\nextInterfaces: [ext0]\n".write(toFile: config, atomically: true, encoding: .utf8)
        var agent = host.adopt(try bpfnet.startAgent(dockerHost: dockerd.host, config: config))
        try bpfnet.waitForStatus("the agent connected") { $0.agent?.connected == true }

        let run = ["run", "-d", "--stop-timeout", "1"]
        try dockerd.docker(run + ["--name", "web", "--expose", "9999/udp", image, "sleep", "86400"])
        try dockerd.docker(run + ["--name", "client", "--link", "web:web", image, "sleep", "86400"])
        try dockerd.docker(run + ["--name", "lone", image, "sleep", "86400"])
        let settled: (DataplaneStatus) -> Bool = { status in
            Set(status.containers.map(\.name)) == ["web", "client", "lone"] && status.links.count == 1
        }
        try bpfnet.waitForStatus("web, client, lone and the link", settled)
        let (web, client, lone) = (
            LabContainer(name: "web", tcp: [], udp: [9000]), LabContainer(name: "client", tcp: [], udp: [9000]),
            LabContainer(name: "lone", tcp: [], udp: [9000])
        )
        containers = [web, client, lone]
        for container in containers { try container.refresh(dockerd, probe: probe) }

        let flows: [(name: String, spec: UDPFlow.Spec, allowed: Bool)] = [
            (
                "client → web 9999/udp (link)",
                UDPFlow.Spec(from: client.namespace, to: web.ip, receiver: web.namespace, port: 9999), true
            ),
            (
                "client → the outside (masquerade)",
                UDPFlow.Spec(from: client.namespace, to: LabAddresses.allowed, receiver: lab.outside, port: 9996), true
            ),
            (
                "lone → web 9998/udp (icc)",
                UDPFlow.Spec(from: lone.namespace, to: web.ip, receiver: web.namespace, port: 9998), false
            ),
            (
                "client → lone 9997/udp (icc; the link is to web)",
                UDPFlow.Spec(from: client.namespace, to: lone.ip, receiver: lone.namespace, port: 9997), false
            ),
        ]
        let counts = try UDPFlow.run(flows.map(\.spec), rate: rate) {
            // 1. SIGKILL: the dataplane stays; a new agent takes over the pin path and resyncs.
            kill(agent.pid, SIGKILL)
            _ = agent.stop()
            Thread.sleep(forTimeInterval: 0.3)
            agent = host.adopt(try bpfnet.startAgent(dockerHost: dockerd.host, config: config))
            try bpfnet.waitForStatus("the agent after SIGKILL") { status in
                status.agent?.connected == true && status.agent?.running == true && settled(status)
            }
            // 2. dockerd goes away and comes back (--live-restore keeps the containers).
            dockerd.stop(keepContainers: true)
            try bpfnet.waitForStatus("the agent noticing dockerd went away") { $0.agent?.connected == false }
            Thread.sleep(forTimeInterval: 0.3)
            try host.startDockerd(flags, wipeNetwork: false)
            try bpfnet.waitForStatus("the agent reconnected") { status in
                status.agent?.connected == true && (status.agent?.reconnects ?? 0) >= 1 && settled(status)
            }
            // 3. A resync on SIGHUP.
            let resyncs = try bpfnet.status().agent?.resyncs ?? 0
            kill(agent.pid, SIGHUP)
            try bpfnet.waitForStatus("the resync after SIGHUP") { ($0.agent?.resyncs ?? 0) > resyncs }
            // 4. SIGTERM and a new agent.
            XCTAssertEqual(agent.stop(grace: .seconds(20)), .exited(0))
            agent = host.adopt(try bpfnet.startAgent(dockerHost: dockerd.host, config: config))
            try bpfnet.waitForStatus("the agent after SIGTERM") { status in
                status.agent?.connected == true && status.agent?.running == true && settled(status)
            }
        }
        for (flow, count) in zip(flows, counts) {
            let sent = try XCTUnwrap(count.sent, "\(flow.name): the sender's count")
            let received = try XCTUnwrap(count.received, "\(flow.name): the receiver's count")
            print("\(flow.name): \(received) of \(sent) received")
            if flow.allowed {
                XCTAssertGreaterThan(sent, rate, "\(flow.name): the flow ran across the restarts")
                XCTAssertEqual(received, sent, "\(flow.name): datagrams lost across the restarts")
            } else {
                XCTAssertEqual(received, 0, "\(flow.name): forbidden datagrams delivered across the restarts")
            }
        }
    }
}
