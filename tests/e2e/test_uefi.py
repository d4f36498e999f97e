"""UEFI under a real Ironic: a QEMU server with OVMF firmware and its own NVRAM file, PXE through
iPXE's EFI half, `[deploy]default_boot_mode = uefi`.

Cleaning, then the deploy of a whole-disk GPT image whose EFI system partition holds
\\EFI\\BOOT\\BOOTX64.EFI (the ramdisk's own kernel, a valid EFI application). For UEFI
whole-disk images Ironic calls `image.install_bootloader`; the agent must find the loader on
the ESP and write a Boot#### entry and BootOrder through efivarfs, natively. The proof is
outside the VM: the NVRAM file holds the entry (its file path in UTF-16), and when Ironic
boots the node from disk the firmware loads the entry the agent made.

The tests run in file order and share the node.
"""
import re
import time

import pytest

from conftest import SharedNode, started_lab
from lab import console_boots
from testimage import write_uefi_image
from vm import OVMF_VARS

IMAGE_MIB = 48
LOADER = "\\EFI\\BOOT\\BOOTX64.EFI"


@pytest.fixture(scope="module")
def n(netns, artifacts):
    with started_lab("uefi", artifacts, boot_mode="uefi") as lab:
        yield SharedNode(lab)


def test_cleaning_boots_the_ramdisk_under_ovmf(n):
    n.uuid = n.lab.enroll(n.node)
    n.lab.provision(n.uuid, "manage")
    n.lab.wait_state(n.uuid, "manageable", 60, fail=("enroll",))
    n.lab.provision(n.uuid, "provide")
    node = n.lab.wait_state(n.uuid, "available", 420, fail=("clean failed",))
    assert node["last_error"] is None
    power_ons = [e for e in n.lab.bmc_events_list() if e["event"] == "power-on"]
    assert power_ons and all(e.get("uefi") for e in power_ons), power_ons
    assert console_boots(n.node.serial_log)["ramdisk"] == 1
    # the firmware keeps its variables in the node's own NVRAM file
    assert open(n.lab.efi_vars(n.node), "rb").read() != open(OVMF_VARS, "rb").read()
    n.reached.add("available")


def test_whole_disk_image_gets_a_uefi_boot_entry(n, tmp_path, artifacts):
    n.need("available")
    img = str(tmp_path / "uefi.img")
    sha = write_uefi_image(img, IMAGE_MIB, artifacts["kernel"], str(tmp_path))
    url = n.lab.put_image("uefi.img", img)
    n.lab.api("PATCH", f"/v1/nodes/{n.uuid}", [
        {"op": "add", "path": "/instance_info/image_source", "value": url},
        {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
        {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha},
    ])
    before = len(n.console())
    n.lab.provision(n.uuid, "active")
    node = n.lab.wait_state(n.uuid, "active", 420, fail=("deploy failed",))
    assert node["last_error"] is None
    console = n.console()[before:]
    added = re.search(r"added UEFI boot entry Boot([0-9A-F]{4}) (\S+): (\S+) on partition 1", console)
    assert added, "the agent did not report a UEFI boot entry"
    number, label, path = added.groups()
    assert path == LOADER, path
    # the entry is in the VM's NVRAM file, written by the firmware on the agent's behalf
    nvram = open(n.lab.efi_vars(n.node), "rb").read()
    assert LOADER.encode("utf-16-le") in nvram, "no boot entry for the loader in the NVRAM"
    assert label.encode("utf-16-le") in nvram
    # after the deploy Ironic boots the node from disk; the firmware takes the agent's entry
    deadline = time.time() + 120
    want = re.compile(rf'BdsDxe: (loading|starting) Boot{number} "{re.escape(label)}"')
    while time.time() < deadline and not want.search(n.console()[before:]):
        time.sleep(1)
    assert want.search(n.console()[before:]), \
        "the firmware did not boot the entry the agent created:\n" + \
        "\n".join(line for line in n.console()[before:].splitlines() if "BdsDxe" in line)
