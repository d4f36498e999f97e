#!/bin/bash
# Build a Debian 12 (bookworm) ramdisk with diskimage-builder and the ironic-agent-ramdisk
# element, the way operators build IPA's DIB ramdisks, with this project's agent inside:
#   build/dib/ironic-agent-dib.kernel     Debian's linux-image-amd64 (bzImage)
#   build/dib/ironic-agent-dib.initramfs  the whole image tree (systemd, udev, modules, firmware,
#                                         the agent), zstd cpio
#   build/dib/ironic-agent-dib.sizes      sizes and build time, for the README's table
#
# usage: dib-element/build.sh [--agent PATH] [--out DIR] [-- EXTRA_ELEMENT...]
#   Without --agent: cargo build --release, then the static binary it produced.
#   Extra elements after -- are added to the build (e.g. devuser for a console login).
# Installs what it needs when missing (root): debootstrap, kpartx, sudo, cpio, rsync, zstd,
# and diskimage-builder (pinned) in a venv (build/dib-venv, or DIB_VENV). The only network it
# uses is Debian's mirror (plain HTTP) and PyPI. Every run starts from an empty debootstrap
# cache (build/dib/cache) unless DIB_IMAGE_CACHE says otherwise, so the time it prints is a
# cold build's, as on a fresh CI machine.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$REPO/build/dib
AGENT=""
DIB_VERSION=3.43.0
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) AGENT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
log() { echo "[dib] $(date +%T) $*"; }
die() { echo "dib-element/build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mknod need it)"
DIB_VENV=${DIB_VENV:-$REPO/build/dib-venv}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
NAME=$OUT/ironic-agent-dib

# ---- host packages and diskimage-builder -------------------------------------------------------
HOST_PKGS="debootstrap kpartx sudo cpio rsync zstd binutils python3-venv"
missing=""
for p in $HOST_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi
if [ "$("$DIB_VENV/bin/pip" show diskimage-builder 2>/dev/null | awk '/^Version:/{print $2}')" != "$DIB_VERSION" ]; then
    log "installing diskimage-builder==$DIB_VERSION into $DIB_VENV"
    python3 -m venv "$DIB_VENV"
    "$DIB_VENV/bin/pip" install -q "diskimage-builder==$DIB_VERSION"
fi

# ---- the agent -----------------------------------------------------------------------------------
if [ -z "$AGENT" ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --bin ironic-agent)
    AGENT=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/ironic-agent
fi
[ -x "$AGENT" ] || die "agent binary $AGENT is missing or not executable"

# ---- the image -----------------------------------------------------------------------------------
export ELEMENTS_PATH=$REPO/dib-element${ELEMENTS_PATH:+:$ELEMENTS_PATH}
export DIB_RELEASE=bookworm
# Only deb.debian.org is reachable from the project's machines; the security default is not.
export DIB_DISTRIBUTION_MIRROR=${DIB_DISTRIBUTION_MIRROR:-http://deb.debian.org/debian}
export DIB_DEBIAN_SECURITY_MIRROR=${DIB_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
export DIB_IRONIC_AGENT_BINARY=$AGENT
export DIB_IMAGE_CACHE=${DIB_IMAGE_CACHE:-$OUT/cache}
if [ "$DIB_IMAGE_CACHE" = "$OUT/cache" ]; then
    rm -rf "$DIB_IMAGE_CACHE"
fi
export PATH=$DIB_VENV/bin:$PATH
rm -f "$NAME".kernel "$NAME".initramfs "$NAME".sizes
log "disk-image-create debian-minimal ironic-agent-ramdisk ${EXTRA[*]} (log: $OUT/build.log)"
start=$(date +%s)
if ! disk-image-create -o "$NAME" debian-minimal ironic-agent-ramdisk "${EXTRA[@]}" > "$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log" >&2
    die "disk-image-create failed; the whole log is $OUT/build.log"
fi
seconds=$(( $(date +%s) - start ))
[ -s "$NAME.kernel" ] && [ -s "$NAME.initramfs" ] || die "disk-image-create produced no kernel/initramfs in $OUT"

# ---- sizes -----------------------------------------------------------------------------------------
# Unpacked figures from the archive's own listing (no extraction): total, files, modules, firmware.
LIST=$(mktemp)
trap 'rm -f "$LIST"' EXIT
zstd -dc "$NAME.initramfs" | cpio -itv --quiet 2>/dev/null > "$LIST"
sum() { awk -v re="$1" '$1 ~ /^-/ && $9 ~ re {s += $5} END {printf "%.1f", s / 1048576}' "$LIST"; }
KVER=$(awk '$9 ~ /^(\.\/)?(usr\/)?lib\/modules\/[^/]+$/ {sub(/.*modules\//, "", $9); print $9; exit}' "$LIST")
{
    echo "kernel      $(stat -c %s "$NAME.kernel") bytes ($KVER)"
    echo "initramfs   $(stat -c %s "$NAME.initramfs") bytes (zstd cpio)"
    echo "unpacked    $(sum '.') MiB in $(grep -c '^-' "$LIST") files"
    echo "modules     $(sum 'lib/modules/') MiB ($(grep -c '\.ko' "$LIST") .ko files)"
    echo "firmware    $(sum 'lib/firmware/') MiB"
    echo "agent       $(sum 'usr/local/bin/ironic-agent$') MiB"
    echo "build time  ${seconds} s (disk-image-create, cold debootstrap cache)"
} | tee "$NAME.sizes"
log "done: $NAME.kernel $NAME.initramfs"
