#!/bin/bash
# Every performance figure the README quotes, measured on this machine in one run, each against
# its reference tool: inventory time, image writes (curl | dd, qemu-img convert), erase passes
# (dd), and boot times plus the full Ironic flow under QEMU (the lab's real Ironic).
#
#   bench/run.sh [--quick]      (--quick: 1 GiB images, 3 boots, no flow)
#
# Needs qemu/setup-host.sh once (packages, venv). Run it on an idle machine: the boot figures
# are CPU-bound under TCG and move with any other load.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
SIZE=2 RUNS=5 FLOW=--flow
[ "${1:-}" = "--quick" ] && { SIZE=1 RUNS=3 FLOW=; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
AGENT=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/ironic-agent
step() { echo; echo "## $* ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"; echo; }

cargo build --release --quiet
# A private copy: a build running alongside cannot swap the binary under the benchmark.
BIN=$(mktemp -d)/ironic-agent
cp "$AGENT" "$BIN"

step "binary"
echo "| binary | size |"
echo "|---|---|"
echo "| ironic-agent (static-pie, stripped) | $(stat -c %s "$BIN") B ($(( $(stat -c %s "$BIN") / 1024 / 1024 )) MiB) |"

step "inventory (ironic-agent inventory on this host, 10 runs)"
for _ in $(seq 10); do
    "$BIN" inventory 2>&1 >/dev/null | grep -o 'inventory collected in [0-9.]* ms'
done | awk '{print $4}' | sort -n |
    awk '{a[NR] = $1} END {printf "inventory collected in %s / %s / %s ms (min/median/max of %d)\n", a[1], a[int((NR + 1) / 2)], a[NR], NR}'

step "image writes (bench/image-bench.py --size-gib $SIZE)"
python3 bench/image-bench.py --agent "$BIN" --size-gib "$SIZE"

step "erase passes (bench/erase-bench.sh)"
bench/erase-bench.sh --agent "$BIN" --size-gib "$SIZE" --runs "$RUNS"

step "ramdisk boot and Ironic flow (qemu/bench-boot.py)"
initramfs/build.sh --agent "$BIN" >/dev/null
qemu/netns-run build/venv/bin/python qemu/bench-boot.py --runs "$RUNS" $FLOW
