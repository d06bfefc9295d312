#!/usr/bin/env bash
# Sets up the machine, checks the formatting (scripts/lint.sh: a formatting
# difference fails the run before anything is built), builds bpfnet and runs
# every test suite: unit tests, eBPF test-run and differential tests,
# network-namespace end-to-end tests for each backend, and the real-Docker
# suite; then fuzzes the input parsers for a short time (scripts/fuzz.sh).
# Root-only suites fail (instead of skipping) when BPFNET_REQUIRE_ROOT_TESTS=1,
# as in CI.
set -euo pipefail
# As root, or again through sudo (scripts/as-root.sh).
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
BPFNET_SETUP_BUILD=0 source scripts/setup.sh
./scripts/lint.sh
swift build --build-tests
swift test --skip-build "$@"
# The whole run (no suite named) also fuzzes every input parser for a short
# time (scripts/fuzz.sh; BPFNET_FUZZ_SECONDS per target).
if [[ $# -eq 0 ]]; then
    ./scripts/fuzz.sh "${BPFNET_FUZZ_SECONDS:-20}"
fi
