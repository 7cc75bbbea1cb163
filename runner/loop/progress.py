"""The progress file: the agent's durable memory, carried across rollbacks and snapshotted per window.

The agent writes the policy's progress file (``.corral/progress.md`` by
default) in the worktree; no scan ever puts it in a candidate. The runner
reads it host side, following no link (a ``.corral`` that is not a real
directory, or a progress file that is not a regular one, is not read and a
``progress_refused`` event says so), at the end of every context window and keeps it in the
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
from sandbox.errors import NotFollowed
from sandbox.nofollow import read_regular
from sandbox.workspace import Workspace

Emit = Callable[[str, Mapping[str, Any]], None]


#: Appended where a progress file over ``max_bytes`` was cut: the agent reads it next window.
CUT_NOTE = (
    "\n\n[corral: this progress file was cut at {limit} bytes (progress.max_bytes);"
    " the rest is lost. Keep it short: what is done, what is next, what failed.]\n"
)


class Progress:
    """The progress file ``rel`` of run ``run_id`` (at most ``max_bytes`` of it are read)."""

    def __init__(self, store: RunStore, run_id: str, rel: str, max_bytes: int, emit: Emit) -> None:
        self.store, self.run_id, self.rel, self.max_bytes, self.emit = (
            store, run_id, rel, max_bytes, emit,
        )  # fmt: skip

    def read(self, ws: Workspace) -> str:
        """The file as the tree holds it now ("" when it is missing or cannot be read safely)."""
        return self._read(ws)[0]

    def _read(self, ws: Workspace) -> tuple[str, str | None]:
        """The file's text and, when it is there but not read, why not.

        The agent owns the tree: each directory on the way must be a real one and the file a
        regular one (``sandbox.nofollow.read_regular``, nothing followed); at most ``max_bytes``
        are read. A link in place of ``.corral/`` would otherwise hand the runner, reading as
        root on the host, a host file as the agent's notes.
        """
        try:
            data = read_regular(ws.path, self.rel, self.max_bytes + 1)
        except FileNotFoundError:
            return "", None  # none yet
        except NotFollowed as exc:
            return "", str(exc)
        except OSError as exc:
            return "", f"{self.rel} could not be read: {exc.strerror or exc}"
        if len(data) <= self.max_bytes:
            return data.decode(errors="replace"), None
        cut = data[: self.max_bytes].decode(errors="ignore")  # no half a character at the end
        return cut + CUT_NOTE.format(limit=self.max_bytes), None

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
        """The file, durably, in the run store; a ``progress_snapshot`` event says so, and a
        ``progress_refused`` one (shown in ``corral review``) why a file that is there was not read."""
        text, problem = self._read(ws)
        if problem is not None:
            self.emit(
                "progress_refused", {"attempt": n, "window": w, "path": self.rel, "reason": problem}
            )
        self.store.write_artifact(self.run_id, f"attempt-{n}/window-{w}/progress.md", text)
        self.store.write_artifact(self.run_id, "progress/latest.md", text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.emit(
            "progress_snapshot",
            {"attempt": n, "window": w, "sha256": digest, "code_state": state or "harvest"},
        )
