#!/usr/bin/env python3
"""One QEMU virtual machine standing in for a bare-metal server.

Used by the virtual BMC (qemu/bmc.py), the end-to-end tests, the demo and the boot benchmark;
also runnable by hand:

    qemu/vm.py --boot direct --kernel build/ironic-agent.vmlinux \
        --initrd build/ironic-agent.initramfs --append "ipa-api-url=http://10.0.2.100:6385" \
        --disk virtio:/tmp/d0.raw --disk nvme:/tmp/d1.raw --serial-log /tmp/serial.log

What it gives the tests:
- boot paths: `pxe` (the NIC's iPXE ROM, DHCP from slirp with the boot file URL, as Ironic's
  `ipxe` boot interface expects), `disk` (firmware boots the first disk) and `direct`
  (-kernel/-initrd, the fast path for boot-time figures);
- disks on virtio-blk, NVMe, virtio-scsi and AHCI (SATA), NICs on virtio-net or e1000(e);
- the serial console in a log file, each line prefixed with the host time (seconds since
  QEMU started, and the wall clock), so boots can be counted and timed;
- networking through slirp with restrict=on: the guest reaches nothing but the `guestfwd`
  relays it is given (test services), and the host reaches the agent's port 9999 through
  a `hostfwd` on 127.0.0.1;
- KVM only where it works (kvm_intel/kvm_amd loaded); /dev/kvm alone proves nothing
  (kvm_pvm on the project's machines runs only PVM guests), so TCG otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

DISK_BUSES = ("virtio", "nvme", "scsi", "sata")
BOOT_MODES = ("pxe", "disk", "direct")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"      # the template each VM's NVRAM starts from


def detect_accel() -> str:
    """kvm only with a hardware KVM module; TCG otherwise."""
    hw = any(os.path.isdir(f"/sys/module/{m}") for m in ("kvm_intel", "kvm_amd"))
    return "kvm" if hw and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


@dataclasses.dataclass
class Forward:
    """A guest-visible TCP service: guest connects to guest_ip:guest_port, a relay process
    (one per connection) connects to host_ip:host_port on the host."""
    guest_ip: str
    guest_port: int
    host_ip: str
    host_port: int

    @classmethod
    def parse(cls, text: str) -> "Forward":
        """GUEST_IP:PORT=HOST_IP:PORT"""
        try:
            g, h = text.split("=")
            gi, gp = g.rsplit(":", 1)
            hi, hp = h.rsplit(":", 1)
            return cls(gi, int(gp), hi, int(hp))
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"forward {text!r} is not GUEST_IP:PORT=HOST_IP:PORT") from e


@dataclasses.dataclass
class Disk:
    path: str
    bus: str = "virtio"
    serial: str = ""

    @classmethod
    def parse(cls, text: str) -> "Disk":
        """BUS:PATH (BUS in virtio, nvme, scsi, sata)"""
        bus, sep, path = text.partition(":")
        if not sep or bus not in DISK_BUSES:
            raise argparse.ArgumentTypeError(f"disk {text!r} is not BUS:PATH with BUS in {DISK_BUSES}")
        return cls(path=path, bus=bus)


@dataclasses.dataclass
class VMSpec:
    name: str = "vm"
    boot: str = "pxe"                  # pxe | disk | direct
    mem_mib: int = 256
    smp: int = 1
    machine: str = "q35"
    uefi: bool = False                 # OVMF instead of SeaBIOS
    efi_vars: str = ""                 # the VM's own NVRAM (a copy of OVMF_VARS); it persists
                                       # boot entries across power cycles, as a real server's does
    macs: list[str] = dataclasses.field(default_factory=lambda: ["52:54:00:12:34:56"])
    nic_model: str = "virtio-net-pci"
    disks: list[Disk] = dataclasses.field(default_factory=list)
    forwards: list[Forward] = dataclasses.field(default_factory=list)
    hostfwds: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (host port, guest port)
    pxe_bootfile: str = ""             # URL slirp hands out as the DHCP boot file (boot=pxe)
    kernel: str = ""                   # boot=direct
    initrd: str = ""
    append: str = ""
    serial_log: str = "serial.log"
    accel: str = "auto"
    extra: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        if self.boot not in BOOT_MODES:
            raise ValueError(f"VM {self.name}: boot mode {self.boot!r} is not one of {BOOT_MODES}")
        if self.boot == "direct" and not (self.kernel and self.initrd):
            raise ValueError(f"VM {self.name}: direct boot needs a kernel and an initrd")
        if self.boot == "pxe" and not self.pxe_bootfile:
            raise ValueError(f"VM {self.name}: PXE boot needs a boot file URL")
        if not self.macs:
            raise ValueError(f"VM {self.name}: needs at least one NIC")
        if self.uefi and not os.path.exists(OVMF_CODE):
            raise ValueError(f"VM {self.name}: UEFI needs {OVMF_CODE} (apt-get install ovmf)")
        for d in self.disks:
            if not os.path.exists(d.path):
                raise ValueError(f"VM {self.name}: disk image {d.path} does not exist")


def relay_command(host_ip: str, host_port: int) -> str:
    """The per-connection relay slirp runs for a guestfwd (busybox nc, from busybox-static)."""
    nc = shutil.which("busybox") or "/bin/busybox"
    return f"{nc} nc {host_ip} {host_port}"


def qemu_command(spec: VMSpec) -> list[str]:
    spec.validate()
    accel = detect_accel() if spec.accel == "auto" else spec.accel
    cmd = [
        "qemu-system-x86_64", "-name", spec.name,
        "-machine", f"{spec.machine},accel={accel},graphics=off",
        "-cpu", "host" if accel == "kvm" else "max",
        "-m", str(spec.mem_mib), "-smp", str(spec.smp),
        "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
        "-serial", "stdio",
        "-device", "virtio-rng-pci",
    ]
    if spec.uefi:
        cmd += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}"]
        if spec.efi_vars:
            cmd += ["-drive", f"if=pflash,format=raw,unit=1,file={spec.efi_vars}"]
    for i, mac in enumerate(spec.macs):
        # every NIC gets its own slirp network (DHCP, carrier); only the first one carries the
        # forwards, and restrict=on keeps all of them off every other address
        netdev = f"user,id=n{i},restrict=on"
        if i == 0:
            for f in spec.forwards:
                netdev += f",guestfwd=tcp:{f.guest_ip}:{f.guest_port}-cmd:{relay_command(f.host_ip, f.host_port)}"
            for hp, gp in spec.hostfwds:
                netdev += f",hostfwd=tcp:127.0.0.1:{hp}-:{gp}"
            if spec.boot == "pxe":
                netdev += f",bootfile={spec.pxe_bootfile}"
        dev = f"{spec.nic_model},netdev=n{i},mac={mac}"
        if i == 0 and spec.boot == "pxe":
            dev += ",bootindex=0"
        elif spec.nic_model.startswith("virtio") or spec.nic_model.startswith("e1000"):
            dev += ",romfile="     # only the boot NIC needs the iPXE ROM
        cmd += ["-netdev", netdev, "-device", dev]
    scsi = sata = False
    for i, d in enumerate(spec.disks):
        fmt = "qcow2" if d.path.endswith(".qcow2") else "raw"
        serial = d.serial or f"disk{i}"
        cmd += ["-drive", f"file={d.path},if=none,id=d{i},format={fmt},cache=unsafe"]
        boot = ",bootindex=1" if i == 0 and spec.boot in ("disk", "pxe") else ""
        if d.bus == "virtio":
            cmd += ["-device", f"virtio-blk-pci,drive=d{i},serial={serial}{boot}"]
        elif d.bus == "nvme":
            cmd += ["-device", f"nvme,drive=d{i},serial={serial}{boot}"]
        elif d.bus == "scsi":
            if not scsi:
                cmd += ["-device", "virtio-scsi-pci,id=scsi0"]
                scsi = True
            cmd += ["-device", f"scsi-hd,drive=d{i},bus=scsi0.0,serial={serial}{boot}"]
        elif d.bus == "sata":
            if not sata:     # q35 has an AHCI controller built in (ide.0 ...), pc does not
                cmd += ["-device", "ahci,id=ahci0"]
                sata = True
            cmd += ["-device", f"ide-hd,drive=d{i},bus=ahci0.{i % 6},serial={serial}{boot}"]
    if spec.boot == "direct":
        cmd += ["-kernel", spec.kernel, "-initrd", spec.initrd, "-append", spec.append]
    cmd += spec.extra
    return cmd


class VM:
    """A running QEMU process with its serial console pumped into a timestamped log."""

    def __init__(self, spec: VMSpec):
        self.spec = spec
        self.cmd = qemu_command(spec)
        self.proc: subprocess.Popen | None = None
        self.t0 = 0.0
        self._pump: threading.Thread | None = None
        self._lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()

    def start(self) -> "VM":
        os.makedirs(os.path.dirname(os.path.abspath(self.spec.serial_log)), exist_ok=True)
        self.t0 = time.time()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._pump = threading.Thread(target=self._read_console, daemon=True,
                                      name=f"console-{self.spec.name}")
        self._pump.start()
        return self

    def _read_console(self) -> None:
        assert self.proc and self.proc.stdout
        with open(self.spec.serial_log, "a", encoding="utf-8") as log:
            log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} qemu started: {shlex.join(self.cmd)}\n")
            log.flush()
            for raw in self.proc.stdout:
                now = time.time()
                line = strip_ansi(raw.decode(errors="replace").rstrip("\r\n"))
                stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
                log.write(f"{stamp} +{now - self.t0:8.3f}s {line}\n")
                log.flush()
                with self._cond:
                    self._lines.append((now - self.t0, line))
                    self._cond.notify_all()
            rc = self.proc.wait()
            log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} qemu exited with status {rc}\n")
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def lines(self) -> list[tuple[float, str]]:
        with self._cond:
            return list(self._lines)

    def wait_for_line(self, needle: str, timeout: float) -> float | None:
        """Seconds since start at which a console line containing `needle` appeared."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                for t, line in self._lines:
                    if needle in line:
                        return t
                left = deadline - time.time()
                if left <= 0 or not self.running:
                    return None
                self._cond.wait(min(left, 0.5))

    def stop(self, timeout: float = 5.0) -> int | None:
        """Pull the plug (a hard power-off, like a BMC's ForceOff)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._pump:
            self._pump.join(timeout)
        return self.proc.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._pump:
            self._pump.join(5)
        return rc


def strip_ansi(s: str) -> str:
    """SeaBIOS/iPXE on the serial port emit terminal escapes (ESC c, ESC[2J ...)."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\x1b":
            i += 1
            if i < len(s) and s[i] == "[":
                i += 1
                while i < len(s) and not ("@" <= s[i] <= "~"):
                    i += 1
            i += 1
            continue
        if c.isprintable() or c == "\t":
            out.append(c)
        i += 1
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="vm")
    p.add_argument("--boot", choices=BOOT_MODES, default="direct")
    p.add_argument("--kernel", default="build/ironic-agent.vmlinux")
    p.add_argument("--initrd", default="build/ironic-agent.initramfs")
    p.add_argument("--append", default="console=ttyS0,115200")
    p.add_argument("--pxe-bootfile", default="")
    p.add_argument("--mem", type=int, default=256)
    p.add_argument("--machine", default="q35")
    p.add_argument("--uefi", action="store_true")
    p.add_argument("--mac", action="append", default=[], help="one per NIC")
    p.add_argument("--nic-model", default="virtio-net-pci")
    p.add_argument("--disk", action="append", default=[], type=Disk.parse, help="BUS:PATH")
    p.add_argument("--forward", action="append", default=[], type=Forward.parse,
                   help="GUEST_IP:PORT=HOST_IP:PORT")
    p.add_argument("--hostfwd", action="append", default=[], help="HOSTPORT:GUESTPORT")
    p.add_argument("--serial-log", default="serial.log")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--timeout", type=float, default=0, help="kill the VM after this many seconds")
    p.add_argument("--print-cmd", action="store_true", help="print the QEMU command and exit")
    a = p.parse_args(argv)
    spec = VMSpec(name=a.name, boot=a.boot, mem_mib=a.mem, machine=a.machine, uefi=a.uefi,
                  macs=a.mac or ["52:54:00:12:34:56"], nic_model=a.nic_model, disks=a.disk,
                  forwards=a.forward, hostfwds=[tuple(map(int, h.split(":"))) for h in a.hostfwd],
                  pxe_bootfile=a.pxe_bootfile, kernel=a.kernel, initrd=a.initrd, append=a.append,
                  serial_log=a.serial_log, accel=a.accel)
    try:
        vm = VM(spec)
    except ValueError as e:
        print(f"vm.py: {e}", file=sys.stderr)
        return 2
    if a.print_cmd:
        print(shlex.join(vm.cmd))
        return 0
    vm.start()
    print(f"vm.py: {spec.name} started (pid {vm.proc.pid}); console in {spec.serial_log}", file=sys.stderr)
    rc = vm.wait(a.timeout or None)
    if rc is None:
        vm.stop()
        print(f"vm.py: {spec.name} stopped after {a.timeout}s", file=sys.stderr)
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
