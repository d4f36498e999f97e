#!/usr/bin/env python3
"""The lab: a real Ironic, a Redfish BMC and QEMU servers, all on one machine.

    Ironic 39 (API + conductor in one process, sqlite, noauth, rpc_transport=none)
      | redfish power/management            | HTTPS to the agent: 127.0.0.1:<hostfwd> -> guest :9999
    sushy-tools fake driver --notify--> qemu/bmc.py --starts/stops--> QEMU VM (PXE via iPXE ROM)
                                                                        | guestfwd relays (busybox nc)
    qemu/httpd.py  (http_root: boot.ipxe, kernel, ramdisk, images) <----+
    qemu/apirecorder.py (ipa-api-url, relays to Ironic's API)  <--------+

Addresses. Every URL Ironic hands out must work from the guest (agent, iPXE) and from the host
(the conductor HEADs image URLs, tests fetch them). So the lab runs in a private network
namespace (qemu/netns-run) where 10.0.2.100 is a local address; the services listen on it, and
slirp's guestfwd makes the same 10.0.2.100:PORT reach them from inside the VM (restrict=on:
the guest reaches nothing else). The namespace also keeps parallel runs from colliding, and its
ports are picked free all the same. The conductor reaches the agent through a per-VM hostfwd on
127.0.0.1, which the agent advertises (ipa-advertise-host/-port in the node's
kernel_append_params); its auto-TLS certificate names 127.0.0.1 and Ironic verifies it
([agent]require_tls keeps its default, true).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LAB_IP = "10.0.2.100"          # inside slirp's 10.0.2.0/24, never routed anywhere
API_VERSION = "1.115"          # Ironic 39's maximum; pinned so field names cannot drift


class LabError(Exception):
    pass


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def in_lab_netns() -> bool:
    """True when LAB_IP is a local address (we run inside qemu/netns-run)."""
    try:
        with socket.socket() as s:
            s.bind((LAB_IP, 0))
        return True
    except OSError:
        return False


@dataclasses.dataclass
class NodeDef:
    name: str
    system_uuid: str
    macs: list[str]
    agent_port: int = 0                 # host side of the hostfwd to the agent's 9999
    disks: list[dict] = dataclasses.field(default_factory=list)   # {"path", "bus", "serial"}
    serial_log: str = ""
    ironic_uuid: str = ""


class Lab:
    def __init__(self, workdir: str, kernel: str = "", initramfs: str = "", venv: str = "",
                 boot_mode: str = "bios", mem_mib: int = 256, heartbeat_timeout: int = 30):
        self.work = os.path.abspath(workdir)
        self.kernel = os.path.abspath(kernel or os.path.join(REPO, "build/ironic-agent.kernel"))
        self.initramfs = os.path.abspath(initramfs or os.path.join(REPO, "build/ironic-agent.initramfs"))
        self.venv = os.path.abspath(venv or os.environ.get("LAB_VENV") or os.path.join(REPO, "build/venv"))
        self.boot_mode = boot_mode
        self.mem_mib = mem_mib
        self.heartbeat_timeout = heartbeat_timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.nodes: list[NodeDef] = []
        self.http_root = os.path.join(self.work, "httpboot")

    # ---- life cycle --------------------------------------------------------------------------
    def start(self, nodes: int = 1) -> "Lab":
        if not in_lab_netns():
            raise LabError(f"{LAB_IP} is not a local address: run inside the lab's network namespace "
                           "(qemu/netns-run COMMAND)")
        for f in (self.kernel, self.initramfs):
            if not os.path.isfile(f):
                raise LabError(f"{f} is missing: build it with initramfs/build.sh")
        for d in ("state", "tmp", "httpboot", "tftpboot", "locks", "certs", "deploy-logs", "sushy",
                  "disks", "logs", "httpboot/images"):
            os.makedirs(os.path.join(self.work, d), exist_ok=True)
        self.api_port = free_port(LAB_IP)
        self.http_port = free_port(LAB_IP)
        self.rec_port = free_port(LAB_IP)
        self.sushy_port = free_port("127.0.0.1")
        self.bmc_port = free_port("127.0.0.1")
        self.api_url = f"http://{LAB_IP}:{self.api_port}"
        self.http_url = f"http://{LAB_IP}:{self.http_port}"
        self.agent_api_url = f"http://{LAB_IP}:{self.rec_port}"
        for name in ("ironic-agent.kernel", "ironic-agent.initramfs"):
            src = self.kernel if name.endswith("kernel") else self.initramfs
            dst = os.path.join(self.http_root, name)
            if os.path.lexists(dst):
                os.unlink(dst)
            os.symlink(src, dst)
        for i in range(nodes):
            self.nodes.append(self._define_node(i))
        self._start_httpd()
        self._start_recorder()
        self._start_sushy()
        self._start_bmc()
        self._start_ironic()
        return self

    def stop(self) -> None:
        for name in ("ironic", "bmc", "sushy", "apirecorder", "httpd"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.work, "logs", f"{name}.log"), "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=self.work)
        self.procs[name] = p
        return p

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.procs[name]
            if p.poll() is not None:
                raise LabError(f"{name} exited with status {p.returncode} during start-up; "
                               f"see {self.work}/logs/{name}.log")
            try:
                urllib.request.urlopen(url, timeout=2).read()
                return
            except urllib.error.HTTPError:
                return                                  # it answers: up
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise LabError(f"{name} did not answer {url} within {timeout:.0f} s; see {self.work}/logs/{name}.log")

    @property
    def py(self) -> str:
        return os.path.join(self.venv, "bin", "python")

    # ---- services ----------------------------------------------------------------------------
    def _start_httpd(self) -> None:
        self._spawn("httpd", [self.py, os.path.join(HERE, "httpd.py"), "--bind", LAB_IP,
                              "--port", str(self.http_port), "--root", self.http_root,
                              "--log", os.path.join(self.work, "logs", "httpd.jsonl")])
        self._wait_http("httpd", self.http_url + "/", 10)

    def _start_recorder(self) -> None:
        self.api_calls_log = os.path.join(self.work, "logs", "agent-api-calls.jsonl")
        self._spawn("apirecorder", [self.py, os.path.join(HERE, "apirecorder.py"), "--bind", LAB_IP,
                                    "--port", str(self.rec_port), "--upstream", self.api_url,
                                    "--log", self.api_calls_log])

    def _start_sushy(self) -> None:
        systems = [{"uuid": n.system_uuid, "name": n.name, "power_state": "Off",
                    "boot_mode": "UEFI" if self.boot_mode == "uefi" else "Legacy",
                    "external_notifier": True, "nics": [{"mac": m} for m in n.macs]}
                   for n in self.nodes]
        conf = os.path.join(self.work, "sushy", "emulator.conf")
        with open(conf, "w") as f:
            f.write(f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
                    f"SUSHY_EMULATOR_LISTEN_PORT = {self.sushy_port}\n"
                    f"SUSHY_EMULATOR_FAKE_DRIVER = True\n"
                    f"SUSHY_EMULATOR_STATE_DIR = {os.path.join(self.work, 'sushy', 'state')!r}\n"
                    f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n"
                    f"EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:{self.bmc_port}/notify'\n")
        self._spawn("sushy", [os.path.join(self.venv, "bin", "sushy-emulator"), "--config", conf])
        self.sushy_url = f"http://127.0.0.1:{self.sushy_port}"
        self._wait_http("sushy", self.sushy_url + "/redfish/v1/", 30)

    def _start_bmc(self) -> None:
        self.bmc_events = os.path.join(self.work, "logs", "bmc-events.jsonl")
        systems = {}
        for n in self.nodes:
            systems[n.system_uuid] = {
                "name": n.name, "macs": n.macs, "mem_mib": self.mem_mib, "disks": n.disks,
                "forwards": [{"guest_ip": LAB_IP, "guest_port": p, "host_ip": LAB_IP, "host_port": p}
                             for p in (self.http_port, self.rec_port)],
                "hostfwds": [[n.agent_port, 9999]],
                "pxe_bootfile": f"{self.http_url}/boot.ipxe",
                "serial_log": n.serial_log,
                "efi_vars": self.efi_vars(n),
            }
        conf = os.path.join(self.work, "bmc.json")
        with open(conf, "w") as f:
            json.dump({"listen": f"127.0.0.1:{self.bmc_port}", "sushy_url": self.sushy_url,
                       "events": self.bmc_events, "systems": systems}, f, indent=1)
        self._spawn("bmc", [self.py, os.path.join(HERE, "bmc.py"), "--config", conf])
        self._wait_http("bmc", f"http://127.0.0.1:{self.bmc_port}/", 10)

    def efi_vars(self, n: "NodeDef") -> str:
        """The node's UEFI NVRAM file (made on its first UEFI power-on)."""
        return os.path.join(self.work, "disks", f"{n.name}-OVMF_VARS.fd")

    def _define_node(self, i: int) -> NodeDef:
        name = f"node-{i}"
        disks = []
        for bus, size in (("virtio", 8 << 30), ("nvme", 1 << 30), ("scsi", 1 << 30)):
            path = os.path.join(self.work, "disks", f"{name}-{bus}.raw")
            with open(path, "wb") as f:
                f.truncate(size)                        # sparse: costs nothing until written
            disks.append({"path": path, "bus": bus, "serial": f"{name}-{bus}"})
        return NodeDef(name=name, system_uuid=str(uuidlib.uuid4()),
                       macs=[f"52:54:00:e2:e{i}:{j:02x}" for j in (1, 2)],
                       agent_port=free_port("127.0.0.1"), disks=disks,
                       serial_log=os.path.join(self.work, "logs", f"{name}-serial.log"))

    def _start_ironic(self) -> None:
        w = self.work
        conf = os.path.join(w, "ironic.conf")
        boot_mode = "uefi" if self.boot_mode == "uefi" else "bios"
        with open(conf, "w") as f:
            f.write(IRONIC_CONF.format(work=w, ip=LAB_IP, api_port=self.api_port, api_url=self.api_url,
                                       agent_api_url=self.agent_api_url, http_url=self.http_url,
                                       boot_mode=boot_mode, hb=self.heartbeat_timeout))
        rc = subprocess.run([os.path.join(self.venv, "bin", "ironic-dbsync"), "--config-file", conf,
                             "create_schema"], stdout=open(os.path.join(w, "logs", "dbsync.log"), "ab"),
                            stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise LabError(f"ironic-dbsync create_schema failed ({rc}); see {w}/logs/dbsync.log")
        self._spawn("ironic", [os.path.join(self.venv, "bin", "ironic"), "--config-file", conf])
        self._wait_http("ironic", self.api_url + "/v1", 90)

    # ---- Ironic REST API -----------------------------------------------------------------------
    def api(self, method: str, path: str, body=None, expect=(200, 201, 202, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("X-OpenStack-Ironic-API-Version", API_VERSION)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        result = json.loads(raw) if raw else None
        if expect and status not in expect:
            raise LabError(f"Ironic {method} {path} answered {status}: {raw[:500].decode(errors='replace')}")
        return result

    def enroll(self, n: NodeDef, fast_track: bool = True) -> str:
        body = {
            "name": n.name, "driver": "redfish",
            "boot_interface": "ipxe", "deploy_interface": "direct", "inspect_interface": "agent",
            "power_interface": "redfish", "management_interface": "redfish",
            "network_interface": "noop",
            "driver_info": {
                "redfish_address": self.sushy_url,
                "redfish_system_id": f"/redfish/v1/Systems/{n.system_uuid}",
                "deploy_kernel": f"{self.http_url}/ironic-agent.kernel",
                "deploy_ramdisk": f"{self.http_url}/ironic-agent.initramfs",
                "fast_track": fast_track,
                # the conductor reaches the agent through the VM's hostfwd on 127.0.0.1
                "kernel_append_params": f"console=ttyS0,115200 quiet ipa-advertise-host=127.0.0.1 "
                                        f"ipa-advertise-port={n.agent_port}",
            },
            "properties": {"cpu_arch": "x86_64", "capabilities": f"boot_mode:{self.boot_mode}"},
        }
        node = self.api("POST", "/v1/nodes", body)
        n.ironic_uuid = node["uuid"]
        self.api("POST", "/v1/ports", {"node_uuid": n.ironic_uuid, "address": n.macs[0],
                                       "pxe_enabled": True})
        return n.ironic_uuid

    def node(self, ident: str) -> dict:
        return self.api("GET", f"/v1/nodes/{ident}")

    def provision(self, ident: str, target: str, **extra) -> None:
        self.api("PUT", f"/v1/nodes/{ident}/states/provision", {"target": target, **extra})

    def wait_state(self, ident: str, want: str | tuple, timeout: float, fail=(),
                   settled: bool = True) -> dict:
        """Poll until provision_state is one of `want` (and, when `settled`, no target is
        pending); a state in `fail` or the deadline raises with Ironic's last_error."""
        want = (want,) if isinstance(want, str) else want
        deadline = time.time() + timeout
        node = {}
        while time.time() < deadline:
            node = self.node(ident)
            st = node["provision_state"]
            if st in want and not (settled and node.get("target_provision_state")):
                return node
            if st in fail:
                raise LabError(f"node {ident} reached {st!r} (wanted {want}); "
                               f"last_error: {node.get('last_error')}")
            time.sleep(0.25)
        raise LabError(f"node {ident} still {node.get('provision_state')!r} -> "
                       f"{node.get('target_provision_state')!r} after {timeout:.0f} s (wanted {want}); "
                       f"last_error: {node.get('last_error')}")

    # ---- records the tests and the demo read -------------------------------------------------
    def agent_calls(self) -> list[dict]:
        return read_jsonl(getattr(self, "api_calls_log", ""))

    def bmc_events_list(self) -> list[dict]:
        return read_jsonl(getattr(self, "bmc_events", ""))

    def put_image(self, name: str, data_path: str) -> str:
        """Serve a file at <http_url>/images/<name>; returns the URL."""
        dst = os.path.join(self.http_root, "images", name)
        shutil.copyfile(data_path, dst)
        return f"{self.http_url}/images/{name}"


def read_jsonl(path: str) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def console_boots(serial_log: str) -> dict:
    """What the node's console says about boots: firmware starts and ramdisk starts."""
    text = open(serial_log, errors="replace").read() if os.path.exists(serial_log) else ""
    return {
        "qemu_starts": text.count("qemu started:"),
        "firmware": text.count("SeaBIOS (version") + text.count("BdsDxe:"),
        "kernel": text.count("Linux version"),
        "ramdisk": text.count("] ironic-agent ramdisk, kernel"),
    }


# Rendered by Lab._start_ironic. The speed knobs are those of shared/reference/real-ironic.md
# §2.2; every path is under the work dir (Ironic creates /tftpboot and /var/lib/ironic otherwise).
IRONIC_CONF = """\
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = lab-conductor
debug = true
log_dir = {work}/logs
log_file = ironic-service.log
state_path = {work}/state
tempdir = {work}/tmp
my_ip = {ip}
minimum_memory_warning_only = true
enabled_hardware_types = redfish
enabled_boot_interfaces = ipxe
enabled_deploy_interfaces = direct
enabled_power_interfaces = redfish
enabled_management_interfaces = redfish
enabled_inspect_interfaces = agent,no-inspect
enabled_network_interfaces = noop
enabled_raid_interfaces = no-raid,agent
enabled_bios_interfaces = no-bios
enabled_console_interfaces = no-console
enabled_rescue_interfaces = no-rescue,agent
enabled_vendor_interfaces = no-vendor
default_deploy_interface = direct
default_network_interface = noop

[api]
host_ip = {ip}
port = {api_port}
public_endpoint = {api_url}
api_workers = 1
# returned to the agent as config.heartbeat_timeout in the lookup reply
ramdisk_heartbeat_timeout = {hb}

[database]
connection = sqlite:///{work}/ironic.sqlite

[dhcp]
dhcp_provider = none

[service_catalog]
auth_type = none
# what the agent gets as ipa-api-url: the recording relay in front of the API
endpoint_override = {agent_api_url}

[conductor]
automated_clean = true
heartbeat_interval = 5
check_provision_state_interval = 5
sync_power_state_interval = -1
deploy_callback_timeout = 300
clean_callback_timeout = 300
inspect_wait_timeout = 300
graceful_shutdown_timeout = 5

[deploy]
fast_track = true
default_boot_mode = {boot_mode}
erase_devices_priority = 0
erase_devices_metadata_priority = 10
http_url = {http_url}
http_root = {work}/httpboot
iso_master_path = {work}/state/master_iso_images

[pxe]
tftp_root = {work}/tftpboot
tftp_master_path = {work}/tftpboot/master_images
images_path = {work}/state/images
instance_master_path = {work}/state/master_images

[agent]
# require_tls keeps Ironic's default (true): the agent serves HTTPS with auto-TLS
certificates_path = {work}/certs
command_timeout = 30
max_command_attempts = 2
post_deploy_get_power_state_retries = 1
post_deploy_get_power_state_retry_interval = 1
deploy_logs_local_path = {work}/deploy-logs

[inspector]
power_off = false
hooks = $default_hooks,memory,cpu-capabilities,root-device
add_ports = all

[inventory]
data_backend = database

[redfish]
connection_attempts = 3
connection_retry_interval = 1

[oslo_concurrency]
lock_path = {work}/locks
"""
