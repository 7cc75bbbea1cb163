"""A run's gate tree: one plain directory kept at the revision the gates judge, updated in place.

Gates run on a plain tree (no ``.git``) mounted read-only into a fresh
container. Exporting, and later deleting, a whole tree for every gate run was
most of the runner's cost per attempt; instead each run keeps one directory
and an index for it in the run's private git dir
(``gitdirs/<run>.git/gate-index``, never mounted).

Where the directory lives: it is disposable (git rebuilds it from the run's
objects at any time) and only git writes it, so it holds nothing but plain
files, directories and symlinks (never a setuid file or a device node). A tree
of at most ``RAM_MAX_BYTES`` that fits four times into the free space of the
``/dev/shm`` tmpfs lives there, as ``/dev/shm/corral-<uid>/<home key>-<run>.gate``
(the parent ``0700`` and owned by the user, checked without following links;
the home key is a hash of ``$CORRAL_HOME``; ``<tree>.home`` beside each tree
records the home's path, so that ``corral gc`` can remove the trees of a home
that was deleted: ``sweep_ram``): writing and deleting a tree in RAM
costs no disk I/O (on a disk that discards freed blocks, deleting an
attempt-sized tree took tens of milliseconds). Larger trees, a ``/dev/shm``
mounted ``noexec`` or read-only, or a parent that is not the user's own put it
beside the worktrees as ``worktrees/.<run>.gate`` (on their ``nosuid,nodev``
mount when there is one; run ids start with a letter or digit, so the leading
dot keeps it from ever being taken for a run's tree). ``GateTree.checkout(rev)``
moves the directory to ``rev`` with ``read-tree --reset -u`` through the
hardened ``HostGit`` (no hooks, filters or repository config; git writes only
what differs), then requires corral's own ``lstat`` scan of the directory to
equal ``rev``'s listing, else empties it and checks out again. That scan hashes
only the files git wrote: the others keep the blob ids of the previous scan while
their inode stamps stand (``sandbox.blobs.HashCache``; nothing maps this tree
writable, every container sees it read-only).

The tree is reused only while it is provably what was checked: after every
checkout a stamp of every entry (mode, inode, size, mtime, ctime; nothing
followed) is kept, and before each use the directory must still match it. A
file added, removed or changed since (by anything: the containers see the
tree read-only, so it would have to be the host) changes the stamp, as ctime
cannot be set back from user space, and the tree is then rebuilt from empty.
A new process (``resume``) knows no stamp and rebuilds once. The directory is
removed at the run's end (``remove_gate_tree``, from both places), and by
``corral gc`` with the rest of a dead run's workspace
(``sandbox.gitdir.remove_workspace``); a reboot empties ``/dev/shm`` anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.blobs import HashCache
from sandbox.errors import WorkspaceError
from sandbox.git import HostGit
from sandbox.lease import check_run_id
from sandbox.paths import worktrees_dir
from sandbox.scan import MODE_GITLINK, MODE_LINK, scan

log = logging.getLogger(__name__)

_SUFFIX = ".gate"
INDEX_NAME = "gate-index"
#: The tmpfs that holds small gate trees, and the largest tree it is given.
RAM_ROOT = Path("/dev/shm")
RAM_MAX_BYTES = 256 * 1024 * 1024

_Stamp = dict[str, tuple[int, int, int, int, int]]


def disk_path(home: Path, run_id: str) -> Path:
    """The gate tree's place beside the worktrees. ``ValueError`` for a bad run id."""
    return worktrees_dir(home) / f".{check_run_id(run_id)}{_SUFFIX}"


def ram_path(home: Path, run_id: str) -> Path:
    """The gate tree's place in RAM (``/dev/shm``). ``ValueError`` for a bad run id."""
    return _ram_dir() / f"{home_key(home)}-{check_run_id(run_id)}{_SUFFIX}"


def gate_tree_path(home: Path, run_id: str) -> Path | None:
    """Where ``run_id``'s gate tree is now (RAM first), or None when there is none."""
    for path in (ram_path(home, run_id), disk_path(home, run_id)):
        if path.is_dir() and not path.is_symlink():
            return path
    return None


def home_key(home: Path) -> str:
    """The short hash of ``home`` that names its gate trees in RAM."""
    return hashlib.sha256(os.fsencode(str(home.resolve()))).hexdigest()[:16]


