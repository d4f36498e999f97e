#!/bin/bash
# Run the end-to-end tests (real Ironic + sushy-tools + QEMU) inside the lab's network
# namespace. Needs: qemu/setup-host.sh (packages, venv) and initramfs/build.sh (the ramdisk).
#   tests/e2e/run.sh [pytest args]
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${LAB_VENV:-$REPO/build/venv}
cd "$REPO"
exec "$REPO/qemu/netns-run" "$VENV/bin/python" -m pytest -p no:cacheprovider -v -rs tests/e2e "$@"
