"""A run's workspace on disk: where its parts live, and its private git dir.

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
written. The private git dir is never mounted into a sandbox, so git inside
sees no repository at all; its ``info/attributes`` outranks any
``.gitattributes`` in the tree (no filters, drivers or conversions).

Objects are written without ``git add``: blobs with ``git fast-import``
(``store_blobs``), a tree with a temporary index (``update-index --index-info``
+ ``write-tree``) and the commit with ``commit-tree`` (``commit_listing``); the
real index and HEAD are not touched. Host git only ever runs through
``sandbox.git.HostGit``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sandbox.blobs import blob_sha
from sandbox.errors import GitError, WorkspaceError
from sandbox.gatetree import delete_path, list_gate_trees, remove_gate_tree
from sandbox.git import HostGit, split_z
from sandbox.lease import check_run_id
from sandbox.nofollow import remove
from sandbox.paths import workspaces_dir, worktrees_dir
from sandbox.scan import MODE_GITLINK

log = logging.getLogger(__name__)

#: Attributes that outrank any ``.gitattributes`` in the tree: no filters, drivers or conversions.
NEUTRAL_ATTRIBUTES = "* !text !eol !crlf !filter !diff !merge !ident !working-tree-encoding\n"
#: The workspace's own record in its private git dir (what ``Workspace.open`` reads).
META = "corral-workspace.json"

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
#: ``(git dir, commit id) -> listing``: a commit's tree never changes, so its listing is cached.
_LISTINGS: dict[tuple[str, str], tuple[dict[str, tuple[str, str]], int]] = {}
_LISTINGS_LOCK = threading.Lock()

_GIT_CONFIG = """[core]
\tbare = false
\tlogAllRefUpdates = false
\tcheckStat = minimal
\ttrustctime = false
"""


def run_ref(run_id: str) -> str:
    """The keep-alive ref of ``run_id`` in the user's repository."""
    return f"refs/corral/runs/{run_id}/base"


def tree_path(home: Path, run_id: str) -> Path:
    """Where ``run_id``'s tree lives."""
    return worktrees_dir(home) / run_id


def scratch_path(home: Path, run_id: str, kind: str) -> Path:
    """A run's scratch directory beside the worktrees: ``.<run>.<kind>`` (set-up's checkout, a
    gate's report directory). The leading dot keeps it from being taken for a run's tree;
    ``list_workspaces`` and ``remove_workspace`` know it as the run's. ``kind`` has no dot."""
    if "." in kind or "/" in kind or not kind:
        raise ValueError(f"bad scratch kind {kind!r}")
    return worktrees_dir(home) / f".{check_run_id(run_id)}.{kind}"


def _scratch_owner(name: str) -> str | None:
    """The run a scratch entry ``.<run>.<kind>`` belongs to, or None for any other name."""
    if not name.startswith("."):
        return None
    run_id, dot, kind = name[1:].rpartition(".")
    return run_id if dot and kind and _is_run_id(run_id) else None


def git_dir_path(home: Path, run_id: str) -> Path:
    """Where ``run_id``'s private git dir lives."""
    return workspaces_dir(home) / f"{run_id}.git"


def init_git_dir(git_dir: Path, repo_git_dir: Path, base: str, meta: Mapping[str, Any]) -> None:
    """Make the private git dir ``git_dir`` (which must not exist) on ``repo_git_dir``'s objects.

    ``refs/corral/base`` points at ``base``; ``meta`` is written as the
    workspace's record. Raises ``GitError`` or ``OSError``.
    """
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    git_dir.mkdir(mode=0o700)
    HostGit(git_dir).run("init", "--bare", "--quiet")
    git = HostGit(git_dir)
    # Appended to what init wrote (for a key set twice git takes the last). The index's
    # stat check looks at whole-second mtime and size only: handing the tree to the
    # sandbox user moves ctime and owner, and with the default check every rollback
    # rewrote every file. Nothing rests on it: a rollback is proven by corral's own
    # scan of the tree, which hashes every file.
    with open(git_dir / "config", "a") as config:
        config.write(_GIT_CONFIG)
    _borrow_objects(git_dir, repo_git_dir)
    (git_dir / "info" / "exclude").write_text("")
    git.run("update-ref", "refs/corral/base", base)
    (git_dir / META).write_text(json.dumps({**meta, "created": time.time()}, indent=2) + "\n")