def remove_gate_tree(home: Path, run_id: str) -> None:
    """Delete the run's gate tree from both places (idempotent; ``OSError`` if it cannot go)."""
    ram = ram_path(home, run_id)
    delete_path(ram)
    _record_of(ram).unlink(missing_ok=True)  # after the tree: a tree never lacks its owner
    delete_path(disk_path(home, run_id))


def place(home: Path, run_id: str, tree_bytes: int) -> Path:
    """Where a gate tree of ``tree_bytes`` goes: RAM when it is small and RAM suits, else disk.

    The other place is emptied, so that one run never has two trees.
    """
    ram, disk = ram_path(home, run_id), disk_path(home, run_id)
    chosen = ram if _ram_takes(tree_bytes) and _record_home(ram, home) else disk
    if chosen == ram:
        delete_path(disk)
    else:
        delete_path(ram)
        _record_of(ram).unlink(missing_ok=True)
    return chosen


def sweep_ram(
    gone: Callable[[Path], bool] = lambda home: not home.is_dir(), *, dry_run: bool = False
) -> list[str]:
    """Remove the RAM gate trees of every home that ``gone`` says is gone; their names.

    By default a home is gone when its directory no longer exists (nothing can
    own its runs then). ``dry_run``: only name them. Raises ``OSError`` only
    when a tree cannot be deleted.
    """
    top = _ram_dir()
    if not top.is_dir() or top.is_symlink():
        return []
    removed = []
    for record in sorted(top.glob(f"*{_SUFFIX}.home")):
        try:
            home = Path(record.read_text())
        except (OSError, UnicodeDecodeError):
            continue
        if not gone(home):
            continue
        tree = record.with_name(record.name.removesuffix(".home"))
        removed.append(tree.name)
        if not dry_run:
            delete_path(tree)
            record.unlink(missing_ok=True)
    return removed


def _record_of(tree: Path) -> Path:
    return tree.with_name(f"{tree.name}.home")


def _record_home(tree: Path, home: Path) -> bool:
    """Write ``<tree>.home`` (the home's path) before the tree exists; False if it cannot be."""
    record = _record_of(tree)
    try:
        tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        tmp.write_text(str(home.resolve()))
        os.replace(tmp, record)
    except OSError as exc:
        log.info("gate trees stay on disk: %s not written (%s)", record, exc)
        return False
    return True


def _ram_dir() -> Path:
    return RAM_ROOT / f"corral-{os.geteuid()}"


def _ram_takes(tree_bytes: int) -> bool:
    """Whether ``/dev/shm`` suits a tree of ``tree_bytes``: small, exec-able, writable, ours."""
    if tree_bytes > RAM_MAX_BYTES:
        return False
    try:
        vfs = os.statvfs(RAM_ROOT)
        if vfs.f_flag & (os.ST_NOEXEC | os.ST_RDONLY):
            return False
        if tree_bytes * 4 > vfs.f_bavail * vfs.f_frsize:
            return False
        top = _ram_dir()
        with contextlib.suppress(FileExistsError):
            os.mkdir(top, 0o700)
        st = os.lstat(top)
    except OSError as exc:
        log.info("gate trees stay on disk: %s unusable (%s)", RAM_ROOT, exc)
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        log.warning(
            "gate trees stay on disk: %s is not a private directory of uid %d",
            top, os.geteuid(),
        )  # fmt: skip
        return False
    return True


def delete_path(path: Path) -> None:
    """Delete a file, link or directory tree at ``path`` if it exists (a link is not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def list_gate_trees(home: Path) -> list[str]:
    """The names of ``home``'s gate trees, in both places (run ids, unless someone else put one there)."""
    names: set[str] = set()
    root = worktrees_dir(home)
    if root.is_dir():
        names.update(p.name[1:].removesuffix(_SUFFIX) for p in root.glob(f".*{_SUFFIX}"))
    key = home_key(home)
    ram = _ram_dir()
    if ram.is_dir() and not ram.is_symlink():
        names.update(
            p.name.removeprefix(f"{key}-").removesuffix(_SUFFIX)
            for p in ram.glob(f"{key}-*{_SUFFIX}")
        )
    return sorted(names)


