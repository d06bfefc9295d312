#!/usr/bin/env bash
# Fuzzes the control plane's inputs with libFuzzer (docs/verification.md,
# "Fuzzing"): the policy file, Docker's JSON answers and the frame parser,
# each target for SECONDS (default 60), seeded from the recorded fixtures.
# A finding (a crash, or an error that names nothing) stops the run and is
# kept under Fuzz/.build/findings/TARGET/; replay it with
#   BPFNET_FUZZ_TARGET=TARGET Fuzz/.build/debug/bpfnet-fuzz FILE
#
#   ./scripts/fuzz.sh [SECONDS [TARGET...]]
#
# Needs no root. scripts/test.sh runs every target for a short time
# (BPFNET_FUZZ_SECONDS, default 20); scripts/soak.sh for 10 minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(policy-file docker-inspect docker-list docker-networks docker-event docker-info frame)
fi

work=Fuzz/.build
swift build --package-path Fuzz --sanitize=address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
binary="$work/debug/bpfnet-fuzz"

fixtures=Tests/DockerWatcherTests/Fixtures
seed() {
    local target=$1 corpus=$2
    case "$target" in
    policy-file) cp Tests/BPFNetCoreTests/Fixtures/*.yaml "$corpus/" ;;
    docker-inspect) cp "$fixtures"/inspect_*.json "$corpus/" ;;
    docker-list) cp "$fixtures"/containers_list*.json "$corpus/" ;;
    docker-networks) cp "$fixtures"/network*.json "$corpus/" ;;
    docker-event)
        # One event per file.
        local n=0
        while IFS= read -r line; do
            n=$((n + 1))
            printf '%s' "$line" >"$corpus/event-$n.json"
        done < <(cat "$fixtures"/events_*.jsonl)
        ;;
    docker-info) cp "$fixtures"/info_subset.json "$fixtures"/version.json "$corpus/" ;;
    frame)
        # Ethernet, IPv4, UDP 10.88.0.4:40000 -> 10.88.0.2:53, and an ARP request.
        printf '\x02\x42\x0a\x58\x00\x02\x02\x42\x0a\x58\x00\x04\x08\x00\x45\x00\x00\x1c\x00\x00\x40\x00\x40\x11\x00\x00\x0a\x58\x00\x04\x0a\x58\x00\x02\x9c\x40\x00\x35\x00\x08\x00\x00' >"$corpus/udp4"
        printf '\xff\xff\xff\xff\xff\xff\x02\x42\x0a\x58\x00\x04\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01\x02\x42\x0a\x58\x00\x04\x0a\x58\x00\x04\x00\x00\x00\x00\x00\x00\x0a\x58\x00\x01' >"$corpus/arp"
        ;;
    *) echo "fuzz.sh: unknown target $target" >&2 && exit 2 ;;
    esac
}

for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    findings="$work/findings/$target"
    mkdir -p "$corpus" "$findings"
    seed "$target" "$corpus"
    echo "fuzz.sh: $target for ${seconds}s"
    BPFNET_FUZZ_TARGET="$target" "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$findings/" "$corpus"
done
