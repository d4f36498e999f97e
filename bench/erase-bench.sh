#!/bin/sh
# Erase throughput of `ironic-agent erase-device` against `dd if=/dev/zero oflag=direct`, on
# the same loop device (over a preallocated file, loop direct I/O on), on this machine.
#
#   bench/erase-bench.sh [--agent PATH] [--size-gib N] [--runs N] [--dir DIR]
#
# Each run writes the whole device once with dd (bs=1M, O_DIRECT) and once with the agent's
# random-data pass (8 MiB O_DIRECT writes, generator on a second thread); both find the
# backing file's extents already written, so they are compared like for like. The agent's
# zero pass (BLKZEROOUT, which a loop device turns into fallocate) is reported on its own.
# Prints a markdown table (medians) for the README. Needs root (losetup).
set -eu

AGENT=target/x86_64-unknown-linux-gnu/release/ironic-agent
[ -n "${CARGO_TARGET_DIR:-}" ] && AGENT="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/ironic-agent"
SIZE_GIB=2
RUNS=5
DIR=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) AGENT=$2; shift 2 ;;
        --size-gib) SIZE_GIB=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        *) echo "usage: $0 [--agent PATH] [--size-gib N] [--runs N] [--dir DIR]" >&2; exit 2 ;;
    esac
done

FILE=$(mktemp "$DIR/erase-bench.XXXXXX")
LOOP=
cleanup() {
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    rm -f "$FILE"
}
trap cleanup EXIT
fallocate -l "${SIZE_GIB}G" "$FILE"
LOOP=$(losetup -f --show --direct-io=on "$FILE")
BYTES=$((SIZE_GIB * 1024 * 1024 * 1024))

now() { date +%s.%N; }
mibps() { echo "$BYTES $1 $2" | awk '{ printf "%.0f", $1 / 1048576 / ($3 - $2) }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# Allocate the extents once so that no measured run pays for it.
dd if=/dev/zero of="$LOOP" bs=1M count=$((SIZE_GIB * 1024)) oflag=direct status=none

DD=""
OURS=""
i=0
while [ "$i" -lt "$RUNS" ]; do
    t0=$(now)
    dd if=/dev/zero of="$LOOP" bs=1M count=$((SIZE_GIB * 1024)) oflag=direct conv=fsync status=none
    t1=$(now)
    "$AGENT" erase-device "$LOOP" --iterations 1 --no-zeroize >/dev/null
    t2=$(now)
    DD="$DD $(mibps "$t0" "$t1")"
    OURS="$OURS $(mibps "$t1" "$t2")"
    i=$((i + 1))
done
t0=$(now)
"$AGENT" erase-device "$LOOP" --iterations 0 >/dev/null
t1=$(now)
ZERO=$(mibps "$t0" "$t1")

dd_med=$(printf '%s\n' $DD | median)
ours_med=$(printf '%s\n' $OURS | median)
echo "| what (${SIZE_GIB} GiB loop device, $RUNS runs, median) | MiB/s |"
echo "| --- | --- |"
echo "| dd if=/dev/zero bs=1M oflag=direct | $dd_med (runs:$DD) |"
echo "| erase-device, one random pass (O_DIRECT 8 MiB, xoshiro256++) | $ours_med (runs:$OURS) |"
echo "| erase-device, zero pass (BLKZEROOUT) | $ZERO |"
echo "| ratio random pass / dd | $(echo "$ours_med $dd_med" | awk '{ printf "%.2f", $1 / $2 }') |"
