"""The live panel of ``corral run`` on a terminal: a rich ``Live`` drawn from a ``RunView``.

An event only updates the ``RunView`` under a lock; rich's own thread redraws
at most ``REFRESH_PER_SECOND`` times a second, so a burst of events costs the
run nothing but the state update. A failed redraw is raised on the run's
thread by the next event, where ``runner.review.display`` falls back to plain
lines.

Library: rich (already the CLI's renderer); its ``Live`` owns the redraw
thread, cursor hiding and restoring, and keeps other stderr output above the
panel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runner.review.runview import RunView
from runner.review.text import shown

#: Redraws per second of the live panel (rich's refresh thread; events never redraw).
REFRESH_PER_SECOND = 4


class LiveDisplay:
    """The rich panel: state updates on the run's thread, redraws on rich's thread."""

    def __init__(self, console: Console, *, refresh_per_second: float = REFRESH_PER_SECOND):
        self.console = console
        self.view = RunView()
        self.started = time.monotonic()
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self._live = Live(
            get_renderable=self._safe_render,
            console=console,
            refresh_per_second=refresh_per_second,
            redirect_stdout=False,  # stdout is the run's result, never the panel's
        )
        self._live.start()

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        if self.error is not None:  # the redraw thread failed: let run_display fall back
            raise self.error
        with self._lock:
            self.view.apply(kind, data)

    def close(self) -> None:
        if self._live.is_started:
            # no event came (bad input, say): erase the empty panel rather than leave it
            self._live.transient = self.view.attempts is None and not self.view.recent
            self._live.stop()  # one last redraw, the cursor back, the panel left on screen

    def _safe_render(self) -> RenderableType:
        if self.error is not None:
            return Text("")
        try:
            with self._lock:
                return self.render()
        except Exception as exc:  # reported on the run's thread by on_event
            self.error = exc
            return Text("")

    def render(self) -> RenderableType:
        """The panel for the current state (called under the lock)."""
        v = self.view
        head = Table.grid(padding=(0, 2))
        head.add_row(
            _counter("attempt", v.attempt, v.attempts),
            _counter("window", v.window, v.windows),
            Text(v.phase, style="bold"),
            Text(f"elapsed {_clock(time.monotonic() - self.started)}"),
        )
        step = Text("step ")
        step.append(_of(v.budget.get("steps"), v.budget.get("steps_limit")), style="bold")
        if v.command:
            step.append("  ")
            step.append(shown(v.command), style="cyan")
            step.append(f"  {v.command_state}", style=_state_style(v.command_state))
        parts: list[RenderableType] = [head, step]
        if v.gates:
            gates = Table(box=None, padding=(0, 1), show_edge=False)
            for col in ("gate", "baseline", "now", ""):
                gates.add_column(col, style="dim" if col == "" else None)
            for name, g in v.gates.items():
                now = g.state if not g.label else f"{g.state} ({g.label})"
                gates.add_row(
                    shown(name, 40),
                    Text(g.baseline, style=_state_style(g.baseline)),
                    Text(now, style=_state_style(g.state)),
                    g.detail,
                )
            parts.append(gates)
        parts.append(self._budgets())
        parts.extend(
            Text(line, style="dim", overflow="ellipsis", no_wrap=True) for line in v.recent
        )
        return Group(*parts)

    def _budgets(self) -> Text:
        b, v = self.view.budget, self.view
        out = Text("budgets  ")
        out.append(f"tokens {_of(b.get('tokens'), b.get('tokens_limit'))}  ")
        cost, limit = b.get("cost_usd"), b.get("cost_limit")
        out.append(f"cost ${cost or 0:.4f}/${limit or 0:g}  " if limit else "")
        elapsed = time.monotonic() - self.started
        wall = f"/{_clock(v.wall_seconds)}" if v.wall_seconds else ""
        out.append(f"wall {_clock(elapsed)}{wall}")
        return out


def _counter(name: str, n: int, of: int | None) -> Text:
    return Text(f"{name} {n or '-'}/{of if of is not None else '?'}")


def _of(used: float | None, limit: float | None) -> str:
    u = f"{used or 0:,.0f}"
    return f"{u}/{limit:,.0f}" if limit else u


def _clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def _state_style(state: str) -> str:
    if state.startswith(("passed", "exit 0")):
        return "green"
    if state.startswith(("failed", "denied", "exit", "needs")):
        return "red" if not state.startswith("needs") else "yellow"
    return "yellow" if state == "running" else "dim"
