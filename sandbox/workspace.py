"""Workspaces: a clean checkout of the base revision that an agent may change, and nothing else.

Layout (all under the state directory ``home``, never in the user's checkout)::

    home/gitdirs/<run>.git     corral's private git dir: objects borrowed from the
                               user's repository through ``objects/info/alternates``,
                               its own index, refs, config and ``info/attributes``
    home/worktrees/<run>/      the tree the sandbox mounts at /workspace, owned by
                               the sandbox user; its ``.git`` is a pointer file to
                               the private git dir, mounted read-only in the sandbox
    home/worktrees/.<run>.gate the gates' input tree (``sandbox.gatetree``), or in RAM
                               as ``/dev/shm/corral-<uid>/<home key>-<run>.gate``

The user's repository gains one ref, ``refs/corral/runs/<run>/base``, so its gc
keeps the base objects alive; its index, HEAD, branches and config are never
written, and a dirty user checkout is fine. The private git dir is never mounted
into a sandbox, so git inside sees no repository at all.

Host git only ever runs through ``sandbox.git.HostGit`` with the private git dir
and this tree. Checkpoints and candidate trees are built from corral's own
``lstat`` scan (``sandbox.scan``), not from ``git add``: the file list, modes
and blob ids are what corral read without following links, so ignore files,
attributes, nested repositories and symlinked directories in the tree cannot
change what a checkpoint holds. Blobs are written with ``git fast-import``, the
tree with a temporary index (``update-index --index-info`` + ``write-tree``) and
the commit with ``commit-tree``; the real index and HEAD are not touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from sandbox.blobs import HashCache, blob_sha
from sandbox.errors import GitError, WorkspaceError
from sandbox.gatetree import GateTree, delete_path, list_gate_trees, remove_gate_tree
from sandbox.git import HostGit, find_git_dirs, split_z
from sandbox.lease import check_run_id
from sandbox.nofollow import open_dir, open_parent, read_chunks
from sandbox.paths import workspaces_dir, worktrees_dir
from sandbox.scan import MODE_GITLINK, MODE_LINK, Entry, ScanLimits, Snapshot, scan
from sandbox.spec import SANDBOX_GID, SANDBOX_UID

log = logging.getLogger(__name__)

#: Attributes that outrank any ``.gitattributes`` in the tree: no filters, drivers or conversions.
NEUTRAL_ATTRIBUTES = "* !text !eol !crlf !filter !diff !merge !ident !working-tree-encoding\n"

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
#: ``(git dir, commit id) -> listing``: a commit's tree never changes, so its listing is cached.
_LISTINGS: dict[tuple[str, str], tuple[dict[str, tuple[str, str]], int]] = {}
_LISTINGS_LOCK = threading.Lock()
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_META = "corral-workspace.json"

ChangeStatus = Literal["added", "modified", "deleted", "type_changed", "mode_changed"]


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs between two trees; modes are git's (``100644``, ``120000``, ...)."""

    path: str
    status: ChangeStatus
    old_mode: str | None
    new_mode: str | None


def _run_ref(run_id: str) -> str:
    return f"refs/corral/runs/{run_id}/base"


_GIT_CONFIG = """[core]
\tbare = false
\tlogAllRefUpdates = false
\tcheckStat = minimal
\ttrustctime = false
"""


