"""The ``lstat`` scan of an agent-touched worktree: what is there, read without following anything.

``scan`` walks the tree through directory file descriptors opened with
``O_NOFOLLOW`` and opens files with ``O_NOFOLLOW | O_NONBLOCK``, so a symlink
swapped in for a directory or file is never followed and a FIFO never blocks
the runner. It returns the regular files and symlinks that may enter a patch
(with their git blob ids, computed here) and a typed finding for everything
that may not: FIFOs, sockets, devices, setuid/setgid files, hardlinks,
symlinks (those that leave the tree always), nested repositories (a ``.git``
anywhere below the root, or a directory shaped like a bare repository), names
that start with ``-`` or carry control or bidi characters, oversize files,
files the tree's ignore rules exclude, and trees too big to scan.

Every loop is bounded: ``ScanLimits`` caps entries, depth and file size.
Files are reached through ``sandbox.nofollow`` and hashed by ``sandbox.blobs``
(whose ``HashCache`` a scan may reuse ids from). Standard library only.
"""

from __future__ import annotations

import os
import stat
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sandbox.blobs import HashCache, blob_sha, hash_file
from sandbox.errors import WorkspaceError
from sandbox.nofollow import DIR_FLAGS, open_parent, read_chunks

FindingKind = Literal[
    "fifo",
    "socket",
    "device",
    "setuid",
    "setgid",
    "hardlink",
    "symlink",
    "symlink_escape",
    "nested_git",
    "git_pointer_changed",
    "bad_name",
    "oversize",
    "ignored_file",
    "too_many_entries",
    "too_deep",
    "unreadable",
    "setup_file_changed",
]

#: Finding kinds that make a harvest unusable as it stands (the rest are informative or policy's call).
BLOCKING_KINDS: frozenset[str] = frozenset(
    {"git_pointer_changed", "too_many_entries", "too_deep", "unreadable"}
)

MODE_FILE = "100644"
MODE_EXEC = "100755"
MODE_LINK = "120000"
MODE_GITLINK = "160000"

