// SPDX-License-Identifier: Apache-2.0
//
// `bpfnet run`: the foreground agent that follows a Docker daemon and keeps
// the dataplane in step with its containers and links (docs/agent.md).

import ArgumentParser
import BPFNetAgent
import BPFNetCore
import BPFNetDataplane
import BPFNetMetrics
import DockerWatcher
import Foundation
import Logging
import SystemPackage

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a Docker daemon and keep the dataplane in step with its containers and links.",
        discussion: """
            Containers and links come from Docker (the default bridge network); the policy file gives the host \
            settings only (icc, forwardPolicy, ipForward, portHook, nat, extInterfaces with allowSources) and must not \
            list containers or links. The bridge is Docker's: a bridge named in the file or with --bridge must be \
            the one Docker reports. Run dockerd with --iptables=false so that bpfnet alone polices the bridge. \
            SIGTERM or SIGINT stop the agent and leave the dataplane loaded and enforcing; `bpfnet unload` removes it. \
            SIGHUP reads the --config file again and applies it (a file with an error is logged and the previous \
            settings stay) and resynchronises with Docker at once. Only one agent runs per --pin-path. Logs go to standard error; \
            `bpfnet status --json` shows the agent's state and lastSyncLatencyMs. More in docs/agent.md.
            """)

    @Option(
        name: .customLong("docker-host"),
        help: ArgumentHelp(
            "The Docker daemon: unix:///path/to/docker.sock or tcp://HOST:PORT (default: $DOCKER_HOST, else unix:///var/run/docker.sock).",
            valueName: "URL"))
    var dockerHost: String?

    @Option(
        help: ArgumentHelp(
            "A policy file with host settings only "
                + "(the keys of docs/policy-file.md, without containers and links).",
            valueName: "FILE"))
    var config: String?

    @Option(
        name: .customLong("resync-interval"),
        help: ArgumentHelp(
            "Seconds between full resynchronisations with Docker (besides after every reconnect).",
            valueName: "SECONDS"))
    var resyncInterval: Double = 60

    @Option(
        name: .customLong("metrics-address"),
        help: ArgumentHelp(
            "Serve Prometheus metrics on http://ADDRESS/metrics: HOST:PORT, [V6]:PORT, or :PORT for 127.0.0.1 "
                + "(off unless given; docs/cli.md, \"Metrics\").",
            valueName: "ADDRESS"))
    var metricsAddress: String?

    @Option(
        name: .customLong("log-level"),
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
        if let metricsAddress {
            do {
                _ = try MetricsAddress(parsing: metricsAddress)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError(
                "--log-level \(logLevel): expected "
                    + Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }

    /// What SIGHUP calls: the --config file read again, with the same
    /// command-line overrides on top; nil without --config.
    var reloader: (@Sendable () throws -> AgentSettings)? {
        guard let config else { return nil }
        let overrides = policyOptions.overrides
        return { try AgentSettings.load(configFile: config, overrides: overrides) }
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
        // One line per event with its level; under systemd with the journal's priority prefix.
        LoggingSystem.bootstrap { label in
            var handler = AgentLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "bpfnet.run")
        logger.info("bpfnet run: pin path \(files.pinPath), docker \(host), state \(files.statePath)")

        let stateWriter = AgentStateWriter(files: files, logger: logger)
        let agentConfiguration = DockerAgent.Configuration(resyncInterval: .milliseconds(Int64(resyncInterval * 1000)))
        let executor = DataplaneExecutor(dataplane)
        let metrics = metricsAddress.map { _ in AgentMetrics() }
        do {
            try await DockerClient.withClient(
                host: host, configuration: .init(requestTimeout: .seconds(30)),
                logger: Logger(label: "bpfnet.docker")
            ) { client in
                let agent = DockerAgent(
                    docker: client, dataplane: executor, settings: settings,
                    resolvePorts: LinuxBridgePortLookup().endpointResolver, configuration: agentConfiguration,
                    logger: Logger(label: "bpfnet.agent"), report: { stateWriter.write($0) }, metrics: metrics)
                let scrape = metrics.map {
                    MetricsScrape(
                        agent: agent, dataplane: executor, metrics: $0, pinPath: FilePath(dataplaneOptions.pinPath),
                        logger: logger)
                }
                let endpoint = try await metricsEndpoint(scrape, logger: logger)
                defer { endpoint?.cancel() }
                try await agent.runHandlingSignals(logger: logger, loadSettings: reloader)
            }
        } catch let error as AgentConfigurationError {
            throw DataplaneError.badInput(error.message)
        }
        let stopped =
            "bpfnet run: stopped; the dataplane stays loaded at \(files.pinPath) and keeps enforcing the last "
            + "applied policy — `bpfnet unload --pin-path \(files.pinPath)` removes it"
        logger.info("\(stopped)")
    }
}
