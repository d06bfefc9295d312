// SPDX-License-Identifier: Apache-2.0
//
// Upgrading the eBPF dataplane with traffic running (issue 15, item 3): a new
// `bpfnet load` process loads its own programs and swaps them in on every
// port and interface in place; a version whose map layout differs builds new
// maps beside the pinned ones first (MapUpgrade.swift). Across every swap, a
// flow the policy allows must lose nothing and a flow it forbids must get
// nothing through. The flows are plain UDP at a steady rate on the demo host:
// client → the outside (allowed: the port program passes it, the host routes
// and masquerades it) and client → lone (icc=false, no link: dropped).

import BPFNetCore
import DemoHost
import Foundation
import NetLab
import XCTest

final class UpgradeTests: XCTestCase {
    override func setUpWithError() throws {
        try super.setUpWithError()
        try requireRootForEndToEnd()
    }

    func testReloadSwapsTCProgramsWithoutAGap() throws {
        try upgrade(portHook: .tc, changingLayout: false)
    }

    func testReloadSwapsXDPProgramsWithoutAGap() throws {
        try upgrade(portHook: .xdp, changingLayout: false)
    }

    func testLayoutChangeRebuildsMapsWithoutAGapOnTC() throws {
        try upgrade(portHook: .tc, changingLayout: true)
    }

    func testLayoutChangeRebuildsMapsWithoutAGapOnXDP() throws {
        try upgrade(portHook: .xdp, changingLayout: true)
    }

    // MARK: -

    private let settings = PolicySettings(icc: false, allowList: true, forwardPolicy: .drop)
    private let packets = 15000
    private let rate = 5000  // per second: the flows run for 3 s, across the reloads
    private let allowedPort = 40001
    private let blockedPort = 40002

    private func upgrade(portHook: PortHook, changingLayout: Bool, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        let lab = try DemoLab()
        defer { lab.close() }
        try lab.load(settings, portHook: portHook)
        let before = try attachedPrograms(lab)
        XCTAssertEqual(before.count, Scenario.members.count + 1, "a program on every port and on ext0: \(before)")

        let allowedReceiver = try startReceiver(lab, in: "ext", port: allowedPort)
        let blockedReceiver = try startReceiver(lab, in: "lone", port: blockedPort)
        let outside = try lab.topology.address(of: "ext")
        let allowedSender = try startSender(lab, to: outside, port: allowedPort)
        let blockedSender = try startSender(lab, to: Scenario.address("lone"), port: blockedPort)

        // Two reloads while the flows run; with `changingLayout`, the first
        // finds a pinned map of another shape, as a version with another
        // layout of bn_networks would (the old programs keep the real one).
        Thread.sleep(forTimeInterval: 0.5)
        if changingLayout { try replacePinWithOtherLayout(lab, map: "bn_networks") }
        let reloadStart = ContinuousClock.now
        try lab.load(settings, portHook: portHook)
        let firstReload = ContinuousClock.now - reloadStart
        let afterFirst = try attachedPrograms(lab)
        try lab.load(settings, portHook: portHook)
        let afterSecond = try attachedPrograms(lab)

        for sender in [allowedSender, blockedSender] {
            XCTAssertEqual(
                try sender.waitForLine(prefix: "sent", timeout: .seconds(20)), "sent \(packets)", file: file, line: line
            )
        }
        Thread.sleep(forTimeInterval: 0.5)
        let allowed = receivedCount(allowedReceiver)
        let blocked = receivedCount(blockedReceiver)
        let label = "\(portHook)\(changingLayout ? ", layout change" : ""), first reload took \(firstReload)"
        XCTAssertEqual(allowed, packets, "\(label): allowed packets lost across the reloads", file: file, line: line)
        XCTAssertEqual(blocked, 0, "\(label): forbidden packets delivered across the reloads", file: file, line: line)

        // Still the eBPF backend (`--backend auto` would fall back to
        // netfilter if the upgrade failed), and each reload put its own
        // programs on every interface, in place.
        XCTAssertEqual(try lab.status().backend, "bpf", label, file: file, line: line)
        XCTAssertEqual(Set(afterFirst.keys), Set(before.keys), label, file: file, line: line)
        XCTAssertEqual(Set(afterSecond.keys), Set(before.keys), label, file: file, line: line)
        for (interface, id) in before {
            XCTAssertNotEqual(
                afterFirst[interface], id, "\(label): \(interface) kept its program", file: file, line: line)
            XCTAssertNotEqual(
                afterSecond[interface], afterFirst[interface], "\(label): \(interface) kept its program", file: file,
                line: line)
        }
        let pins = try FileManager.default.contentsOfDirectory(atPath: lab.pinPath)
        XCTAssertFalse(
            pins.contains("upgrade"), "\(label): the staging directory is left: \(pins)", file: file, line: line)
        if changingLayout {
            XCTAssertEqual(
                try pinnedValueSize(lab, map: "bn_networks"), 32, "\(label): the new bn_networks is not pinned",
                file: file, line: line)
        }

        // The policy holds in every cell after the upgrade, and unload still
        // finds everything it must take away.
        let wrong = try lab.measure(settings).filter { !$0.matches }
        XCTAssert(wrong.isEmpty, "\(label): cells differ after the upgrade: \(wrong)", file: file, line: line)
        try lab.unload()
        let objects = try BackendObjects.read(lab)
        XCTAssertTrue(
            objects.pins.isEmpty && objects.attachments.isEmpty && objects.qdiscs.isEmpty,
            "\(label): unload left \(objects)", file: file, line: line)
    }

