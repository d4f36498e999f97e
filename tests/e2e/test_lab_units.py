"""Unit tests of the lab's own pieces (no VM, no Ironic): the QEMU command line, the power
logic of the BMC service, the HTTP server's byte ranges and the test image's boot sector."""
import http.client
import os
import subprocess
import sys
import time

import pytest

import bmc
from lab import free_port
from testimage import MARKER, boot_sector, write_image
from vm import Disk, Forward, VMSpec, qemu_command

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "qemu")


def test_qemu_command_isolates_every_nic_and_forwards_only_on_the_first(tmp_path):
    d = tmp_path / "d.raw"
    d.write_bytes(b"")
    spec = VMSpec(boot="pxe", pxe_bootfile="http://10.0.2.100:8080/boot.ipxe",
                  macs=["52:54:00:00:00:01", "52:54:00:00:00:02"],
                  disks=[Disk(str(d), "nvme")], hostfwds=[(40000, 9999)],
                  forwards=[Forward("10.0.2.100", 8080, "10.0.2.100", 8080)], accel="tcg")
    cmd = qemu_command(spec)
    netdevs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-netdev"]
    assert len(netdevs) == 2 and all("restrict=on" in n for n in netdevs)
    assert "guestfwd=tcp:10.0.2.100:8080-cmd:" in netdevs[0] and "guestfwd" not in netdevs[1]
    assert "hostfwd=tcp:127.0.0.1:40000-:9999" in netdevs[0]
    assert "bootfile=http://10.0.2.100:8080/boot.ipxe" in netdevs[0]
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    assert any(x.startswith("virtio-net-pci,netdev=n0") and "bootindex=0" in x for x in devices)
    assert any(x.startswith("virtio-net-pci,netdev=n1") and "romfile=" in x for x in devices)
    assert "-m" in cmd and cmd[cmd.index("-m") + 1] == "256"


def test_uefi_vm_gets_read_only_firmware_and_its_own_writable_nvram(tmp_path):
    d = tmp_path / "d.raw"
    d.write_bytes(b"")
    spec = VMSpec(boot="disk", uefi=True, efi_vars=str(tmp_path / "vars.fd"),
                  disks=[Disk(str(d), "virtio")], accel="tcg")
    drives = [a for a in qemu_command(spec) if "pflash" in a]
    assert drives[0].startswith("if=pflash,format=raw,readonly=on,file=") and "OVMF_CODE" in drives[0]
    assert drives[1] == f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}"


def test_vmspec_refuses_incomplete_boots():
    with pytest.raises(ValueError, match="direct boot needs a kernel"):
        qemu_command(VMSpec(boot="direct"))
    with pytest.raises(ValueError, match="PXE boot needs a boot file URL"):
        qemu_command(VMSpec(boot="pxe"))
    with pytest.raises(ValueError, match="disk image /nonexistent does not exist"):
        qemu_command(VMSpec(boot="disk", disks=[Disk("/nonexistent")]))


class FakeVM:
    started = []

    def __init__(self, spec):
        self.spec, self.alive, self.proc = spec, False, type("P", (), {"pid": 4242})()

    def start(self):
        self.alive = True
        FakeVM.started.append(self.spec.boot)
        return self

    @property
    def running(self):
        return self.alive

    def stop(self):
        self.alive = False
        return 0

    def wait(self):
        while self.alive:
            time.sleep(0.05)
        return 0


@pytest.fixture
def bridge(tmp_path, monkeypatch):
    monkeypatch.setattr(bmc, "VM", FakeVM)
    FakeVM.started = []
    cfg = {"sushy_url": "http://127.0.0.1:1", "events": str(tmp_path / "events.jsonl"),
           "systems": {"sys-1": {"name": "n", "pxe_bootfile": "http://x/boot.ipxe"}}}
    return bmc.Bridge(cfg)


def test_bmc_power_follows_the_requests(bridge):
    m = bridge.machines["sys-1"]
    sysrec = {"uuid": "sys-1", "power_state": "Off", "boot_device": "Pxe"}
    bridge.notify({**sysrec, "pending_power": {"power_state": "On", "apply_time": 1}})
    assert FakeVM.started == ["pxe"] and m.running
    bridge.notify({**sysrec, "power_state": "On", "pending_power": None})   # applied: no change
    assert FakeVM.started == ["pxe"]
    bridge.notify({**sysrec, "power_state": "On", "pending_power": {"power_state": "Off", "apply_time": 2}})
    assert not m.running
    bridge.notify({**sysrec, "boot_device": "Hdd", "pending_power": {"power_state": "On", "apply_time": 3}})
    assert FakeVM.started == ["pxe", "disk"]


def test_bmc_restart_happens_once_per_request(bridge):
    m = bridge.machines["sys-1"]
    rec = {"uuid": "sys-1", "power_state": "Off", "boot_device": "Pxe",
           "pending_power": {"power_state": "ForceRestart", "apply_time": 7}}
    bridge.notify(rec)
    bridge.notify({**rec, "boot_device": "Pxe"})     # another change while the restart is pending
    assert FakeVM.started == ["pxe"] and m.running
    bridge.notify({**rec, "pending_power": {"power_state": "ForceRestart", "apply_time": 9}})
    assert FakeVM.started == ["pxe", "pxe"]


def test_bmc_ignores_unknown_systems(bridge):
    bridge.notify({"uuid": "other", "power_state": "On"})
    assert FakeVM.started == []


@pytest.fixture
def httpd(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(bytes(range(256)) * 4)
    port = free_port("127.0.0.1")
    p = subprocess.Popen([sys.executable, os.path.join(QEMU_DIR, "httpd.py"), "--bind", "127.0.0.1",
                          "--port", str(port), "--root", str(root)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("HEAD", "/")
            break
        except OSError:
            time.sleep(0.1)
    yield port
    p.terminate()
    p.wait()


def get(port, path, headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_httpd_serves_byte_ranges(httpd):
    full = bytes(range(256)) * 4
    assert get(httpd, "/f.bin")[2] == full
    st, h, body = get(httpd, "/f.bin", {"Range": "bytes=10-19"})
    assert st == 206 and body == full[10:20] and h["Content-Range"] == "bytes 10-19/1024"
    st, _, body = get(httpd, "/f.bin", {"Range": "bytes=1000-"})
    assert st == 206 and body == full[1000:]
    st, _, body = get(httpd, "/f.bin", {"Range": "bytes=-4"})
    assert st == 206 and body == full[-4:]
    st, h, _ = get(httpd, "/f.bin", {"Range": "bytes=2000-"})
    assert st == 416 and h["Content-Range"] == "bytes */1024"
    st, h, body = get(httpd, "/f.bin", method="HEAD")
    assert st == 200 and h["Content-Length"] == "1024" and body == b""
    assert get(httpd, "/missing")[0] == 404


def test_test_image_is_a_bootable_partitioned_disk(tmp_path):
    s = boot_sector(48)
    assert len(s) == 512 and s[510:] == b"\x55\xaa" and MARKER in s[:440]
    entry = s[446:462]
    assert entry[0] == 0x80 and entry[4] == 0x83
    assert int.from_bytes(entry[8:12], "little") == 2048
    assert int.from_bytes(entry[12:16], "little") == 48 * 2048 - 2048
    img = tmp_path / "i.img"
    sha = write_image(str(img), 3, seed=5)
    assert img.stat().st_size == 3 << 20 and sha == write_image(str(tmp_path / "j.img"), 3, seed=5)
