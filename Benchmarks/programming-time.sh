#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Programming-time benchmark (not a test): how long it takes to put
# LINKS links (each child exposes one TCP port, so 2 rules per link the way
# Docker writes them) and SOURCES allowed sources into the kernel with each
# bpfnet backend, side by side with programming the same rules the way dockerd
# does: one `iptables -C` and one `iptables -A` process per rule.
#
# Every variant runs in its own private network namespace (a bridge docker0
# with one veth per container as its port, a veth ext0), created and
# removed here; nothing touches the root namespace's firewall.
#
#   sudo Benchmarks/programming-time.sh [--links N] [--sources N] [--per-rule-limit SECONDS]
#        [--bpfnet PATH] [--variants bpf,nftables,iptables-nft,iptables-legacy,per-rule-nft,per-rule-legacy]
#
# Reports, per variant: the first load (wall time of `bpfnet load`, process
# start and the summary it reads back included), a re-load that adds one
# link, and what `bpfnet status` reads back afterwards. The per-rule variants
# stop after --per-rule-limit seconds (checked every thousand rules) and
# extrapolate, taking the cost per call as growing linearly between the first
# and the last measured thousand (each call reads the table it changes).
set -euo pipefail

LINKS=10000
SOURCES=1000
PER_RULE_LIMIT=600
BPFNET=""
VARIANTS="bpf,nftables,iptables-nft,iptables-legacy,per-rule-nft,per-rule-legacy"
while [ $# -gt 0 ]; do
    case "$1" in
        --links) LINKS=$2; shift 2 ;;
        --sources) SOURCES=$2; shift 2 ;;
        --per-rule-limit) PER_RULE_LIMIT=$2; shift 2 ;;
        --bpfnet) BPFNET=$2; shift 2 ;;
        --variants) VARIANTS=$2; shift 2 ;;
        -h|--help) sed -n '3,24p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "programming-time.sh: run as root (network namespaces, nft, iptables)" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$BPFNET" ]; then
    for candidate in "$here/.build/release/bpfnet" "$here/.build/debug/bpfnet"; do
        [ -x "$candidate" ] && { BPFNET=$candidate; break; }
    done
fi
[ -x "$BPFNET" ] || { echo "programming-time.sh: no bpfnet binary (swift build -c release, or --bpfnet PATH)" >&2; exit 2; }

