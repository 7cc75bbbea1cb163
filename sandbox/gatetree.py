"""A run's gate tree: one plain directory kept at the revision the gates judge, updated in place.

Gates run on a plain tree (no ``.git``) mounted read-only into a fresh
container. Exporting, and later deleting, a whole tree for every gate run was
most of the runner's cost per attempt; instead each run keeps one directory,
``worktrees/.<run>.gate`` (beside the worktrees, on their ``nosuid,nodev``
mount when there is one; run ids start with a letter or digit, so the leading
dot keeps it from ever being taken for a run's tree, and no shared parent
directory is left behind), and an index for it in the run's private git dir
(``gitdirs/<run>.git/gate-index``, never mounted). ``GateTree.checkout(rev)``
moves the directory to ``rev`` with ``read-tree --reset -u`` through the
hardened ``HostGit`` (no hooks, filters or repository config; git writes only
what differs), then requires corral's own ``lstat`` scan of the directory to
equal ``rev``'s listing, else empties it and checks out again. That scan hashes
only the files git wrote: the others keep the blob ids of the previous scan while
their inode stamps stand (``sandbox.scan.HashCache``; nothing maps this tree
writable, every container sees it read-only).

The tree is reused only while it is provably what was checked: after every
checkout a stamp of every entry (mode, inode, size, mtime, ctime; nothing
followed) is kept, and before each use the directory must still match it. A
file added, removed or changed since (by anything: the containers see the
tree read-only, so it would have to be the host) changes the stamp, as ctime
cannot be set back from user space, and the tree is then rebuilt from empty.
A new process (``resume``) knows no stamp and rebuilds once. The directory is
removed at the run's end (``remove_gate_tree``), and by ``corral gc`` with the
rest of a dead run's workspace (``sandbox.workspace.remove_workspace``).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.errors import WorkspaceError
from sandbox.git import HostGit
from sandbox.lease import check_run_id
from sandbox.paths import worktrees_dir
from sandbox.scan import MODE_GITLINK, MODE_LINK, HashCache, scan

log = logging.getLogger(__name__)

_SUFFIX = ".gate"
INDEX_NAME = "gate-index"

_Stamp = dict[str, tuple[int, int, int, int, int]]


def gate_tree_path(home: Path, run_id: str) -> Path:
    """Where ``run_id``'s gate tree lives (not created here). ``ValueError`` for a bad run id."""
    return worktrees_dir(home) / f".{check_run_id(run_id)}{_SUFFIX}"


def remove_gate_tree(home: Path, run_id: str) -> None:
    """Delete the run's gate tree if there is one (idempotent; ``OSError`` if it cannot go)."""
    delete_path(gate_tree_path(home, run_id))


def delete_path(path: Path) -> None:
    """Delete a file, link or directory tree at ``path`` if it exists (a link is not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def list_gate_trees(home: Path) -> list[str]:
    """The names of the gate trees under ``home`` (run ids, unless someone else put one there)."""
    root = worktrees_dir(home)
    if not root.is_dir():
        return []
    return sorted(p.name[1:].removesuffix(_SUFFIX) for p in root.glob(f".*{_SUFFIX}"))


@dataclass(slots=True)
class GateTree:
    """The gate tree of one run, built from its private git dir ``git_dir``."""

    path: Path
    git_dir: Path
    rev: str | None = None
    _stamp: _Stamp | None = field(default=None, repr=False)
    _links: dict[str, str] = field(default_factory=dict, repr=False)
    _hashes: HashCache = field(default_factory=HashCache, repr=False)

    @classmethod
    def of(cls, home: Path, run_id: str, git_dir: Path) -> GateTree:
        """The gate tree of ``run_id`` (nothing is created until ``checkout``)."""
        return cls(gate_tree_path(home, run_id), git_dir)

    def checkout(self, rev: str, listing: dict[str, tuple[str, str]]) -> Path:
        """Make the directory exactly ``rev``'s tree (``listing``: its ``path -> (mode, sha)``).

        Returns the directory. Nothing is written when it is at ``rev`` and
        unchanged since the last checkout; git updates it in place when it is
        unchanged and the two revisions hold the same symlinks (so no path can
        lead through a link git replaces); otherwise it is built from empty. Raises ``GitError`` from git and
        ``WorkspaceError`` when even a checkout from empty does not give ``rev``.
        """
        unchanged = self.unchanged()
        if unchanged and self.rev == rev:
            return self.path
        links = {p: sha for p, (mode, sha) in listing.items() if mode == MODE_LINK}
        in_place = unchanged and links == self._links
        self.rev, self._stamp = None, None
        for fresh in (not in_place, True):
            if fresh:
                delete_path(self.path)
                (self.git_dir / INDEX_NAME).unlink(missing_ok=True)
                self.path.mkdir(mode=0o755, parents=True)
            HostGit(self.git_dir, self.path).run(
                "read-tree", "--reset", "-u", rev, index_file=self.git_dir / INDEX_NAME
            )
            if _matches(self.path, listing, self._hashes):
                self.rev, self._stamp, self._links = rev, _stamp_of(self.path), links
                return self.path
            log.warning("gate tree %s did not match %s; checking out afresh", self.path, rev[:12])
        raise WorkspaceError(f"the gate tree of {self.path.name} did not become {rev[:12]}")

    def unchanged(self) -> bool:
        """Whether the directory is exactly as the last checkout left it (False: none yet)."""
        if self._stamp is None:
            return False
        try:
            return _stamp_of(self.path) == self._stamp
        except OSError:
            return False


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
