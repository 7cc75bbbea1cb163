"""A run's artifacts: ``runs/<run>/<name>``, named safely, written atomically, synced later.

Patches, gate logs, junit reports and progress snapshots are artifacts.
``write_atomic`` puts one in place whole (temporary file, ``os.replace``):
readers see the old content or the new, never a part. It is made durable at
the run's next durable boundary, with its events (``fsync_written``, called
by ``RunStore.sync``).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from runner.store.disk import fsync_dir, write_all
from runner.store.eventlog import LOG_NAME

_ARTIFACT_PART = re.compile(r"^[A-Za-z0-9._-]+$")


def check_artifact_name(name: str) -> str:
    """Return ``name`` if it is a safe relative artifact path; else ``ValueError``.

    Parts of letters, digits, ``.``, ``_`` and ``-`` joined by ``/``; no empty,
    ``.`` or ``..`` part; ``events.jsonl*`` belongs to the event log.
    """
    parts = name.split("/")
    if (
        any(p in ("", ".", "..") or not _ARTIFACT_PART.match(p) for p in parts)
        or parts[0] == LOG_NAME
        or parts[0].startswith(LOG_NAME + ".")
    ):
        raise ValueError(
            f"invalid artifact name {name!r}: use a relative path of letters, digits, "
            f"'.', '_', '-' and '/', without '.' or '..' parts ({LOG_NAME} is reserved)"
        )
    return name


def write_atomic(path: Path, payload: bytes) -> None:
    """Put ``payload`` at ``path`` whole (made with its folders, mode 0644); not synced.

    ``OSError`` from the disk passes through, and no temporary file is left.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        write_all(fd, payload)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd != -1:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_written(paths: set[Path], top: Path) -> None:
    """``fsync`` the artifacts ``paths``, then their folders up to ``top`` (the run's folder;
    a folder made for them is an entry of its parent). A path gone since is skipped."""
    for path in sorted(paths):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:  # replaced or removed since: nothing of it to keep
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    folders = {f for p in paths for f in p.parents if f == top or top in f.parents}
    for folder in sorted(folders, reverse=True):  # a new folder's own entry: its parent
        fsync_dir(folder)
