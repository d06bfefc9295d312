#!/usr/bin/env bash
# Installs what bpfnet needs to build, test and run on Debian 12 (as root, or
# through sudo: scripts/as-root.sh),
# then builds it (not with BPFNET_SETUP_BUILD=0). Safe to run again. Used by scripts/demo.sh, scripts/test.sh
# and .ci/run.
set -euo pipefail
# Run on its own: as root, or again through sudo. Sourced by demo.sh or
# test.sh, which are root by now: a no-op.
source "$(dirname "${BASH_SOURCE[0]}")/as-root.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Build: libbpf and its link dependencies, kernel UAPI headers for the eBPF
# objects. Run time and tests: iproute2 (namespaces), nftables/iptables (NAT,
# fallback backends; Debian's iptables also ships ebtables-nft, which the
# iptables backend uses for ARP and VLAN tags), ethtool (GRO for the packet generator), bpftool
# (inspection), docker.io + docker-compose (v1) + busybox-static (the real-Docker suite).
# clang-format: the format check of the C (bpf/.clang-format). prometheus:
# promtool (the metrics lint) and the server the metrics end-to-end test scrapes with.
# systemd: systemd-analyze, which checks the unit `bpfnet install` writes.
packages=(
    libbpf-dev libelf-dev zlib1g-dev linux-libc-dev pkg-config
    iproute2 nftables iptables ethtool bpftool kmod procps python3
    docker.io docker-compose busybox-static clang-format prometheus systemd
)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the docker.io package from starting a daemon in the
    # root namespace; tests start their own dockerd inside a namespace.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        export PATH="/opt/swift/usr/bin:$PATH"
    else
        echo "setup: no Swift toolchain found (expected swift on PATH or /opt/swift/usr/bin)" >&2
        exit 1
    fi
fi

# scripts/test.sh checks the formatting first and then builds everything
# itself, tests included.
if [ "${BPFNET_SETUP_BUILD:-1}" = 1 ]; then
    echo "setup: building bpfnet"
    swift build
fi
