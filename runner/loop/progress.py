"""The progress file: the agent's durable memory, carried across rollbacks and snapshotted per window.

The agent writes the policy's progress file (``.corral/progress.md`` by
default) in the worktree; no scan ever puts it in a candidate. The runner
reads it host side at the end of every context window and keeps it in the
run store (``attempt-<n>/window-<w>/progress.md`` and ``progress/latest.md``),
so the next window starts from it and the next attempt finds it again in its
rolled-back tree. A window that is not its attempt's last also gets its code
state committed on ``refs/corral/windows/a<n>-w<w>``: a paused attempt
continues from there (``runner.loop.outcome.ResumePoint``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from runner.store.runs import RunStore
from sandbox.workspace import Workspace

Emit = Callable[[str, Mapping[str, Any]], None]


class Progress:
    """The progress file ``rel`` of run ``run_id`` (at most ``max_bytes`` of it are read)."""

    def __init__(self, store: RunStore, run_id: str, rel: str, max_bytes: int, emit: Emit) -> None:
        self.store, self.run_id, self.rel, self.max_bytes, self.emit = (
            store, run_id, rel, max_bytes, emit,
        )  # fmt: skip

    def read(self, ws: Workspace) -> str:
        """The file as the tree holds it now ("" when it is missing or not a regular file)."""
        path = ws.path / self.rel
        if path.is_symlink() or not path.is_file():
            return ""
        return path.read_bytes()[: self.max_bytes].decode(errors="replace")

    def carry(self, ws: Workspace) -> None:
        """Put the run's latest snapshot back into a tree just rolled back (if there is one)."""
        latest = self.store.artifact_path(self.run_id, "progress/latest.md")
        text = latest.read_text() if latest.is_file() else ""
        if text:
            ws.write_file(self.rel, text.encode())

    def snapshot(self, ws: Workspace, n: int, w: int) -> str:
        """Progress file and code state at the end of window ``w`` of attempt ``n``; the state.

        The code state is committed on ``refs/corral/windows/a<n>-w<w>`` (a
        paused attempt continues from it).
        """
        state = ws.commit_snapshot(ws.snapshot(), f"window state a{n}w{w}")
        ws.checkpoint_ref(f"windows/a{n}-w{w}", state)
        self._keep(ws, n, w, state)
        return state

    def snapshot_last(self, ws: Workspace, n: int, w: int) -> None:
        """The progress file at the end of attempt ``n``'s last window ``w``.

        Its code state is the harvest commit, taken right after with the container gone.
        """
        self._keep(ws, n, w, None)

    def _keep(self, ws: Workspace, n: int, w: int, state: str | None) -> None:
        """The file, durably, in the run store; a ``progress_snapshot`` event says so."""
        text = self.read(ws)
        self.store.write_artifact(self.run_id, f"attempt-{n}/window-{w}/progress.md", text)
        self.store.write_artifact(self.run_id, "progress/latest.md", text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.emit(
            "progress_snapshot",
            {"attempt": n, "window": w, "sha256": digest, "code_state": state or "harvest"},
        )
