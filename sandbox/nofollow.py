"""Paths under a root, reached without following links: opened, read, written and deleted.

Every path is walked from ``root`` one component at a time through directory
file descriptors opened with ``O_NOFOLLOW`` and every call takes ``dir_fd``, so
a symlink the agent put in place of a directory or file is never followed out
of the tree; files are opened ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO never blocks
the runner) and read only if they are still the inode an ``lstat`` saw; a new
file's mode and owner are set through its descriptor, never by name. The scan
(``sandbox.scan``), the tree watch, the workspace's host-side writes and every
host-side read of an agent-touched file (``read_regular``: the progress file)
go through here. Standard library only (``os`` with ``dir_fd``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from sandbox.errors import NotFollowed

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


def read_regular(root: Path, rel: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``rel`` under ``root``, nothing followed.

    Each directory on the way is opened ``O_NOFOLLOW | O_DIRECTORY``, the file ``lstat``-ed and
    opened only if regular, then checked again on its descriptor. Raises ``FileNotFoundError``
    when ``rel`` or a directory on its way does not exist, ``NotFollowed`` when one on the way is
    not a real directory (a symlink, a file) or ``rel`` is not a regular file (a symlink, a FIFO,
    a directory ...), and ``OSError`` for what else the file system says.
    """
    parent, _, name = rel.strip("/").rpartition("/")
    fd = os.open(root, DIR_FLAGS)
    try:
        done: list[str] = []
        for part in [p for p in parent.split("/") if p]:
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                here = "/".join([*done, part])
                what = _what(os.lstat(part, dir_fd=fd).st_mode)
                raise NotFollowed(
                    here, f"{here} is not a real directory ({what}): not followed"
                ) from exc
            os.close(fd)
            fd, done = nxt, [*done, part]
        st = os.lstat(name, dir_fd=fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotFollowed(rel, f"{rel} is not a regular file ({_what(st.st_mode)}): not read")
        ffd = os.open(name, FILE_FLAGS, dir_fd=fd)
        try:
            if (os.fstat(ffd).st_ino, os.fstat(ffd).st_dev) != (st.st_ino, st.st_dev):
                raise NotFollowed(rel, f"{rel} was replaced while it was opened: not read")
            chunks, left = [], limit
            while left > 0 and (chunk := os.read(ffd, min(_CHUNK, left))):
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(ffd)
    finally:
        os.close(fd)


def _what(mode: int) -> str:
    """What a file of ``mode`` is, for a message: "a symbolic link", "a named pipe" ..."""
    kinds = [
        (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
    ]  # fmt: skip
    return next((what for test, what in kinds if test(mode)), "a device node")


def remove(root: Path, rel: str) -> None:
    """Delete ``rel`` under ``root``: a directory with all it holds, anything else unlinked."""
    fd, name = open_parent(root, rel)
    try:
        st = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def remove_path(root: Path, rel: str) -> None:
    """Delete ``rel`` (file, link or directory) under ``root``; a non-directory on the way goes too."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        try:
            fd, _name = open_parent(root, "/".join(parts[: i + 1]))
        except FileNotFoundError:
            return
        except (NotADirectoryError, OSError):
            remove(root, "/".join(parts[:i]))  # an ancestor is a link or a file: it goes
            return
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        remove(root, rel)


def write_at(
    root: Path,
    rel: str,
    data: bytes,
    *,
    symlink: bool = False,
    executable: bool = False,
    owner: tuple[int, int] | None = None,
) -> None:
    """Create ``rel`` (which must not exist) holding ``data``, or a symlink to ``data``.

    Missing directories on the way are made (``make_dirs``); ``owner`` (uid, gid)
    gets the new file and directories. Raises ``OSError`` (``FileExistsError``
    when ``rel`` exists, ELOOP/ENOTDIR for a link on the way).
    """
    fd = make_dirs(root, rel.rpartition("/")[0], owner)
    name = rel.rpartition("/")[2]
    try:
        if symlink:
            os.symlink(data, name, dir_fd=fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=fd, follow_symlinks=False)
        else:
            # mode and owner through the descriptor: while a sandbox runs (the per-step revert),
            # the name may be a link to a host file by the time a call by name would reach it
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(name, flags, 0o600, dir_fd=fd), "wb") as f:
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
                os.fchmod(f.fileno(), 0o755 if executable else 0o644)
                f.write(data)
    finally:
        os.close(fd)


def make_dirs(root: Path, rel_dir: str, owner: tuple[int, int] | None = None) -> int:
    """A directory fd for ``rel_dir``, creating missing directories (given to ``owner``)."""
    fd = open_dir(root, "")
    for part in [p for p in rel_dir.split("/") if p]:
        made = False
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
            made = True
        try:
            nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
        if made and owner is not None:
            os.fchown(fd, *owner)  # the directory opened, whatever its name points at now
    return fd


def clear_tree(root: Path, keep: frozenset[str]) -> None:
    """Delete everything under ``root`` not in ``keep`` (dirs as ``d/``), following no links."""

    def visit(prefix: str) -> None:
        fd = open_dir(root, prefix)
        try:
            with os.scandir(fd) as it:
                names = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in names:
                rel = prefix + name
                if is_dir and rel + "/" in keep:
                    if not any(k.startswith(rel + "/") and k != rel + "/" for k in keep):
                        continue  # a kept gitlink directory: leave its contents alone
                    visit(rel + "/")
                elif not is_dir and rel in keep:
                    continue
                elif is_dir:
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    visit("")


def walk_paths(root: Path) -> Iterator[str]:
    """Every path under ``root``, relative, without following links (for ownership)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in dirnames + filenames:
            yield prefix + name
