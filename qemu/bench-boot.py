#!/usr/bin/env python3
"""Figures for the README, measured on this machine:

  1. kernel + initramfs size (build/ironic-agent.sizes, written by initramfs/build.sh);
  2. power-on to the agent's first lookup and first heartbeat, direct boot (-kernel vmlinux,
     TCG, 256 MiB), against a real Ironic: QEMU start -> the API recorder's timestamps;
  3. the full flow under Ironic (PXE, inspect -> clean -> deploy), with --flow.

usage: qemu/netns-run build/venv/bin/python qemu/bench-boot.py [--runs N] [--flow]
         [--kernel K --pxe-kernel K --initramfs I --sizes S --mem MIB]   (another ramdisk, e.g. the DIB one)
"""
import argparse
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flow import first_call, run_flow  # noqa: E402
from lab import LAB_IP, REPO, Lab, LabError  # noqa: E402
from vm import VM, Disk, Forward, VMSpec  # noqa: E402


def direct_boot_once(lab: Lab, i: int, timeout: float, kernel: str, mem_mib: int) -> dict:
    node = lab.nodes[0]
    # a fresh enrollment per run: a new node hands out a new agent token on lookup
    for n in lab.api("GET", "/v1/nodes")["nodes"]:
        lab.api("DELETE", f"/v1/nodes/{n['uuid']}")
    uuid = lab.enroll(node)
    lab.provision(uuid, "manage")
    lab.wait_state(uuid, "manageable", 60, fail=("enroll",))
    # the kernel command line Ironic's iPXE config gives (fast track: ipa-api-url is there)
    append = (f"console=ttyS0,115200 quiet ipa-advertise-host=127.0.0.1 ipa-advertise-port={node.agent_port} "
              f"ipa-api-url={lab.agent_api_url} BOOTIF={node.macs[0]}")
    spec = VMSpec(name=f"bench-{i}", boot="direct", kernel=kernel,
                  initrd=lab.initramfs, append=append, macs=node.macs[:1], mem_mib=mem_mib,
                  disks=[Disk(path=node.disks[0]["path"], bus="virtio")],
                  forwards=[Forward(LAB_IP, p, LAB_IP, p) for p in (lab.http_port, lab.rec_port)],
                  hostfwds=[(node.agent_port, 9999)],
                  serial_log=os.path.join(lab.work, "logs", f"bench-{i}-serial.log"))
    vm = VM(spec).start()
    t0 = vm.t0
    lookup = hb = None
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and not hb:
            lookup = lookup or first_call(lab, "GET", "/v1/lookup", t0)
            hb = first_call(lab, "POST", "/v1/heartbeat/", t0)
            time.sleep(0.05)
        init = vm.wait_for_line("] ironic-agent ramdisk, kernel", 0)
    finally:
        vm.stop()
    return {"init": init, "lookup": lookup and lookup - t0, "heartbeat": hb and hb - t0}


def stats(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return "n/a"
    return f"{v[0]:.2f} / {statistics.median(v):.2f} / {v[-1]:.2f} s (min/median/max of {len(v)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--flow", action="store_true", help="also time inspect -> clean -> deploy")
    p.add_argument("--kernel", default=os.path.join(REPO, "build/ironic-agent.vmlinux"),
                   help="kernel for the direct boots (default: the tiny ramdisk's PVH vmlinux)")
    p.add_argument("--pxe-kernel", default=os.path.join(REPO, "build/ironic-agent.kernel"),
                   help="kernel Ironic PXE-boots in --flow (bzImage)")
    p.add_argument("--initramfs", default=os.path.join(REPO, "build/ironic-agent.initramfs"))
    p.add_argument("--sizes", default=os.path.join(REPO, "build/ironic-agent.sizes"))
    p.add_argument("--mem", type=int, default=256, help="VM RAM in MiB")
    a = p.parse_args()
    sizes = a.sizes
    print(f"== sizes ({sizes})")
    print(open(sizes).read().rstrip() if os.path.exists(sizes) else "build/ironic-agent.sizes missing")
    work = os.path.join(REPO, "build", "bench")
    shutil.rmtree(work, ignore_errors=True)
    with Lab(work, kernel=a.pxe_kernel, initramfs=a.initramfs) as lab:
        lab.start(nodes=1)
        print(f"\n== direct boot ({os.path.basename(a.kernel)}, TCG, {a.mem} MiB, q35) to the agent's calls, "
              f"{a.runs} runs")
        rows = [direct_boot_once(lab, i, a.timeout, a.kernel, a.mem) for i in range(a.runs)]
        print(f"  /init starts      {stats(r['init'] for r in rows)}")
        print(f"  first lookup      {stats(r['lookup'] for r in rows)}")
        print(f"  first heartbeat   {stats(r['heartbeat'] for r in rows)}")
        missing = sum(r["heartbeat"] is None for r in rows)
        if missing:
            print(f"  ({missing} run(s) saw no heartbeat within {a.timeout:.0f} s)")
    if a.flow:
        shutil.rmtree(work, ignore_errors=True)
        with Lab(work, kernel=a.pxe_kernel, initramfs=a.initramfs, mem_mib=a.mem) as lab:
            lab.start(nodes=1)
            print("\n== full flow under Ironic (PXE via iPXE, fast track)")
            try:
                tl = run_flow(lab, lab.nodes[0])
                print(f"  inspect -> clean -> deploy: {tl.marks[-1][1] - tl.seconds('power on (PXE)'):.1f} s "
                      "from power-on to active")
            except LabError as e:
                print(f"  flow stopped: {e}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
