"""Workspaces: a clean checkout of the base revision that an agent may change, and nothing else.

A ``Workspace`` is a run's tree and corral's private git dir for it (where
they live, what the git dir holds and how objects are written into it:
``sandbox.gitdir``). Host git only ever runs through ``sandbox.git.HostGit``
with the private git dir and this tree. Checkpoints and candidate trees are
built from corral's own ``lstat`` scan (``sandbox.scan``), not from ``git
add``: the file list, modes and blob ids are what corral read without
following links, so ignore files, attributes, nested repositories and
symlinked directories in the tree cannot change what a checkpoint holds. A
rollback deletes what the target does not hold without following links
(``sandbox.nofollow``), lets git write the rest and must then scan equal to
the target. ``changes`` compares listings (``sandbox.changes``).

This module is the workspace's interface: ``Change``, ``compare``,
``list_workspaces`` and ``remove_workspace`` are re-exported with it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sandbox import gitdir
from sandbox.blobs import HashCache
from sandbox.changes import Change, compare
from sandbox.errors import GitError, WorkspaceError
from sandbox.gatetree import GateTree
from sandbox.git import HostGit, find_git_dirs, split_z
from sandbox.gitdir import list_workspaces, remove_workspace
from sandbox.lease import check_run_id
from sandbox.nofollow import clear_tree, remove_path, walk_paths, write_at
from sandbox.scan import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_LINK,
    Finding,
    ScanLimits,
    Snapshot,
    read_entry,
    scan,
)
from sandbox.spec import SANDBOX_GID, SANDBOX_UID

__all__ = ["Change", "Workspace", "compare", "list_workspaces", "remove_workspace"]

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class Workspace:
    """A run's tree and private git dir. Create with ``create``, find again with ``open``."""

    run_id: str
    path: Path
    git_dir: Path
    repo: Path
    repo_git_dir: Path
    base: str
    start: str = ""
    """The commit the tree starts from: ``base`` plus the files set-up left (``environment``)."""
    exclude: Callable[[str], str | None] | None = field(default=None, compare=False)
    hashes: HashCache = field(default_factory=HashCache, compare=False, repr=False)
    """Blob ids every scan of the tree adds to; only ``snapshot(reuse=True)`` takes from it."""

    def __post_init__(self) -> None:
        if not self.start:
            object.__setattr__(self, "start", self.base)

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def create(
        cls,
        repo: Path,
        base_ref: str,
        run_id: str,
        home: Path,
        *,
        owned: bool = True,
        before_checkout: Callable[[Workspace], None] | None = None,
        environment: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> Workspace:
        """Check out ``base_ref`` of the repository at ``repo`` into a fresh workspace.

        ``environment``: files set-up left in its tree (``path -> (git mode,
        bytes)``, none of them a path of base): the tree starts with them
        (``start``), gates see them, and no candidate or patch ever holds them.

        ``owned``: hand the tree to the sandbox user (uid/gid 65532); needs root,
        and is skipped with a warning otherwise. ``before_checkout(ws)`` is called
        once the private git dir is complete and the tree's directory exists but is
        still empty (what needs only the git dir, such as the baseline gates'
        tree, can start while the tree is written). Raises ``GitError`` when ``repo``
        is not a repository or ``base_ref`` names no commit, and
        ``WorkspaceError`` when the run already has a workspace. A failure part
        way leaves nothing behind.
        """
        check_run_id(run_id)
        repo = Path(repo).resolve()
        _, common = find_git_dirs(repo)
        user_git = HostGit(common)
        fmt = user_git.text("rev-parse", "--show-object-format")
        if fmt not in ("", "sha1"):
            raise WorkspaceError(f"{repo}: {fmt} repositories are not supported (sha1 only)")
        try:
            base = user_git.rev_parse(base_ref)
        except GitError as exc:
            raise GitError(
                exc.argv, exc.returncode, f"{base_ref!r} names no commit in {repo}"
            ) from exc
        tree, git_dir = gitdir.tree_path(home, run_id), gitdir.git_dir_path(home, run_id)
        if tree.exists() or git_dir.exists():
            raise WorkspaceError(
                f"run {run_id} already has a workspace: `corral gc` removes dead runs' workspaces"
            )
        ws = cls(run_id, tree, git_dir, repo, common, base)
        try:
            record = {"run_id": run_id, "path": str(tree), "repo": str(repo)}
            record |= {"repo_git_dir": str(common), "base": base}  # what ``open`` reads
            gitdir.init_git_dir(git_dir, common, base, record)
            if environment:
                start = gitdir.commit_environment(HostGit(git_dir), base, environment)
                gitdir.update_meta(git_dir, start=start)
                ws = replace(ws, start=start)
            user_git.run("update-ref", gitdir.run_ref(run_id), base)
            tree.parent.mkdir(parents=True, exist_ok=True)
            tree.mkdir(mode=0o755)
            if before_checkout is not None:
                before_checkout(ws)
            ws._git().run("read-tree", "--reset", "-u", ws.start)
            gitdir.write_pointer(tree, git_dir)
            if owned:
                ws._give_to_sandbox()
        except BaseException:
            remove_workspace(home, run_id)
            raise
        return ws

    @classmethod
    def open(cls, home: Path, run_id: str) -> Workspace:
        """The workspace ``create`` made for ``run_id``; ``WorkspaceError`` if there is none."""
        git_dir = gitdir.git_dir_path(home, check_run_id(run_id))
        try:
            meta = gitdir.read_meta(git_dir)
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"run {run_id} has no workspace in {home}") from exc
        return cls(
            run_id,
            Path(meta["path"]),
            git_dir,
            Path(meta["repo"]),
            Path(meta["repo_git_dir"]),
            meta["base"],
            meta.get("start", ""),
        )

    def remove(self) -> None:
        """Delete the tree, the private git dir and the keep-alive ref. Idempotent."""
        remove_workspace(self.git_dir.parent.parent, self.run_id)

    # ----------------------------------------------------------------- reading the tree

    def snapshot(
        self,
        *,
        allow_symlinks: bool = False,
        limits: ScanLimits | None = None,
        exclude: Callable[[str], str | None] | None = None,
        reuse: bool = False,
        ignored: frozenset[str] | None = None,
    ) -> Snapshot:
        """Scan the tree now (see ``sandbox.scan``), against the start revision.

        ``exclude`` (default: the one ``with_exclude`` set) keeps paths out.
        ``reuse``: take blob ids of files whose inode stamp stands from earlier
        scans, for scans that are defence in depth only (``HashCache`` says why
        the harvest must not); by default every file is hashed. ``ignored``: the
        set ``ignored()`` gave, when the caller knows no path changed since.
        """
        return scan(
            self.path,
            pointer=gitdir.pointer_bytes(self.git_dir),
            ignored=self.ignored() if ignored is None else ignored,
            base=self.tree_listing(self.start),
            allow_symlinks=allow_symlinks,
            limits=limits,
            exclude=self._sparing_environment(exclude or self.exclude),
            hashes=self.hashes,
            reuse=reuse,
        )

    def tree_listing(self, rev: str) -> dict[str, tuple[str, str]]:
        """``path -> (mode, sha)`` of every blob and gitlink in ``rev``'s tree.

        Listings of full object ids are immutable and cached (a copy is returned).
        """
        return dict(gitdir.listing(self._git(), rev)[0])

    def tree_bytes(self, rev: str) -> int:
        """The total size of the blobs in ``rev``'s tree (what a checkout of it writes)."""
        return gitdir.listing(self._git(), rev)[1]

    def environment(self) -> dict[str, tuple[str, str]]:
        """The files set-up left (``path -> (mode, sha)``): what ``start`` holds beyond base."""
        if self.start == self.base:
            return {}
        return dict(_environment(str(self.git_dir), self.base, self.start))

    def candidate(self, rev: str) -> tuple[str, list[Finding]]:
        """``rev`` without set-up's files: what a patch of it holds; and a finding per such file
        ``rev`` changed (the change is not part of the candidate; gates see set-up's version)."""
        env = self.environment()
        if not env:
            return rev, []
        tree = self.tree_listing(rev)
        kept = _clear_of(tree, env)
        touched = {p for p in env if tree.get(p) != env[p]} | (
            tree.keys() - kept.keys() - env.keys()
        )
        findings = [
            Finding("setup_file_changed", p, "a path set-up made; the change is left out")
            for p in sorted(touched)
        ]
        return gitdir.commit_listing(self._git(), kept, self.base, "corral candidate"), findings

    def changes(self, rev: str | None = None, *, against: str | None = None) -> list[Change]:
        """Paths that differ between ``against`` (default: start) and ``rev`` (default: the tree now)."""
        old = self.tree_listing(against or self.start)
        if rev is None:
            snap = self.snapshot()
            new = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
            new.update({p: v for p, v in old.items() if v[0] == MODE_GITLINK})
        else:
            new = self.tree_listing(rev)
        return compare(old, new)

    def diff(self, rev: str | None = None, *, against: str | None = None) -> str:
        """The patch from ``against`` (default: start) to ``rev`` (default: a checkpoint of now)."""
        return self.patch_bytes(rev, against=against).decode(errors="replace")

    def patch_bytes(self, rev: str | None = None, *, against: str | None = None) -> bytes:
        """``diff`` as exact bytes (``git apply``-able, binary files included)."""
        if rev is None:
            rev = self.commit_snapshot(self.snapshot(), "diff")
        return self._git().run(
            "diff-tree", "-p", "--binary", "--full-index", "--no-color", "--no-renames",
            "--no-ext-diff", "--no-textconv", "--no-commit-id", against or self.start, rev,
        )  # fmt: skip

    # ----------------------------------------------------------------- checkpoints

    def checkpoint(self, label: str, *, snapshot: Snapshot | None = None) -> str:
        """Record the tree as commit ``refs/corral/checkpoints/<label>`` (parent: base); return its id.

        A checkpoint is the whole tree, set-up's files included (what a rollback
        restores); ``candidate`` takes them out. Only what the scan admits is
        recorded (see ``sandbox.scan``). Raises
        ``WorkspaceError`` for a bad label or a tree that changed while read.
        """
        if not _LABEL.match(label):
            raise WorkspaceError(f"invalid checkpoint label {label!r}")
        sha = self.commit_snapshot(snapshot or self.snapshot(), f"corral checkpoint {label}")
        self._git().run("update-ref", f"refs/corral/checkpoints/{label}", sha)
        return sha

    def commit_snapshot(self, snap: Snapshot, message: str) -> str:
        """Write ``snap`` as a commit on top of base (no ref); return the commit id."""
        base = self.tree_listing(self.start)
        known = {sha for _, sha in base.values()}
        new = [e for e in snap.entries.values() if e.sha not in known]
        if new:  # read again without following links, checked against the scan's blob ids
            gitdir.store_blobs(self._git(), (read_entry(self.path, e) for e in new))
        listing = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
        listing.update({p: v for p, v in base.items() if v[0] == MODE_GITLINK})
        return gitdir.commit_listing(self._git(), listing, self.base, message)

    def compose(self, rev: str, from_base: Callable[[str], bool], message: str) -> str:
        """A commit of ``rev``'s tree in which the paths ``from_base`` selects are as in base
        and set-up's files (``environment``) as set-up left them.

        Gates run on this: test and tool configuration come from the base
        revision, and the environment from set-up, whatever the candidate did to
        them. ``rev`` itself when nothing differs (base itself without set-up
        files, most candidates).
        """
        base = self.tree_listing(self.base)
        env = self.environment()
        tree = self.tree_listing(rev)
        fixed = {**{p: v for p, v in base.items() if from_base(p)}, **env}
        others = {p for p in tree if from_base(p) and p not in fixed}
        if not others and all(tree.get(p) == v for p, v in fixed.items()):
            return rev
        listing = _clear_of({p: v for p, v in tree.items() if p not in others}, env)
        listing.update(fixed)
        return gitdir.commit_listing(self._git(), listing, self.base, message)

    def gate_tree(self) -> GateTree:
        """This run's gate tree (``sandbox.gatetree``): the gates' input, kept and updated in place.

        Placed (RAM or disk) by the size of the base tree.
        """
        home = self.git_dir.parent.parent
        return GateTree.of(home, self.run_id, self.git_dir, self.tree_bytes(self.start))

    def export(self, rev: str, dest: Path) -> None:
        """Write ``rev``'s tree into the new directory ``dest`` (no ``.git``): a gate's input.

        Raises ``WorkspaceError`` if ``dest`` exists.
        """
        if dest.exists():
            raise WorkspaceError(f"{dest} exists; refusing to export over it")
        dest.mkdir(mode=0o755, parents=True)
        export = HostGit(self.git_dir, dest)
        with tempfile.TemporaryDirectory(dir=self.git_dir) as tmp:
            export.run("read-tree", "--reset", "-u", rev, index_file=Path(tmp) / "index")

    def rollback(self, rev: str) -> None:
        """Make the tree exactly ``rev``'s tree (a checkpoint, start or base), whatever the agent left.

        Set-up's files that ``rev`` lacks (a candidate, base) are written as
        set-up left them: the tree never lacks its environment. Everything not in ``rev`` is deleted first without following links
        (FIFOs, sockets, nested repositories, ignored files included); git then
        writes the files that differ, and a fresh scan must match ``rev``. If it
        does not, the tree is emptied and checked out again. Raises
        ``WorkspaceError`` if even that does not give ``rev``'s tree.
        """
        rev = self._with_environment(rev)
        target = self.tree_listing(rev)
        git = self._git()
        for attempt in ("in place", "from empty"):
            if attempt == "from empty":
                log.warning(
                    "rollback of %s did not converge in place; checking out afresh", self.run_id
                )
                clear_tree(self.path, keep=frozenset())
                (self.git_dir / "index").unlink(missing_ok=True)
            else:
                clear_tree(self.path, keep=_keepers(target))
            git.run("read-tree", "--reset", "-u", rev)
            gitdir.write_pointer(self.path, self.git_dir)
            self._give_to_sandbox()  # before the scan: a chown moves the ctime the scan keeps
            if self._matches(target):
                break
        else:
            raise WorkspaceError(f"rollback of run {self.run_id} to {rev[:12]} did not converge")

    def with_exclude(self, exclude: Callable[[str], str | None]) -> Workspace:
        """This workspace with a policy's exclusion (artifacts, the progress file) for every scan."""
        return replace(self, exclude=exclude)

    def restore_paths(self, paths: Iterable[str], rev: str | None = None) -> None:
        """Put ``paths`` back as they are in ``rev`` (default: start): rewritten, or deleted if absent there.

        Works while a sandbox runs (the runner reverts out-of-scope changes
        between steps): nothing is followed, and a directory the agent replaced
        with a link or file on the way is removed first.
        """
        listing = self.tree_listing(rev or self.start)
        git = self._git()
        for rel in paths:
            remove_path(self.path, rel)
            if rel in listing and listing[rel][0] != MODE_GITLINK:
                mode, sha = listing[rel]
                self._write_at(rel, git.run("cat-file", "blob", sha), mode)

    def write_file(self, rel: str, data: bytes) -> None:
        """Host-side write of ``rel`` (the runner restoring the progress file); nothing is followed."""
        remove_path(self.path, rel)
        self._write_at(rel, data, MODE_FILE)

    def checkpoint_ref(self, name: str, sha: str) -> None:
        """Point ``refs/corral/<name>`` of the private git dir at ``sha`` (window states, notes)."""
        if not all(_LABEL.match(part) for part in name.split("/")):
            raise WorkspaceError(f"invalid ref name {name!r}")
        self._git().run("update-ref", f"refs/corral/{name}", sha)

    def _sparing_environment(
        self, exclude: Callable[[str], str | None] | None
    ) -> Callable[[str], str | None] | None:
        """``exclude``, except for set-up's files and their directories: those are always scanned
        (``*.egg-info/`` is a build artifact, but set-up's own egg-info is the environment)."""
        env = self.environment()
        if exclude is None or not env:
            return exclude
        spared = set(env) | {p[:i] for p in env for i, c in enumerate(p) if c == "/"}
        inner = exclude
        return lambda path: None if path.rstrip("/") in spared else inner(path)

    def _with_environment(self, rev: str) -> str:
        """``rev`` with the set-up files it lacks added as set-up left them (``rev`` if none)."""
        env = self.environment()
        tree = self.tree_listing(rev)
        if all(p in tree for p in env):
            return rev
        missing = {p: v for p, v in env.items() if p not in tree}
        listing = {**missing, **_clear_of(tree, missing)}
        return gitdir.commit_listing(self._git(), listing, self.base, "with environment")

    def _matches(self, target: Mapping[str, tuple[str, str]]) -> bool:
        snap = scan(
            self.path,
            pointer=gitdir.pointer_bytes(self.git_dir),
            base=target,  # a symlink the target holds is no finding
            hashes=self.hashes,
            reuse=False,
        )
        got = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
        want = {p: v for p, v in target.items() if v[0] != MODE_GITLINK}
        return snap.complete and not snap.findings and got == want

    # ----------------------------------------------------------------- internals

    def _git(self) -> HostGit:
        return HostGit(self.git_dir, self.path)

    def ignored(self) -> frozenset[str]:
        """Untracked paths the tree's ignore rules exclude (directories end in ``/``)."""
        out = self._git().run(
            "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
        )
        return frozenset(os.fsdecode(p) for p in split_z(out))

    def _give_to_sandbox(self) -> None:
        if os.geteuid() != 0:
            log.warning("not root: %s stays owned by uid %d", self.path, os.geteuid())
            return
        owner = (SANDBOX_UID, SANDBOX_GID)
        for rel in ("", *walk_paths(self.path)):
            if rel == ".git":
                continue
            path = self.path / rel
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != owner:  # a chown moves ctime: only where it changes
                os.lchown(path, *owner)

    def _write_at(self, rel: str, data: bytes, mode: str) -> None:
        """Create ``rel`` (which must not exist) with ``data`` as git ``mode``; the sandbox user's."""
        owner = (SANDBOX_UID, SANDBOX_GID) if os.geteuid() == 0 else None
        write_at(
            self.path,
            rel,
            data,
            symlink=mode == MODE_LINK,
            executable=mode == MODE_EXEC,
            owner=owner,
        )


