import BPFNetCore
import Foundation
import XCTest

/// The guard tables (docs/security.md, "The guard"): their text, and what they
/// do to real frames in a private namespace with no eBPF program attached, so
/// that only the guard decides.
final class GuardRulesetTests: XCTestCase {
    static let mac = MACAddress(0x02, 0x42, 0, 0, 0, 1)

    func testRulesFollowICCAndTheForwardPolicy() {
        let closed = GuardRuleset(
            bridge: "br0", bridgeMAC: Self.mac, icc: false, forwardAccept: false, policedPorts: [7, 5],
            extInterfaces: [2]
        ).render()
        XCTAssertTrue(closed.contains("elements = { 5, 7 }"), closed)
        XCTAssertTrue(closed.contains("oif @policed iif != @policed counter drop"), closed)
        XCTAssertTrue(closed.contains("iifname \"br0\" ether daddr != 02:42:00:00:00:01 accept"), closed)
        XCTAssertTrue(closed.contains("counter drop comment \"forward policy"), closed)
        let open = GuardRuleset(
            bridge: "br0", bridgeMAC: Self.mac, icc: true, forwardAccept: true, policedPorts: [], extInterfaces: []
        ).render()
        XCTAssertFalse(open.contains("drop"), "icc on and forward accept hold nothing back:\n\(open)")
        // Without the bridge's MAC a routed packet cannot be told from a bridged one: not held.
        let noMAC = GuardRuleset(
            bridge: "br0", bridgeMAC: .zero, icc: false, forwardAccept: false, policedPorts: [], extInterfaces: []
        ).render()
        XCTAssertFalse(noMAC.contains("routed between containers"), noMAC)
        // Routed from a network's bridge back into it: that network's icc, whatever docker0's
        // (the netfilter oracle found icc-on networks held by the forward policy).
        let networks = GuardRuleset(
            bridge: "br0", bridgeMAC: Self.mac, icc: false, forwardAccept: false, policedPorts: [], extInterfaces: [],
            networks: [
                ("br-open", true, MACAddress(0x02, 0x42, 0, 0, 0, 2)),
                ("br-quiet", false, MACAddress(0x02, 0x42, 0, 0, 0, 3)),
            ]
        ).render()
        XCTAssertTrue(networks.contains("iifname \"br-open\" accept"), networks)
        XCTAssertTrue(networks.contains("iifname \"br-quiet\" ether daddr != 02:42:00:00:00:03 accept"), networks)
        XCTAssertTrue(networks.contains("iifname \"br-quiet\" counter drop"), networks)
    }

    func testAPortWithoutTheProgramReachesNoPolicedPortAndUnlistedInterfacesFollowTheForwardPolicy() throws {
        try requireRootForEndToEnd()
        let lab = try GuardLab()
        defer { lab.destroy() }

        // a and b on the bridge, an outside host routed in through "hout", which has no ext program.
        let a = try lab.ifindex("pa")
        let b = try lab.ifindex("pb")
        let ext = try lab.ifindex("hout")
        func install(policed: [UInt32], forwardAccept: Bool) throws {
            let rules = GuardRuleset(
                bridge: "br0", bridgeMAC: try lab.bridgeMAC(), icc: false, forwardAccept: forwardAccept,
                policedPorts: policed, extInterfaces: [])
            try lab.nft(rules.render())
        }

        // b's port has no program (not in the set): b reaches no policed port.
        try install(policed: [a], forwardAccept: false)
        XCTAssertFalse(try lab.ping(from: "ctrb", to: "10.250.0.2"), "an unpoliced port reached a policed one")
        // Positive control: with both ports policed, the guard lets the bridge forward.
        try install(policed: [a, b], forwardAccept: false)
        XCTAssertTrue(try lab.ping(from: "ctrb", to: "10.250.0.2"), "two policed ports must reach each other")
        // The host still reaches both (not forwarded).
        XCTAssertTrue(try lab.ping(from: lab.host, to: "10.250.0.3"))

        // Routed in through an interface without the ext program: the forward policy.
        XCTAssertFalse(try lab.ping(from: "outh", to: "10.250.0.2"), "forward drop must hold on every interface")
        try install(policed: [a, b], forwardAccept: true)
        XCTAssertTrue(try lab.ping(from: "outh", to: "10.250.0.2"), "forward accept lets routed traffic in")
        // Listed as an ext interface (its program judged it): accepted whatever the policy.
        let listed = GuardRuleset(
            bridge: "br0", bridgeMAC: try lab.bridgeMAC(), icc: false, forwardAccept: false, policedPorts: [a, b],
            extInterfaces: [ext])
        try lab.nft(listed.render())
        XCTAssertTrue(try lab.ping(from: "outh", to: "10.250.0.2"))

        // Removal leaves nothing behind and works twice.
        try lab.nft(GuardRuleset.renderDelete())
        try lab.nft(GuardRuleset.renderDelete())
        XCTAssertEqual(
            try lab.run(["ip", "netns", "exec", lab.host, "nft", "list", "ruleset"]).trimmingCharacters(
                in: .whitespacesAndNewlines), "")
    }
}

