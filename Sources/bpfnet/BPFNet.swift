// SPDX-License-Identifier: Apache-2.0
//
// The bpfnet command line (docs/cli.md): one type per subcommand.
// Exit codes: 0 ok, 1 runtime failure, 2 usage or bad input.

import ArgumentParser
import BPFNetBench
import BPFNetCore
import BPFNetDataplane
import BPFNetInstall
import Foundation

@main
struct BPFNet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bpfnet",
        abstract: "Docker's bridge policy (icc, --link, source allow-lists, forward policy) enforced with eBPF.",
        discussion: """
            bpfnet load --config FILE loads the dataplane from a policy file; bpfnet run follows a Docker \
            daemon; bpfnet status shows what is enforced; bpfnet bench measures packet rates side by side with \
            Docker's iptables rules; bpfnet demo builds a demo host in network \
            namespaces and shows it all; bpfnet install puts it on a host as a systemd service.
            """,
        subcommands: [
            Load.self, Run.self, Status.self, Unload.self, Monitor.self, Bench.self, Demo.self, Install.self,
            Uninstall.self,
        ]
    )

    /// ArgumentParser's own failures exit 64; bpfnet promises 2 for every
    /// usage or input error, and 1 for failures at run time.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withFailure: error)
        }
    }

    static func exit(withFailure error: Error) -> Never {
        let code = exitCode(for: error)
        if code == .success || error is CleanExit || error is ExitCode {
            Self.exit(withError: error)
        }
        // ArgumentParser's own parse and validation errors (exit 64) keep its
        // wording and usage hint; bpfnet's errors already read as sentences.
        let usageError = code == .validationFailure
        let message = usageError ? fullMessage(for: error) : String(describing: error)
        FileHandle.standardError.write(Data("bpfnet: error: \(message)\n".utf8))
        Foundation.exit(usageError || isBadInput(error) ? 2 : 1)
    }

    static func isBadInput(_ error: Error) -> Bool {
        switch error {
        case is PolicyFileError, is PolicyValidationError: true
        case let error as DataplaneError: error.isBadInput
        case let error as BenchError: error.isBadInput
        case let error as InstallError: error.isBadInput
        default: false
        }
    }
}

/// Commands that change the kernel need root; say so before anything starts.
func requireRoot(_ command: String) throws {
    guard geteuid() == 0 else {
        throw DataplaneError.permission(
            "\(command) must run as root (it needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN): sudo bpfnet \(command) ..."
        )
    }
}