work=$(mktemp -d /tmp/bpfnet-bench-XXXXXX)
prefix="bnbench$$"
namespaces=()
cleanup() {
    for ns in "${namespaces[@]}"; do
        if [ -e "/run/netns/$ns" ]; then
            nsenter --net="/run/netns/$ns" -- "$BPFNET" unload --pin-path "$work/$ns-pins" >/dev/null 2>&1 || true
            ip netns del "$ns" 2>/dev/null || true
        fi
        umount -l "$work/$ns-pins" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Containers: enough that LINKS distinct (parent, child) pairs exist.
containers=$(python3 -c "import math; print(int(math.ceil((1 + math.sqrt(1 + 4 * $LINKS)) / 2)))")

python3 - "$LINKS" "$SOURCES" "$containers" "$work" <<'EOF'
import json, sys
links, sources, containers, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def ip(i): return "10.88.%d.%d" % ((i + 2) // 256, (i + 2) % 256)
def mac(i): return "02:42:0a:58:%02x:%02x" % ((i + 2) // 256, (i + 2) % 256)
members = [{"name": "c%d" % i, "ip": ip(i), "mac": mac(i), "port": "p%d" % i, "exposed": ["80/tcp"]}
           for i in range(containers)]
pairs = [(p, c) for p in range(containers) for c in range(containers) if p != c][:links + 1]
allow = ["10.200.%d.%d/32" % (i // 250, i % 250 + 1) for i in range(sources)]
def policy(n):
    return {"bridge": "docker0", "icc": False, "ipForward": True, "forwardPolicy": "drop",
            "extInterfaces": [{"name": "ext0", "allowSources": allow}],
            "containers": members,
            "links": [{"parent": "c%d" % p, "child": "c%d" % c} for p, c in pairs[:n]]}
json.dump(policy(links), open(work + "/policy.yaml", "w"))
json.dump(policy(links + 1), open(work + "/policy-plus-one.yaml", "w"))
# The same rules as dockerd writes them, one per line: "CHAIN rule...".
with open(work + "/docker-rules.txt", "w") as out:
    for p, c in pairs[:links]:
        out.write("DOCKER -s %s/32 -d %s/32 -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n" % (ip(p), ip(c)))
        out.write("DOCKER -s %s/32 -d %s/32 -i docker0 -o docker0 -p tcp -m tcp --sport 80 -j ACCEPT\n" % (ip(c), ip(p)))
    for source in allow:
        out.write("BPFNET-SRC-ext0 -s %s -j RETURN\n" % source)
with open(work + "/docker-plus-one.txt", "w") as out:
    p, c = pairs[links]
    out.write("DOCKER -s %s/32 -d %s/32 -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT\n" % (ip(p), ip(c)))
    out.write("DOCKER -s %s/32 -d %s/32 -i docker0 -o docker0 -p tcp -m tcp --sport 80 -j ACCEPT\n" % (ip(c), ip(p)))
EOF

# A namespace that looks like a Docker host to bpfnet.
make_host() {
    local ns=$1
    namespaces+=("$ns")
    ip netns add "$ns"
    {
        echo "link set lo up"
        echo "link add docker0 type bridge"
        echo "addr add 10.88.0.1/16 dev docker0"
        echo "link set docker0 up"
        for ((i = 0; i < containers; i++)); do
            echo "link add p$i type veth peer name q$i"
            echo "link set p$i master docker0"
            echo "link set p$i up"
        done
        echo "link add ext0 type veth peer name ext0peer"
        echo "addr add 198.51.100.1/24 dev ext0"
        echo "link set ext0 up"
    } | ip -n "$ns" -batch -
    nsenter --net="/run/netns/$ns" -- sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
}

now() { date +%s.%N; }
elapsed() { python3 -c "print('%.2f' % ($2 - $1))"; }

results=()
report() {
    results+=("$(printf '%-38s %12s %14s   %s' "$1" "$2" "$3" "$4")")
    printf '%-38s %12s %14s   %s\n' "$1" "$2" "$3" "$4" >&2
}
wanted() { [[ ",$VARIANTS," == *",$1,"* ]]; }

bpfnet_variant() {
    local label=$1 backend=$2 env=$3
    local ns="$prefix-$backend${env:+-${env#*=}}"
    make_host "$ns"
    local run=(nsenter --net="/run/netns/$ns" -- env $env "$BPFNET")
    local t0 t1 t2
    t0=$(now)
    "${run[@]}" load --config "$work/policy.yaml" --backend "$backend" --pin-path "$work/$ns-pins" >/dev/null 2>&1
    t1=$(now)
    "${run[@]}" load --config "$work/policy-plus-one.yaml" --backend "$backend" --pin-path "$work/$ns-pins" >/dev/null 2>&1
    t2=$(now)
    # What bpfnet reports back from the kernel, and the size of the rule set.
    local size t3 t4
    t3=$(now)
    "${run[@]}" status --json --pin-path "$work/$ns-pins" > "$work/$ns-status.json"
    t4=$(now)
    size=$(python3 -c "
import json, sys
s = json.load(sys.stdin)
print('status (%s s): %d links, %d allowed sources' % ('$(elapsed "$t3" "$t4")', len(s['links']), sum(len(e['allowSources']) for e in s['extInterfaces'])))" < "$work/$ns-status.json")
    case "$backend" in
        nftables) size="$size; $(nsenter --net="/run/netns/$ns" -- nft -j list ruleset | python3 -c "
import json, sys
print('%d set/map elements' % sum(len(o.get(k, {}).get('elem', [])) for o in json.load(sys.stdin)['nftables'] for k in ('set', 'map')))")" ;;
        iptables) size="$size; $(nsenter --net="/run/netns/$ns" -- sh -c 'iptables-save 2>/dev/null; iptables-legacy-save 2>/dev/null' | grep -c '^-A' || true) rules" ;;
    esac
    report "$label" "$(elapsed "$t0" "$t1") s" "$(elapsed "$t1" "$t2") s" "$size"
    "${run[@]}" unload --pin-path "$work/$ns-pins" >/dev/null 2>&1
}

per_rule_variant() {
    local label=$1 iptables=$2
    local ns="$prefix-perrule-$iptables"
    make_host "$ns"
    local enter=(nsenter --net="/run/netns/$ns" --)
    "${enter[@]}" "$iptables" -w -N DOCKER
    "${enter[@]}" "$iptables" -w -N BPFNET-SRC-ext0
    local total done=0 t0 t1 deadline mark previous first=0 last=0
    total=$(wc -l < "$work/docker-rules.txt")
    t0=$(now)
    deadline=$(python3 -c "print($t0 + $PER_RULE_LIMIT)")
    previous=$t0
    while read -r chain rule; do
        # dockerd: `iptables -C` first, `-A` when the rule is not there.
        "${enter[@]}" "$iptables" -w -C "$chain" $rule 2>/dev/null || "${enter[@]}" "$iptables" -w -A "$chain" $rule
        done=$((done + 1))
        if [ $((done % 1000)) = 0 ]; then
            mark=$(now)
            last=$(python3 -c "print($mark - $previous)")
            [ "$done" = 1000 ] && first=$last
            previous=$mark
            if python3 -c "import sys; sys.exit(0 if $mark > $deadline else 1)"; then break; fi
        fi
    done < "$work/docker-rules.txt"
    t1=$(now)
    local measured note
    measured=$(elapsed "$t0" "$t1")
    if [ "$done" -lt "$total" ]; then
        # The cost per call grows with the rules already there; take it as
        # linear between the first and the last measured thousand.
        note="stopped after $done of $total rules; extrapolated total $(python3 -c "
c1, c2, n, N = $first / 1000, $last / 1000, $done, $total
print('%.0f s' % (c1 * N + (c2 - c1) / n * N * N / 2))")"
    else
        note="$total rules"
    fi
    local t2 t3
    t2=$(now)
    while read -r chain rule; do
        "${enter[@]}" "$iptables" -w -C "$chain" $rule 2>/dev/null || "${enter[@]}" "$iptables" -w -A "$chain" $rule
    done < "$work/docker-plus-one.txt"
    t3=$(now)
    report "$label" "$measured s" "$(elapsed "$t2" "$t3") s" "$note"
}

echo "programming time: $LINKS links (1 exposed tcp port each → $((2 * LINKS)) Docker rules), $SOURCES allowed sources," \
     "$containers containers; each variant in its own network namespace" >&2
wanted bpf && bpfnet_variant "bpfnet --backend bpf" bpf ""
wanted nftables && bpfnet_variant "bpfnet --backend nftables" nftables ""
wanted iptables-nft && bpfnet_variant "bpfnet --backend iptables (iptables-nft)" iptables "BPFNET_IPTABLES=nft"
wanted iptables-legacy && bpfnet_variant "bpfnet --backend iptables (legacy)" iptables "BPFNET_IPTABLES=legacy"
wanted per-rule-nft && per_rule_variant "dockerd-style per rule (iptables-nft)" iptables-nft
wanted per-rule-legacy && per_rule_variant "dockerd-style per rule (legacy)" iptables-legacy

printf '\n%-38s %12s %14s   %s\n' "variant" "first load" "+1 link" "in the kernel"
printf '%s\n' "${results[@]}"
