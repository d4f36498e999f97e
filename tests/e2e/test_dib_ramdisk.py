"""The diskimage-builder ramdisk (dib-element/, built by dib-element/build.sh) under QEMU.

Debian 12 from diskimage-builder with the ironic-agent-ramdisk element: systemd as PID 1 in
the initramfs, udev loading Debian's (compressed) modules, systemd-networkd doing DHCP on every
NIC, and the agent as a systemd service. Two boots:

- a direct boot with a probe in place of the agent (an extra cpio replaces
  /usr/local/bin/ironic-agent): what the image promises whatever the agent does — systemd is
  PID 1, the root stays in RAM, every disk bus has its driver, every NIC its DHCP lease, DNS
  points at the lease's server, the service restarts on failure and /run/ironic-agent survives;
- Ironic in charge: a redfish node with ipxe boot whose deploy kernel and ramdisk are the DIB
  ones goes manageable -> provide (automated cleaning) -> available, asserted on Ironic's
  provision states and records, and on the machine's disks and console.

Also checked without a boot: the element's scripts parse and its binary check refuses what it
must refuse.
"""
import gzip
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BUILD, REPO, WORK
from gates import require
from lab import Lab
from vm import VM, Disk, VMSpec

ELEMENT = os.path.join(REPO, "dib-element", "ironic-agent-ramdisk")
DIB_KERNEL = os.path.join(BUILD, "dib", "ironic-agent-dib.kernel")
DIB_INITRAMFS = os.path.join(BUILD, "dib", "ironic-agent-dib.initramfs")
# The smallest RAM the DIB ramdisk unpacks and heartbeats in (README; 32 MiB steps): 704 MiB
# booted directly (-kernel/-initrd), 832 MiB through iPXE as Ironic boots it (iPXE's copy of the
# image costs ~100 MiB more). The tests run it 64 MiB above that, so that growth of the image
# shows up here.
MEM_MIB = int(os.environ.get("DIB_E2E_MEM_MIB", "896"))
# What the kernel prints (even with `quiet`) when the initramfs did not fit: what is left may
# still boot, with files missing, so it must be looked for.
UNPACK_FAILED = "Initramfs unpacking failed"
MACS = ["52:54:00:d1:00:01", "52:54:00:d1:00:02"]

PROBE = r"""#!/bin/sh
# stands in for the agent (as the systemd service ironic-agent.service): reports what the
# image gave it, exits 3 until its Nth start, then powers the machine off
mkdir -p /run/ironic-agent
echo start >> /run/ironic-agent/starts
n=$(wc -l < /run/ironic-agent/starts)
want=1
for a in $(cat /proc/cmdline); do case $a in probe.starts=*) want=${a#*=} ;; esac; done
echo "probe: start $n of $want, args: $*"
for i in $(seq 100); do
    [ -e /sys/block/vda ] && [ -e /sys/block/nvme0n1 ] && [ -e /sys/block/sda ] && [ -e /sys/block/sdb ] && break
    sleep 0.1
done
for i in $(seq 100); do
    [ "$(busybox ip -4 -o addr show scope global | wc -l)" -ge 2 ] && break
    sleep 0.1
done
echo "probe: pid1: $(cat /proc/1/comm)"
echo "probe: rootfs: $(awk '$2 == "/" {print $3}' /proc/mounts | tail -1)"
echo "probe: memtotal_kib: $(awk '/^MemTotal/{print $2}' /proc/meminfo)"
echo "probe: disks: $(ls /sys/block | tr '\n' ' ')"
dev=$(busybox ip route get 10.0.2.100 | sed -n 's/.* dev \([^ ]*\).*/\1/p')
echo "probe: route to 10.0.2.100: $dev $(cat /sys/class/net/$dev/address)"
echo "probe: ipv4: $(busybox ip -4 -o addr show scope global | awk '{print $2 "=" $4}' | tr '\n' ' ')"
echo "probe: resolved: $(systemctl is-active systemd-resolved.service)"
echo "probe: resolv.conf: $(readlink /etc/resolv.conf)"
echo "probe: timesyncd: $(systemctl is-active systemd-timesyncd.service)"
echo "probe: unit: $(systemctl show -p Restart -p NRestarts -p StandardOutput ironic-agent.service | tr '\n' ' ')"
echo "probe: failed units: $(systemctl list-units --state=failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')"
echo "probe: modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
if [ "$n" -ge "$want" ]; then echo "probe: done"; sync; echo o > /proc/sysrq-trigger; fi
exit 3
"""


