"""What a run is doing now, folded from its events: the state every display shows.

``RunView.apply(kind, data)`` folds one event (of the log, or a live-only
notice) into the current attempt and window, phase, step and command, gates
against their baseline, budgets and recent lines; it does no I/O and no
rendering. ``describe`` is one plain, escaped line for an event (the
``lines`` display and the recent lines under the live panel).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.review.text import shown
from runner.store.chain import Event
from runner.store.eventlines import summarize, v

#: Longest plain line (a recent event under the panel, a line of the lines mode).
LINE_CHARS = 240
#: Recent events listed under the panel.
RECENT = 5

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
        elif kind == "setup_start":
            self.phase, self.command, self.command_state = "set-up", "", "running"
        elif kind == "setup_output":
            said = str(data.get("line", ""))
            if said.startswith("$ "):
                self.command = said
            elif said.strip():
                self.command_state = shown(said.strip(), 80)
        elif kind == "environment":
            self.phase, self.command, self.command_state = "set-up done", "", ""
        elif kind == "setup_failed":
            self.phase, self.command_state = "set-up failed", f"exit {data.get('exit_code')}"
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
    (``runner.store.eventlines.summarize``).
    """
    if kind in ("budget", "run_limits"):
        return None
    if kind == "command_start":
        line = f"$ {v(d.get('command'))}"
    elif kind == "command":  # the line before was the command itself
        extra = " (timed out)" if d.get("timed_out") else ""
        line = f"  exit {v(d.get('exit_code'))}{extra} in {v(d.get('duration_s'))}s"
    elif kind == "attempt_start":
        line = f"attempt {v(d.get('attempt'))}"
    elif kind == "window_start":
        line = f"attempt {v(d.get('attempt'))} window {v(d.get('window'))}"
    elif kind == "gate_start":
        line = f"gate {v(d.get('gate'))} [{v(d.get('label'))}] running"
    elif kind == "baseline_started":
        line = f"baseline gates running alongside attempt 1: {v(d.get('gates'))}"
    elif kind == "setup_output":
        line = f"set-up | {v(d.get('line'), '')}"
    else:
        line = summarize(Event(0, "", "", kind, dict(d), "", ""))
        if kind == "gate_end" and d.get("baseline_passed") is not None:
            line += f" (baseline: {'passed' if d['baseline_passed'] else 'failed'})"
    return shown(line, LINE_CHARS)