@dataclass(frozen=True, slots=True)
class Workspace:
    """A run's tree and private git dir. Create with ``create``, find again with ``open``."""

    run_id: str
    path: Path
    git_dir: Path
    repo: Path
    repo_git_dir: Path
    base: str
    exclude: Callable[[str], str | None] | None = field(default=None, compare=False)
    hashes: HashCache = field(default_factory=HashCache, compare=False, repr=False)
    """Blob ids every scan of the tree adds to; only ``snapshot(reuse=True)`` takes from it."""

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
    ) -> Workspace:
        """Check out ``base_ref`` of the repository at ``repo`` into a fresh workspace.

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
        tree = worktrees_dir(home) / run_id
        git_dir = workspaces_dir(home) / f"{run_id}.git"
        if tree.exists() or git_dir.exists():
            raise WorkspaceError(
                f"run {run_id} already has a workspace: `corral gc` removes dead runs' workspaces"
            )
        ws = cls(run_id, tree, git_dir, repo, common, base)
        try:
            ws._init_git_dir()
            user_git.run("update-ref", _run_ref(run_id), base)
            tree.parent.mkdir(parents=True, exist_ok=True)
            tree.mkdir(mode=0o755)
            if before_checkout is not None:
                before_checkout(ws)
            ws._git().run("read-tree", "--reset", "-u", base)
            ws._write_pointer()
            if owned:
                ws._give_to_sandbox()
        except BaseException:
            remove_workspace(home, run_id)
            raise
        return ws

    @classmethod
    def open(cls, home: Path, run_id: str) -> Workspace:
        """The workspace ``create`` made for ``run_id``; ``WorkspaceError`` if there is none."""
        git_dir = workspaces_dir(home) / f"{check_run_id(run_id)}.git"
        try:
            meta = json.loads((git_dir / _META).read_text())
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"run {run_id} has no workspace in {home}") from exc
        return cls(
            run_id,
            Path(meta["path"]),
            git_dir,
            Path(meta["repo"]),
            Path(meta["repo_git_dir"]),
            meta["base"],
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
        """Scan the tree now (see ``sandbox.scan``), against the base revision.

        ``exclude`` (default: the one ``with_exclude`` set) keeps paths out.
        ``reuse``: take blob ids of files whose inode stamp stands from earlier
        scans, for scans that are defence in depth only (``HashCache`` says why
        the harvest must not); by default every file is hashed. ``ignored``: the
        set ``ignored()`` gave, when the caller knows no path changed since.
        """
        return scan(
            self.path,
            pointer=self._pointer_bytes(),
            ignored=self.ignored() if ignored is None else ignored,
            base=self.tree_listing(self.base),
            allow_symlinks=allow_symlinks,
            limits=limits,
            exclude=exclude or self.exclude,
            hashes=self.hashes,
            reuse=reuse,
        )

    def tree_listing(self, rev: str) -> dict[str, tuple[str, str]]:
        """``path -> (mode, sha)`` of every blob and gitlink in ``rev``'s tree.

        Listings of full object ids are immutable and cached (a copy is returned).
        """
        return dict(self._listed(rev)[0])

    def tree_bytes(self, rev: str) -> int:
        """The total size of the blobs in ``rev``'s tree (what a checkout of it writes)."""
        return self._listed(rev)[1]

    def _listed(self, rev: str) -> tuple[dict[str, tuple[str, str]], int]:
        """``rev``'s listing and the total size of its blobs: one ``ls-tree``, cached by full id."""
        key = (str(self.git_dir), rev)
        with _LISTINGS_LOCK:  # the baseline gates list trees on a thread of their own
            cached = _LISTINGS.get(key)
        if cached is not None and _FULL_SHA.match(rev):
            return cached
        listed = self._list_tree(rev)
        if _FULL_SHA.match(rev):
            with _LISTINGS_LOCK:
                if len(_LISTINGS) >= 64:
                    _LISTINGS.pop(next(iter(_LISTINGS)))
                _LISTINGS[key] = listed
        return listed

    def _list_tree(self, rev: str) -> tuple[dict[str, tuple[str, str]], int]:
        out = self._git().run("ls-tree", "-r", "-l", "-z", "--full-tree", rev)
        listing: dict[str, tuple[str, str]] = {}
        total = 0
        for record in split_z(out):
            meta, _, path = record.partition(b"\t")
            mode, _kind, sha, size = meta.decode().split()  # size: "-" for a gitlink
            listing[os.fsdecode(path)] = (mode, sha)
            total += int(size) if size.isdigit() else 0
        return listing, total

    def changes(self, rev: str | None = None, *, against: str | None = None) -> list[Change]:
        """Paths that differ between ``against`` (default: base) and ``rev`` (default: the tree now)."""
        old = self.tree_listing(against or self.base)
        if rev is None:
            snap = self.snapshot()
            new = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
            new.update({p: v for p, v in old.items() if v[0] == MODE_GITLINK})
        else:
            new = self.tree_listing(rev)
        return compare(old, new)

    def diff(self, rev: str | None = None, *, against: str | None = None) -> str:
        """The patch from ``against`` (default: base) to ``rev`` (default: a checkpoint of now)."""
        return self.patch_bytes(rev, against=against).decode(errors="replace")

    def patch_bytes(self, rev: str | None = None, *, against: str | None = None) -> bytes:
        """``diff`` as exact bytes (``git apply``-able, binary files included)."""
        if rev is None:
            rev = self.commit_snapshot(self.snapshot(), "diff")
        return self._git().run(
            "diff-tree", "-p", "--binary", "--full-index", "--no-color", "--no-renames",
            "--no-ext-diff", "--no-textconv", "--no-commit-id", against or self.base, rev,
        )  # fmt: skip

    # ----------------------------------------------------------------- checkpoints

    def checkpoint(self, label: str, *, snapshot: Snapshot | None = None) -> str:
        """Record the tree as commit ``refs/corral/checkpoints/<label>`` (parent: base); return its id.

        Only what the scan admits is recorded (see ``sandbox.scan``). Raises
        ``WorkspaceError`` for a bad label or a tree that changed while read.
        """
        if not _LABEL.match(label):
            raise WorkspaceError(f"invalid checkpoint label {label!r}")
        sha = self.commit_snapshot(snapshot or self.snapshot(), f"corral checkpoint {label}")
        self._git().run("update-ref", f"refs/corral/checkpoints/{label}", sha)
        return sha

    def commit_snapshot(self, snap: Snapshot, message: str) -> str:
        """Write ``snap`` as a commit on top of base (no ref); return the commit id."""
        base = self.tree_listing(self.base)
        known = {sha for _, sha in base.values()}
        self._write_blobs([e for e in snap.entries.values() if e.sha not in known])
        listing = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
        listing.update({p: v for p, v in base.items() if v[0] == MODE_GITLINK})
        return self._commit_listing(listing, message)

    def compose(self, rev: str, from_base: Callable[[str], bool], message: str) -> str:
        """A commit of ``rev``'s tree in which the paths ``from_base`` selects are as in base.

        Gates run on this: test and tool configuration come from the base
        revision whatever the candidate did to them. ``rev`` itself when no
        selected path differs from base (base itself, most candidates).
        """
        base = self.tree_listing(self.base)
        tree = self.tree_listing(rev)
        if all(tree.get(p) == base.get(p) for p in tree.keys() | base.keys() if from_base(p)):
            return rev
        listing = {p: v for p, v in tree.items() if not from_base(p)}
        listing.update({p: v for p, v in base.items() if from_base(p)})
        return self._commit_listing(listing, message)

    def gate_tree(self) -> GateTree:
        """This run's gate tree (``sandbox.gatetree``): the gates' input, kept and updated in place.

        Placed (RAM or disk) by the size of the base tree.
        """
        home = self.git_dir.parent.parent
        return GateTree.of(home, self.run_id, self.git_dir, self.tree_bytes(self.base))

    def _commit_listing(self, listing: Mapping[str, tuple[str, str]], message: str) -> str:
        """Commit ``path -> (mode, sha)`` (objects already stored) through a temporary index."""
        kind = {MODE_GITLINK: "commit"}
        lines = [f"{m} {kind.get(m, 'blob')} {s}\t{p}" for p, (m, s) in sorted(listing.items())]
        git = self._git()
        with tempfile.TemporaryDirectory(dir=self.git_dir) as tmp:
            index = Path(tmp) / "index"
            git.run("read-tree", "--empty", index_file=index)
            info = b"".join(os.fsencode(line) + b"\0" for line in lines)
            git.run("update-index", "-z", "--index-info", input=info, index_file=index)
            tree = git.text("write-tree", index_file=index)
        return git.text("commit-tree", tree, "-p", self.base, "-m", message)

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
        """Make the tree exactly ``rev``'s tree (a checkpoint or base), whatever the agent left.

        Everything not in ``rev`` is deleted first without following links
        (FIFOs, sockets, nested repositories, ignored files included); git then
        writes the files that differ, and a fresh scan must match ``rev``. If it
        does not, the tree is emptied and checked out again. Raises
        ``WorkspaceError`` if even that does not give ``rev``'s tree.
        """
        target = self.tree_listing(rev)
        git = self._git()
        for attempt in ("in place", "from empty"):
            if attempt == "from empty":
                log.warning(
                    "rollback of %s did not converge in place; checking out afresh", self.run_id
                )
                _clear_tree(self.path, keep=frozenset())
                (self.git_dir / "index").unlink(missing_ok=True)
            else:
                _clear_tree(self.path, keep=_keepers(target))
            git.run("read-tree", "--reset", "-u", rev)
            self._write_pointer()
            self._give_to_sandbox()  # before the scan: a chown moves the ctime the scan keeps
            if self._matches(target):
                break
        else:
            raise WorkspaceError(f"rollback of run {self.run_id} to {rev[:12]} did not converge")

    def with_exclude(self, exclude: Callable[[str], str | None]) -> Workspace:
        """This workspace with a policy's exclusion (artifacts, the progress file) for every scan."""
        return replace(self, exclude=exclude)

    def restore_paths(self, paths: Iterable[str], rev: str | None = None) -> None:
        """Put ``paths`` back as they are in ``rev`` (default: base): rewritten, or deleted if absent there.

        Works while a sandbox runs (the runner reverts out-of-scope changes
        between steps): nothing is followed, and a directory the agent replaced
        with a link or file on the way is removed first.
        """
        listing = self.tree_listing(rev or self.base)
        git = self._git()
        for rel in paths:
            _remove_path(self.path, rel)
            if rel in listing and listing[rel][0] != MODE_GITLINK:
                mode, sha = listing[rel]
                _write_at(self.path, rel, git.run("cat-file", "blob", sha), mode)

    def write_file(self, rel: str, data: bytes) -> None:
        """Host-side write of ``rel`` (the runner restoring the progress file); nothing is followed."""
        _remove_path(self.path, rel)
        _write_at(self.path, rel, data, "100644")

    def checkpoint_ref(self, name: str, sha: str) -> None:
        """Point ``refs/corral/<name>`` of the private git dir at ``sha`` (window states, notes)."""
        if not all(_LABEL.match(part) for part in name.split("/")):
            raise WorkspaceError(f"invalid ref name {name!r}")
        self._git().run("update-ref", f"refs/corral/{name}", sha)

    def _matches(self, target: Mapping[str, tuple[str, str]]) -> bool:
        snap = scan(self.path, pointer=self._pointer_bytes(), hashes=self.hashes, reuse=False)
        got = {p: (e.mode, e.sha) for p, e in snap.entries.items()}
        want = {p: v for p, v in target.items() if v[0] != MODE_GITLINK}
        return snap.complete and not snap.findings and got == want

    # ----------------------------------------------------------------- internals

    def _git(self) -> HostGit:
        return HostGit(self.git_dir, self.path)

    def _pointer_bytes(self) -> bytes:
        return f"gitdir: {self.git_dir}\n".encode()

    def _init_git_dir(self) -> None:
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        self.git_dir.mkdir(mode=0o700)
        HostGit(self.git_dir).run("init", "--bare", "--quiet")
        git = HostGit(self.git_dir)
        # Appended to what init wrote (for a key set twice git takes the last). The index's
        # stat check looks at whole-second mtime and size only: handing the tree to the
        # sandbox user moves ctime and owner, and with the default check every rollback
        # rewrote every file. Nothing rests on it: a rollback is proven by corral's own
        # scan of the tree, which hashes every file.
        with open(self.git_dir / "config", "a") as config:
            config.write(_GIT_CONFIG)
        info = self.git_dir / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{self.repo_git_dir / 'objects'}\n")
        shallow = self.repo_git_dir / "shallow"
        if shallow.is_file():
            shutil.copyfile(shallow, self.git_dir / "shallow")
        (self.git_dir / "info").mkdir(exist_ok=True)
        (self.git_dir / "info" / "attributes").write_text(NEUTRAL_ATTRIBUTES)
        (self.git_dir / "info" / "exclude").write_text("")
        git.run("update-ref", "refs/corral/base", self.base)
        meta = {
            "run_id": self.run_id,
            "path": str(self.path),
            "repo": str(self.repo),
            "repo_git_dir": str(self.repo_git_dir),
            "base": self.base,
            "created": time.time(),
        }
        (self.git_dir / _META).write_text(json.dumps(meta, indent=2) + "\n")

    def _write_pointer(self) -> None:
        pointer = self.path / ".git"
        if pointer.is_symlink() or pointer.is_dir():
            _remove(self.path, ".git")
        elif pointer.exists():
            pointer.chmod(0o644)
        tmp = self.path / ".git.corral-tmp"
        tmp.write_bytes(self._pointer_bytes())
        tmp.chmod(0o444)
        tmp.replace(pointer)

    def ignored(self) -> frozenset[str]:
        """Untracked paths the tree's ignore rules exclude (directories end in ``/``)."""
        out = self._git().run(
            "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
        )
        return frozenset(os.fsdecode(p) for p in split_z(out))

    def _write_blobs(self, entries: list[Entry]) -> None:
        """Store ``entries``' contents as blobs, read again without following links."""
        if not entries:
            return
        with tempfile.TemporaryFile(dir=self.git_dir) as stream:
            for entry in entries:
                data = _read_entry(self.path, entry)
                stream.write(b"blob\ndata %d\n" % len(data) + data + b"\n")
            stream.write(b"done\n")
            stream.seek(0)
            self._git().run("fast-import", "--quiet", "--done", stdin=stream)

    def _give_to_sandbox(self) -> None:
        if os.geteuid() != 0:
            log.warning("not root: %s stays owned by uid %d", self.path, os.geteuid())
            return
        owner = (SANDBOX_UID, SANDBOX_GID)
        for rel in ("", *_walk_paths(self.path)):
            if rel == ".git":
                continue
            path = self.path / rel
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != owner:  # a chown moves ctime: only where it changes
                os.lchown(path, *owner)