@pytest.fixture(scope="module")
def dib():
    for f in (DIB_KERNEL, DIB_INITRAMFS):
        if not os.path.isfile(f):
            pytest.fail(f"{f} is missing: run dib-element/build.sh first")
    return {"kernel": DIB_KERNEL, "initramfs": DIB_INITRAMFS}


# ---- the element itself, no boot -----------------------------------------------------------------
def element_scripts():
    for phase in ("extra-data.d", "install.d", "post-install.d", "cleanup.d"):
        d = os.path.join(ELEMENT, phase)
        for name in sorted(os.listdir(d)):
            yield os.path.join(d, name)


def test_element_layout_and_scripts_parse():
    deps = open(os.path.join(ELEMENT, "element-deps")).read().split()
    assert {"install-static", "no-final-image", "package-installs"} <= set(deps), deps
    scripts = list(element_scripts())
    assert scripts
    for s in scripts + [os.path.join(ELEMENT, "environment.d", "01-ironic-agent-ramdisk.bash"),
                        os.path.join(REPO, "dib-element", "build.sh")]:
        subprocess.run(["bash", "-n", s], check=True)
    for s in scripts:
        assert os.access(s, os.X_OK), f"{s} is not executable: dib-run-parts would skip it"


def run_extra_data(tmp_path, binary, elements="debian-minimal ironic-agent-ramdisk"):
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "TMP_HOOKS_PATH": str(hooks), "IMAGE_ELEMENT": elements}
    if binary is not None:
        env["DIB_IRONIC_AGENT_BINARY"] = str(binary)
    r = subprocess.run([os.path.join(ELEMENT, "extra-data.d", "50-ironic-agent-binary")],
                       env=env, capture_output=True, text=True)
    return r, hooks / "ironic-agent-bin"


def test_extra_data_refuses_missing_and_dynamic_binaries(tmp_path):
    r, out = run_extra_data(tmp_path, None)
    assert r.returncode != 0 and "DIB_IRONIC_AGENT_BINARY is not set" in r.stderr, r.stderr
    r, out = run_extra_data(tmp_path, tmp_path / "nope")
    assert r.returncode != 0 and "does not exist" in r.stderr, r.stderr
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\n")
    r, out = run_extra_data(tmp_path, script)
    assert r.returncode != 0 and "is not an ELF executable" in r.stderr, r.stderr
    # the host's own dynamically linked tools are what the check exists for
    r, out = run_extra_data(tmp_path, shutil.which("cpio"))
    assert r.returncode != 0 and "dynamically linked" in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("other", ["ramdisk", "dracut-ramdisk"])
def test_extra_data_refuses_dibs_own_ramdisk_elements(tmp_path, other):
    r, out = run_extra_data(tmp_path, shutil.which("busybox"),
                            f"debian-minimal {other} ironic-agent-ramdisk")
    assert r.returncode != 0 and f"leave out the {other} element" in r.stderr, r.stderr
    assert not out.exists()


def test_extra_data_copies_a_static_binary(tmp_path):
    static = shutil.which("busybox")      # busybox-static: a static ELF, like the agent
    r, out = run_extra_data(tmp_path, static)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == open(static, "rb").read()
    assert os.access(out, os.X_OK)


@pytest.mark.parametrize("bootif,mac", [("52:54:00:AA:00:01", "52:54:00:aa:00:01"),
                                         ("01-52-54-00-aa-00-01", "52:54:00:aa:00:01"),
                                         ("junk", None), (None, None)])
