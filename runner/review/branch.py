"""Putting a patch onto a branch of the user's repository, with host git only.

The commit is always built in a temporary index (``read-tree`` the branch,
``apply --cached --3way``, ``write-tree``: ``apply_patch``), so the user's
index and staged work never enter it. When the branch is checked out
somewhere (``checked_out``), the touched paths must be clean there
(``refuse_dirty``); the worktree and index are then moved with a two-tree
``read-tree -m -u`` (only the touched paths change) and the ref is updated
with its old value as guard (``move_worktree``). ``find_trailer`` finds a
commit that merged a run already.

All git runs through ``sandbox.git.HostGit`` (no hooks, no user config beyond
the repository's own). Refusals are ``MergeRefused``, one line that names the
fix; ``GitError`` passes through for anything else git refuses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from runner.errors import MergeRefused
from sandbox.errors import GitError
from sandbox.git import HostGit, find_git_dirs, split_z

#: How many commits of the target branch are searched for a ``Corral-Run:`` trailer.
TRAILER_SEARCH_DEPTH = 10_000
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}


def current_branch(repo: Path) -> str:
    """The branch checked out in ``repo``; ``MergeRefused`` on a detached HEAD."""
    git_dir, _ = find_git_dirs(repo)
    head = HostGit(git_dir).text("symbolic-ref", "-q", "HEAD", ok_codes=(0, 1))
    if not head.startswith("refs/heads/"):
        raise MergeRefused(f"{repo} has no branch checked out (detached HEAD): pass --branch B")
    return head.removeprefix("refs/heads/")


def branch_ref(git: HostGit, branch: str, repo: Path) -> str:
    """``refs/heads/<branch>``; ``MergeRefused`` when ``repo`` has no such branch."""
    ref = f"refs/heads/{branch}"
    try:
        git.run("check-ref-format", ref)
        git.rev_parse(ref)
    except GitError:
        raise MergeRefused(f"no branch {branch!r} in {repo}: pass an existing --branch") from None
    return ref


def touched_paths(git: HostGit, patch: bytes) -> tuple[str, ...]:
    """Every path the patch creates, changes or deletes (``git apply --numstat -z``)."""
    out = git.run("apply", "--numstat", "-z", "-", input=patch)
    return tuple(sorted({rec.decode(errors="replace").split("\t", 2)[2] for rec in split_z(out)}))


def find_trailer(git: HostGit, ref: str, run_id: str) -> str | None:
    """A commit on ``ref`` whose message has the line ``Corral-Run: <run_id>``."""
    line = f"Corral-Run: {run_id}"
    out = git.text("rev-list", f"--max-count={TRAILER_SEARCH_DEPTH}", "-F", f"--grep={line}", ref)
    for sha in out.split():
        body = git.text("show", "-s", "--format=%B", sha)
        if line in body.splitlines():
            return sha
    return None


def checked_out(git: HostGit, ref: str) -> Path | None:
    """The worktree (main or linked) that has ``ref`` checked out, if any."""
    out = git.run("worktree", "list", "--porcelain", "-z")
    path: Path | None = None
    for field in split_z(out):
        text = field.decode(errors="replace")
        if text.startswith("worktree "):
            path = Path(text.removeprefix("worktree "))
        elif text == f"branch {ref}" and path is not None:
            return path
    return None


def refuse_dirty(worktree: Path, files: tuple[str, ...], branch: str) -> None:
    """``MergeRefused`` when any of ``files`` has local changes in ``worktree`` (staged,
    unstaged, untracked or ignored): moving the branch there would touch them."""
    git_dir, _ = find_git_dirs(worktree)
    out = HostGit(git_dir, worktree).run(
        "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all",
        "--ignored=matching", "--", *files, env=_LITERAL,
    )  # fmt: skip
    dirty = sorted({rec.decode(errors="replace")[3:] for rec in split_z(out)})
    if dirty:
        raise MergeRefused(
            f"{branch} is checked out in {worktree} and the patch touches paths with local "
            f"changes: {', '.join(dirty)}; commit or stash them, or merge with --branch OTHER"
        )


def apply_patch(git: HostGit, old: str, patch: bytes, branch: str) -> str:
    """The tree of ``old`` with the patch applied (3-way), built in a temporary index."""
    with tempfile.TemporaryDirectory(prefix="corral-merge-") as tmp:
        index = Path(tmp) / "index"
        git.run("read-tree", old, index_file=index)
        try:
            git.run("apply", "--cached", "--3way", "-", input=patch, index_file=index)
        except GitError as exc:
            conflicts = split_z(git.run("ls-files", "-u", "-z", index_file=index))
            paths = sorted({c.decode(errors="replace").split("\t", 1)[1] for c in conflicts})
            detail = ", ".join(paths) if paths else _first_line(exc.stderr)
            raise MergeRefused(
                f"the candidate does not apply to {branch} at {old[:12]} (the branch moved in a "
                f"conflicting way: {detail}); run corral again on the new base"
            ) from None
        tree = git.text("write-tree", index_file=index)
    if tree == git.text("rev-parse", f"{old}^{{tree}}"):
        raise MergeRefused(f"{branch} already has this change (applying it changes nothing)")
    return tree


def move_worktree(worktree: Path, old: str, new: str, run_id: str) -> None:
    """Move a checked-out branch from ``old`` to ``new``: touched paths only, the ref guarded."""
    git_dir, _ = find_git_dirs(worktree)
    wt = HostGit(git_dir, worktree)
    wt.run("read-tree", "-m", "-u", old, new)  # git's own two-tree switch: refuses dirty paths
    try:
        wt.run("update-ref", "-m", f"corral merge {run_id}", "HEAD", new, old)
    except GitError:
        wt.run("read-tree", "-m", "-u", new, old)  # the branch moved meanwhile: put files back
        raise MergeRefused(
            "the branch moved while merging; nothing was changed: run `corral merge` again"
        ) from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "git apply failed")
