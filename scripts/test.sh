#!/usr/bin/env bash
# Sets up the machine, builds bpfnet and runs every test suite: unit tests,
# eBPF test-run and differential tests, network-namespace end-to-end tests
# for each backend, and the real-Docker suite. Root-only suites fail (instead
# of skipping) when BPFNET_REQUIRE_ROOT_TESTS=1, as in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
