"""Run leases: held while the owner lives, free the moment it dies (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.errors import LeaseHeld
from sandbox.lease import RunLease, check_run_id, is_live


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
    code = (
        "import sys, time; from pathlib import Path; from sandbox.lease import RunLease;"
        "l = RunLease(Path(sys.argv[1]), 'victim').acquire(); print('held', flush=True);"
        "time.sleep(600)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    assert is_live(tmp_path, "victim")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_live(tmp_path, "victim")
    RunLease(tmp_path, "victim").acquire().release()  # a new owner can take it over


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-rf", "a..b", "x" * 200, "é"])
def test_run_id_rejects_unsafe_names(bad: str) -> None:
    with pytest.raises(ValueError):
        check_run_id(bad)
