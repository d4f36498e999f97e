#!/usr/bin/env python3
"""Power for the lab's virtual servers: turns sushy-tools' Redfish power actions into QEMU VMs.

sushy-tools' fake systems driver (the Redfish BMC Ironic's `redfish` hardware type talks to)
keeps each system's power state and boot device, and with `external_notifier` it PUTs the
whole system record to this service on every change. This service then does what the
server's power supply and firmware would do:

  power On (or a pending On)      start QEMU: boot device Pxe -> the NIC's iPXE ROM,
                                   Hdd -> the first disk; boot mode UEFI -> OVMF, else SeaBIOS
  power Off (or a pending Off)    kill QEMU (a hard power-off)
  a Restart request               kill QEMU and start it again
  the guest powers itself off     (QEMU exits) tell the BMC: Redfish ForceOff, so its power
                                   state stays true and a later power-on is a real change

The emulator applies a requested change 1-11 s later (at random, like a slow BMC) and only when
the system is next read; this service acts when the change is requested, so a VM boots while
Ironic still waits for the BMC to report it on.

usage: bmc.py --config bmc.json   (written by qemu/lab.py; see Lab.start_bmc)
  {"listen": "127.0.0.1:PORT", "sushy_url": "http://127.0.0.1:PORT", "events": "events.jsonl",
   "systems": {"<uuid>": {<VMSpec fields: name, macs, disks, forwards, hostfwds, pxe_bootfile,
                          mem_mib, serial_log>}}}
"""
from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VM, Disk, Forward, VMSpec, OVMF_CODE, OVMF_VARS  # noqa: E402


def spec_from_json(d: dict) -> VMSpec:
    d = dict(d)
    d["disks"] = [Disk(**x) for x in d.get("disks", [])]
    d["forwards"] = [Forward(**x) for x in d.get("forwards", [])]
    d["hostfwds"] = [tuple(x) for x in d.get("hostfwds", [])]
    return VMSpec(**d)


class Machine:
    """One virtual server: its VM (when powered) and what the BMC asked for last."""

    def __init__(self, uuid: str, spec: VMSpec, bridge: "Bridge"):
        self.uuid = uuid
        self.spec = spec
        self.bridge = bridge
        self.vm: VM | None = None
        self.last_pending = None
        self.lock = threading.Lock()
        self.boots = 0

    @property
    def running(self) -> bool:
        return self.vm is not None and self.vm.running

    def apply(self, system: dict) -> None:
        pending = system.get("pending_power") or None
        target = pending["power_state"] if pending else system.get("power_state", "Off")
        with self.lock:
            if "Restart" in target:
                key = (pending.get("power_state"), pending.get("apply_time"))
                if key == self.last_pending:
                    return                          # this restart was already carried out
                self.last_pending = key
                self._power_off("restart")
                self._power_on(system)
            elif target == "On":
                self.last_pending = None
                if not self.running:
                    self._power_on(system)
            elif target == "Off":
                self.last_pending = None
                if self.running:
                    self._power_off("power off")

    def _power_on(self, system: dict) -> None:
        boot_device = system.get("boot_device", "Hdd")
        spec = VMSpec(**{**self.spec.__dict__})
        if boot_device == "Pxe":
            spec.boot = "pxe"
        elif boot_device == "Hdd":
            spec.boot = "disk"
        else:
            self.bridge.event(self.uuid, "unsupported-boot-device", boot_device=boot_device)
            spec.boot = "disk"
        spec.uefi = system.get("boot_mode") == "UEFI"
        if spec.uefi and not os.path.exists(OVMF_CODE):
            self.bridge.event(self.uuid, "uefi-unavailable", firmware=OVMF_CODE)
            spec.uefi = False                       # boot with SeaBIOS rather than not at all
        if spec.uefi and spec.efi_vars and not os.path.exists(spec.efi_vars):
            shutil.copyfile(OVMF_VARS, spec.efi_vars)  # first power-on: factory NVRAM
        try:
            vm = VM(spec)
        except ValueError as e:
            self.bridge.event(self.uuid, "power-on-failed", error=str(e))
            return
        vm.start()
        self.vm = vm
        self.boots += 1
        self.bridge.event(self.uuid, "power-on", boot=spec.boot, uefi=spec.uefi, pid=vm.proc.pid,
                          qemu_start=self.boots)
        threading.Thread(target=self._watch, args=(vm,), daemon=True).start()

    def _power_off(self, why: str) -> None:
        vm, self.vm = self.vm, None
        if vm is not None and vm.running:
            rc = vm.stop()
            self.bridge.event(self.uuid, "power-off", reason=why, qemu_rc=rc)

    def _watch(self, vm: VM) -> None:
        rc = vm.wait()
        with self.lock:
            if self.vm is not vm:
                return                              # we pulled the plug ourselves
            self.vm = None
        self.bridge.event(self.uuid, "guest-power-off", qemu_rc=rc)
        self.bridge.force_off(self.uuid)


class Bridge:
    def __init__(self, config: dict):
        self.sushy_url = config["sushy_url"].rstrip("/")
        self.auth = config.get("sushy_auth")        # "user:password" when the emulator wants it
        self.events_path = config["events"]
        self._events_lock = threading.Lock()
        self.machines = {u: Machine(u, spec_from_json(s), self) for u, s in config["systems"].items()}
        self.inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="notifications").start()

    def _work(self) -> None:
        while True:
            self.notify(self.inbox.get())

    def event(self, uuid: str, what: str, **kw) -> None:
        rec = {"t": time.time(), "system": uuid, "event": what, **kw}
        with self._events_lock, open(self.events_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"bmc: {uuid[:8]} {what} {kw}", file=sys.stderr, flush=True)

    def notify(self, system: dict) -> None:
        m = self.machines.get(system.get("uuid", ""))
        if m is None:
            return
        m.apply(system)

    def force_off(self, uuid: str) -> None:
        url = f"{self.sushy_url}/redfish/v1/Systems/{uuid}/Actions/ComputerSystem.Reset"
        req = urllib.request.Request(url, data=json.dumps({"ResetType": "ForceOff"}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        if self.auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(self.auth.encode()).decode())
        try:
            urllib.request.urlopen(req, timeout=30).read()
        except (urllib.error.URLError, OSError) as e:
            self.event(uuid, "bmc-sync-failed", error=f"ForceOff via {url} failed: {e}")

    def shutdown(self) -> None:
        for m in self.machines.values():
            with m.lock:
                m._power_off("bmc service stopping")


def serve(bridge: Bridge, host: str, port: int) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _reply(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                system = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return self._reply(400, b"notification body is not JSON")
            # answer first: the emulator waits for us inside Ironic's Redfish request; the
            # notifications are applied in order by one worker
            self._reply(204)
            bridge.inbox.put(system)

        do_POST = do_PUT

        def do_GET(self):
            state = {u: {"running": m.running, "qemu_starts": m.boots} for u, m in bridge.machines.items()}
            self._reply(200, json.dumps(state).encode())

    srv = http.server.ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    print(f"bmc: listening on http://{host}:{port}, BMC {bridge.sushy_url}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    finally:
        bridge.shutdown()


def _terminate(*_):
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description="QEMU power for sushy-tools' fake systems")
    p.add_argument("--config", required=True)
    a = p.parse_args()
    with open(a.config) as f:
        config = json.load(f)
    host, port = config["listen"].rsplit(":", 1)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        serve(Bridge(config), host, int(port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
