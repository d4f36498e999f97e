"""Deploys under a real Ironic with fast track, as Ironic and Metal3 (CAPM3) use them.

One QEMU server (BIOS, redfish BMC, ipxe boot, direct deploy, [deploy]fast_track and the
node's driver_info.fast_track): inspect -> clean -> deploy a whole-disk image with a config
drive, all in one ramdisk boot; then Metal3's re-provisioning: undeploy with automated
cleaning, the agent stays up and heartbeating in `available`, and the next deploy reuses it
without a power cycle, honouring root device hints set long after inspection; then a
partition image, whose layout Ironic's install_bootloader then refuses to make bootable without
GRUB (IPA's CVE-2026-43003 behaviour). Assertions are on what Ironic reports and on the VM's
disks, power events and console.

The tests run in file order and share the node.
"""
import base64
import gzip
import hashlib
import os
import random
import re
import struct
import subprocess
import time

import pytest

from conftest import SharedNode, started_lab
from lab import LabError, console_boots
from testimage import MARKER, write_image

IMAGE_MIB = 40
MIB = 1 << 20
CONFIG_DRIVE = b"ironic-agent-e2e config drive\n" * 1000


class Node(SharedNode):
    def boots(self) -> int:
        return console_boots(self.node.serial_log)["ramdisk"]

    def power(self) -> list:
        return [e for e in self.lab.bmc_events_list() if e["event"].startswith("power-")]

    def disk(self, bus: str) -> str:
        return next(d["path"] for d in self.node.disks if d["bus"] == bus)

    def image(self, name: str, seed: int, tmp) -> tuple:
        path = str(tmp / name)
        sha = write_image(path, IMAGE_MIB, seed=seed)
        return path, sha, self.lab.put_image(name, path)

    def set_image(self, url: str, sha: str, extra=()) -> None:
        self.lab.api("PATCH", f"/v1/nodes/{self.uuid}", [
            {"op": "add", "path": "/instance_info/image_source", "value": url},
            {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha},
            *extra])

    def provision(self, target: str, **extra) -> None:
        """PUT the provision state, retrying while the conductor still holds the node's lock
        (409 right after a failed deploy, while it collects the ramdisk logs)."""
        deadline = time.time() + 60
        while True:
            try:
                return self.lab.provision(self.uuid, target, **extra)
            except LabError as e:
                if " 409: " not in str(e) or time.time() > deadline:
                    raise
                time.sleep(1)

    def wait_agent_alive(self, timeout: float) -> dict:
        """Until the agent heartbeats in the current state (fast track keeps it up)."""
        deadline = time.time() + timeout
        before = self.state()["driver_internal_info"].get("agent_last_heartbeat")
        while time.time() < deadline:
            dii = self.state()["driver_internal_info"]
            if dii.get("agent_url") and dii.get("agent_last_heartbeat") not in (None, before):
                return dii
            time.sleep(1)
        pytest.fail(f"the agent did not heartbeat within {timeout} s; state {self.state()}")


def mbr_entries(path: str) -> list:
    with open(path, "rb") as f:
        mbr = f.read(512)
    out = []
    for i in range(4):
        e = mbr[446 + 16 * i:462 + 16 * i]
        boot, ptype, start, size = e[0], e[4], *struct.unpack("<II", e[8:16])
        if ptype:
            out.append({"n": i + 1, "boot": boot, "type": ptype, "start": start * 512,
                        "size": size * 512})
    return out


def same_as_image(disk: str, image: str, table_changed: bool = False) -> bool:
    """Byte equality; with `table_changed`, the MBR partition entries (where the agent added
    the config drive partition) are left out."""
    with open(image, "rb") as a, open(disk, "rb") as b:
        first = True
        while True:
            x, y = a.read(MIB), b.read(MIB)
            if not x:
                return True
            if first and table_changed:
                x, y = x[:446] + x[510:], y[:446] + y[510:]
            first = False
            if y[:len(x)] != x:
                return False


@pytest.fixture(scope="module")
def n(netns, artifacts):
    with started_lab("deploy-fast-track", artifacts) as lab:
        yield Node(lab)


