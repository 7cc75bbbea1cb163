"""A run lease held by another process, which a test can kill -9 (a crashed run's owner)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_HOLD = (
    "import sys, time; from pathlib import Path; from sandbox.lease import RunLease;"
    "RunLease(Path(sys.argv[1]), sys.argv[2]).acquire(); print('held', flush=True);"
    "time.sleep(600)"
)


def hold_lease_in_child(home: Path, run_id: str) -> subprocess.Popen[str]:
    """A child process holding the lease of ``run_id`` in ``home``; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(home), run_id], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    """``kill -9`` the holder and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
