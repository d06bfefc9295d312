// SPDX-License-Identifier: Apache-2.0
//
// NetLab builds test and demo hosts out of network namespaces and measures
// reachability with real traffic. Used by `bpfnet demo`, the end-to-end
// suites and the packet-rate benchmark.
//
//     let lab = try Topology.build(.dockerLike(containers: ["web", "client"]))
//     defer { lab.teardown() }                      // also on Ctrl-C / exit()
//     try lab.startServer(in: "web", tcp: [80], udp: [53])
//     let results = try ProbeRunner().run([
//         try lab.probe(from: "client", to: "web", .tcp(80), sourcePort: 5000),
//         try lab.probe(from: "ext", to: "web", .udp(53), size: 4000),
//     ])
//     print(ReachabilityMatrix(results))
//
// Pieces: `BackgroundProcess` (servers, stopped by pid), `TopologySpec` →
// `Topology` (iproute2 batches), `Probe`/`ProbeRunner`/`ReachabilityMatrix`
// (bpfnet-probe), and the exit safety net below. From LinuxNet: namespaces
// are `NetworkNamespace`s (entered with nsenter --net), and commands run
// through `ProcessRunner`/`Command` (argv, captured output, timeouts, many
// children in one poll loop).
//
// Hygiene: nothing here touches the root namespace. Namespaces are created
// with `ip netns add`, every interface is created directly inside a
// namespace, and sysctls are written from inside the namespace they belong to.

#if canImport(Glibc)
import Glibc
#endif

public enum NetLab {
    /// Stops every background process and deletes every namespace NetLab
    /// created in this process and has not torn down yet.
    public static func cleanUpNow() {
        CleanupRegistry.shared.cleanUpEverything()
    }

    /// Installs the SIGINT/SIGTERM/SIGHUP and exit() hooks that call
    /// `cleanUpNow()`. `Topology.build` does this.
    public static func installCleanupOnExit() {
        CleanupRegistry.shared.installSafetyNet()
    }

    /// Adds an idempotent step to every `cleanUpNow()` (and so to the exit and
    /// signal hooks), run before NetLab stops its processes and deletes its
    /// namespaces: for what a caller keeps outside them (the bench's private
    /// bpffs mounts).
    public static func addCleanupStep(_ step: @escaping @Sendable () -> Void) {
        CleanupRegistry.shared.add(step: step)
    }

    /// Whether this process runs as root (the builder and the ICMP probe need it).
    public static var isRoot: Bool { geteuid() == 0 }
}