def compare(old: Mapping[str, tuple[str, str]], new: Mapping[str, tuple[str, str]]) -> list[Change]:
    """The changes from listing ``old`` to ``new`` (``path -> (mode, sha)``), sorted by path."""
    out: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        if a is None:
            out.append(Change(path, "added", None, b[0] if b else None))
        elif b is None:
            out.append(Change(path, "deleted", a[0], None))
        elif a[0][:2] != b[0][:2]:
            out.append(Change(path, "type_changed", a[0], b[0]))
        elif a[1] != b[1]:
            out.append(Change(path, "modified", a[0], b[0]))
        else:
            out.append(Change(path, "mode_changed", a[0], b[0]))
    return out


def _read_entry(root: Path, entry: Entry) -> bytes:
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
        raise WorkspaceError(f"{entry.path} changed while the checkpoint was written; try again")
    return data


def _remove_path(root: Path, rel: str) -> None:
    """Delete ``rel`` (file, link or directory) under ``root``; a non-directory on the way goes too."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        try:
            fd, _name = open_parent(root, "/".join(parts[: i + 1]))
        except FileNotFoundError:
            return
        except (NotADirectoryError, OSError):
            _remove(root, "/".join(parts[:i]))  # an ancestor is a link or a file: it goes
            return
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        _remove(root, rel)


def _write_at(root: Path, rel: str, data: bytes, mode: str) -> None:
    """Create ``rel`` (which must not exist) with ``data`` as git ``mode``; owned by the sandbox user."""
    fd = _make_dirs(root, rel.rpartition("/")[0])
    name = rel.rpartition("/")[2]
    try:
        if mode == MODE_LINK:
            os.symlink(data, name, dir_fd=fd)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(name, flags, 0o644, dir_fd=fd), "wb") as f:
                f.write(data)
            os.chmod(name, 0o755 if mode == "100755" else 0o644, dir_fd=fd)
        if os.geteuid() == 0:
            os.chown(name, SANDBOX_UID, SANDBOX_GID, dir_fd=fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _make_dirs(root: Path, rel_dir: str) -> int:
    """A directory fd for ``rel_dir``, creating missing directories (owned by the sandbox user)."""
    fd = open_dir(root, "")
    for part in [p for p in rel_dir.split("/") if p]:
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
            if os.geteuid() == 0:
                os.chown(part, SANDBOX_UID, SANDBOX_GID, dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            pass
        try:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nxt
    return fd


def _keepers(target: Mapping[str, tuple[str, str]]) -> frozenset[str]:
    """Paths a rollback to ``target`` may leave in place: its files and their directories."""
    keep = {".git"}
    for path, (mode, _) in target.items():
        keep.add(path if mode != MODE_GITLINK else path + "/")
        parts = path.split("/")
        keep.update("/".join(parts[:i]) + "/" for i in range(1, len(parts)))
    return frozenset(keep)


def _clear_tree(root: Path, keep: frozenset[str]) -> None:
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


def _remove(root: Path, rel: str) -> None:
    fd, name = open_parent(root, rel)
    try:
        st = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _walk_paths(root: Path) -> Iterator[str]:
    """Every path under ``root``, relative, without following links (for ownership)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in dirnames + filenames:
            yield prefix + name


