// SPDX-License-Identifier: Apache-2.0
//
// The dataplane's status as Prometheus metrics (text exposition format 0.0.4):
// what `bpfnet status --prometheus` prints and what `bpfnet run
// --metrics-address` serves beside the agent's own metrics. The names and
// labels are a stable interface (docs/cli.md, "Metrics").
//
// The kernel's per-CPU counters arrive summed (DataplaneStatus.setCounters)
// and are exported as counters: they only grow while the maps live, and a
// reload restarts them at zero, which Prometheus's rate() and increase()
// read as a counter reset. Every known (program, reason) pair is exported,
// zero included, so that a series exists before its first packet and
// increase() counts that packet too.

import BPFNetCore
import Prometheus

/// The drop-event sampler's own counters (`bn_drop_rate`, summed over CPUs):
/// events the per-CPU rate limit left out and events the full ring lost.
public struct DropEventCounts: Hashable, Sendable {
    public var suppressed: UInt64
    public var lost: UInt64

    public init(suppressed: UInt64, lost: UInt64) {
        self.suppressed = suppressed
        self.lost = lost
    }
}

public enum DataplaneMetrics {
    /// The metrics of one status, in a registry of their own (built per
    /// scrape: the values are the kernel's, read just now).
    /// - Parameters:
    ///   - status: what `bpfnet status` shows; nil when no dataplane is loaded.
    ///   - dropEvents: nil when the backend has no drop-event ring (netfilter).
    public static func registry(status: DataplaneStatus?, dropEvents: DropEventCounts?) -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        registry.gauge(
            "bpfnet_dataplane_loaded",
            help: "1 when a dataplane is loaded and a control plane has written a policy into it, else 0."
        ).set(status?.loaded == true)
        guard let status else { return registry }

        registry.gauge(
            "bpfnet_backend_info", labels: [("backend", status.backend)],
            help: "The backend enforcing the policy (bpf, nftables, iptables, memory); always 1."
        ).set(to: 1)
        for (backend, reason) in (status.unusedBackends ?? [:]).sorted(by: { $0.key < $1.key }) {
            registry.gauge(
                "bpfnet_backend_unused_info", labels: [("backend", backend), ("reason", reason)],
                help: "A backend --backend auto tried first and did not use, with why; always 1."
            ).set(to: 1)
        }
        registry.gauge(
            "bpfnet_policy_generation", help: "The generation of the policy in the maps (bn_config)."
        ).set(Int(status.generation))
        if let nat = status.nat {
            registry.gauge(
                "bpfnet_nat_info", labels: [("mode", nat)],
                help: "Who translates published ports: ebpf (bpfnet's programs) or netfilter (docs/nat.md); always 1."
            ).set(to: 1)
        }

