"""What ``corral run`` / ``corral resume`` show on stderr while a run works.

Every mode is one callable, ``on_event(kind, data)``, fed by ``Runner.emit``
(events of the log) and ``Runner.notify`` (live-only notices: ``run_limits``,
``command_start``, ``budget``, ``baseline_started``):

- ``live``: a rich ``Live`` panel (attempt i/N, window j/M, the current step and
  command, gates vs their baseline, budgets used vs limits, elapsed time). An
  event only updates a ``RunView`` under a lock; rich's own thread redraws at
  most ``REFRESH_PER_SECOND`` times a second, so a burst of events costs the
  run nothing but the state update.
- ``lines``: one plain line per event (stderr is not a terminal).
- ``json``: one JSON object per event, one per line (``corral run --json``;
  stdout keeps its one final object).
- ``quiet``: nothing (``--quiet``; the CLI prints the outcome).

A display error never fails a run: ``run_display`` logs it and carries on with
plain lines (and with nothing if lines fail too). ``Live`` is stopped in a
``finally``, so Ctrl-C leaves the cursor and the terminal as they were.

Library: rich (already the CLI's renderer); its ``Live`` owns the redraw
thread, cursor hiding and restoring, and keeps other stderr output above the
panel.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runner.review.evidence import plain
from runner.store.chain import Event
from runner.store.trajectory import summarize

log = logging.getLogger(__name__)

Mode = Literal["live", "lines", "json", "quiet"]
OnEvent = Callable[[str, Mapping[str, Any]], None]

#: Redraws per second of the live panel (rich's refresh thread; events never redraw).
REFRESH_PER_SECOND = 4
#: Longest command shown; the rest is cut with a marker.
COMMAND_CHARS = 160
#: Longest plain line (a recent event under the panel, a line of the lines mode).
LINE_CHARS = 240
#: Recent events listed under the panel.
RECENT = 5
#: Notices that reach the display but are not in the event log.
LIVE_ONLY = frozenset({"run_limits", "command_start", "budget", "baseline_started"})

#: What ``runner.review.evidence.plain`` leaves (it escapes the C0, C1 and bidi table of ``policies.scope``)
#: that would still break a one-line display.
_LINE_UNSAFE = re.compile("[\n\t]")


def escape_controls(text: str) -> str:
    """``text`` on one line: hidden characters (C0, C1, bidi) as ``corral review`` shows them
    (``<U+202E>``, ``<U+009B>``), newlines and tabs as ``\\n`` and ``\\t``."""

    def one(m: re.Match[str]) -> str:
        return "\\n" if m.group() == "\n" else "\\t"

    return _LINE_UNSAFE.sub(one, plain(text))


def markup(text: object) -> str:
    """Run text to put inside a rich markup string: ``escape_controls`` (one line, hidden
    characters as ``<U+XXXX>``), then ``rich.markup.escape`` (``x[/y].py`` prints as itself)."""
    return escape(escape_controls(str(text)))


def shown(text: str, limit: int = COMMAND_CHARS) -> str:
    """One safe line of at most ``limit`` characters (escaped first, then cut)."""
    safe = escape_controls(text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


# --------------------------------------------------------------------------- state

#: Agent actions other than commands, as the panel's "current step" names them.
_ACTIONS = {
    "read": "read",
    "write": "write",
    "write_denied": "write",
    "patch": "patch",
    "patch_denied": "patch",
    "progress": "update progress",
    "finish": "finish:",
}


@dataclass(slots=True)
class GateView:
    """One gate as the panel shows it: the current run's state and the baseline's."""

    state: str = "pending"  # pending | running | passed | failed
    label: str = ""
    baseline: str = "pending"
    detail: str = ""


@dataclass(slots=True)
class RunView:
    """What the run is doing now, folded from its events (no I/O, no rendering)."""

    attempts: int | None = None
    windows: int | None = None
    attempt: int = 0
    window: int = 0
    phase: str = "preparing"
    command: str = ""
    command_state: str = ""
    budget: dict[str, float] = field(default_factory=dict)
    wall_seconds: float | None = None
    gates: dict[str, GateView] = field(default_factory=dict)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT))
    outcome: str = ""

    def apply(self, kind: str, data: Mapping[str, Any]) -> None:
        """Fold one event into the state."""
        if kind == "run_limits":
            self.attempts, self.windows = data.get("attempts"), data.get("windows")
            self.wall_seconds = data.get("wall_seconds")
            for name in data.get("gates", ()):
                self.gates.setdefault(str(name), GateView())
            self.budget.update(
                steps_limit=data.get("steps", 0),
                tokens_limit=data.get("tokens", 0),
                cost_limit=data.get("cost_usd", 0.0),
            )
        elif kind == "budget":
            self.budget.update(data)
        elif kind == "baseline_started":  # on its own thread, while attempt 1 works
            for name in data.get("gates", ()):
                self.gates.setdefault(str(name), GateView()).baseline = "running"
        elif kind == "attempt_start":
            self.attempt, self.window, self.phase = int(data["attempt"]), 0, "agent"
            self.command = self.command_state = ""
            self.budget["steps"] = 0
            for g in self.gates.values():
                g.state, g.label, g.detail = "pending", "", ""
        elif kind == "window_start":
            self.window = int(data["window"])
        elif kind == "command_start":
            self.command, self.command_state = f"$ {data.get('command', '')}", "running"
        elif kind == "command":
            self.command = f"$ {data.get('command', '')}"
            timed_out = " (timed out)" if data.get("timed_out") else ""
            self.command_state = f"exit {data.get('exit_code')}{timed_out}"
        elif kind in ("command_denied", "command_ask"):
            self.command = f"$ {data.get('command', '')}"
            self.command_state = "denied" if kind == "command_denied" else "needs a human"
        elif kind in _ACTIONS:
            what = data.get("path") or ", ".join(data.get("paths", ())) or data.get("summary", "")
            self.command, self.command_state = f"{_ACTIONS[kind]} {what}".strip(), ""
            if kind.endswith("_denied"):
                self.command_state = "denied"
        elif kind == "gate_start":
            self._gate_start(data)
        elif kind == "gate_end":
            self._gate_end(data)
        elif kind == "attempt_end":
            self.phase = f"attempt {data.get('attempt')} {data.get('status')}"
        elif kind == "run_end":
            self.phase = self.outcome = str(data.get("status", ""))
        line = describe(kind, data)
        if line is not None:
            self.recent.append(line)

    def _gate_start(self, data: Mapping[str, Any]) -> None:
        label = str(data.get("label", ""))
        g = self.gates.setdefault(str(data.get("gate")), GateView())
        self.phase = "baseline gates" if label == "baseline" else "gates"
        if label == "baseline":
            g.baseline = "running"
        else:
            g.state, g.label = "running", label

    def _gate_end(self, data: Mapping[str, Any]) -> None:
        label = str(data.get("label", ""))
        g = self.gates.setdefault(str(data.get("gate")), GateView())
        verdict = "passed" if data.get("passed") else "failed"
        if label == "baseline":
            g.baseline = verdict
            return
        g.state, g.label = verdict, label
        base = data.get("baseline_passed")
        if base is not None:
            g.baseline = "passed" if base else "failed"
        counts = data.get("comparison") or {}
        g.detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
        if not g.detail and not data.get("passed"):
            g.detail = shown(str(data.get("reason", "")), 80)


def describe(kind: str, d: Mapping[str, Any]) -> str | None:
    """One plain, escaped line for an event, or None for the notices only the panel shows.

    The display's own notices, counters and gate-vs-baseline lines are written
    here; every other event reads as it does in ``corral logs``
    (``runner.store.trajectory.summarize``).
    """
    if kind in ("budget", "run_limits"):
        return None
    if kind == "command_start":
        line = f"$ {d.get('command', '')}"
    elif kind == "command":  # the line before was the command itself
        extra = " (timed out)" if d.get("timed_out") else ""
        line = f"  exit {d.get('exit_code')}{extra} in {d.get('duration_s')}s"
    elif kind == "attempt_start":
        line = f"attempt {d.get('attempt')}"
    elif kind == "window_start":
        line = f"attempt {d.get('attempt')} window {d.get('window')}"
    elif kind == "gate_start":
        line = f"gate {d.get('gate')} [{d.get('label')}] running"
    elif kind == "baseline_started":
        line = f"baseline gates running alongside attempt 1: {', '.join(d.get('gates', ()))}"
    else:
        line = summarize(Event(0, "", "", kind, dict(d), "", ""))
        if kind == "gate_end" and d.get("baseline_passed") is not None:
            line += f" (baseline: {'passed' if d['baseline_passed'] else 'failed'})"
    return shown(line, LINE_CHARS)


# --------------------------------------------------------------------------- modes


class Display(Protocol):
    """One way of showing a run; ``close`` must be safe to call more than once."""

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


class QuietDisplay:
    """Shows nothing."""

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def as_line(kind: str, data: Mapping[str, Any]) -> str | None:
    """``[corral] ...`` for the events ``describe`` has a line for."""
    line = describe(kind, data)
    return None if line is None else f"[corral] {line}"


def as_json_line(kind: str, data: Mapping[str, Any]) -> str:
    """``{"type", "ts", "live", "data"}``: ``live`` marks notices that are not in the event log."""
    obj = {"type": kind, "ts": round(time.time(), 3), "live": kind in LIVE_ONLY, "data": data}
    return json.dumps(obj, default=str)


class StreamDisplay:
    """One line per event on a text stream, as ``fmt`` writes it (None: nothing)."""

    def __init__(
        self, stream: IO[str], fmt: Callable[[str, Mapping[str, Any]], str | None] = as_line
    ) -> None:
        self.stream, self.fmt = stream, fmt

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        line = self.fmt(kind, data)
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


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


# --------------------------------------------------------------------------- choosing, guarding


def pick_mode(console: Console, *, as_json: bool, quiet: bool) -> Mode:
    """quiet > json > live on a terminal > plain lines."""
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "live" if console.is_terminal and not console.is_dumb_terminal else "lines"


def make_display(mode: Mode, console: Console) -> Display:
    """The display for ``mode``, writing to ``console`` (its file for lines and JSON)."""
    if mode == "live":
        return LiveDisplay(console)
    if mode == "json":
        return StreamDisplay(console.file, as_json_line)
    if mode == "lines":
        return StreamDisplay(console.file)
    return QuietDisplay()


class _Guarded:
    """Runs a display; on its first error logs it and switches to lines (then to nothing)."""

    def __init__(self, display: Display, console: Console) -> None:
        self.display, self.console = display, console

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        try:
            self.display.on_event(kind, data)
        except Exception as exc:  # a display must never fail a run
            self._fall_back(exc)
            try:
                self.display.on_event(kind, data)
            except Exception as again:
                self._fall_back(again)

    def _fall_back(self, exc: Exception) -> None:
        broken = self.display
        log.warning("run display failed (%s: %s); showing plain lines", type(exc).__name__, exc)
        try:
            broken.close()
        except Exception:
            log.debug("closing the failed display failed too", exc_info=True)
        self.display = (
            QuietDisplay()
            if isinstance(broken, (StreamDisplay, QuietDisplay))
            else StreamDisplay(self.console.file)
        )

    def close(self) -> None:
        try:
            self.display.close()
        except Exception:
            log.warning("closing the run display failed", exc_info=True)


@contextmanager
def run_display(
    console: Console, *, as_json: bool = False, quiet: bool = False, display: Display | None = None
) -> Iterator[OnEvent]:
    """``on_event`` for a run; the display is stopped on the way out, Ctrl-C included.

    ``display`` overrides the mode picked from ``console`` (tests).
    """
    try:
        chosen = display or make_display(pick_mode(console, as_json=as_json, quiet=quiet), console)
    except Exception as exc:  # e.g. the terminal refused the live panel
        log.warning("run display failed to start (%s); showing plain lines", exc)
        chosen = StreamDisplay(console.file)
    guarded = _Guarded(chosen, console)
    try:
        yield guarded.on_event
    finally:
        guarded.close()
