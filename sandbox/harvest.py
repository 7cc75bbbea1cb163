"""Harvest: what an attempt produced, read from the host after its sandbox is gone.

The caller kills and removes the attempt's container first (``Sandbox.close``),
so nothing inside can change the tree while it is read; given the sandbox,
``harvest`` refuses to read anything until the engine confirms it is gone
(``Sandbox.confirm_gone``). ``harvest`` then scans
the tree (``sandbox.scan``: ``lstat`` only, nothing followed), records the
admissible files as a candidate commit on top of base (without the files
set-up left: those belong to the environment, ``Workspace.candidate``), and returns the typed
changes, the findings and the patch. What a finding excludes (a FIFO, an
escaping symlink, a nested repository, an ignored artifact ...) is not in the
patch; the finding says it was there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.changes import Change, compare
from sandbox.interfaces import Sandbox
from sandbox.scan import BLOCKING_KINDS, Finding, ScanLimits
from sandbox.workspace import Workspace


@dataclass(frozen=True, slots=True)
class Harvest:
    """An attempt's result: the candidate commit, its changes against base, findings, patch."""

    base: str
    commit: str
    changes: tuple[Change, ...]
    findings: tuple[Finding, ...]
    patch_bytes: bytes
    complete: bool

    @property
    def patch(self) -> str:
        """The patch for reading (``errors="replace"``); ``patch_bytes`` is what ``git apply`` takes."""
        return self.patch_bytes.decode(errors="replace")

    @property
    def blocked(self) -> bool:
        """Whether a finding makes the candidate unusable whatever the policy says."""
        return not self.complete or any(f.kind in BLOCKING_KINDS for f in self.findings)


def harvest(
    ws: Workspace,
    *,
    sandbox: Sandbox | None = None,
    label: str | None = None,
    allow_symlinks: bool = False,
    limits: ScanLimits | None = None,
) -> Harvest:
    """Scan ``ws`` and record its admissible state as a commit (a checkpoint when ``label``).

    ``sandbox`` is the container that wrote the tree: unless it is confirmed
    gone, nothing is read and ``SandboxNotRemoved`` (or ``EngineUnavailable``,
    when the engine cannot say) is raised. Otherwise raises ``GitError`` /
    ``WorkspaceError`` only for host-side failures (a git command failed, a
    file changed while read); everything the agent left in the tree is a
    finding, never an exception.
    """
    if sandbox is not None:
        sandbox.confirm_gone()
    snap = ws.snapshot(allow_symlinks=allow_symlinks, limits=limits)
    if label is not None:
        tree = ws.checkpoint(label, snapshot=snap)
    else:
        tree = ws.commit_snapshot(snap, "corral harvest")
    commit, untouchable = ws.candidate(tree)
    changes = compare(ws.tree_listing(ws.base), ws.tree_listing(commit))
    return Harvest(
        base=ws.base,
        commit=commit,
        changes=tuple(changes),
        findings=snap.findings + tuple(untouchable),
        patch_bytes=ws.patch_bytes(commit, against=ws.base),
        complete=snap.complete,
    )
