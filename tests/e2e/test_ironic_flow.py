"""Ironic in charge: one QEMU server through enroll -> inspect -> clean -> deploy -> active.

Ironic 39 (redfish power and management against sushy-tools, ipxe boot, direct deploy,
agent inspection, fast track, require_tls) drives a VM that PXE-boots our ramdisk through
the iPXE ROM. Every step asserts on what Ironic reports (provision state, last_error,
ports, properties, driver_internal_info) and on the machine itself (its disk files, its
power events, its console), never on the agent's own log.

The tests run in file order and share the node; a step whose predecessor failed fails too.
Steps whose agent side has not landed are skipped by tests/e2e/gates.py.
"""
import re
import subprocess
import time

import pytest

from conftest import SharedNode, started_lab
from gates import require
from lab import LabError, console_boots
from testimage import MARKER, write_image

IMAGE_MIB = 48


class Flow(SharedNode):
    """What the steps share: the lab, the node, and how far the node got."""

    def boots(self) -> dict:
        return console_boots(self.node.serial_log)

    def power_ons(self) -> list:
        return [e for e in self.lab.bmc_events_list() if e["event"] == "power-on"]

    def disk(self, bus: str) -> str:
        return next(d["path"] for d in self.node.disks if d["bus"] == bus)


@pytest.fixture(scope="module")
def flow(netns, artifacts):
    with started_lab("ironic-flow", artifacts) as lab:
        f = Flow(lab)
        # metadata the agent's cleaning must wipe: file systems on the two data disks
        for bus in ("nvme", "scsi"):
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", f"e2e-{bus}", f.disk(bus)], check=True)
        yield f


def test_enroll_and_manage(flow):
    flow.uuid = flow.lab.enroll(flow.node)
    flow.lab.provision(flow.uuid, "manage")
    node = flow.lab.wait_state(flow.uuid, "manageable", 60, fail=("enroll",))
    assert node["last_error"] is None
    assert node["power_state"] == "power off", "sushy's system starts powered off"
    assert flow.power_ons() == [], "managing must not power the machine on"
    flow.reached.add("manageable")


def test_inspection_pxe_boots_the_ramdisk(flow):
    """Ironic's ipxe boot interface: the BMC powers on with boot device Pxe, the NIC's iPXE
    ROM fetches boot.ipxe and the per-node config, and our kernel and initramfs start with
    the kernel command line Ironic built."""
    flow.need("manageable")
    flow.lab.provision(flow.uuid, "inspect")
    node = flow.lab.wait_state(flow.uuid, ("inspect wait", "manageable"), 60,
                               fail=("inspect failed",), settled=False)
    assert node["power_state"] == "power on"
    deadline = time.time() + 120
    cmdline = None
    while cmdline is None and time.time() < deadline:
        time.sleep(0.5)
        m = re.search(r"\] cmdline: (.*)", open(flow.node.serial_log, errors="replace").read())
        cmdline = m and m.group(1)
    assert cmdline, f"the ramdisk did not start; see {flow.node.serial_log}"
    assert flow.boots()["ramdisk"] == 1, flow.boots()
    ons = flow.power_ons()
    assert len(ons) == 1 and ons[0]["boot"] == "pxe", ons
    for want in (f"ipa-api-url={flow.lab.agent_api_url}",
                 f"ipa-inspection-callback-url={flow.lab.agent_api_url}/v1/continue_inspection",
                 f"BOOTIF={flow.node.macs[0]}", f"ipa-advertise-port={flow.node.agent_port}"):
        assert want in cmdline.split(), f"{want} missing from the kernel command line: {cmdline}"
    flow.reached.add("ramdisk booted")


def test_inspection_completes(flow):
    flow.need("ramdisk booted")
    node = flow.lab.wait_state(flow.uuid, "manageable", 180, fail=("inspect failed",))
    assert node["last_error"] is None
    props = node["properties"]
    assert props.get("cpu_arch") == "x86_64"
    assert 128 <= int(props.get("memory_mb", 0)) <= 256, props
    ports = flow.lab.api("GET", f"/v1/ports?node_uuid={flow.uuid}&fields=address")["ports"]
    assert sorted(p["address"] for p in ports) == sorted(flow.node.macs), \
        "inspection must add a port for the second NIC ([inspector]add_ports=all)"
    inv = flow.lab.api("GET", f"/v1/nodes/{flow.uuid}/inventory")["inventory"]
    assert {i["mac_address"] for i in inv["interfaces"]} >= set(flow.node.macs)
    serials = {d.get("serial") for d in inv["disks"]}
    assert {"node-0-virtio", "node-0-nvme", "node-0-scsi"} <= serials, serials
    flow.reached.add("inspected")