#: Where set-up's container mounts the repository's objects (read-only), as ``setup_checkout`` names them.
SETUP_OBJECTS = "/run/corral-repo/objects"


def setup_checkout(repo_git_dir: Path, base: str, tree: Path) -> None:
    """Check out ``base`` into the empty directory ``tree``, with a ``.git`` of its own, for set-up.

    The ``.git`` has HEAD at ``base`` (detached), an index of it, the
    repository's tags (setuptools-scm and hatch-vcs read versions from them)
    and no hooks or config beyond ``init``'s; its objects are borrowed, and its
    alternates name ``SETUP_OBJECTS``, where set-up's container mounts
    ``repo_git_dir``'s objects read-only (on the host they are not reachable
    after this returns). Raises ``GitError`` or ``OSError``.
    """
    git_dir = tree / ".git"
    git_dir.mkdir(mode=0o755)
    git = HostGit(git_dir, tree)
    git.run("init", "--quiet")
    _borrow_objects(git_dir, repo_git_dir)
    tags = HostGit(repo_git_dir).run(
        "for-each-ref", "--format=%(objectname) %(refname)", "refs/tags"
    )
    lines = [line.split(" ", 1) for line in tags.decode().splitlines() if " " in line]
    if lines:
        git.run(
            "update-ref", "--stdin", input="".join(f"create {r} {o}\n" for o, r in lines).encode()
        )
    git.run("update-ref", "--no-deref", "HEAD", base)
    git.run("read-tree", "--reset", "-u", base)
    for hook in (git_dir / "hooks").glob("*"):
        hook.unlink()
    (git_dir / "objects" / "info" / "alternates").write_text(f"{SETUP_OBJECTS}\n")


def _borrow_objects(git_dir: Path, repo_git_dir: Path) -> None:
    """Make the new git dir ``git_dir`` read ``repo_git_dir``'s objects (alternates, shallow
    commits) and check out without any attribute of the tree (filters, conversions)."""
    info = git_dir / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(f"{repo_git_dir / 'objects'}\n")
    shallow = repo_git_dir / "shallow"
    if shallow.is_file():
        shutil.copyfile(shallow, git_dir / "shallow")
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text(NEUTRAL_ATTRIBUTES)


def update_meta(git_dir: Path, **values: Any) -> None:
    """Add ``values`` to the record ``init_git_dir`` wrote (atomically)."""
    meta = read_meta(git_dir) | values
    tmp = git_dir / f"{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(git_dir / META)


def commit_environment(git: HostGit, base: str, files: Mapping[str, tuple[str, bytes]]) -> str:
    """A commit of ``base`` plus ``files`` (``path -> (mode, bytes)``, set-up's leftovers) on
    ``base``, kept alive as ``refs/corral/start``; its id. ``WorkspaceError`` for a path of base."""
    tree = listing(git, base)[0]
    clash = sorted(p for p in files if p in tree)
    if clash:
        raise WorkspaceError(f"set-up's files include paths of base: {', '.join(clash[:3])}")
    store_blobs(git, (data for _, data in files.values()))
    entries = {p: (mode, blob_sha(data)) for p, (mode, data) in files.items()}
    start = commit_listing(git, {**tree, **entries}, base, "corral environment")
    git.run("update-ref", "refs/corral/start", start)
    return start


def read_meta(git_dir: Path) -> dict[str, Any]:
    """The record ``init_git_dir`` wrote. Raises ``OSError`` or ``ValueError`` when unreadable."""
    meta: dict[str, Any] = json.loads((git_dir / META).read_text())
    return meta


def pointer_bytes(git_dir: Path) -> bytes:
    """The exact contents of the tree's ``.git`` pointer file."""
    return f"gitdir: {git_dir}\n".encode()


def write_pointer(tree: Path, git_dir: Path) -> None:
    """(Re)write ``tree/.git``, read-only, pointing at ``git_dir``; whatever was there goes."""
    pointer = tree / ".git"
    if pointer.is_symlink() or pointer.is_dir():
        remove(tree, ".git")
    elif pointer.exists():
        pointer.chmod(0o644)
    tmp = tree / ".git.corral-tmp"
    tmp.write_bytes(pointer_bytes(git_dir))
    tmp.chmod(0o444)
    tmp.replace(pointer)


