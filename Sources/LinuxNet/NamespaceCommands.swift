// SPDX-License-Identifier: Apache-2.0
//
// Commands run inside a network namespace by another process, `nsenter
// --net`, for programs that must run there themselves (iproute2, ethtool,
// probes, dockerd). Only the network namespace changes: /sys and bpffs pins
// under /sys/fs/bpf stay visible (`ip netns exec` remounts /sys and would
// hide them).

extension NetworkNamespace {
    /// The argument vector that runs `arguments` inside this namespace:
    /// `nsenter --net=PATH -- arguments…`.
    public func nsenter(_ arguments: [String]) -> [String] {
        ["nsenter", "--net=" + path, "--"] + arguments
    }

    /// A command that runs `arguments` inside this namespace (via nsenter --net).
    public func command(_ arguments: [String], input: String? = nil, timeout: Duration = .seconds(30)) -> Command {
        Command(nsenter(arguments), input: input, timeout: timeout)
    }
}
