#!/usr/bin/env python3
"""The demo: a real Ironic provisions a QEMU server through our ramdisk, with a timeline.
Run it through qemu/demo.sh (which installs and builds everything first)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flow import run_flow  # noqa: E402
from lab import REPO, Lab, LabError, console_boots  # noqa: E402


def main() -> int:
    work = os.environ.get("DEMO_WORK", os.path.join(REPO, "build", "demo"))
    if os.path.isdir(work):
        import shutil
        shutil.rmtree(work)
    lab = Lab(work)
    print(f"demo: starting Ironic 39, sushy-tools and the BMC service in {work}")
    t = time.time()
    try:
        lab.start(nodes=1)
        print(f"demo: lab up in {time.time() - t:.1f} s; Ironic API {lab.api_url}")
        node = lab.nodes[0]
        print(f"demo: timeline of {node.name} (TCG, {lab.mem_mib} MiB, PXE through iPXE, fast track)")
        try:
            run_flow(lab, node)
        except LabError as e:
            print(f"demo: stopped: {e}")
            return 1
        b = console_boots(node.serial_log)
        print(f"demo: the ramdisk booted {b['ramdisk']} time(s) from inspection to deploy (fast track)")
        print(f"demo: logs in {work}/logs")
        return 0
    finally:
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