def listing(git: HostGit, rev: str) -> tuple[dict[str, tuple[str, str]], int]:
    """``rev``'s ``path -> (mode, sha)`` and the total size of its blobs: one ``ls-tree``.

    Cached by full object id (a commit's tree never changes); callers must not
    change what they get.
    """
    key = (str(git.git_dir), rev)
    with _LISTINGS_LOCK:  # the baseline gates list trees on a thread of their own
        cached = _LISTINGS.get(key)
    if cached is not None and _FULL_SHA.match(rev):
        return cached
    listed = _list_tree(git, rev)
    if _FULL_SHA.match(rev):
        with _LISTINGS_LOCK:
            if len(_LISTINGS) >= 64:
                _LISTINGS.pop(next(iter(_LISTINGS)))
            _LISTINGS[key] = listed
    return listed


def _list_tree(git: HostGit, rev: str) -> tuple[dict[str, tuple[str, str]], int]:
    out = git.run("ls-tree", "-r", "-l", "-z", "--full-tree", rev)
    found: dict[str, tuple[str, str]] = {}
    total = 0
    for record in split_z(out):
        meta, _, path = record.partition(b"\t")
        mode, _kind, sha, size = meta.decode().split()  # size: "-" for a gitlink
        found[os.fsdecode(path)] = (mode, sha)
        total += int(size) if size.isdigit() else 0
    return found, total


def store_blobs(git: HostGit, contents: Iterable[bytes]) -> None:
    """Store every one of ``contents`` as a blob (``git fast-import``)."""
    with tempfile.TemporaryFile(dir=git.git_dir) as stream:
        for data in contents:
            stream.write(b"blob\ndata %d\n" % len(data) + data + b"\n")
        stream.write(b"done\n")
        stream.seek(0)
        git.run("fast-import", "--quiet", "--done", stdin=stream)


def commit_listing(
    git: HostGit, files: Mapping[str, tuple[str, str]], parent: str, message: str
) -> str:
    """Commit ``path -> (mode, sha)`` (objects already stored) on ``parent``, through a temporary
    index; return the commit id (no ref is moved)."""
    kind = {MODE_GITLINK: "commit"}
    lines = [f"{m} {kind.get(m, 'blob')} {s}\t{p}" for p, (m, s) in sorted(files.items())]
    with tempfile.TemporaryDirectory(dir=git.git_dir) as tmp:
        index = Path(tmp) / "index"
        git.run("read-tree", "--empty", index_file=index)
        info = b"".join(os.fsencode(line) + b"\0" for line in lines)
        git.run("update-index", "-z", "--index-info", input=info, index_file=index)
        tree = git.text("write-tree", index_file=index)
    return git.text("commit-tree", tree, "-p", parent, "-m", message)


def list_workspaces(home: Path) -> list[str]:
    """Run ids that have a tree or a private git dir under ``home`` (complete or not)."""
    runs: set[str] = set()
    trees, gits = worktrees_dir(home), workspaces_dir(home)
    if trees.is_dir():
        for p in trees.iterdir():
            owner = _scratch_owner(p.name)  # set-up's checkout, a gate's reports (or its tree)
            if owner is not None:
                runs.add(owner)
            elif p.is_dir() and not p.is_symlink():
                runs.add(p.name)
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
    git_dir = git_dir_path(home, run_id)
    meta_file = git_dir / META
    if meta_file.is_file():
        try:
            repo_git = Path(json.loads(meta_file.read_text())["repo_git_dir"])
            HostGit(repo_git).run("update-ref", "-d", run_ref(run_id))
        except (OSError, ValueError, KeyError, GitError) as exc:
            log.warning("run %s: keep-alive ref not removed: %s", run_id, exc)
    for path in (tree_path(home, run_id), git_dir):
        delete_path(path)
    remove_gate_tree(home, run_id)
    trees = worktrees_dir(home)
    if trees.is_dir():
        for p in trees.iterdir():
            if _scratch_owner(p.name) == run_id:
                delete_path(p)