_BIDI = {chr(c) for c in (0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


@dataclass(frozen=True, slots=True)
class Finding:
    """Something in the tree a reviewer or the policy must see; ``path`` is tree-relative."""

    kind: FindingKind
    path: str
    detail: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A file or symlink that can enter a git tree: ``mode`` as git writes it, ``sha`` its blob id."""

    path: str
    mode: str
    sha: str
    size: int


@dataclass(frozen=True, slots=True)
class ScanLimits:
    """Bounds of one scan. A tree past them is reported, never walked to the end."""

    max_file_bytes: int = 16 * 1024 * 1024
    max_entries: int = 200_000
    max_depth: int = 64


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The scan's result: admissible entries by path, and findings in walk order."""

    entries: Mapping[str, Entry]
    findings: tuple[Finding, ...]
    complete: bool


def bad_name_reason(name: str) -> str | None:
    """Why a path component is refused, or None. Option-like, control, bidi or undecodable."""
    if name.startswith("-"):
        return "starts with '-' (reads as an option)"
    if name.isascii() and name.isprintable():  # most names: no control, bidi or surrogate here
        return None
    for ch in name:
        if ch in _BIDI:
            return f"bidi control U+{ord(ch):04X}"
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            return "not valid UTF-8"
        if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d":
            return f"control character U+{ord(ch):04X}"
    return None


@dataclass(slots=True)
class _Walk:
    root_dev: int
    pointer: bytes | None
    ignored: frozenset[str]
    base: Mapping[str, tuple[str, str]]
    allow_symlinks: bool
    limits: ScanLimits
    exclude: Callable[[str], str | None] | None = None
    hashes: HashCache | None = None
    reuse: bool = True
    started_ns: int = 0
    entries: dict[str, Entry] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seen: int = 0
    complete: bool = True

    def flag(self, kind: FindingKind, path: str, detail: str) -> None:
        self.findings.append(Finding(kind, path, detail))


def scan(
    root: Path,
    *,
    pointer: bytes | None = None,
    ignored: frozenset[str] = frozenset(),
    base: Mapping[str, tuple[str, str]] | None = None,
    allow_symlinks: bool = False,
    limits: ScanLimits | None = None,
    exclude: Callable[[str], str | None] | None = None,
    hashes: HashCache | None = None,
    reuse: bool = True,
) -> Snapshot:
    """Scan ``root`` without following links.

    ``pointer``: the exact bytes the root ``.git`` pointer file must hold (None:
    the root ``.git`` is treated like any nested one). ``ignored``: tree-relative
    paths the ignore rules exclude (directories end in ``/``), reported as
    ``ignored_file`` and kept out. ``base``: the base tree's ``path -> (mode,
    sha)``; base gitlinks are skipped, in-tree symlinks and hardlinks already in
    base are not flagged. ``exclude(path)`` (directories end in ``/``) keeps a
    path out: a non-empty reason makes it an ``ignored_file`` finding, ``""``
    skips it silently (the progress file). ``hashes``: blob ids of earlier scans of
    this tree, reused (see ``HashCache`` for when that is sound) and added to;
    ``reuse=False`` hashes every file and only adds. Raises ``OSError`` only if
    ``root`` itself cannot be opened as a directory.
    """
    limits = limits or ScanLimits()
    started = time.time_ns()
    fd = os.open(root, DIR_FLAGS)
    try:
        walk = _Walk(
            root_dev=os.fstat(fd).st_dev,
            pointer=pointer,
            ignored=ignored,
            base=base or {},
            allow_symlinks=allow_symlinks,
            limits=limits,
            exclude=exclude,
            hashes=hashes,
            reuse=reuse,
            started_ns=started,
        )
        _scan_dir(walk, fd, "", 0)
    finally:
        os.close(fd)
    return Snapshot(entries=walk.entries, findings=tuple(walk.findings), complete=walk.complete)


def _is_bare_repo(names: set[str]) -> bool:
    return {"HEAD", "objects", "refs"} <= names


def _scan_dir(walk: _Walk, dfd: int, prefix: str, depth: int) -> None:
    if depth > walk.limits.max_depth:
        walk.flag("too_deep", prefix.rstrip("/"), f"deeper than {walk.limits.max_depth} levels")
        walk.complete = False
        return
    with os.scandir(dfd) as it:
        names = sorted(e.name for e in it)
    if prefix and (".git" in names or _is_bare_repo(set(names))):
        shape = "a .git inside" if ".git" in names else "the shape of a bare repository"
        walk.flag("nested_git", prefix.rstrip("/"), f"nested repository ({shape}); not scanned")
        return
    for name in names:
        walk.seen += 1
        if walk.seen > walk.limits.max_entries:
            if walk.complete:
                walk.flag("too_many_entries", prefix.rstrip("/") or ".", "scan stopped")
            walk.complete = False
            return
        rel = prefix + name
        if not prefix and name == ".git":
            _check_pointer(walk, dfd)
            continue
        reason = bad_name_reason(name)
        if reason is not None:
            walk.flag("bad_name", rel, reason)
            continue
        try:
            st = os.lstat(name, dir_fd=dfd)
        except OSError as exc:
            walk.flag("unreadable", rel, exc.strerror or str(exc))
            walk.complete = False
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if rel in walk.ignored or (is_dir and rel + "/" in walk.ignored):
            walk.flag("ignored_file", rel, "excluded by the tree's ignore rules")
            continue
        why = walk.exclude(rel + "/" if is_dir else rel) if walk.exclude else None
        if why is not None:
            if why:
                walk.flag("ignored_file", rel, why)
            continue
        base = walk.base.get(rel)
        if base is not None and base[0] == MODE_GITLINK:
            continue
        _scan_entry(walk, dfd, name, rel, st, depth)


def _scan_entry(walk: _Walk, dfd: int, name: str, rel: str, st: os.stat_result, depth: int) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if st.st_dev != walk.root_dev:
            walk.flag("device", rel, "a different filesystem is mounted here")
            return
        try:
            sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
        except OSError as exc:
            walk.flag("unreadable", rel, exc.strerror or str(exc))
            walk.complete = False
            return
        try:
            _scan_dir(walk, sub, rel + "/", depth + 1)
        finally:
            os.close(sub)
    elif stat.S_ISLNK(mode):
        target = os.readlink(name, dir_fd=dfd)
        if not _link_stays_inside(rel, target):
            walk.flag("symlink_escape", rel, f"points outside the tree: {target!r}")
            return
        data = os.fsencode(target)
        in_base = walk.base.get(rel) == (MODE_LINK, blob_sha(data))
        if not in_base and not walk.allow_symlinks:
            walk.flag("symlink", rel, f"symlink to {target!r}")
        walk.entries[rel] = Entry(rel, MODE_LINK, blob_sha(data), len(data))
    elif stat.S_ISREG(mode):
        _scan_file(walk, dfd, name, rel, st)
    elif stat.S_ISFIFO(mode):
        walk.flag("fifo", rel, "named pipe")
    elif stat.S_ISSOCK(mode):
        walk.flag("socket", rel, "unix socket")
    else:
        walk.flag("device", rel, "device node")


def _scan_file(walk: _Walk, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
    admissible = True
    if st.st_mode & stat.S_ISUID:
        walk.flag("setuid", rel, f"mode {stat.filemode(st.st_mode)}")
        admissible = False
    if st.st_mode & stat.S_ISGID:
        walk.flag("setgid", rel, f"mode {stat.filemode(st.st_mode)}")
        admissible = False
    if st.st_nlink > 1:
        walk.flag("hardlink", rel, f"{st.st_nlink} links to one inode")
        admissible = admissible and rel in walk.base
    if st.st_size > walk.limits.max_file_bytes:
        walk.flag("oversize", rel, f"{st.st_size} bytes > {walk.limits.max_file_bytes}")
        admissible = False
    if not admissible:
        return
    sha = walk.hashes.lookup(rel, st) if walk.hashes is not None and walk.reuse else None
    if sha is None:
        try:
            sha = hash_file(dfd, name, st)
        except OSError as exc:
            walk.flag("unreadable", rel, exc.strerror or str(exc))
            walk.complete = False
            return
        if walk.hashes is not None:
            walk.hashes.keep(rel, st, sha, walk.started_ns)
    git_mode = MODE_EXEC if st.st_mode & stat.S_IXUSR else MODE_FILE
    walk.entries[rel] = Entry(rel, git_mode, sha, st.st_size)


def read_entry(root: Path, entry: Entry) -> bytes:
    """``entry``'s bytes read again under ``root``, nothing followed.

    Raises ``WorkspaceError`` if they are no longer the scanned ones (the tree changed since).
    """
    fd, name = open_parent(root, entry.path)
    try:
        if entry.mode == MODE_LINK:
            data = os.fsencode(os.readlink(name, dir_fd=fd))
        else:
            st = os.lstat(name, dir_fd=fd)
            data = b"".join(read_chunks(fd, name, st))
    finally:
        os.close(fd)
    if blob_sha(data) != entry.sha:
        raise WorkspaceError(f"{entry.path} changed while it was read; try again")
    return data


def _link_stays_inside(rel: str, target: str) -> bool:
    """Whether a symlink at ``rel`` with ``target`` resolves, lexically, inside the tree.

    Absolute targets never stay inside (the tree has another path in the
    sandbox than on the host). A target through another in-tree symlink is
    judged by that link's own finding.
    """
    if not target or target.startswith("/"):
        return False
    depth = rel.count("/")
    for part in target.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return False
    return True


def _check_pointer(walk: _Walk, dfd: int) -> None:
    if walk.pointer is None:
        walk.flag("nested_git", ".git", "a .git at the root of the tree")
        return
    try:
        st = os.lstat(".git", dir_fd=dfd)
        ok = stat.S_ISREG(st.st_mode) and b"".join(read_chunks(dfd, ".git", st)) == walk.pointer
    except OSError:
        ok = False
    if not ok:
        walk.flag("git_pointer_changed", ".git", "the .git pointer file is not what corral wrote")
        walk.complete = False
