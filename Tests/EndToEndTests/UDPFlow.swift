// SPDX-License-Identifier: Apache-2.0
//
// Numbered UDP datagrams at a steady rate from one namespace of the demo host
// to another, counted by distinct sequence number where they arrive: the
// traffic that runs across a change (an upgrade, a new policy, a backend
// switch) so that a test can count what was lost and what got through.

import BPFNetCore
import DemoHost
import Foundation
import NetLab

enum UDPFlow {
    /// Counts distinct sequence numbers until SIGTERM, then prints the count
    /// on standard error (the process's log: `stop` closes standard output).
    private static let receiver = """
        import signal, socket, sys
        seen = set()
        def done(*_):
            print("received", len(seen), file=sys.stderr, flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, done)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind(("0.0.0.0", int(sys.argv[1])))
        print("ready", flush=True)
        while True:
            data = s.recv(2048)
            if len(data) >= 4 and data[4:5] == b"s":
                seen.add(int.from_bytes(data[:4], "big"))
        """

    /// A few warm-up datagrams (neighbour entries), then numbered ones at a
    /// steady rate: N of them ("sent N" on standard output), or with N = 0
    /// until SIGTERM, which prints how many on standard error. The handler
    /// only sets a flag, so the count is exactly the datagrams handed to the
    /// kernel.
    private static let sender = """
        import signal, socket, sys, time
        dst, port, n, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
        stopping = False
        def stop(*_):
            global stopping
            stopping = True
        signal.signal(signal.SIGTERM, stop)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(5):
            s.sendto(b"warm-up", (dst, port))
            time.sleep(0.05)
        start = time.monotonic()
        i = 0
        while (n == 0 or i < n) and not stopping:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            s.sendto(i.to_bytes(4, "big") + b"s" * 60, (dst, port))
            i += 1
        if n == 0:
            print("sent", i, file=sys.stderr, flush=True)
        else:
            print("sent", i, flush=True)
        """

    static func startReceiver(_ lab: DemoLab, in role: String, port: Int) throws -> BackgroundProcess {
        let process = try lab.topology.startProcess(
            in: role, ["python3", "-c", receiver, String(port)], captureOutput: true)
        _ = try process.waitForLine(prefix: "ready", timeout: .seconds(10))
        return process
    }

    /// Starts sending; `packets: 0` sends until `sentCount` stops it.
    static func startSender(
        _ lab: DemoLab, from role: String = "client", to address: IPv4Address, port: Int, packets: Int, rate: Int
    ) throws -> BackgroundProcess {
        try lab.topology.startProcess(
            in: role,
            ["python3", "-c", sender, address.description, String(port), String(packets), String(rate)],
            captureOutput: true)
    }

    /// Stops the receiver and returns how many distinct datagrams it got.
    static func receivedCount(_ process: BackgroundProcess) -> Int? {
        _ = process.stop()
        let line = process.logContents().split(separator: "\n").first { $0.hasPrefix("received ") }
        return line.flatMap { Int($0.dropFirst("received ".count)) }
    }

    /// Stops a sender started with `packets: 0` and returns how many numbered
    /// datagrams it sent.
    static func sentCount(_ process: BackgroundProcess) -> Int? {
        _ = process.stop(grace: .seconds(5))
        let line = process.logContents().split(separator: "\n").first { $0.hasPrefix("sent ") }
        return line.flatMap { Int($0.dropFirst("sent ".count)) }
    }
}
