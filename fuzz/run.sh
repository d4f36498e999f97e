#!/usr/bin/env bash
# Runs the qcow2 metadata fuzzer for a while (default 60 s; first argument overrides).
#
# This is what `cargo fuzz run qcow2_metadata` does, spelled out so it works on the stable
# toolchain CI has: RUSTC_BOOTSTRAP=1 lets stable rustc accept -Zsanitizer, and the flags are
# the ones cargo-fuzz passes (libFuzzer coverage instrumentation plus AddressSanitizer). With
# cargo-fuzz and a nightly toolchain installed, `cargo +nightly fuzz run qcow2_metadata` from
# the repository root runs the same target.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
corpus=corpus/qcow2_metadata
mkdir -p "$corpus"

# Seeds: small real images of each kind, so the fuzzer starts from valid metadata.
if command -v qemu-img >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    head -c 3145728 /dev/urandom >"$tmp/r"
    dd if=/dev/zero of="$tmp/r" bs=1M seek=1 count=1 conv=notrunc status=none
    i=0
    for opts in "" "-o compat=0.10" "-c" "-c -o compression_type=zstd" "-o cluster_size=512" \
                "-c -o cluster_size=4096" "-o cluster_size=2M" "-o preallocation=metadata"; do
        # shellcheck disable=SC2086
        qemu-img convert -q -f raw -O qcow2 $opts "$tmp/r" "$tmp/q$i"
        # Keep seeds small: the header, tables and the first data clusters.
        head -c 1048576 "$tmp/q$i" >"$corpus/seed$i"
        i=$((i + 1))
    done
fi

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers"
export CARGO_TARGET_DIR="$PWD/target"
cargo build --release --target x86_64-unknown-linux-gnu --bin qcow2_metadata
mkdir -p artifacts
exec "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/qcow2_metadata" \
    -max_total_time="$secs" -rss_limit_mb=1024 -max_len=1048576 -timeout=10 \
    -artifact_prefix=artifacts/ "$corpus"
