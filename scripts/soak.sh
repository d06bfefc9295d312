#!/usr/bin/env bash
# The long runs (docs/verification.md, "The long run"), one after the other:
#
#   1. the kernel-vs-model differential: random frames through the real eBPF
#      programs and the reference model (SOAK_DIFFERENTIAL_FRAMES, 10,000,000);
#   2. the netfilter oracle: Docker 20.10's rules and the eBPF dataplane judge
#      the same random frames (SOAK_ORACLE_POLICIES × SOAK_ORACLE_FRAMES,
#      1,000 × 1,000);
#   3. traffic across every change (PolicyTransitionTests, UpgradeTests,
#      AgentRestartTrafficTests), again and again for SOAK_CHANGE_MINUTES (30);
#   4. every fuzz target for SOAK_FUZZ_SECONDS (600) each.
#
# The fuzzers are single-threaded and the other parts mostly wait on the
# kernel, so with two or more cores part 4 runs alongside parts 1-3
# (SOAK_FUZZ_ALONGSIDE=0 runs it last): about two hours on a 2-core machine
# with the defaults, three one after the other. Writes what each
# part ran (seeds, counts, durations, results) to SOAK_REPORT (default
# soak-DATE.txt in the current directory) and exits non-zero on any failure.
#
#   sudo ./scripts/soak.sh
#   sudo SOAK_ORACLE_POLICIES=100 SOAK_CHANGE_MINUTES=5 ./scripts/soak.sh
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
report="${SOAK_REPORT:-$PWD/soak-$(date -u +%F).txt}"
cd "$(dirname "$0")/.."
BPFNET_SETUP_BUILD=0 source scripts/setup.sh
swift build --build-tests
export BPFNET_REQUIRE_ROOT_TESTS=1

differential_frames="${SOAK_DIFFERENTIAL_FRAMES:-10000000}"
oracle_policies="${SOAK_ORACLE_POLICIES:-1000}"
oracle_frames="${SOAK_ORACLE_FRAMES:-1000}"
change_minutes="${SOAK_CHANGE_MINUTES:-30}"
fuzz_seconds="${SOAK_FUZZ_SECONDS:-600}"

fuzz_alongside="${SOAK_FUZZ_ALONGSIDE:-$([[ $(nproc) -ge 2 ]] && echo 1 || echo 0)}"

log=$(mktemp)
fuzz_log=$(mktemp)
fuzz_pid=
trap 'rm -f "$log" "$fuzz_log"; [[ -n $fuzz_pid ]] && kill "$fuzz_pid" 2>/dev/null || true' EXIT
note() { echo "$*" | tee -a "$report"; }
# Notes what a part's output says, its duration and its result.
summarize() {
    local name=$1 output=$2 started=$3 status=$4
    grep -E "^(differential|netfilter oracle|  )|Executed [0-9]+ tests|error:|fuzz.sh:|Done [0-9]+ runs|ERROR|SUMMARY" \
        "$output" | grep -v '^  "' | tee -a "$report" || true
    note "$name: $((SECONDS - started)) s, $([[ $status -eq 0 ]] && echo passed || echo "FAILED ($status)")"
}
# Runs one part, keeps its output, and notes its duration and result.
part() {
    local name=$1
    shift
    local started=$SECONDS status=0
    "$@" >"$log" 2>&1 || status=$?
    summarize "$name" "$log" "$started" "$status"
    return $status
}
fuzz_name="fuzzing (${fuzz_seconds} s per target)"

note "# bpfnet soak, $(date -u '+%F %T') UTC, $(git rev-parse --short HEAD), $(nproc) cores"
failed=0
if [[ $fuzz_alongside == 1 ]]; then
    fuzz_started=$SECONDS
    ./scripts/fuzz.sh "$fuzz_seconds" >"$fuzz_log" 2>&1 &
    fuzz_pid=$!
    note "$fuzz_name runs alongside the other parts"
fi
part "differential ($differential_frames frames)" \
    env BPFNET_DIFFERENTIAL_FRAMES="$differential_frames" \
    swift test --skip-build --filter 'DifferentialTests/testTimeDerivedSeedKernelAgreesWithTheModel' || failed=1
part "netfilter oracle ($oracle_policies × $oracle_frames frames)" \
    env BPFNET_ORACLE_POLICIES="$oracle_policies" BPFNET_ORACLE_FRAMES="$oracle_frames" \
    swift test --skip-build --filter NetfilterOracleTests || failed=1
deadline=$((SECONDS + change_minutes * 60))
rounds=0
while ((SECONDS < deadline)); do
    rounds=$((rounds + 1))
    part "changes under traffic, round $rounds" \
        swift test --skip-build --filter 'PolicyTransitionTests|UpgradeTests|AgentRestartTrafficTests' || {
        failed=1
        break
    }
done
note "changes under traffic: $rounds rounds in $change_minutes min"
if [[ -n $fuzz_pid ]]; then
    fuzz_status=0
    wait "$fuzz_pid" || fuzz_status=$?
    fuzz_pid=
    summarize "$fuzz_name, alongside" "$fuzz_log" "$fuzz_started" "$fuzz_status"
    [[ $fuzz_status -eq 0 ]] || failed=1
else
    part "$fuzz_name" ./scripts/fuzz.sh "$fuzz_seconds" || failed=1
fi
note "soak: $([[ $failed -eq 0 ]] && echo passed || echo FAILED); report in $report"
exit $failed
