"""Durable writes of the run store: the steps that make a file survive a power loss.

``write_all`` writes a buffer with one ``write(2)`` (continued only after a
short write), ``fsync_dir`` makes the entries of a directory durable. The
event log (``runner.store.eventlog``) and the artifacts
(``runner.store.artifacts``) are written with them.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``: one ``write(2)``, continued only after a short write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """``fsync`` directory ``path``, so the entries made in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