def test_inspect_and_clean_in_one_boot(n):
    n.uuid = n.lab.enroll(n.node, fast_track=True)
    n.lab.provision(n.uuid, "manage")
    n.lab.wait_state(n.uuid, "manageable", 60, fail=("enroll",))
    n.lab.provision(n.uuid, "inspect")
    n.lab.wait_state(n.uuid, "manageable", 300, fail=("inspect failed",))
    n.lab.provision(n.uuid, "provide")
    node = n.lab.wait_state(n.uuid, "available", 300, fail=("clean failed",))
    assert node["last_error"] is None
    assert n.boots() == 1, "fast track: inspection and cleaning share one ramdisk boot"
    n.reached.add("available")


def test_whole_disk_image_with_config_drive(n, tmp_path):
    n.need("available")
    img, sha, url = n.image("wd.img", 11, tmp_path)
    n.set_image(url, sha)
    drive = base64.b64encode(gzip.compress(CONFIG_DRIVE)).decode()
    n.lab.provision(n.uuid, "active", configdrive=drive)
    node = n.lab.wait_state(n.uuid, "active", 300, fail=("deploy failed",))
    assert node["last_error"] is None
    assert n.boots() == 1, "fast track: the deploy used the agent that inspected and cleaned"
    disk = n.disk("virtio")
    assert same_as_image(disk, img, table_changed=True)
    # get_partition_uuids for a whole-disk image: the MBR disk identifier (zero in this image)
    assert node["driver_internal_info"].get("root_uuid_or_disk_id") == "0x00000000", \
        node["driver_internal_info"]
    # the config drive: a new primary partition over the last 64 MiB of the 8 GiB disk
    parts = mbr_entries(disk)
    size = os.path.getsize(disk)
    assert [p["n"] for p in parts] == [1, 2], parts
    cd = parts[1]
    assert (cd["type"], cd["start"], cd["size"]) == (0x0C, size - 64 * MIB, 64 * MIB), parts
    with open(disk, "rb") as f:
        f.seek(cd["start"])
        assert f.read(len(CONFIG_DRIVE)) == CONFIG_DRIVE
    n.reached.add("active")


def test_reprovision_reuses_the_cleaning_agent(n, tmp_path):
    """Metal3 re-provisioning: undeploy with automated cleaning leaves the agent running in
    `available`; the next deploy starts without a power action and picks the disk by a root
    device hint set after inspection."""
    n.need("active")
    n.lab.provision(n.uuid, "deleted")
    n.lab.wait_state(n.uuid, "available", 300, fail=("clean failed", "error"))
    assert n.boots() == 2, "undeploy boots the ramdisk once for cleaning"
    n.wait_agent_alive(120)
    events_before = len(n.power())
    # hints Ironic's inspection never saw: the small NVMe disk, by serial
    n.lab.api("PATCH", f"/v1/nodes/{n.uuid}", [
        {"op": "add", "path": "/properties/root_device", "value": {"serial": "node-0-nvme"}}])
    img, sha, url = n.image("again.img", 12, tmp_path)
    n.set_image(url, sha)
    t0 = time.time()
    n.lab.provision(n.uuid, "active")
    node = n.lab.wait_state(n.uuid, "active", 300, fail=("deploy failed",))
    assert node["last_error"] is None
    assert n.boots() == 2, "the re-deploy must not boot the ramdisk again"
    after = n.power()[events_before:]
    # no power action between the end of cleaning and the deploy; afterwards only
    # tear_down_agent's power off and booting the instance from disk
    assert all(e["t"] >= t0 for e in after), after
    assert not [e for e in after if e["event"] == "power-on" and e.get("boot") == "pxe"], after
    assert same_as_image(n.disk("nvme"), img), "the root device hint was not honoured"
    assert not same_as_image(n.disk("virtio"), img)
    n.lab.api("PATCH", f"/v1/nodes/{n.uuid}", [{"op": "remove", "path": "/properties/root_device"}])
    n.reached.add("redeployed")


