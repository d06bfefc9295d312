// SPDX-License-Identifier: Apache-2.0
//
// Numbered UDP datagrams at a steady rate from one namespace to another,
// counted by distinct sequence number where they arrive: the traffic that
// runs across a change (an upgrade, a new policy, a backend switch, an agent
// or daemon restart) so that a test can count exactly what was lost and what
// got through. Python 3 on the host runs both ends, in any namespace.

import BPFNetCore
import LinuxNet

#if canImport(Glibc)
import Glibc
#endif

public enum UDPFlow {
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

    /// The receiver's command line, listening on `port`; it prints "ready".
    public static func receiverArguments(port: Int) -> [String] {
        ["python3", "-c", receiver, String(port)]
    }

    /// The sender's command line: `packets` datagrams to `address`:`port` at
    /// `rate` per second, or with `packets: 0` until `run` stops it.
    public static func senderArguments(to address: IPv4Address, port: Int, packets: Int, rate: Int) -> [String] {
        ["python3", "-c", sender, address.description, String(port), String(packets), String(rate)]
    }

    /// Waits until a receiver started with `receiverArguments` listens.
    public static func waitUntilListening(_ receiver: BackgroundProcess) throws(NetLabError) {
        _ = try receiver.waitForLine(prefix: "ready", timeout: .seconds(10))
    }

    /// Stops the receiver and returns how many distinct datagrams it got.
    public static func receivedCount(_ process: BackgroundProcess) -> Int? {
        _ = process.stop()
        let line = process.logContents().split(separator: "\n").first { $0.hasPrefix("received ") }
        return line.flatMap { Int($0.dropFirst("received ".count)) }
    }

    /// Stops a sender started with `packets: 0` and returns how many numbered
    /// datagrams it sent.
    private static func sentCount(_ process: BackgroundProcess) -> Int? {
        _ = process.stop(grace: .seconds(5))
        let line = process.logContents().split(separator: "\n").first { $0.hasPrefix("sent ") }
        return line.flatMap { Int($0.dropFirst("sent ".count)) }
    }

    /// One flow of a `run`: numbered datagrams from namespace `from` to
    /// `to`:`port`, counted by a receiver in namespace `receiver`.
    public struct Spec: Sendable {
        public var from: NetworkNamespace
        public var to: IPv4Address
        public var receiver: NetworkNamespace
        public var port: Int

        public init(from: NetworkNamespace, to: IPv4Address, receiver: NetworkNamespace, port: Int) {
            self.from = from
            self.to = to
            self.receiver = receiver
            self.port = port
        }
    }

    /// What one flow of a `run` sent and what arrived (nil when a process
    /// did not report).
    public struct Count: Sendable {
        public var sent: Int?
        public var received: Int?
    }

    /// Runs every flow at `rate` datagrams per second while `body` runs:
    /// the receivers listen first, the senders start, `body` makes its
    /// changes after half a second, and half a second after it returns the
    /// senders stop; the receivers stop once what is on its way has arrived.
    public static func run(_ flows: [Spec], rate: Int, during body: () throws -> Void) throws -> [Count] {
        var processes: [BackgroundProcess] = []
        defer { for process in processes { process.stop() } }
        let receivers = try flows.map { flow in
            let process = try BackgroundProcess(
                Command(flow.receiver.nsenter(receiverArguments(port: flow.port))), captureOutput: true)
            processes.append(process)
            try waitUntilListening(process)
            return process
        }
        let senders = try flows.map { flow in
            let process = try BackgroundProcess(
                Command(flow.from.nsenter(senderArguments(to: flow.to, port: flow.port, packets: 0, rate: rate))),
                captureOutput: true)
            processes.append(process)
            return process
        }
        usleep(500_000)
        try body()
        usleep(500_000)
        let sent = senders.map(sentCount)
        usleep(300_000)
        return zip(sent, receivers.map(receivedCount)).map { Count(sent: $0, received: $1) }
    }
}