    /// Interface name → id of the bpfnet program attached there (XDP, or tc
    /// ingress), from `bpftool net` in the host namespace.
    private func attachedPrograms(_ lab: DemoLab) throws -> [String: Int] {
        let json = try lab.topology.run(in: TopologySpec.hostRole, ["bpftool", "-j", "net", "show"]).stdout
        guard let top = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else { return [:] }
        var result: [String: Int] = [:]
        for section in top {
            for entry in section["xdp"] as? [[String: Any]] ?? [] {
                if let name = entry["devname"] as? String, let id = entry["id"] as? Int { result[name] = id }
            }
            for entry in section["tc"] as? [[String: Any]] ?? [] where (entry["kind"] as? String) == "clsact/ingress" {
                if let name = entry["devname"] as? String, let id = entry["id"] as? Int { result[name] = id }
            }
        }
        return result
    }

    private func replacePinWithOtherLayout(_ lab: DemoLab, map: String) throws {
        let pin = lab.pinPath + "/" + map
        XCTAssertEqual(unlink(pin), 0, "unlink \(pin): \(String(cString: strerror(errno)))")
        try lab.topology.run(
            in: TopologySpec.hostRole,
            [
                "bpftool", "map", "create", pin, "type", "array", "key", "4", "value", "16", "entries", "1024", "name",
                map,
            ])
    }

    private func pinnedValueSize(_ lab: DemoLab, map: String) throws -> Int? {
        let json = try lab.topology.run(
            in: TopologySpec.hostRole, ["bpftool", "-j", "map", "show", "pinned", lab.pinPath + "/" + map]
        ).stdout
        return (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["bytes_value"] as? Int
    }

    // MARK: Traffic

    private func startReceiver(_ lab: DemoLab, in role: String, port: Int) throws -> BackgroundProcess {
        try UDPFlow.startReceiver(lab, in: role, port: port)
    }

    private func startSender(_ lab: DemoLab, to address: IPv4Address, port: Int) throws -> BackgroundProcess {
        try UDPFlow.startSender(lab, to: address, port: port, packets: packets, rate: rate)
    }

    private func receivedCount(_ process: BackgroundProcess) -> Int? { UDPFlow.receivedCount(process) }
}
