#!/bin/bash
# The project's test command: formatting, lints, unit and integration tests, then the
# end-to-end tests (the ramdisk under QEMU, driven by a real Ironic through a Redfish BMC; the
# diskimage-builder ramdisk of dib-element/ too).
#   tests/run.sh            everything
#   tests/run.sh --no-e2e   Rust checks only
#   tests/run.sh --all      also the end-to-end scenarios marked slow (documented in README)
# Needs qemu/setup-host.sh once (packages, venv); it is re-run here and only checks.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
E2E=1
MARK="not slow"
[ "${1:-}" = "--no-e2e" ] && E2E=0
[ "${1:-}" = "--all" ] && MARK=""
step() { echo; echo "==== $* ($(date +%T))"; }
step "cargo fmt --check";   cargo fmt --all -- --check
step "cargo clippy";        cargo clippy --all-targets -- -D warnings
step "cargo test";          cargo test
[ "$E2E" = 1 ] || exit 0
# CI (TESTS_PRUNE=1) frees what the end-to-end phase no longer needs: the debug builds (GiBs)
# and, per module, the VMs' disk files (see tests/e2e/conftest.py).
if [ "${TESTS_PRUNE:-0}" = 1 ]; then
    T=${CARGO_TARGET_DIR:-$REPO/target}
    rm -rf "$T/debug" "$T/x86_64-unknown-linux-gnu/debug"
    export E2E_PRUNE=1
fi
df -h "$REPO" /tmp | sed 's/^/    /'
step "host packages and venv"; qemu/setup-host.sh
step "ramdisk";             initramfs/build.sh
step "DIB ramdisk";         dib-element/build.sh    # diskimage-builder + dib-element (~4-6 min)
df -h "$REPO" /tmp | sed 's/^/    /'
step "end-to-end tests";    tests/e2e/run.sh ${MARK:+-m "$MARK"}