def test_inspection_root_disk(flow):
    flow.need("inspected")
    # root disk: the 8 GiB virtio disk (the others are 1 GiB); Ironic stores size - 1 GiB
    assert int(flow.state()["properties"].get("local_gb", 0)) == 7, flow.state()["properties"]


def test_cleaning(flow):
    flow.need("inspected")
    t0 = time.time()
    flow.lab.provision(flow.uuid, "provide")
    node = flow.lab.wait_state(flow.uuid, "available", 300, fail=("clean failed",))
    assert node["last_error"] is None
    dii = node["driver_internal_info"]
    # the conductor asked the agent for its clean steps (get_clean_steps round trip)
    assert "agent_cached_clean_steps_refreshed" in dii, sorted(dii)
    assert dii.get("hardware_manager_version"), sorted(dii)
    assert dii.get("agent_url", "").startswith("https://127.0.0.1:"), \
        "the agent must call back over auto-TLS at its advertised address"
    flow.clean_seconds = time.time() - t0
    flow.reached.add("available")


def test_cleaning_erased_metadata(flow):
    require("erase-devices-metadata")
    flow.need("available")
    for bus in ("nvme", "scsi"):
        with open(flow.disk(bus), "rb") as f:
            f.seek(1024 + 56)
            assert f.read(2) != b"\x53\xef", f"the ext4 signature on the {bus} disk survived cleaning"


def test_deploy_whole_disk_image(flow, tmp_path):
    flow.need("available")
    img = str(tmp_path / "disk.img")
    sha = write_image(img, IMAGE_MIB, seed=1)
    url = flow.lab.put_image("disk.img", img)
    flow.lab.api("PATCH", f"/v1/nodes/{flow.uuid}", [
        {"op": "add", "path": "/instance_info/image_source", "value": url},
        {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
        {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha},
    ])
    flow.lab.provision(flow.uuid, "active")
    node = flow.lab.wait_state(flow.uuid, "active", 300, fail=("deploy failed",))
    assert node["last_error"] is None
    # the bytes on the VM's root disk are the image's
    with open(img, "rb") as a, open(flow.disk("virtio"), "rb") as b:
        for i in range(IMAGE_MIB):
            assert a.read(1 << 20) == b.read(1 << 20), f"root disk differs from the image in MiB {i}"
    # fast track: one PXE power-on, one ramdisk boot from inspection to the end of the deploy
    ons = flow.power_ons()
    assert [e["boot"] for e in ons][:1] == ["pxe"] and all(e["boot"] == "disk" for e in ons[1:]), ons
    assert flow.boots()["ramdisk"] == 1, f"the ramdisk booted more than once: {flow.boots()}"
    # Ironic then boots the instance from disk: the image's boot sector prints its marker
    deadline = time.time() + 60
    while time.time() < deadline and MARKER.decode() not in open(flow.node.serial_log, errors="replace").read():
        time.sleep(0.5)
    assert MARKER.decode() in open(flow.node.serial_log, errors="replace").read(), \
        "the machine did not boot the deployed disk"
    flow.image_sha = sha
    flow.reached.add("active")


def test_wrong_checksum_fails_the_deploy(flow, tmp_path):
    flow.need("active")
    flow.lab.provision(flow.uuid, "deleted")          # undeploy: PXE boot again, clean
    flow.lab.wait_state(flow.uuid, "available", 300, fail=("clean failed", "error"))
    img = str(tmp_path / "other.img")
    write_image(img, 8, seed=2)
    url = flow.lab.put_image("other.img", img)
    wrong = "0" * 64
    flow.lab.api("PATCH", f"/v1/nodes/{flow.uuid}", [
        {"op": "add", "path": "/instance_info/image_source", "value": url},
        {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
        {"op": "add", "path": "/instance_info/image_os_hash_value", "value": wrong},
    ])
    flow.lab.provision(flow.uuid, "active")
    with pytest.raises(LabError, match="deploy failed"):
        flow.lab.wait_state(flow.uuid, "active", 300, fail=("deploy failed",))
    err = flow.state()["last_error"] or ""
    assert "write_image" in err and re.search(r"checksum|sha256", err, re.I), err
    # the image's first MiB is held back until the checksum verifies: no boot sector written
    with open(img, "rb") as a, open(flow.disk("virtio"), "rb") as b:
        assert a.read(1 << 20) != b.read(1 << 20), "a failed image was left bootable on the disk"
