"""Run leases: who owns a run's resources, decided by the kernel.

A lease is an exclusive ``flock`` on ``<home>/locks/<run_id>.lock`` held for as
long as the owning process lives. The kernel drops it when the process dies
(also on ``kill -9``), so ``corral gc`` can tell an orphan from a live run by
trying to take the lock: if it can, the owner is gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from types import TracebackType

from sandbox.errors import InvalidRunId, LeaseHeld
from sandbox.paths import locks_dir

#: How often ``acquire`` retries when the file it locked was unlinked by a releasing holder.
_ACQUIRE_TRIES = 5

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is safe as a file name, a git ref part and a label.

    Raises ``InvalidRunId`` (a ``UserError`` and a ``ValueError``) otherwise.
    """
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise InvalidRunId(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'")
    return run_id


class RunLease:
    """An exclusive, crash-safe claim on a run id. Use as a context manager."""

    def __init__(self, home: Path, run_id: str) -> None:
        self.path = locks_dir(home) / f"{check_run_id(run_id)}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> RunLease:
        """Take the lease (never waits). Raises ``LeaseHeld`` when another live process has it."""
        import psutil  # only to take a lease: a command that reads the store never needs it

        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(_ACQUIRE_TRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LeaseHeld(
                    f"run {self.run_id} is owned by a live process ({self.path})"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder we waited for unlinked the file on release: lock the new one
        else:
            raise LeaseHeld(f"run {self.run_id}: its lease file keeps being replaced ({self.path})")
        me = psutil.Process()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": me.pid, "create_time": me.create_time()}).encode())
        self._fd = fd
        return self

    def release(self, *, remove_file: bool = True) -> None:
        """Drop the lease and (unless told not to) remove its file. Idempotent."""
        if self._fd is None:
            return
        try:
            if remove_file:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (``release`` unlinks it before closing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def is_live(home: Path, run_id: str) -> bool:
    """True when a live process holds the run's lease right now."""
    path = locks_dir(home) / f"{run_id}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
