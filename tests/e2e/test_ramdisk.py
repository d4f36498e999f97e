"""The ramdisk's early userspace, booted directly (-kernel vmlinux) in 256 MiB under QEMU.

The agent is swapped for a probe script (a second cpio appended to the initramfs replaces
/bin/ironic-agent), so these tests check what init promises whatever the agent does:
drivers for every disk bus, DHCP on the BOOTIF NIC or on every NIC, IPv6 autoconf, the
root file system staying the initramfs, and supervision (restart with backoff, /run kept).
"""
import gzip
import os
import re
import subprocess

import pytest

from conftest import REPO  # noqa: F401  (sys.path set up there)
from vm import VM, Disk, VMSpec

PROBE = r"""#!/bin/sh
# stands in for the agent: reports what the ramdisk gave it, exits 3 until its Nth start
mkdir -p /run/ironic-agent
echo start >> /run/ironic-agent/starts
n=$(wc -l < /run/ironic-agent/starts)
want=1
for a in $(cat /proc/cmdline); do case $a in probe.starts=*) want=${a#*=} ;; esac; done
echo "probe: start $n of $want, args: $*"
for i in $(seq 80); do
    [ -e /sys/block/vda ] && [ -e /sys/block/nvme0n1 ] && [ -e /sys/block/sda ] && [ -e /sys/block/sdb ] && break
    sleep 0.1
done
for i in $(seq 50); do ip -6 -o addr show | grep -q fec0:: && break; sleep 0.1; done
echo "probe: disks: $(ls /sys/block | tr '\n' ' ')"
echo "probe: memtotal_kib: $(awk '/^MemTotal/{print $2}' /proc/meminfo)"
echo "probe: rootfs: $(awk '$2 == "/" {print $3}' /proc/mounts | tail -1)"
echo "probe: ipv4: $(ip -4 -o addr show scope global | awk '{print $2 "=" $4}' | tr '\n' ' ')"
echo "probe: ipv6: $(ip -6 -o addr show | awk '{print $2 "=" $4}' | tr '\n' ' ')"
echo "probe: modules: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')"
if [ "$n" -ge "$want" ]; then echo "probe: done"; sync; poweroff -f; fi
exit 3
"""

MACS = ["52:54:00:aa:00:01", "52:54:00:aa:00:02"]


def probe_initramfs(base: str, out: str) -> str:
    """base initramfs + a gzip cpio that replaces /bin/ironic-agent with PROBE."""
    root = out + ".d"
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    agent = os.path.join(root, "bin", "ironic-agent")
    with open(agent, "w") as f:
        f.write(PROBE)
    os.chmod(agent, 0o755)
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                          input=b"bin\nbin/ironic-agent\n", capture_output=True, check=True).stdout
    with open(base, "rb") as b, open(out, "wb") as o:
        o.write(b.read())
        o.write(gzip.compress(cpio))
    return out


def boot(workdir, artifacts, append, disks=True, timeout=90):
    initrd = probe_initramfs(artifacts["initramfs"], os.path.join(workdir, "initramfs+probe"))
    dl = []
    if disks:
        for i, bus in enumerate(("virtio", "nvme", "scsi", "sata")):
            p = os.path.join(workdir, f"d{i}.raw")
            with open(p, "wb") as f:
                f.truncate(64 << 20)
            dl.append(Disk(path=p, bus=bus))
    spec = VMSpec(name="ramdisk", boot="direct", kernel=artifacts["vmlinux"], initrd=initrd,
                  append="console=ttyS0,115200 " + append, macs=MACS, disks=dl, mem_mib=256,
                  serial_log=os.path.join(workdir, "serial.log"))
    vm = VM(spec).start()
    try:
        rc = vm.wait(timeout)
        assert rc is not None, f"the VM did not power off within {timeout} s; see {spec.serial_log}"
    finally:
        vm.stop()
    text = "\n".join(line for _, line in vm.lines())
    assert "Kernel panic" not in text, f"kernel panic; see {spec.serial_log}"
    assert "probe: done" in text, f"the probe never finished; see {spec.serial_log}"
    return text


def probe_value(text, key):
    vals = re.findall(rf"probe: {key}: (.*)", text)
    assert vals, f"probe printed no {key}"
    return vals[-1].strip()


def test_boot_bootif_drivers_and_supervision(netns, artifacts, workdir):
    text = boot(workdir, artifacts, f"BOOTIF=01-{MACS[1].replace(':', '-')} probe.starts=3")
    # drivers by modalias: every disk bus of the VM shows up
    disks = probe_value(text, "disks").split()
    for d in ("vda", "nvme0n1", "sda", "sdb"):
        assert d in disks, f"disk {d} missing from {disks}"
    # 256 MiB machine, and the root stays the initramfs (the agent's DiskGuard relies on it)
    assert int(probe_value(text, "memtotal_kib")) <= 256 * 1024
    assert probe_value(text, "rootfs") in ("rootfs", "tmpfs", "ramfs")
    # DHCP only on the BOOTIF NIC (the second one, given in pxelinux's 01-aa-bb-... form)
    assert "network: dhcp on eth1 (BOOTIF=52:54:00:aa:00:02)" in text
    ipv4 = probe_value(text, "ipv4")
    assert ipv4.startswith("eth1=10.0.2.15/") and "eth0" not in ipv4, ipv4
    # IPv6 router advertisements are accepted (slirp announces fec0::/64)
    assert "fec0::" in probe_value(text, "ipv6")
    # supervision: restarted after each exit, 1 s then 2 s, and /run/ironic-agent kept
    assert re.search(r"ironic-agent exited with status 3 after \d+s; restarting in 1s", text)
    assert re.search(r"ironic-agent exited with status 3 after \d+s; restarting in 2s", text)
    assert "starting ironic-agent run (start #3)" in text
    assert "probe: start 3 of 3, args: run" in text


def test_boot_without_bootif_uses_every_nic(netns, artifacts, workdir):
    text = boot(workdir, artifacts, "probe.starts=1", disks=False)
    assert "network: dhcp on eth0 eth1 (BOOTIF=none)" in text
    ipv4 = probe_value(text, "ipv4")
    assert "eth0=10.0.2.15/" in ipv4 and "eth1=10.0.2.15/" in ipv4, ipv4


@pytest.mark.parametrize("form", ["52:54:00:AA:00:01", "01-52-54-00-aa-00-01"])
def test_bootif_forms(form, tmp_path):
    """rcS's BOOTIF normalisation, run by busybox sh on the host."""
    rcs = os.path.join(REPO, "initramfs", "rootfs", "etc", "init.d", "rcS")
    body = open(rcs).read()
    fn = body[body.index("bootif_mac() {"):]
    fn = fn[:fn.index("\n}\n") + 3]
    out = subprocess.run(["busybox", "sh", "-c", fn + f'bootif_mac "{form}"'],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "52:54:00:aa:00:01"


def test_init_scripts_parse():
    root = os.path.join(REPO, "initramfs", "rootfs")
    for rel in ("etc/init.d/rcS", "etc/init.d/functions", "etc/udhcpc.script", "bin/agent-supervisor"):
        subprocess.run(["busybox", "sh", "-n", os.path.join(root, rel)], check=True)