def test_bootif_network_file(tmp_path, bootif, mac):
    """The boot-time script that makes the BOOTIF NIC's routes win, run on the host."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 ipa-api-url=http://x" + (f" BOOTIF={bootif}" if bootif else "") + "\n")
    out = tmp_path / "run" / "10-bootif.network"
    env = dict(os.environ, BOOTIF_NETWORK_CMDLINE=str(cmdline), BOOTIF_NETWORK_FILE=str(out))
    script = os.path.join(ELEMENT, "static", "usr", "local", "sbin", "ironic-agent-bootif-network")
    r = subprocess.run([script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if mac is None:
        assert not out.exists()
        assert bootif is None or "not a MAC address" in r.stderr
    else:
        text = out.read_text()
        assert f"MACAddress={mac}\n" in text and "RouteMetric=100" in text, text


# ---- direct boot with a probe in place of the agent ---------------------------------------------------
def probe_initramfs(base: str, out: str) -> str:
    """The DIB initramfs + a gzip cpio that replaces /usr/local/bin/ironic-agent with PROBE."""
    root = out + ".d"
    bindir = os.path.join(root, "usr", "local", "bin")
    os.makedirs(bindir, exist_ok=True)
    with open(os.path.join(bindir, "ironic-agent"), "w") as f:
        f.write(PROBE)
    os.chmod(os.path.join(bindir, "ironic-agent"), 0o755)
    names = b"usr/local/bin/ironic-agent\n"
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                          input=names, capture_output=True, check=True).stdout
    with open(base, "rb") as b, open(out, "wb") as o:
        shutil.copyfileobj(b, o)
        o.write(gzip.compress(cpio))
    return out


def probe_value(text, key):
    vals = re.findall(rf"probe: {key}:(.*)", text)   # journald drops a trailing space
    assert vals, f"probe printed no {key}"
    return vals[-1].strip()


def test_dib_boot_systemd_drivers_network_supervision(netns, dib, workdir):
    initrd = probe_initramfs(dib["initramfs"], os.path.join(workdir, "initramfs+probe"))
    disks = []
    for i, bus in enumerate(("virtio", "nvme", "scsi", "sata")):
        p = os.path.join(workdir, f"d{i}.raw")
        with open(p, "wb") as f:
            f.truncate(64 << 20)
        disks.append(Disk(path=p, bus=bus))
    spec = VMSpec(name="dib", boot="direct", kernel=dib["kernel"], initrd=initrd,
                  append=f"console=ttyS0,115200 probe.starts=3 BOOTIF=01-{MACS[1].replace(':', '-')}", macs=MACS, disks=disks,
                  mem_mib=MEM_MIB, serial_log=os.path.join(workdir, "serial.log"))
    vm = VM(spec).start()
    try:
        rc = vm.wait(300)
        assert rc is not None, f"the VM did not power off within 300 s; see {spec.serial_log}"
    finally:
        vm.stop()
    text = "\n".join(line for _, line in vm.lines())
    assert "Kernel panic" not in text, f"kernel panic; see {spec.serial_log}"
    assert UNPACK_FAILED not in text, f"the initramfs did not fit in {MEM_MIB} MiB"
    assert "probe: done" in text, f"the probe never finished; see {spec.serial_log}"
    # systemd runs the initramfs as the system: PID 1, root still in RAM (the agent's DiskGuard)
    assert probe_value(text, "pid1") == "systemd"
    assert probe_value(text, "rootfs") in ("rootfs", "tmpfs", "ramfs")
    assert int(probe_value(text, "memtotal_kib")) <= MEM_MIB * 1024
    # udev found a driver for every disk bus, from Debian's compressed modules
    for d in ("vda", "nvme0n1", "sda", "sdb"):
        assert d in probe_value(text, "disks").split(), probe_value(text, "disks")
    mods = probe_value(text, "modules").split()
    for m in ("virtio_blk", "nvme", "virtio_scsi", "ahci", "virtio_net", "ipmi_devintf"):
        assert m in mods, f"module {m} not loaded: {mods}"
    # systemd-networkd: a DHCP lease on every NIC (each is its own slirp network); DNS through
    # systemd-resolved's stub (the lab's slirp, restrict=on, hands out no DNS server to check)
    ipv4 = probe_value(text, "ipv4")
    assert re.search(r"\b\S+=10\.0\.2\.15/24 \S+=10\.0\.2\.15/24", ipv4), ipv4
    # both NICs reach 10.0.2.0/24; BOOTIF (the second one here) wins the routes
    assert probe_value(text, "route to 10.0.2.100").split()[1] == MACS[1]
    assert probe_value(text, "resolved") == "active"
    assert probe_value(text, "resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    # a long-lived system's services stay off, first boot presets notwithstanding
    assert probe_value(text, "timesyncd") == "inactive"
    # the service: restarted after each failure, /run/ironic-agent kept, output on the console
    unit = probe_value(text, "unit")
    assert "Restart=always" in unit and "StandardOutput=journal+console" in unit, unit
    assert "NRestarts=2" in unit, unit
    for n in (1, 2, 3):
        assert f"probe: start {n} of 3, args: run" in text
    assert probe_value(text, "failed units") == "", "units failed to start"


# ---- Ironic in charge: PXE boot, lookup, heartbeat, automated cleaning ----------------------------------
def test_dib_ramdisk_cleans_under_ironic(netns, dib):
    lab = Lab(os.path.join(WORK, "dib-cleaning"), kernel=dib["kernel"], initramfs=dib["initramfs"],
              mem_mib=MEM_MIB)
    try:
        lab.start(nodes=1)
        node = lab.nodes[0]
        nvme = next(d["path"] for d in node.disks if d["bus"] == "nvme")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "dib-nvme", nvme], check=True)
        uuid = lab.enroll(node)
        lab.provision(uuid, "manage")
        lab.wait_state(uuid, "manageable", 60, fail=("enroll",))
        t0 = time.time()
        lab.provision(uuid, "provide")
        state = lab.wait_state(uuid, "available", 600, fail=("clean failed",))
        assert state["last_error"] is None
        dii = state["driver_internal_info"]
        # the agent looked itself up, heartbeated, and the conductor drove its clean steps
        assert "agent_cached_clean_steps_refreshed" in dii, sorted(dii)
        assert dii.get("hardware_manager_version"), sorted(dii)
        assert dii.get("agent_url", "").startswith("https://127.0.0.1:"), dii.get("agent_url")
        calls = [c for c in lab.agent_calls() if c["t"] >= t0]
        assert any(c["method"] == "GET" and c["path"].startswith("/v1/lookup") for c in calls)
        assert any(c["method"] == "POST" and c["path"].startswith("/v1/heartbeat/") for c in calls)
        # the BMC powered it on once, through PXE (Ironic's ipxe boot interface)
        ons = [e for e in lab.bmc_events_list() if e["event"] == "power-on"]
        assert [e["boot"] for e in ons] == ["pxe"], ons
        # the agent's log reaches the serial console (Ironic's cmdline has `quiet`, so the kernel
        # says nothing there): it started once, and found itself in a ramdisk (DiskGuard)
        console = open(node.serial_log, errors="replace").read()
        assert UNPACK_FAILED not in console, f"the initramfs did not fit in {MEM_MIB} MiB"
        starts = re.findall(r"ironic-agent \S+ starting \(([^)]*)\)", console)
        assert starts == ["running from a ramdisk"], starts
        require("erase-devices-metadata")
        with open(nvme, "rb") as f:
            f.seek(1024 + 56)
            assert f.read(2) != b"\x53\xef", "the ext4 signature on the NVMe disk survived cleaning"
    finally:
        lab.stop()
        print(f"\nlab logs: {lab.work}/logs")
