// SPDX-License-Identifier: Apache-2.0
//
// bpfnet-probe: a tiny TCP/UDP/ICMP prober and echo server, run inside
// network namespaces by NetLab (tests, `bpfnet demo`, `bpfnet bench`).
// Busybox `nc -p` ignores the source port on this system and busybox wget
// crashes, and Docker's reverse link rule is about SOURCE ports, so we need
// our own prober that binds a fixed source port.
//
// Output contract (NetLab parses it): one line on stdout.
//   success  → the server's reply line, which starts with "bpfnet-probe "
//   failure  → "<outcome> <detail>", outcome ∈ refused | timeout |
//              unreachable | reset | noreply, exit 1
//   own fault → "error <detail>", exit 3; usage → stderr, exit 2

#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage:
      bpfnet-probe serve [--tcp PORTS] [--udp PORTS] [--name NAME] [--bind ADDR]
                         [--duration SECONDS] [--exit-with-parent]
      bpfnet-probe tcp HOST:PORT [--sport N] [--source ADDR] [--timeout MS]
      bpfnet-probe udp HOST:PORT [--sport N] [--source ADDR] [--size BYTES]
                       [--reply-size BYTES] [--timeout MS]
      bpfnet-probe icmp HOST [--source ADDR] [--timeout MS]

    PORTS is a list like 80,443,8000-8010. serve prints "ready ..." once every
    socket listens. Exit codes: 0 reply received, 1 no reply (refused, timeout,
    unreachable, reset), 2 usage error, 3 local error (socket, bind).
    """

/// What a client probe found out.
struct Outcome {
    var code: ExitCode
    var line: String

    static func ok(_ line: String) -> Outcome { Outcome(code: .ok, line: line) }
    static func failed(_ kind: String, _ detail: String) -> Outcome {
        Outcome(code: .unreachable, line: "\(kind) \(detail)")
    }
}

func runMain() -> Int32 {
    signal(SIGPIPE, SIG_IGN)
    let argv = CommandLine.arguments
    guard argv.count >= 2 else {
        emitError(usage)
        return ExitCode.usage.rawValue
    }
    let rest = argv.dropFirst(2)
    do {
        switch argv[1] {
        case "serve":
            let args = try Arguments(
                rest, valued: ["tcp", "udp", "name", "bind", "duration"],
                flags: ["exit-with-parent"])
            return try Server.run(args).rawValue
        case "tcp", "udp":
            let args = try Arguments(rest, valued: ["sport", "source", "timeout", "size", "reply-size"], flags: [])
            guard args.positionals.count == 1, let target = Endpoint.parse(args.positionals[0]) else {
                throw UsageError(
                    message: "\(argv[1]) needs exactly one target HOST:PORT (IPv4 address and port 1-65535)")
            }
            let outcome = argv[1] == "tcp" ? try probeTCP(target, args) : try probeUDP(target, args)
            emit(outcome.line)
            return outcome.code.rawValue
        case "icmp":
            let args = try Arguments(rest, valued: ["source", "timeout"], flags: [])
            guard args.positionals.count == 1, let target = Endpoint.parseAddress(args.positionals[0]) else {
                throw UsageError(message: "icmp needs exactly one target HOST (an IPv4 address)")
            }
            let outcome = try probeICMP(target, args)
            emit(outcome.line)
            return outcome.code.rawValue
        case "-h", "--help", "help":
            emit(usage)
            return ExitCode.ok.rawValue
        default:
            throw UsageError(message: "unknown subcommand '\(argv[1])' (expected serve, tcp, udp or icmp)")
        }
    } catch let error as UsageError {
        emitError("bpfnet-probe: \(error.message)\n\n\(usage)")
        return ExitCode.usage.rawValue
    } catch let error as LocalError {
        emit("error \(error.message)")
        return ExitCode.localError.rawValue
    } catch {
        emit("error \(error)")
        return ExitCode.localError.rawValue
    }
}

exit(runMain())
