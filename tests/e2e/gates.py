"""Agent features the end-to-end tests wait for.

A test that needs one of these calls `require(name)`: while the name is in PENDING the test is
skipped with a reason naming the missing feature. When the feature lands on main, delete its
line here: from then on the test runs and must pass. Nothing else turns a gate off.
"""
import pytest

PENDING = {
    "agent-run": "the agent's `run` subcommand (lookup, auto-TLS API on 9999, heartbeats)",
    "inspection": "in-band inspection (inventory POSTed to ipa-inspection-callback-url)",
    "clean-steps": "clean.get_clean_steps / clean.execute_clean_step",
    "erase-devices-metadata": "the erase_devices_metadata clean step",
    "write-image": "deploy.write_image (image download, sha256 check, write to the root disk)",
}


def require(*names: str) -> None:
    missing = [PENDING[n] for n in names if n in PENDING]
    if missing:
        pytest.skip("waiting for " + "; ".join(missing) + " to land (tests/e2e/gates.py)")