def qcow2_larger_than_ram(tmp, mem_mib: int) -> tuple:
    """A qcow2 file bigger than the VM's whole RAM, so staging it in the ramdisk (what IPA
    does with every non-raw image) cannot work: the bootable test image at 0, incompressible
    data far into the 1 GiB virtual disk, zeros between (unallocated clusters). Returns
    (qcow2 path, sha256 of the qcow2 file, raw path)."""
    raw = str(tmp / "big.raw")
    write_image(raw, IMAGE_MIB, seed=21)
    data_mib = mem_mib + 64
    with open(raw, "r+b") as f:
        f.truncate(1024 * MIB)
        f.seek(1024 * MIB - data_mib * MIB)
        rng = random.Random(22)
        for _ in range(data_mib):
            f.write(rng.randbytes(MIB))
    qcow = str(tmp / "big.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow], check=True)
    h = hashlib.sha256()
    with open(qcow, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return qcow, h.hexdigest(), raw


def test_qcow2_larger_than_ram_streams_to_disk(n, tmp_path):
    """The image pipeline's reason to exist: a qcow2 file larger than the node's RAM, declared
    as qcow2 and passed through by Ironic (image_download_source=http), is converted on the
    agent in one streaming pass into a 256 MiB ramdisk; IPA would stage it in tmpfs first."""
    n.need("redeployed")
    n.provision("deleted")
    n.lab.wait_state(n.uuid, "available", 300, fail=("clean failed", "error"))
    n.wait_agent_alive(120)
    boots = n.boots()
    qcow, sha, raw = qcow2_larger_than_ram(tmp_path, n.lab.mem_mib)
    try:
        check_qcow2_deploy(n, qcow, sha, raw, boots)
    finally:     # ~0.7 GiB that pytest would keep for three runs
        os.unlink(qcow)
        os.unlink(raw)


def check_qcow2_deploy(n, qcow: str, sha: str, raw: str, boots: int) -> None:
    assert os.path.getsize(qcow) > n.lab.mem_mib * MIB
    url = n.lab.put_image("big.qcow2", qcow)
    n.set_image(url, sha, extra=[
        {"op": "add", "path": "/instance_info/image_disk_format", "value": "qcow2"}])
    n.provision("active")
    node = n.lab.wait_state(n.uuid, "active", 600, fail=("deploy failed",))
    assert node["last_error"] is None
    assert n.boots() == boots, "the deploy reused the agent that cleaned"
    assert same_as_image(n.disk("virtio"), raw), "the disk differs from the qcow2's contents"
    console = n.console()
    assert "oom-kill" not in console and "Out of memory" not in console
    # the agent's own account: qcow2 converted in one pass, in memory the image did not set
    written = re.findall(r"written to \S+: (\d+) bytes downloaded, qcow2 \((\d+) bytes\).*"
                         r"agent peak memory (\d+) MiB", console)
    assert written, "the agent did not report the qcow2 write"
    downloaded, virtual, peak = map(int, written[-1])
    assert downloaded == os.path.getsize(qcow) and virtual == 1024 * MIB, written[-1]
    assert peak <= 64, f"the agent's peak memory was {peak} MiB"
    n.reached.add("qcow2")


def wait_console(n, text: str, after: int, timeout: float) -> str:
    """Until `text` appears in the console past offset `after`; returns that part."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        tail = n.console()[after:]
        if text in tail:
            return tail
        time.sleep(1)
    pytest.fail(f"{text!r} did not appear on the console within {timeout} s")


def test_rescue_and_unrescue(n):
    """Ironic's agent rescue: the ramdisk boots again, Ironic calls rescue.finalize_rescue
    with the (hashed) password, the agent stops and init turns the hash into a `rescue`
    login; unrescue boots the instance from its disk again."""
    n.need("qcow2")
    # an active node's rescue interface can only change in maintenance mode
    n.lab.api("PUT", f"/v1/nodes/{n.uuid}/maintenance", {"reason": "enable agent rescue"})
    n.lab.api("PATCH", f"/v1/nodes/{n.uuid}", [
        {"op": "replace", "path": "/rescue_interface", "value": "agent"},
        {"op": "add", "path": "/driver_info/rescue_kernel",
         "value": n.state()["driver_info"]["deploy_kernel"]},
        {"op": "add", "path": "/driver_info/rescue_ramdisk",
         "value": n.state()["driver_info"]["deploy_ramdisk"]}])
    n.lab.api("DELETE", f"/v1/nodes/{n.uuid}/maintenance")
    boots = n.boots()
    start = len(n.console())
    n.provision("rescue", rescue_password="e2e-rescue-password")
    node = n.lab.wait_state(n.uuid, "rescue", 300, fail=("rescue failed",))
    assert node["last_error"] is None
    assert n.boots() == boots + 1, "rescue boots the ramdisk"
    tail = wait_console(n, "rescue: user rescue created", start, 60)
    assert "rescue finalized: the API stops after this reply" in tail
    assert "malformed password hash" not in tail
    start = len(n.console())
    n.provision("unrescue")
    node = n.lab.wait_state(n.uuid, "active", 300, fail=("unrescue failed",))
    assert node["last_error"] is None
    wait_console(n, MARKER.decode(), start, 120)


def test_partition_image_layout_then_bootloader_refusal(n, tmp_path):
    """A partition image: IPA's msdos layout (swap, config drive, root last and active), the
    image in the root partition; Ironic then asks for GRUB, which IPA refuses by default
    (CVE-2026-43003) and so does this agent."""
    n.need("redeployed")
    n.lab.provision(n.uuid, "deleted")
    n.lab.wait_state(n.uuid, "available", 300, fail=("clean failed", "error"))
    n.wait_agent_alive(120)
    boots = n.boots()
    img, sha, url = n.image("root.img", 13, tmp_path)
    n.set_image(url, sha, extra=[
        {"op": "add", "path": "/instance_info/image_type", "value": "partition"},
        {"op": "add", "path": "/instance_info/root_gb", "value": 1},
        {"op": "add", "path": "/instance_info/swap_mb", "value": 64},
        {"op": "add", "path": "/instance_info/image_disk_format", "value": "raw"},
    ])
    drive = base64.b64encode(gzip.compress(CONFIG_DRIVE)).decode()
    n.lab.provision(n.uuid, "active", configdrive=drive)
    with pytest.raises(LabError, match="deploy failed"):
        n.lab.wait_state(n.uuid, "active", 300, fail=("deploy failed",))
    node = n.state()
    err = node["last_error"] or ""
    assert "CVE-2026-43003" in err, err
    # get_partition_uuids gave Ironic the root partition's PARTUUID (no file system in it)
    parts = mbr_entries(n.disk("virtio"))
    with open(n.disk("virtio"), "rb") as f:
        f.seek(440)
        sig = struct.unpack("<I", f.read(4))[0]
    assert node["driver_internal_info"].get("root_uuid_or_disk_id") == f"{sig:08x}-03", \
        node["driver_internal_info"]
    assert [(p["type"], p["start"] // MIB, p["size"] // MIB, p["boot"]) for p in parts] == [
        (0x82, 1, 64, 0), (0x83, 65, 1, 0), (0x83, 66, 1024, 0x80)], parts
    with open(n.disk("virtio"), "rb") as f:
        f.seek(65 * MIB)
        assert f.read(len(CONFIG_DRIVE)) == CONFIG_DRIVE
        f.seek(MIB + 4096 - 10)
        assert f.read(10) == b"SWAPSPACE2"
    with open(img, "rb") as a, open(n.disk("virtio"), "rb") as b:
        b.seek(66 * MIB)
        assert a.read() == b.read(IMAGE_MIB * MIB), "root partition differs from the image"
    assert n.boots() == boots, "the deploy reused the agent that cleaned"


def test_lockdown_for_nodes_that_must_not_power_off(n, tmp_path):
    """`disable_power_off`: tear_down_agent syncs and locks the agent down instead of powering
    off; Ironic waits for the agent API to go away, then reboots into the instance."""
    n.need("redeployed")
    n.provision("deleted")
    n.lab.wait_state(n.uuid, "available", 300, fail=("clean failed", "error"))
    n.wait_agent_alive(120)
    n.lab.api("PATCH", f"/v1/nodes/{n.uuid}", [
        {"op": "replace", "path": "/disable_power_off", "value": True}])
    img, sha, url = n.image("locked.img", 14, tmp_path)
    n.set_image(url, sha)
    t0 = time.time()
    n.lab.provision(n.uuid, "active")
    node = n.lab.wait_state(n.uuid, "active", 300, fail=("deploy failed",))
    assert node["last_error"] is None
    assert same_as_image(n.disk("virtio"), img)
    console = n.console()
    assert "locking down: the API and heartbeats stop after this reply" in console
    assert "is down" in console.split("locking down:")[-1], "no interface was taken down"
    offs = [e for e in n.power() if e["t"] >= t0 and e["event"] == "power-off"]
    assert all(e.get("reason") == "restart" for e in offs), \
        f"a node with disable_power_off was powered off (not rebooted): {offs}"