def list_workspaces(home: Path) -> list[str]:
    """Run ids that have a tree or a private git dir under ``home`` (complete or not)."""
    runs: set[str] = set()
    trees, gits = worktrees_dir(home), workspaces_dir(home)
    if trees.is_dir():
        runs.update(p.name for p in trees.iterdir() if p.is_dir() and not p.is_symlink())
    if gits.is_dir():
        runs.update(p.name.removesuffix(".git") for p in gits.glob("*.git"))
    runs.update(list_gate_trees(home))
    return sorted(r for r in runs if _is_run_id(r))


def _is_run_id(name: str) -> bool:
    try:
        check_run_id(name)
    except ValueError:
        return False  # lost+found of the worktree filesystem, or not corral's
    return True


def remove_workspace(home: Path, run_id: str) -> None:
    """Remove whatever exists of ``run_id``'s workspace (its gate tree too); also a half-made one.

    Idempotent. Raises ``OSError`` only if a path exists and cannot be deleted.
    """
    check_run_id(run_id)
    git_dir = workspaces_dir(home) / f"{run_id}.git"
    meta_file = git_dir / _META
    if meta_file.is_file():
        try:
            repo_git = Path(json.loads(meta_file.read_text())["repo_git_dir"])
            HostGit(repo_git).run("update-ref", "-d", _run_ref(run_id))
        except (OSError, ValueError, KeyError, GitError) as exc:
            log.warning("run %s: keep-alive ref not removed: %s", run_id, exc)
    tree = worktrees_dir(home) / run_id
    for path in (tree, git_dir):
        delete_path(path)
    remove_gate_tree(home, run_id)