@dataclass(slots=True)
class GateTree:
    """The gate tree of one run, built from its private git dir ``git_dir``."""

    path: Path
    git_dir: Path
    rev: str | None = None
    _stamp: _Stamp | None = field(default=None, repr=False)
    _links: dict[str, str] = field(default_factory=dict, repr=False)
    _hashes: HashCache = field(default_factory=HashCache, repr=False)
    _root: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, home: Path, run_id: str, git_dir: Path, tree_bytes: int) -> GateTree:
        """The gate tree of ``run_id``, placed for a tree of ``tree_bytes`` (see ``place``).

        Nothing is created until ``checkout``.
        """
        return cls(place(home, run_id, tree_bytes), git_dir)

    def root(self) -> Path:
        """The directory, made a real one if it is not (contents aside); what a container mounts.

        ``checkout`` keeps this very directory (it empties it rather than replace
        it), so a gate's container may start on it while the tree is checked out.
        """
        root = self.root_id()
        if root is None:
            delete_path(self.path)
            self.path.mkdir(mode=0o755, parents=True)
            self.rev, self._stamp = None, None
            root = self.root_id()
        self._root = root
        return self.path

    def checkout(self, rev: str, listing: dict[str, tuple[str, str]]) -> Path:
        """Make the directory exactly ``rev``'s tree (``listing``: its ``path -> (mode, sha)``).

        Returns the directory. Nothing is written when it is at ``rev`` and
        unchanged since the last checkout; git updates it in place when it is
        unchanged and the two revisions hold the same symlinks (so no path can
        lead through a link git replaces); otherwise it is emptied and built
        again. The directory itself is the one ``root`` gave, never replaced.
        Raises ``GitError`` from git and ``WorkspaceError`` when even a checkout
        from empty does not give ``rev``, or when the directory ``root`` gave was
        replaced meanwhile (a container started on it would see another tree).
        """
        root = self.root_id()
        if self._root is not None and root != self._root:
            raise WorkspaceError(f"the gate tree {self.path} was replaced while it was in use")
        unchanged = self.unchanged()
        if unchanged and self.rev == rev:
            return self.path
        links = {p: sha for p, (mode, sha) in listing.items() if mode == MODE_LINK}
        in_place = unchanged and links == self._links
        self.rev, self._stamp = None, None
        if root is None:
            self.root()
        for fresh in (not in_place, True):
            if fresh:
                _empty(self.path)
                (self.git_dir / INDEX_NAME).unlink(missing_ok=True)
            HostGit(self.git_dir, self.path).run(
                "read-tree", "--reset", "-u", rev, index_file=self.git_dir / INDEX_NAME
            )
            if _matches(self.path, listing, self._hashes):
                self.rev, self._stamp, self._links = rev, _stamp_of(self.path), links
                return self.path
            log.warning("gate tree %s did not match %s; checking out afresh", self.path, rev[:12])
        raise WorkspaceError(f"the gate tree of {self.path.name} did not become {rev[:12]}")

    def root_id(self) -> tuple[int, int] | None:
        """``(device, inode)`` of the directory when it is a real one (no link followed), else None."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None

    def unchanged(self) -> bool:
        """Whether the directory is exactly as the last checkout left it (False: none yet)."""
        if self._stamp is None:
            return False
        try:
            return _stamp_of(self.path) == self._stamp
        except OSError:
            return False


def _empty(root: Path) -> None:
    """Delete everything inside the real directory ``root`` (nothing followed); keep ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with os.scandir(fd) as it:
            names = [e.name for e in it]
    finally:
        os.close(fd)
    for name in names:
        delete_path(root / name)


def _matches(root: Path, listing: dict[str, tuple[str, str]], hashes: HashCache) -> bool:
    snap = scan(root, base=listing, hashes=hashes)
    got = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
    want = {p: v for p, v in listing.items() if v[0] != MODE_GITLINK}
    return snap.complete and not snap.findings and got == want


def _stamp_of(root: Path) -> _Stamp:
    """``path -> (mode, inode, size, mtime, ctime)`` of everything under ``root``, nothing followed."""
    out: _Stamp = {}

    def visit(fd: int, prefix: str) -> None:
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            out[prefix + e.name] = (
                st.st_mode,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
                st.st_ctime_ns,
            )
            if e.is_dir(follow_symlinks=False):
                sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                try:
                    visit(sub, prefix + e.name + "/")
                finally:
                    os.close(sub)

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(top)
        out[""] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        visit(top, "")
    finally:
        os.close(top)
    return out
