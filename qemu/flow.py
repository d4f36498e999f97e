"""The whole provisioning flow on one lab node, timed: what the demo shows and the benchmark
measures. Each phase waits for Ironic to report the phase's end state; the timeline marks come
from Ironic (provision states), the BMC service (power on) and the API recorder (the agent's
first lookup and heartbeat)."""
from __future__ import annotations

import os
import time

from lab import Lab, LabError, NodeDef
from testimage import write_image


class Timeline:
    def __init__(self, printer=print):
        self.t0 = time.time()
        self.marks: list[tuple[str, float]] = []
        self.printer = printer

    def mark(self, what: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self.marks.append((what, at - self.t0))
        prev = self.marks[-2][1] if len(self.marks) > 1 else 0.0
        self.printer(f"  {at - self.t0:7.1f} s  (+{at - self.t0 - prev:5.1f} s)  {what}")

    def seconds(self, what: str) -> float | None:
        return next((t for w, t in self.marks if w == what), None)


def first_call(lab: Lab, method: str, prefix: str, after: float) -> float | None:
    for c in lab.agent_calls():
        if c["t"] >= after and c["method"] == method and c["path"].startswith(prefix):
            return c["t"]
    return None


def run_flow(lab: Lab, node: NodeDef, image_mib: int = 64, timeout: float = 300,
             printer=print) -> Timeline:
    """enroll -> manage -> inspect -> provide (automated cleaning) -> deploy; raises LabError
    naming the phase that did not finish (with Ironic's last_error)."""
    tl = Timeline(printer)
    uuid = lab.enroll(node)
    lab.provision(uuid, "manage")
    lab.wait_state(uuid, "manageable", 60, fail=("enroll",))
    tl.mark("enrolled and manageable (redfish verified)")

    lab.provision(uuid, "inspect")
    deadline = time.time() + 60
    while time.time() < deadline and not any(e["event"] == "power-on" for e in lab.bmc_events_list()):
        time.sleep(0.2)
    ons = [e for e in lab.bmc_events_list() if e["event"] == "power-on"]
    if not ons:
        raise LabError("inspection: the BMC never powered the machine on")
    power_on = ons[0]["t"]
    tl.mark("power on (PXE)", power_on)
    deadline = time.time() + timeout
    posted = lookup = heartbeat = inspected = None
    while time.time() < deadline and not (lookup and heartbeat and inspected):
        posted = posted or first_call(lab, "POST", "/v1/continue_inspection", power_on)
        lookup = lookup or first_call(lab, "GET", "/v1/lookup", power_on)
        heartbeat = heartbeat or first_call(lab, "POST", "/v1/heartbeat/", power_on)
        state = lab.node(uuid)["provision_state"]
        if state == "manageable" and not inspected:
            inspected = time.time()
        if state == "inspect failed":
            break
        time.sleep(0.25)
    marks = [("agent: inspection data posted", posted), ("inspection done (manageable)", inspected),
             ("agent: first lookup", lookup), ("agent: first heartbeat", heartbeat)]
    for what, t in sorted((m for m in marks if m[1]), key=lambda m: m[1]):
        tl.mark(what, t)
    if not inspected:
        lab.wait_state(uuid, "manageable", 1, fail=("inspect failed",))

    lab.provision(uuid, "provide")
    lab.wait_state(uuid, "available", timeout, fail=("clean failed",))
    tl.mark("cleaning done (available)")

    img = os.path.join(lab.work, "demo-disk.img")
    sha = write_image(img, image_mib)
    url = lab.put_image("demo-disk.img", img)
    lab.api("PATCH", f"/v1/nodes/{uuid}", [
        {"op": "add", "path": "/instance_info/image_source", "value": url},
        {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
        {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha}])
    lab.provision(uuid, "active")
    lab.wait_state(uuid, "active", timeout, fail=("deploy failed",))
    tl.mark(f"deploy done (active, {image_mib} MiB whole-disk image)")
    return tl