/// host: bridge br0 10.250.0.1/24 with ports pa (ctra, 10.250.0.2) and pb
/// (ctrb, 10.250.0.3); hout ↔ outh (10.251.0.2) routed, ip_forward on.
private struct GuardLab {
    let host = "bnguard\(getpid())h"
    var namespaces: [String] { [host, "ctra", "ctrb", "outh"].map { $0 == host ? $0 : "bnguard\(getpid())\($0)" } }

    init() throws {
        do {
            for ns in namespaces { try run(["ip", "netns", "add", ns]) }
            try ipHost("link", "add", "br0", "type", "bridge")
            try ipHost("addr", "add", "10.250.0.1/24", "dev", "br0")
            try ipHost("link", "set", "br0", "up")
            for (port, ctr, address) in [("pa", "ctra", "10.250.0.2/24"), ("pb", "ctrb", "10.250.0.3/24")] {
                try ipHost("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name(ctr))
                try ipHost("link", "set", port, "master", "br0", "up")
                try run(["ip", "-n", name(ctr), "addr", "add", address, "dev", "eth0"])
                try run(["ip", "-n", name(ctr), "link", "set", "eth0", "up"])
                try run(["ip", "-n", name(ctr), "route", "add", "default", "via", "10.250.0.1"])
            }
            try ipHost("link", "add", "hout", "type", "veth", "peer", "name", "eth0", "netns", name("outh"))
            try ipHost("addr", "add", "10.251.0.1/24", "dev", "hout")
            try ipHost("link", "set", "hout", "up")
            try run(["ip", "-n", name("outh"), "addr", "add", "10.251.0.2/24", "dev", "eth0"])
            try run(["ip", "-n", name("outh"), "link", "set", "eth0", "up"])
            try run(["ip", "-n", name("outh"), "route", "add", "default", "via", "10.251.0.1"])
            try run(["ip", "netns", "exec", host, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        } catch {
            destroy()
            throw error
        }
    }

    func name(_ short: String) -> String { short == host ? host : "bnguard\(getpid())\(short)" }

    func destroy() {
        for ns in namespaces { _ = try? run(["ip", "netns", "del", ns]) }
    }

    func ipHost(_ arguments: String...) throws { try run(["ip", "-n", host] + arguments) }

    func ifindex(_ interface: String) throws -> UInt32 {
        let text = try run(["ip", "netns", "exec", host, "cat", "/sys/class/net/\(interface)/ifindex"])
        return UInt32(text.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    func bridgeMAC() throws -> MACAddress {
        let text = try run(["ip", "netns", "exec", host, "cat", "/sys/class/net/br0/address"])
        return MACAddress(text.trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    func nft(_ script: String) throws { try run(["ip", "netns", "exec", host, "nft", "-f", "-"], input: script) }

    /// Two pings, one second each: true when any answer came back.
    func ping(from namespace: String, to address: String) throws -> Bool {
        let ns = namespace == host ? host : name(namespace)
        return (try? run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", "2", "-W", "1", "-q", address])) != nil
    }

    @discardableResult
    func run(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let error = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(
                domain: "GuardLab", code: Int(process.terminationStatus),
                userInfo: [
                    NSLocalizedDescriptionKey:
                        "\(arguments.joined(separator: " ")): \(String(decoding: err, as: UTF8.self))"
                ])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
