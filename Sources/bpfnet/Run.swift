// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run`: the foreground agent that follows a Docker daemon and keeps
// the dataplane in step with its containers and links (docs/agent.md).

import ArgumentParser
import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import Dispatch
import DockerWatcher
import Foundation
import Logging
import SystemPackage

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a Docker daemon and keep the dataplane in step with its containers and links.",
        discussion: """
            Containers and links come from Docker (the default bridge network); the policy file gives the host \
            settings only (icc, forwardPolicy, ipForward, portHook, extInterfaces with allowSources) and must not \
            list containers or links. The bridge is Docker's: a bridge named in the file or with --bridge must be \
            the one Docker reports. Run dockerd with --iptables=false so that bpfnet alone polices the bridge. \
            SIGTERM or SIGINT stop the agent and leave the dataplane loaded and enforcing; `bpfnet unload` removes it. \
            SIGHUP resynchronises with Docker at once. Only one agent runs per --pin-path. Logs go to standard error; \
            `bpfnet status --json` shows the agent's state and lastSyncLatencyMs.
            """)

    @Option(name: .customLong("docker-host"),
            help: ArgumentHelp("The Docker daemon: unix:///path/to/docker.sock or tcp://HOST:PORT (default: $DOCKER_HOST, else unix:///var/run/docker.sock).",
                               valueName: "URL"))
    var dockerHost: String?

    @Option(help: ArgumentHelp("A policy file with host settings only (same keys as for load, without containers and links).",
                               valueName: "FILE"))
    var config: String?

    @Option(name: .customLong("resync-interval"),
            help: ArgumentHelp("Seconds between full resynchronisations with Docker (besides after every reconnect).",
                               valueName: "SECONDS"))
    var resyncInterval: Double = 60

    @Option(name: .customLong("log-level"),
            help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "LEVEL"))
    var logLevel: String = "info"

    @OptionGroup var policyOptions: PolicyOptions
    @OptionGroup var dataplaneOptions: DataplaneOptions

    var resolvedDockerHost: String {
        if let dockerHost { return dockerHost }
        if let fromEnvironment = ProcessInfo.processInfo.environment["DOCKER_HOST"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        return DockerHost.default.description
    }

    func validate() throws {
        do {
            _ = try DockerHost(parsing: resolvedDockerHost)
        } catch {
            throw ValidationError("--docker-host: \(error)")
        }
        guard resyncInterval.isFinite, resyncInterval >= 1, resyncInterval <= 86_400 else {
            throw ValidationError("--resync-interval \(resyncInterval): expected seconds between 1 and 86400")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): expected "
                + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }

    func run() async throws {
        let host = try DockerHost(parsing: resolvedDockerHost)
        let settings = try AgentSettings.load(configFile: config, overrides: policyOptions.overrides)
        try requireRoot("run")
        let dataplane = try dataplaneOptions.makeDataplane()
        let files = AgentFiles(pinPath: FilePath(dataplaneOptions.pinPath))
        let lock: AgentLock
        do {
            lock = try AgentLock.acquire(files, dockerHost: host.description)
        } catch {
            throw error.dataplaneError
        }
        defer { lock.release() }

        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "bpfnet.run")
        logger.info("bpfnet run: pin path \(files.pinPath), docker \(host), state \(files.statePath)")

        let stateWriter = StateWriter(files: files, logger: logger)
        let agentConfiguration = DockerAgent.Configuration(resyncInterval: .milliseconds(Int64(resyncInterval * 1000)))
        do {
            try await DockerClient.withClient(host: host, configuration: .init(requestTimeout: .seconds(30)),
                                              logger: Logger(label: "bpfnet.docker")) { client in
                let agent = DockerAgent(docker: client, dataplane: DataplaneExecutor(dataplane), settings: settings,
                                        resolvePort: LinuxBridgePortLookup().resolver, configuration: agentConfiguration,
                                        logger: Logger(label: "bpfnet.agent"), report: { stateWriter.write($0) })
                let task = Task { try await agent.run() }
                let signals = SignalHandlers(logger: logger, onStop: { task.cancel() },
                                             onHangup: { Task { await agent.resyncNow(reason: "SIGHUP") } })
                defer { signals.stop() }
                try await task.value
            }
        } catch let error as AgentConfigurationError {
            throw DataplaneError.badInput(error.message)
        }
        let stopped = "bpfnet run: stopped; the dataplane stays loaded at \(files.pinPath) and keeps enforcing the last "
            + "applied policy — `bpfnet unload --pin-path \(files.pinPath)` removes it"
        logger.info("\(stopped)")
    }
}

/// Writes the agent's reports to its state file; says so once if it cannot.
private final class StateWriter: @unchecked Sendable {
    private let files: AgentFiles
    private let logger: Logger
    private let lock = NSLock()
    private var failed = false

    init(files: AgentFiles, logger: Logger) {
        self.files = files
        self.logger = logger
    }

    func write(_ agent: DataplaneStatus.Agent) {
        do {
            try files.writeState(agent)
        } catch {
            let first = lock.withLock { () -> Bool in
                defer { failed = true }
                return !failed
            }
            if first {
                logger.warning("cannot write the agent's state to \(files.statePath): \(error) — `bpfnet status` will not show it")
            }
        }
    }
}

/// SIGTERM and SIGINT end the agent (once: a second one exits at once);
/// SIGHUP asks for a full resync with Docker.
private final class SignalHandlers: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received = false

    init(logger: Logger, onStop: @escaping @Sendable () -> Void, onHangup: @escaping @Sendable () -> Void) {
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            logger.notice("SIGHUP: resynchronising with Docker")
            onHangup()
        }
        hangup.resume()
        sources.append(hangup)
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let name = number == SIGTERM ? "SIGTERM" : "SIGINT"
            source.setEventHandler { [self] in
                let first = lock.withLock { () -> Bool in
                    defer { received = true }
                    return !received
                }
                if first {
                    logger.notice("\(name): stopping the agent; the dataplane stays loaded")
                    onStop()
                } else {
                    logger.warning("\(name) again: exiting now; the dataplane stays loaded")
                    exit(1)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    func stop() {
        for source in sources { source.cancel() }
        sources = []
    }
}
