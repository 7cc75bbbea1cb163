"""Paths under a root, reached without following links: opened and read.

Every path is walked from ``root`` one component at a time through directory
file descriptors opened with ``O_NOFOLLOW`` and every call takes ``dir_fd``, so
a symlink the agent put in place of a directory or file is never followed out
of the tree; files are opened ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO never blocks
the runner) and read only if they are still the inode an ``lstat`` saw. The
scan (``sandbox.scan``), the tree watch and the workspace go through here.
Standard library only (``os`` with ``dir_fd``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


def open_dir(root: Path, rel: str) -> int:
    """A directory fd for ``rel`` (``""``: the root), reached without following links.

    The caller closes it. Raises ``OSError`` (ELOOP/ENOTDIR) if a component is
    not a real directory.
    """
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in [p for p in rel.split("/") if p]:
            nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_parent(root: Path, rel: str) -> tuple[int, str]:
    """``(fd of rel's parent directory, rel's last component)``; see ``open_dir``."""
    parent, _, name = rel.rpartition("/")
    return open_dir(root, parent), name


def read_chunks(dfd: int, name: str, expect: os.stat_result) -> Iterator[bytes]:
    """The bytes of regular file ``name`` under ``dfd``, opened without following links.

    Raises ``OSError`` (EAGAIN-like ``errno``) when the file is not the same inode
    and size as ``expect`` (it was swapped or changed since the ``lstat``).
    """
    fd = os.open(name, FILE_FLAGS, dir_fd=dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_ino, st.st_size) != (
            expect.st_ino,
            expect.st_size,
        ):
            raise OSError(11, "file changed while it was read")
        left = st.st_size
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                raise OSError(11, "file shrank while it was read")
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)
