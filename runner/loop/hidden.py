"""Hidden tests: a test patch the gates run and the agent never sees (the SWE-bench way of judging).

``--hidden-tests FILE.diff`` (or ``targets.hidden_tests``) names a patch made
against the base commit, usually new or changed tests. ``read_hidden`` reads it
when the run starts and checks, on a temporary index in the user's repository
(``git apply --check --cached``: nothing is written there), that it applies
at base; one that does not is a ``UsageError`` naming the file (exit 2). The
run keeps it in its store (``save``/``load``), never in the worktree and never
in a mount: the run store is not mounted into any container.

``apply`` builds each gate input: the gates' commit with the patch applied, on
a temporary index in corral's private git dir (``git apply --cached``, then
``write-tree`` and ``commit-tree``). The judge takes the paths the patch touches
from base before it applies it, so a patch that applies at base applies to
every candidate. The agent's feedback is redacted (``HiddenTests.redact``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from policies.targets import HiddenTests
from runner.errors import UsageError
from runner.store.runs import RunStore
from sandbox.errors import GitError
from sandbox.git import HostGit, split_z

PATCH = "hidden/tests.diff"
META = "hidden/tests.json"
#: The largest hidden test patch accepted (bytes).
MAX_PATCH_BYTES = 16 * 1024 * 1024


def read_hidden(path: Path, git: HostGit, base: str) -> tuple[bytes, HiddenTests]:
    """The patch at ``path`` and what it touches, checked to apply at ``base`` in ``git``.

    Raises ``UsageError`` naming the file when it cannot be read, is empty or
    too big, or does not apply at ``base``.
    """
    where = f"hidden tests {path}"
    try:
        patch = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {where} ({exc.strerror}); check --hidden-tests") from exc
    if len(patch) > MAX_PATCH_BYTES:
        raise UsageError(f"{where} is over {MAX_PATCH_BYTES >> 20} MiB: keep only the tests")
    try:
        paths = patch_paths(git, patch)
        with tempfile.TemporaryDirectory(prefix="corral-hidden-") as tmp:
            index = Path(tmp) / "index"
            git.run("read-tree", base, index_file=index)
            git.run("apply", "--check", "--cached", input=patch, index_file=index)
    except GitError as exc:
        raise UsageError(
            f"{where} does not apply at the base commit {base[:12]}: {exc.stderr.strip()[:500]};"
            " make it with `git diff` against that commit"
        ) from exc
    if not paths:
        raise UsageError(f"{where} changes no file: give a patch that adds or changes tests")
    return patch, HiddenTests(str(path), paths)


def patch_paths(git: HostGit, patch: bytes) -> tuple[str, ...]:
    """The paths ``patch`` adds, changes, removes or renames (both names of a rename).

    Raises ``GitError`` when git cannot read it as a patch.
    """
    out = git.run("apply", "--numstat", "-z", input=patch)
    paths: set[str] = set()
    fields = split_z(out)
    i = 0
    while i < len(fields):  # "added\tdeleted\tpath", or "added\tdeleted\t" then old, new
        _, _, name = fields[i].split(b"\t", 2)
        if name:
            paths.add(os.fsdecode(name))
            i += 1
        else:
            paths.update(os.fsdecode(p) for p in fields[i + 1 : i + 3])
            i += 3
    return tuple(sorted(paths))


def apply(git: HostGit, rev: str, patch: bytes, message: str) -> str:
    """A commit of ``rev``'s tree with ``patch`` applied (parent ``rev``), built on a temporary
    index in ``git``'s own git dir. Raises ``GitError`` when it does not apply."""
    with tempfile.TemporaryDirectory(dir=git.git_dir) as tmp:
        index = Path(tmp) / "index"
        git.run("read-tree", rev, index_file=index)
        git.run("apply", "--cached", input=patch, index_file=index)
        tree = git.text("write-tree", index_file=index)
    return git.text("commit-tree", tree, "-p", rev, "-m", message)


def save(store: RunStore, run_id: str, patch: bytes, hidden: HiddenTests) -> None:
    """Keep the patch with the run (``resume`` reads it from there, not from the user's file)."""
    store.write_artifact(run_id, PATCH, patch)
    meta = {"file": hidden.file, "paths": list(hidden.paths),
            "sha256": hashlib.sha256(patch).hexdigest()}  # fmt: skip
    store.write_artifact(run_id, META, json.dumps(meta, indent=1))


def load(store: RunStore, run_id: str) -> tuple[bytes, HiddenTests] | None:
    """The run's hidden test patch and what it touches; None when the run has none."""
    meta_path = store.artifact_path(run_id, META)
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    patch = store.artifact_path(run_id, PATCH).read_bytes()
    return patch, HiddenTests(str(meta["file"]), tuple(meta["paths"]))
