#!/bin/bash
# One command from a fresh machine to a provisioned server: installs the host packages and the
# venv (qemu/setup-host.sh), builds the agent and the ramdisk (initramfs/build.sh), then runs
# the flow under a real Ironic and prints its timeline (qemu/demo.py).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
qemu/setup-host.sh
initramfs/build.sh
exec qemu/netns-run "${LAB_VENV:-$REPO/build/venv}/bin/python" qemu/demo.py