@functools.lru_cache(maxsize=16)
def _environment(git_dir: str, base: str, start: str) -> dict[str, tuple[str, str]]:
    """What ``start`` holds beyond ``base`` (commits never change: cached; callers copy)."""
    git = HostGit(Path(git_dir))
    base_files = gitdir.listing(git, base)[0]
    return {p: v for p, v in gitdir.listing(git, start)[0].items() if p not in base_files}


def _clear_of(
    tree: Mapping[str, tuple[str, str]], files: Mapping[str, tuple[str, str]]
) -> dict[str, tuple[str, str]]:
    """``tree`` without the paths that are, or would clash with, one of ``files``: the same path,
    a file where ``files`` needs a directory, or a path below one of ``files``."""
    dirs = {p[:i] for p in files for i, c in enumerate(p) if c == "/"}
    return {
        p: v
        for p, v in tree.items()
        if p not in files
        and p not in dirs
        and not any(p[:i] in files for i, c in enumerate(p) if c == "/")
    }


def _keepers(target: Mapping[str, tuple[str, str]]) -> frozenset[str]:
    """Paths a rollback to ``target`` may leave in place: its files and their directories."""
    keep = {".git"}
    for path, (mode, _) in target.items():
        keep.add(path if mode != MODE_GITLINK else path + "/")
        parts = path.split("/")
        keep.update("/".join(parts[:i]) + "/" for i in range(1, len(parts)))
    return frozenset(keep)
