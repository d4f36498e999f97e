"""Shared fixtures of the end-to-end tests (real Ironic, sushy-tools, QEMU).

Run them with tests/e2e/run.sh: it enters the lab's network namespace (qemu/netns-run) and
uses the venv made by qemu/setup-host.sh. The ramdisk must be built (initramfs/build.sh).
Each run works in build/e2e/ (wiped at the start, kept afterwards: Ironic's log, the BMC's
power events, every VM console with host timestamps). With E2E_PRUNE=1 (CI) each module's
disk images and served images are deleted once its labs have stopped, so a run needs a few
GiB of disk at a time rather than the sum over all modules.
"""
import contextlib
import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "qemu"))

import lab as lablib  # noqa: E402

BUILD = os.path.join(REPO, "build")
KERNEL = os.path.join(BUILD, "ironic-agent.kernel")
VMLINUX = os.path.join(BUILD, "ironic-agent.vmlinux")
INITRAMFS = os.path.join(BUILD, "ironic-agent.initramfs")
WORK = os.environ.get("E2E_WORK", os.path.join(BUILD, "e2e"))
PRUNE = os.environ.get("E2E_PRUNE") == "1"
BIG = 16 << 20


def pytest_configure(config):
    # Scenarios too long for every CI run (faults that wait minutes, fleet sizes, the whole
    # aarch64 flow) carry @pytest.mark.slow: tests/run.sh (CI) leaves them out, and
    # `tests/e2e/run.sh -m slow` (or `tests/run.sh --all`) runs them.
    config.addinivalue_line("markers", "slow: too long for every CI run; run with -m slow")
    if os.path.isdir(WORK):
        shutil.rmtree(WORK)
    os.makedirs(WORK)


class SharedNode:
    """The one lab node a module's tests share (they run in file order), and the steps it got
    through, so a later test fails with the earlier step's name instead of a timeout."""

    def __init__(self, lab):
        self.lab = lab
        self.node = lab.nodes[0]
        self.uuid = ""
        self.reached = set()

    def need(self, step: str) -> None:
        if step not in self.reached:
            pytest.fail(f"the node never got through '{step}' (an earlier test failed or was skipped)")

    def state(self) -> dict:
        return self.lab.node(self.uuid)

    def console(self) -> str:
        return open(self.node.serial_log, errors="replace").read()


@contextlib.contextmanager
def started_lab(name: str, artifacts: dict, **kw):
    """A one-node lab under WORK/<name> booting the ramdisk in `artifacts`: started for the
    block, stopped after it, its logs kept and their place printed."""
    with lablib.Lab(os.path.join(WORK, name), kernel=artifacts["kernel"],
                    initramfs=artifacts["initramfs"], **kw) as lab:
        try:
            lab.start(nodes=1)
            yield lab
        finally:
            print(f"\nlab logs: {lab.work}/logs (ironic-service.log, bmc-events.jsonl, node-*-serial.log)")


@pytest.fixture(scope="session")
def artifacts():
    for f in (KERNEL, VMLINUX, INITRAMFS):
        if not os.path.isfile(f):
            pytest.fail(f"{f} is missing: run initramfs/build.sh first")
    return {"kernel": KERNEL, "vmlinux": VMLINUX, "initramfs": INITRAMFS}


@pytest.fixture(scope="session")
def netns():
    if not lablib.in_lab_netns():
        pytest.fail(f"{lablib.LAB_IP} is not local: run the e2e tests through tests/e2e/run.sh")


@pytest.fixture
def workdir(request):
    d = os.path.join(WORK, request.node.name)
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module", autouse=True)
def prune_disks():
    """Set up before, so torn down after, a module's lab fixtures: by then its VMs are gone."""
    yield
    if not PRUNE:
        return
    freed = 0
    for root, _, files in os.walk(WORK):
        for f in files:
            path = os.path.join(root, f)
            if not f.endswith(".log") and os.path.getsize(path) >= BIG:
                freed += os.stat(path).st_blocks * 512
                os.unlink(path)
    print(f"\npruned {freed >> 20} MiB of disk and image files under {WORK}")
