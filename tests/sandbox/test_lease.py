"""Run leases: held while the owner lives, free the moment it dies (kill -9 included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import LeaseHeld
from sandbox.lease import RunLease, check_run_id, is_live
from tests.support.leases import hold_lease_in_child, kill


def test_lease_is_exclusive_and_released(tmp_path: Path) -> None:
    with RunLease(tmp_path, "run-1"):
        assert is_live(tmp_path, "run-1")
        with pytest.raises(LeaseHeld):
            RunLease(tmp_path, "run-1").acquire()
    assert not is_live(tmp_path, "run-1")
    assert not (tmp_path / "locks" / "run-1.lock").exists()


def test_unknown_run_is_not_live(tmp_path: Path) -> None:
    assert not is_live(tmp_path, "never-started")


def test_lease_dies_with_its_process(tmp_path: Path) -> None:
    proc = hold_lease_in_child(tmp_path, "victim")
    assert is_live(tmp_path, "victim")
    kill(proc)
    assert not is_live(tmp_path, "victim")
    RunLease(tmp_path, "victim").acquire().release()  # a new owner can take it over


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-rf", "a..b", "x" * 200, "é"])
def test_run_id_rejects_unsafe_names(bad: str) -> None:
    with pytest.raises(ValueError):
        check_run_id(bad)
