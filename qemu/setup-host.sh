#!/bin/bash
# Install everything the ramdisk build, the QEMU harness, the end-to-end tests and the demo need
# on a fresh Debian 12 machine of the project's kind (root, 2 cores, only package registries).
# Idempotent: a second run only checks. Used by .ci/run and qemu/demo.sh.
#
#   qemu/setup-host.sh            apt packages + the Python venv (Ironic, sushy-tools, pytest)
#   LAB_VENV=/path qemu/setup-host.sh   venv elsewhere (default: build/venv in the repo)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
LAB_VENV=${LAB_VENV:-$REPO/build/venv}
# Pinned: the conductor under test and the virtual BMC.
IRONIC_VERSION=39.0.0
SUSHY_TOOLS_VERSION=2.2.0
PYTEST_VERSION=9.2.0

log() { echo "[setup-host] $*"; }
need_root() { [ "$(id -u)" = 0 ] || { echo "setup-host: must run as root (apt-get install)" >&2; exit 1; }; }

# ---- apt ------------------------------------------------------------------------------------
# The lists live in qemu/packages.d/ (one file per feature, one package per line, comments say
# why); backports.txt comes from bookworm-backports.
pkgs() { sed -e 's/#.*//' "$@" | tr -s ' \t' '\n' | grep -v '^$' | sort -u | tr '\n' ' '; }
PKG_DIR=$REPO/qemu/packages.d
BACKPORTS=$(pkgs "$PKG_DIR/backports.txt")
APT_PKGS=$(pkgs $(ls "$PKG_DIR"/*.txt | grep -v '/backports.txt$'))
missing=""
for p in $APT_PKGS $BACKPORTS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    need_root
    log "installing:$missing"
    BP=/etc/apt/sources.list.d/bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        cat > "$BP" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    export DEBIAN_FRONTEND=noninteractive
    APT="apt-get -o DPkg::Lock::Timeout=600"
    $APT update -q
    # shellcheck disable=SC2086
    $APT install -y -q --no-install-recommends -t bookworm-backports $BACKPORTS
    # shellcheck disable=SC2086
    $APT install -y -q --no-install-recommends $APT_PKGS
else
    log "apt packages present"
fi

# ---- Python venv: Ironic (conductor + API), sushy-tools (Redfish BMC), pytest -----------------
PY=${PYTHON:-python3}
if ! "$LAB_VENV/bin/python" -c "import ironic, sushy_tools, pytest" 2>/dev/null \
   || [ "$("$LAB_VENV/bin/pip" show ironic 2>/dev/null | awk '/^Version:/{print $2}')" != "$IRONIC_VERSION" ]; then
    log "creating venv $LAB_VENV (ironic==$IRONIC_VERSION sushy-tools==$SUSHY_TOOLS_VERSION)"
    "$PY" -m venv "$LAB_VENV"
    "$LAB_VENV/bin/pip" install -q --upgrade pip
    "$LAB_VENV/bin/pip" install -q "ironic==$IRONIC_VERSION" "sushy-tools==$SUSHY_TOOLS_VERSION" \
        "pytest==$PYTEST_VERSION"
else
    log "venv $LAB_VENV present"
fi
# Extra Python packages the lab needs beyond Ironic (one file per feature in
# qemu/requirements.d/, pip requirement lines); installed again only when the files change.
REQS=$(ls "$REPO"/qemu/requirements.d/*.txt 2>/dev/null || true)
if [ -n "$REQS" ]; then
    sum=$(cat $REQS | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$LAB_VENV/.requirements.d.sha256" 2>/dev/null)" != "$sum" ]; then
        log "installing qemu/requirements.d into the venv"
        # shellcheck disable=SC2046
        "$LAB_VENV/bin/pip" install -q $(printf -- '-r %s ' $REQS)
        echo "$sum" >"$LAB_VENV/.requirements.d.sha256"
    fi
fi
"$LAB_VENV/bin/python" - <<'PY'
import importlib.metadata as m
print("[setup-host] " + ", ".join(f"{p} {m.version(p)}" for p in ("ironic", "sushy-tools", "sushy", "pytest")))
PY
log "qemu: $(qemu-system-x86_64 --version | head -1)"
