"""Cleaning driven by a real Ironic over disks that carry real metadata.

One QEMU server with a virtio, an NVMe and a SCSI disk whose image files are prepared on the
host before the first boot (through loop devices): a GPT with ext4 and an LVM physical volume
in its partitions on the virtio disk, an LVM physical volume over the whole NVMe disk, XFS over
the whole SCSI disk, and a data marker on each disk that no metadata wipe may touch.

The node has `driver_info.fast_track = false` while the conductor enables fast track: the
per-node switch must make Ironic power it off after each cleaning and boot it again.

* Automated cleaning (`provide`): Ironic runs the agent's `erase_devices_metadata` (the lab's
  conductor sets `erase_devices_priority = 0`, so the full erase does not run). With the VM
  powered off, blkid and wipefs on the host find nothing on any disk file, nor at the offsets
  where the partitions' file systems were, while the data markers survive.
* Manual cleaning with `erase_devices`, the virtio disk named in
  `properties.skip_block_devices`: the NVMe disk (Format NVM) and the SCSI disk (overwrite:
  one random pass, then zeros) read back as zeros end to end; the skipped disk keeps its data.

The tests run in file order and share the node.
"""
import contextlib
import os
import re
import subprocess
import time

import pytest

from conftest import SharedNode, started_lab
from lab import Lab, console_boots

MIB = 1 << 20
# The virtio disk's GPT: partition 1 (ext4) and partition 2 (LVM PV), in MiB.
P1 = (1, 64)
P2 = (65, 256)
MARKER = b"ironic-agent cleaning e2e marker\n" * 31   # 1023 bytes, no signature of anything
MARKER_AT = 700 * MIB                                  # beyond every file system's metadata


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@contextlib.contextmanager
def loop(path: str, offset_mib: int = 0, size_mib: int = 0):
    args = ["losetup", "-f", "--show"]
    if offset_mib:
        args += ["-o", str(offset_mib * MIB)]
    if size_mib:
        args += ["--sizelimit", str(size_mib * MIB)]
    dev = run(*args, path).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def signatures(path: str, offset: int = 0) -> str:
    """What blkid's low-level probe finds at `offset` of a disk file ('' when nothing)."""
    r = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(offset), path],
                       capture_output=True, text=True)
    return r.stdout.strip()


def wipefs(path: str) -> str:
    return run("wipefs", "--noheadings", "--output", "TYPE,OFFSET", path).strip()


