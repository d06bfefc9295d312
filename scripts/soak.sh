#!/usr/bin/env bash
# The long runs (docs/verification.md): the netfilter oracle, where Docker
# 20.10's rules and the eBPF dataplane judge the same random frames frame by
# frame, for many more policies than CI's 20 × 1,000 (default 1,000 policies ×
# 1,000 frames: 1,000,000 frames, about 80 minutes on a 2-core machine); then
# every fuzz target for FUZZ_SECONDS (default 600) each.
#
#   sudo ./scripts/soak.sh [POLICIES [FRAMES_PER_POLICY [SEED [FUZZ_SECONDS]]]]
#
# Prints the seed and a summary per path; exits non-zero on any difference
# that is not one of the deliberate ones, and on any fuzzer finding.
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
BPFNET_SETUP_BUILD=0 source scripts/setup.sh
swift build --build-tests
export BPFNET_REQUIRE_ROOT_TESTS=1
export BPFNET_ORACLE_POLICIES="${1:-1000}"
export BPFNET_ORACLE_FRAMES="${2:-1000}"
if [[ -n "${3:-}" ]]; then export BPFNET_ORACLE_SEED="$3"; fi
swift test --skip-build --filter NetfilterOracleTests
./scripts/fuzz.sh "${4:-600}"