        addPacketCounters(status, to: registry)
        addFastPathCounters(status, to: registry)
        if let dropEvents {
            registry.counter(
                "bpfnet_drop_events_lost_total",
                help: "Drop events lost to a full ring buffer (bpfnet monitor; the packet counters stay exact)."
            ).increment(by: dropEvents.lost)
            registry.counter(
                "bpfnet_drop_events_suppressed_total",
                help: "Drop events the per-CPU rate limit left out (at most 1024 per CPU and second)."
            ).increment(by: dropEvents.suppressed)
        }
        addInventory(status, to: registry)
        return registry
    }

    /// Appends the exposition of `registry(status:dropEvents:)` to `buffer`.
    public static func emit(status: DataplaneStatus?, dropEvents: DropEventCounts?, into buffer: inout [UInt8]) {
        registry(status: status, dropEvents: dropEvents).emit(into: &buffer)
    }

    /// The exposition text of `registry(status:dropEvents:)`.
    public static func text(status: DataplaneStatus?, dropEvents: DropEventCounts?) -> String {
        registry(status: status, dropEvents: dropEvents).emitToString()
    }

    // MARK: Counters

    private static func addPacketCounters(_ status: DataplaneStatus, to registry: PrometheusCollectorRegistry) {
        let programs = Set(ProgramKind.all.map(\.name)).union(status.programCounters.keys).sorted()
        for program in programs {
            let counted = status.programCounters[program] ?? [:]
            let reasons = Set(Reason.allKnown.map(\.name)).union(counted.keys)
            for reason in reasons.sorted(by: reasonOrder) {
                let value = counted[reason] ?? DataplaneStatus.CounterValue()
                let action = (Reason(name: reason)?.isDrop ?? false) ? "drop" : "pass"
                let labels = [("program", program), ("reason", reason), ("action", action)]
                registry.counter(
                    "bpfnet_packets_total", labels: labels,
                    help: "Packets the program gave a verdict, by program, reason and action "
                        + "(per-CPU kernel counters, summed; docs/reasons.md)."
                ).increment(by: value.packets)
                registry.counter(
                    "bpfnet_bytes_total", labels: labels,
                    help: "Bytes of the packets in bpfnet_packets_total, by program, reason and action."
                ).increment(by: value.bytes)
            }
        }
    }

    private static func addFastPathCounters(_ status: DataplaneStatus, to registry: PrometheusCollectorRegistry) {
        guard let fastPath = status.fastPath else { return }
        if let enabled = status.fastPathEnabled {
            registry.gauge("bpfnet_fast_path_enabled", help: "1 when the fast path is switched on.")
                .set(enabled)
        }
        let programs = Set(ProgramKind.all.map(\.name)).union(fastPath.keys).sorted()
        for program in programs {
            let counted = fastPath[program] ?? [:]
            let events = Set(FastPathEvent.allKnown.map(\.name)).union(counted.keys).sorted()
            for event in events {
                registry.counter(
                    "bpfnet_fast_path_total", labels: [("program", program), ("event", event)],
                    help: "Passed packets by fast-path outcome: hit (delivered directly) or why the packet "
                        + "took the normal path (docs/verdicts.md, Fast path)."
                ).increment(by: counted[event] ?? 0)
            }
        }
    }

    /// Known reasons in their numeric order (passes first), then unknown ones by name.
    private static func reasonOrder(_ lhs: String, _ rhs: String) -> Bool {
        switch (Reason(name: lhs), Reason(name: rhs)) {
        case (let left?, let right?): left < right
        default: lhs < rhs
        }
    }

    // MARK: Inventory

    private static func addInventory(_ status: DataplaneStatus, to registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ help: String, _ value: Int) {
            registry.gauge(name, help: help).set(value)
        }
        gauge("bpfnet_containers", "Containers in the enforced policy.", status.containers.count)
        gauge("bpfnet_links", "Legacy links (parent to child) in the enforced policy.", status.links.count)
        gauge("bpfnet_published_ports", "Published ports in the enforced policy.", status.published.count)
        gauge("bpfnet_external_interfaces", "External interfaces the ext program polices.", status.extInterfaces.count)
        gauge(
            "bpfnet_external_interfaces_generic_xdp",
            "External interfaces whose driver has no native XDP: the ext program runs in generic mode, slower.",
            status.extInterfaces.count { $0.xdpMode == "generic" })
        registry.gauge("bpfnet_icc", help: "1 when inter-container communication is allowed (icc=true).")
            .set(status.icc)
        if let ports = status.bridgePorts {
            let attached = ports.count { $0.hook != nil }
            for (state, value) in [("attached", attached), ("unattached", ports.count - attached)] {
                registry.gauge(
                    "bpfnet_bridge_ports", labels: [("state", state)],
                    help: "Ports of the bridge with the port program attached, and without (held by the guard "
                        + "until the next apply; should be 0)."
                ).set(value)
            }
            gauge(
                "bpfnet_bridge_ports_unknown",
                "Ports of the bridge whose container the policy does not name (unknown-port).",
                ports.count { $0.container == nil })
        }
    }
}
