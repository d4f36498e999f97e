"""Agent features the end-to-end tests wait for.

A test that needs one of these calls `require(name)`: while the name is in PENDING the test is
skipped with a reason naming the missing feature. When the feature lands on main, delete its
line here: from then on the test runs and must pass. Nothing else turns a gate off.
"""
import pytest

PENDING: dict[str, str] = {}


def require(*names: str) -> None:
    missing = [PENDING[n] for n in names if n in PENDING]
    if missing:
        pytest.skip("waiting for " + "; ".join(missing) + " to land (tests/e2e/gates.py)")
