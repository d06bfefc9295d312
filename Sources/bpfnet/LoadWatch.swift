// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet load --watch`: after the load, stay in the foreground and give the
// port program to every port the moment it joins the bridge, as `bpfnet run`
// does, for hosts whose containers are not Docker's (a static policy file).
// Without it a port that joins after a load has no program until the next
// load (the guard holds it meanwhile; docs/security.md).

import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import Foundation
import LinuxNet
import Logging
import Synchronization
import SystemPackage

enum LoadWatcher {
    /// Follows the link notifications until SIGTERM or SIGINT; SIGHUP reads
    /// the policy file again. Every join of the bridge (or lost notifications)
    /// applies the policy in force, which attaches to the new port as an
    /// unknown port. Holds the agent lock meanwhile, so that `load`,
    /// `unload` and `run` on the same pin path refuse instead of racing it.
    static func run(
        policy initial: Policy, reload: @escaping () throws -> Policy, dataplane: Dataplane, pinPath: String
    ) throws {
        let files = AgentFiles(pinPath: FilePath(pinPath))
        let lock: AgentLock
        do {
            lock = try AgentLock.acquire(files, dockerHost: AgentFiles.watchingLoadMark)
        } catch {
            throw error.dataplaneError
        }
        defer { lock.release() }
        let monitor: LinkMonitor
        do {
            monitor = try LinkMonitor()
        } catch {
            throw DataplaneError.runtime("load --watch: cannot follow the link notifications: \(error)")
        }
        var logger = Logger(label: "bpfnet.load")
        logger.logLevel = .info
        enum Request { case stop, reload }
        let requests = Mutex<[Request]>([])
        let signals = AgentSignals(
            logger: logger, onStop: { requests.withLock { $0.append(.stop) } },
            onHangup: { requests.withLock { $0.append(.reload) } })
        defer { signals.stop() }

        var policy = initial
        var tracker = LinkChangeTracker()
        print("bpfnet: watching \(policy.bridge) for new ports (SIGTERM ends it, SIGHUP reads the policy file again)")
        fflush(nil)  // a test or a supervisor reading the pipe sees the line now
        // A port that joined between the load and the subscription above
        // sent its notification to nobody: the first round applies anyway.
        var firstRound = true
        while true {
            let pending = requests.withLock { value in
                defer { value = [] }
                return value
            }
            if pending.contains(.stop) { break }
            var apply = firstRound
            firstRound = false
            if pending.contains(.reload) {
                do {
                    policy = try reload()
                    apply = true
                } catch {
                    logger.error("SIGHUP: the policy file does not load (\(error)); keeping the policy in force")
                }
            }
            for change in tracker.changes(from: (try? monitor.next(timeout: .milliseconds(250))) ?? []) {
                switch change {
                case .joined(let port, let masterIndex)
                where HostSystem.interfaceIndex(policy.bridge) == UInt32(bitPattern: masterIndex):
                    logger.info("\(port) joined \(policy.bridge): attaching the port program")
                    apply = true
                case .lost:
                    apply = true
                case .joined, .appeared:
                    break
                }
            }
            guard apply else { continue }
            do {
                try dataplane.apply(policy)
            } catch {
                logger.error("apply failed: \(error); the dataplane keeps the policy it had")
            }
        }
        print("bpfnet: stopped watching; the dataplane stays loaded")
    }
}