def write_marker(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(MARKER_AT)
        f.write(MARKER)


def has_marker(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(MARKER_AT)
        return f.read(len(MARKER)) == MARKER


def all_zero(path: str) -> bool:
    zero = bytes(4 * MIB)
    with open(path, "rb") as f:
        while True:
            block = f.read(4 * MIB)
            if not block:
                return True
            if block != zero[:len(block)]:
                return False


def prepare_disks(disks: dict) -> None:
    virtio, nvme, scsi = disks["virtio"], disks["nvme"], disks["scsi"]
    run("sgdisk", f"-n1:{P1[0] * 2048}:+{P1[1]}M", f"-n2:{P2[0] * 2048}:+{P2[1]}M", "-t2:8e00", virtio)
    with loop(virtio, *P1) as dev:
        run("mkfs.ext4", "-q", "-F", "-L", "e2e-p1", dev)
    with loop(virtio, *P2) as dev:
        run("pvcreate", "-ff", "-y", "--devicesfile", "", dev)
    with loop(nvme) as dev:
        run("pvcreate", "-ff", "-y", "--devicesfile", "", dev)
    run("mkfs.xfs", "-q", "-f", "-L", "e2e-scsi", scsi)
    for path in disks.values():
        write_marker(path)


class Cleaning(SharedNode):
    def __init__(self, lab: Lab):
        super().__init__(lab)
        self.disks = {d["bus"]: d["path"] for d in self.node.disks}

    def power_offs(self) -> int:
        return len([e for e in self.lab.bmc_events_list() if e["event"] == "power-off"])

    def wait_ironic_powered_off(self, before: int) -> None:
        """The node is enrolled with driver_info.fast_track=false while the conductor has
        [deploy]fast_track=true: the per-node switch must make Ironic power it off after
        cleaning by itself, which also lets the test read the disk files with QEMU gone."""
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.power_offs() > before and self.lab.node(self.uuid)["power_state"] == "power off":
                return
            time.sleep(0.5)
        pytest.fail("Ironic did not power the node off after cleaning (driver_info.fast_track="
                    f"false); BMC events: {self.lab.bmc_events_list()}")


@pytest.fixture(scope="module")
def cleaning(netns, artifacts):
    for tool, package in (("sgdisk", "gdisk"), ("pvcreate", "lvm2"), ("mkfs.xfs", "xfsprogs"),
                          ("blkid", "util-linux")):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            pytest.fail(f"{tool} is missing: apt-get install {package}")
    with started_lab("cleaning", artifacts) as lab:
        c = Cleaning(lab)
        prepare_disks(c.disks)
        yield c


def test_fixture_disks_carry_the_metadata(cleaning):
    d = cleaning.disks
    assert "PTTYPE=gpt" in signatures(d["virtio"])
    assert "TYPE=ext4" in signatures(d["virtio"], P1[0] * MIB)
    assert "TYPE=LVM2_member" in signatures(d["virtio"], P2[0] * MIB)
    assert "TYPE=LVM2_member" in signatures(d["nvme"])
    assert "TYPE=xfs" in signatures(d["scsi"])
    assert all(has_marker(p) for p in d.values())
    cleaning.reached.add("prepared")


def test_automated_cleaning_runs_the_metadata_wipe(cleaning):
    cleaning.need("prepared")
    lab = cleaning.lab
    cleaning.uuid = lab.enroll(cleaning.node, fast_track=False)
    lab.provision(cleaning.uuid, "manage")
    lab.wait_state(cleaning.uuid, "manageable", 60, fail=("enroll",))
    offs = cleaning.power_offs()
    lab.provision(cleaning.uuid, "provide")
    node = lab.wait_state(cleaning.uuid, "available", 420, fail=("clean failed",))
    assert node["last_error"] is None
    # Ironic drops its step cache when cleaning ends; its log keeps what it got and ran.
    log = open(os.path.join(lab.work, "logs", "ironic-service.log"), errors="replace").read()
    cache = [line for line in log.splitlines()
             if f"Refreshed agent clean step cache for node {cleaning.uuid}" in line]
    assert cache, "the conductor never fetched the agent's clean steps"
    advertised = dict(re.findall(r"'step': '(\w+)', 'priority': (\d+)", cache[-1]))
    assert advertised.get("erase_devices_metadata") == "99", advertised
    assert advertised.get("erase_devices") == "10", advertised
    plan = [line for line in log.splitlines()
            if f"List of the steps for automated cleaning of node {cleaning.uuid}" in line]
    assert plan and re.findall(r"'step': '(\w+)'", plan[-1]) == ["erase_devices_metadata"], plan
    cleaning.wait_ironic_powered_off(offs)
    cleaning.reached.add("cleaned")


def test_no_signature_survives_automated_cleaning(cleaning):
    cleaning.need("cleaned")
    d = cleaning.disks
    for bus, path in d.items():
        assert signatures(path) == "", f"blkid still finds metadata on the {bus} disk"
        assert wipefs(path) == "", f"wipefs still finds signatures on the {bus} disk"
    # The file systems inside the (now gone) partitions were wiped too.
    assert signatures(d["virtio"], P1[0] * MIB) == "", "the ext4 in partition 1 survived"
    assert signatures(d["virtio"], P2[0] * MIB) == "", "the LVM PV in partition 2 survived"
    # A metadata wipe, not a full erase: data elsewhere is intact.
    for bus, path in d.items():
        assert has_marker(path), f"the data marker on the {bus} disk was overwritten"


def test_manual_erase_devices_leaves_zeros(cleaning):
    cleaning.need("cleaned")
    lab, d = cleaning.lab, cleaning.disks
    for path in d.values():          # something to erase beyond the marker
        with open(path, "r+b") as f:
            f.write(b"\xa5" * MIB)
            f.seek(-MIB, os.SEEK_END)
            f.write(b"\x5a" * MIB)
    lab.api("PATCH", f"/v1/nodes/{cleaning.uuid}", [
        {"op": "add", "path": "/properties/skip_block_devices",
         "value": [{"serial": f"{cleaning.node.name}-virtio"}]},
    ])
    lab.provision(cleaning.uuid, "manage")
    lab.wait_state(cleaning.uuid, "manageable", 60)
    offs = cleaning.power_offs()
    lab.provision(cleaning.uuid, "clean",
                  clean_steps=[{"interface": "deploy", "step": "erase_devices"}])
    node = lab.wait_state(cleaning.uuid, "manageable", 600, fail=("clean failed",))
    assert node["last_error"] is None
    cleaning.wait_ironic_powered_off(offs)
    assert console_boots(cleaning.node.serial_log)["ramdisk"] == 2, \
        "without fast track, manual cleaning boots the ramdisk again"
    assert all_zero(d["nvme"]), "the NVMe disk is not all zeros after erase_devices"
    assert all_zero(d["scsi"]), "the SCSI disk is not all zeros after erase_devices"
    assert has_marker(d["virtio"]), "the skipped virtio disk was erased"
    with open(d["virtio"], "rb") as f:
        assert f.read(MIB) == b"\xa5" * MIB, "the skipped virtio disk was erased"
