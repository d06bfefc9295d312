// SPDX-License-Identifier: Apache-2.0
//
// The measuring thread: one pthread pinned to one CPU that enters each
// variant's sender namespace in turn (setns per burst) and sends there.
//
// Why CPU time of this thread is the cost per packet: everything a sent
// packet causes (veth, bridge, netfilter or the BPF program, the receiver's
// veth and its tc ingress) runs in softirq on bh-enable inside this thread,
// on this CPU, and without IRQ_TIME_ACCOUNTING the kernel charges softirq
// time to the task it interrupted. Softirq work that overflows to
// ksoftirqd/<cpu> is added from its schedstat. Other load on the machine
// takes wall time from the thread, not CPU time per packet.

import Foundation
import LinuxNet

#if canImport(Glibc)
import Glibc
#endif

enum PinnedThread {
    private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32

    /// sched_setaffinity(2) from glibc (declared only with _GNU_SOURCE).
    private static let setAffinity: SetAffinity? = {
        guard let symbol = dlsym(nil, "sched_setaffinity") else { return nil }
        return unsafeBitCast(symbol, to: SetAffinity.self)
    }()

    /// Runs `body` on a new thread pinned to `cpu` and waits for it. The
    /// thread is a LinuxNet namespace thread, so it may enter namespaces
    /// (`enter`); it ends with the body, so no other thread ever runs in a
    /// namespace it entered.
    static func run(cpu: Int, _ body: () throws -> Void) throws {
        var started = false
        do {
            try NamespaceThread.run {
                started = true
                try PinnedThread.pin(to: cpu)
                try body()
            }
        } catch let error as LinuxNetError where !started {
            throw BenchError.runtime("cannot start the measuring thread: \(error.message)")
        }
    }

    /// Pins the calling thread to one CPU.
    static func pin(to cpu: Int) throws {
        guard let setAffinity else { throw BenchError.runtime("sched_setaffinity is not available in this C library") }
        // A cpu_set_t is 1024 bits.
        var mask = [UInt64](repeating: 0, count: 16)
        mask[cpu / 64] |= 1 << UInt64(cpu % 64)
        let result = mask.withUnsafeBytes { setAffinity(0, $0.count, $0.baseAddress!) }
        if result != 0 {
            throw BenchError.runtime("pinning the measuring thread to CPU \(cpu): \(String(cString: strerror(errno)))")
        }
    }

    /// Moves the calling thread, the measuring thread, into `namespace`.
    static func enter(_ namespace: NetworkNamespace) throws {
        do throws(LinuxNetError) {
            try NamespaceThread.enter(namespace)
        } catch {
            throw BenchError.runtime("entering network namespace \(namespace.path): \(error.message)")
        }
    }
}

/// CPU time of the calling thread and of the CPU's ksoftirqd, in nanoseconds.
struct CPUClock {
    private let softirqStatPath: String?

    init(cpu: Int) {
        softirqStatPath = Self.ksoftirqdPID(cpu: cpu).map { "/proc/\($0)/schedstat" }
    }

    /// CLOCK_THREAD_CPUTIME_ID of the calling thread.
    static func threadNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Time ksoftirqd/<cpu> has run (schedstat's first field), 0 if unknown.
    func softirqNanoseconds() -> UInt64 {
        guard let softirqStatPath else { return 0 }
        let fd = open(softirqStatPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return 0 }
        let text = String(decoding: buffer[..<n], as: UTF8.self)
        return text.split(separator: " ").first.flatMap { UInt64($0) } ?? 0
    }

    /// The pid of the kernel thread ksoftirqd/<cpu>.
    static func ksoftirqdPID(cpu: Int) -> Int? {
        let wanted = "ksoftirqd/\(cpu)"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        // Kernel threads start early: low pids first keeps this quick.
        for pid in entries.compactMap({ Int($0) }).sorted() {
            if let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                comm.trimmingCharacters(in: .whitespacesAndNewlines) == wanted
            {
                return pid
            }
        }
        return nil
    }
}
