// SPDX-License-Identifier: Apache-2.0
//
// The iptables fallback's bridge-level rules: one `ebtables-restore
// --noflush` input, the filter table only, next to the iptables and
// ip6tables rules. iptables sees neither ARP nor frames with VLAN tags
// (br_netfilter hands only untagged IPv4/IPv6 over), so these two checks of
// the port program live here:
//
//   INPUT, FORWARD  -j BPFNET-PORTS                         (first)
//   BPFNET-PORTS    per known container (its port, whatever icc says):
//                     -p ARP -i <port> --arp-ip-src <ip> --arp-mac-src <mac> RETURN
//                     -p ARP -i <port> --arp-ip-src 0.0.0.0 --arp-mac-src <mac> RETURN   (a probe)
//                     -p ARP -i <port> DROP                                               (spoofed)
//                     -p IPv6 -i <port> --ip6-proto ipv6-icmp --ip6-icmp-type
//                       router-advertisement|redirect DROP          (spoofed: RA guard)
//                   per known container on a bridge with icc off:
//                     -p 802_1Q|0x88a8 -i <port> DROP, -o <port> DROP                   (encap)
//
// ebtables has no comment match: the chain's name is how bpfnet knows its
// own rules (and its jumps from INPUT and FORWARD). `status` counts their
// drops under the port program's reasons (`counters(fromSaveWithCounters:)`).

public enum EBTablesRuleset {
    /// The chain bpfnet owns in ebtables' filter table.
    public static let chain = "BPFNET-PORTS"

    /// The jumps bpfnet puts in the built-in chains (INPUT: ARP to the host,
    /// whose neighbour table a claimed address would poison too).
    static let hooks = ["INPUT", "FORWARD"]

    /// `ebtables-restore --noflush` input that replaces bpfnet's rules with
    /// `policy`'s; `current` is `ebtables-save` text.
    public static func render(_ policy: NetfilterPolicy, current: String) -> String {
        let saved = Saved(current)
        var out = ["*filter"]
        // A new chain is declared; an existing one is flushed and refilled.
        out.append(saved.hasChain ? "-F \(chain)" : ":\(chain) RETURN")
        for hook in hooks where !saved.jumps.contains(hook) { out.append("-I \(hook) 1 -j \(chain)") }
        for container in policy.containers {
            let port = container.port
            let mac = container.mac.description
            out.append("-A \(chain) -p ARP -i \(port) --arp-ip-src \(container.ip) --arp-mac-src \(mac) -j RETURN")
            out.append("-A \(chain) -p ARP -i \(port) --arp-ip-src 0.0.0.0 --arp-mac-src \(mac) -j RETURN")
            out.append("-A \(chain) -p ARP -i \(port) -j DROP")
            // A container is no router (the port program's port_nd_claim). A
            // neighbour advertisement's target is beyond what ebtables reads.
            for type in ["router-advertisement", "redirect"] {
                out.append("-A \(chain) -p IPv6 -i \(port) --ip6-proto ipv6-icmp --ip6-icmp-type \(type) -j DROP")
            }
        }
        // The port program drops a frame still tagged after the tags it reads;
        // br_netfilter judges none of them, so every tagged frame from or to a
        // container's port is dropped under icc=false (`encap`).
        for container in policy.containers where !policy.icc(ofBridge: container.bridge) {
            for ethertype in ["802_1Q", "0x88a8"] {
                for direction in ["-i", "-o"] {
                    out.append("-A \(chain) -p \(ethertype) \(direction) \(container.port) -j DROP")
                }
            }
        }
        out.append("COMMIT")
        return out.joined(separator: "\n") + "\n"
    }

    /// `ebtables-restore --noflush` input that removes bpfnet's chain and
    /// jumps; nil when there is nothing to remove.
    public static func renderRemoval(current: String) -> String? {
        let saved = Saved(current)
        var lines = hooks.filter(saved.jumps.contains).map { "-D \($0) -j \(chain)" }
        if saved.hasChain { lines += ["-F \(chain)", "-X \(chain)"] }
        return lines.isEmpty ? nil : (["*filter"] + lines + ["COMMIT"]).joined(separator: "\n") + "\n"
    }

    /// Packets and bytes bpfnet's DROP rules counted, by the port program's
    /// reason for the same frames: `spoofed` (ARP, router advertisements and
    /// redirects) and `encap` (VLAN tags).
    /// `save` is `ebtables-save -c` text, whose rules begin with "[packets:bytes]".
    public static func counters(fromSaveWithCounters save: String) -> [String: DataplaneStatus.CounterValue] {
        var result: [String: DataplaneStatus.CounterValue] = [:]
        var table = ""
        for line in save.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasPrefix("*") { table = String(line.dropFirst()) }
            guard table == "filter", line.hasPrefix("["), line.hasSuffix(" -j DROP"),
                let close = line.firstIndex(of: "]")
            else { continue }
            let numbers = line[line.index(after: line.startIndex)..<close].split(separator: ":")
            let rule = line[line.index(after: close)...].split(separator: " ").map(String.init)
            guard numbers.count == 2, let packets = UInt64(numbers[0]), let bytes = UInt64(numbers[1]),
                rule.starts(with: ["-A", chain, "-p"]), rule.count > 3
            else { continue }
            let reason: String
            switch rule[3] {
            case "ARP", "IPv6": reason = "spoofed"
            case "802_1Q", "0x88a8", "0x8100": reason = "encap"
            default: continue
            }
            result[reason, default: DataplaneStatus.CounterValue()].packets += packets
            result[reason, default: DataplaneStatus.CounterValue()].bytes += bytes
        }
        return result
    }

    /// What `ebtables-save` shows of bpfnet's in the filter table.
    struct Saved {
        var hasChain = false
        /// Built-in chains with a jump to `chain`.
        var jumps: Set<String> = []

        init(_ text: String) {
            var table = ""
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if line.hasPrefix("*") { table = String(line.dropFirst()) }
                guard table == "filter" else { continue }
                if line.hasPrefix(":\(EBTablesRuleset.chain) ") { hasChain = true }
                for hook in EBTablesRuleset.hooks where line == "-A \(hook) -j \(EBTablesRuleset.chain)" {
                    jumps.insert(hook)
                }
            }
        }
    }
}
