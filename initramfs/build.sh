#!/bin/bash
# Build the ironic-agent ramdisk:
#   build/ironic-agent.kernel     Debian's linux-image-amd64 bzImage (what Ironic PXE-boots)
#   build/ironic-agent.initramfs  busybox early userspace + kernel modules + the static agent
#   build/ironic-agent.vmlinux    the same kernel uncompressed (PVH ELF) for fast QEMU -kernel
#   build/ironic-agent.sizes      sizes, for the README's table
#
# usage: initramfs/build.sh [--agent PATH]
#   Without --agent: cargo build --release, then the static ironic-agent binary it produced.
# Needs: apt-get (download only: the kernel package is unpacked, never installed), dpkg-deb,
# busybox-static, cpio, zstd, python3; root (mknod of /dev/console in the archive).
# The kernel package is resolved through linux-image-amd64 (the ABI in its name changes with
# every Debian kernel update) and cached in build/kernel/.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/initramfs
OUT=${OUT:-$REPO/build}
AGENT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) AGENT=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
log() { echo "[initramfs] $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (the archive needs a /dev/console device node)"
for t in apt-cache apt-get dpkg-deb busybox cpio zstd python3 readelf; do
    command -v "$t" >/dev/null || die "$t not found (run qemu/setup-host.sh)"
done
mkdir -p "$OUT"

# ---- the agent -------------------------------------------------------------------------------
if [ -z "$AGENT" ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --bin ironic-agent)
    AGENT=${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release/ironic-agent
fi
[ -x "$AGENT" ] || die "agent binary $AGENT is missing or not executable"
# Nothing in the ramdisk could satisfy a dynamic loader: refuse anything but a static binary.
if head -c4 "$AGENT" | grep -q 'ELF' && readelf -l "$AGENT" | grep -q 'Requesting program interpreter'; then
    die "$AGENT is dynamically linked; the ramdisk needs a static binary (+crt-static)"
fi

# ---- the kernel: download and unpack the .deb (no install) --------------------------------------
resolve_kernel() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(resolve_kernel)
if [ -z "$KPKG" ]; then   # a fresh machine may have no package lists yet
    log "apt-get update (no package lists)"
    apt-get update -q >/dev/null
    KPKG=$(resolve_kernel)
fi
[ -n "$KPKG" ] || die "cannot resolve linux-image-amd64 to a kernel package with apt-cache depends"
KVER=${KPKG#linux-image-}
KDIR=$OUT/kernel/$KPKG
if [ ! -f "$KDIR/.unpacked" ]; then
    log "downloading $KPKG"
    rm -rf "$KDIR"; mkdir -p "$KDIR"
    (cd "$OUT/kernel" && rm -f "${KPKG}"_*.deb && apt-get download -q "$KPKG" 2>&1 | grep -v unsandboxed || true)
    DEB=$(ls "$OUT/kernel/${KPKG}"_*.deb 2>/dev/null | head -1)
    [ -n "$DEB" ] || die "apt-get download $KPKG produced no .deb"
    dpkg-deb -x "$DEB" "$KDIR/root"
    busybox depmod -b "$KDIR/root" "$KVER"   # the .deb ships no modules.dep
    rm -f "$DEB"
    touch "$KDIR/.unpacked"
fi
MODDIR=$KDIR/root/lib/modules/$KVER
cp "$KDIR/root/boot/vmlinuz-$KVER" "$OUT/ironic-agent.kernel"
if [ ! -f "$KDIR/vmlinux" ]; then
    log "extracting the PVH vmlinux"
    python3 "$HERE/extract-vmlinux.py" "$KDIR/root/boot/vmlinuz-$KVER" "$KDIR/vmlinux"
fi
cp "$KDIR/vmlinux" "$OUT/ironic-agent.vmlinux"

# ---- the root file system ----------------------------------------------------------------------
ROOT=$(mktemp -d "$OUT/rootfs.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT"/{bin,dev,etc,proc,sys,run,tmp,root,mnt,var,usr,lib/modules/$KVER}
chmod 1777 "$ROOT/tmp"
ln -s bin "$ROOT/sbin"; ln -s ../bin "$ROOT/usr/bin"; ln -s ../bin "$ROOT/usr/sbin"
ln -s ../run "$ROOT/var/run"; ln -s ../tmp "$ROOT/var/tmp"
cp /bin/busybox "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"
done
ln -s bin/busybox "$ROOT/init"          # busybox init reads /etc/inittab
cp -a "$HERE/rootfs/." "$ROOT/"
install -m 0755 "$AGENT" "$ROOT/bin/ironic-agent"
mknod -m 600 "$ROOT/dev/console" c 5 1  # busybox init opens it before devtmpfs is mounted
mknod -m 666 "$ROOT/dev/null" c 1 3

# modules: the listed ones plus everything modules.dep says they need
n=0
while read -r m; do
    m=${m%%#*}; m=$(echo "$m" | tr -d '[:space:]'); [ -n "$m" ] || continue
    re=$(echo "$m" | sed 's/[-_]/[-_]/g')
    line=$(grep -E "(^|/)${re}\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -1) \
        || die "module $m is not in $KPKG (is it built in? check boot/config-$KVER)"
    for f in $(echo "$line" | tr -d ':'); do
        [ -f "$ROOT/lib/modules/$KVER/$f" ] && continue
        mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$f")"
        cp "$MODDIR/$f" "$ROOT/lib/modules/$KVER/$f"
        n=$((n + 1))
    done
done < "$HERE/modules.txt"
cp "$MODDIR/modules.builtin" "$MODDIR/modules.order" "$ROOT/lib/modules/$KVER/"
busybox depmod -b "$ROOT" "$KVER"

# zstd: smallest of gzip/xz/zstd here that the kernel also unpacks fastest under TCG
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) \
    | zstd -19 -T0 -q -c > "$OUT/ironic-agent.initramfs"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
K=$(size "$OUT/ironic-agent.kernel"); I=$(size "$OUT/ironic-agent.initramfs")
A=$(size "$ROOT/bin/ironic-agent"); U=$(du -sb "$ROOT" | cut -f1)
M=$(du -sb "$ROOT/lib/modules" | cut -f1)
cat > "$OUT/ironic-agent.sizes" <<SIZES
kernel package        $KPKG
kernel (bzImage)      $K bytes ($(mib "$K"))
initramfs (zstd)      $I bytes ($(mib "$I"))
kernel + initramfs    $((K + I)) bytes ($(mib $((K + I))))
initramfs unpacked    $U bytes ($(mib "$U")): agent $(mib "$A"), $n modules $(mib "$M")
vmlinux (PVH, QEMU)   $(size "$OUT/ironic-agent.vmlinux") bytes
SIZES
sed 's/^/[initramfs] /' "$OUT/ironic-agent.sizes"
LIMIT=$((40 * 1048576))
[ $((K + I)) -le $LIMIT ] || die "kernel + initramfs is $(mib $((K + I))), over the 40 MiB budget"
