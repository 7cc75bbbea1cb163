"""The trajectory of a run, read from its event log: steps, tools, repeats, failed commands, timeline.

One pass over the events (``read_trajectory``) gives what ``corral review`` summarizes and what
``corral logs`` and the HTML timeline list, one readable line per event (``summarize``). A
failed command (non-zero exit or timeout) was acted on when the attempt's next action, reads
and progress notes skipped, changed a file or ran a different command.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runner.store.chain import Event
from runner.store.eventlines import summarize

#: Event types that are one agent action each, and the tool they belong to (events since
#: ``Tools`` named their tool carry it in ``tool``: ``edit_file`` records a ``write``).
_ACTIONS = {
    "command": "bash", "command_denied": "bash", "command_ask": "bash", "read": "read_file",
    "read_denied": "read_file", "write": "write_file", "write_denied": "write_file",
    "patch": "apply_patch", "patch_denied": "apply_patch", "progress": "update_progress",
    "finish": "finish", "tool_failed": "tool_failed", "tool_error": "tool_error",
}  # fmt: skip
_DENIED = {"command_denied": "command denied", "write_denied": "write denied",
           "patch_denied": "patch denied", "read_denied": "read denied"}  # fmt: skip
_CHANGES = frozenset({"write", "patch"})


@dataclass(slots=True)
class Blocked:
    """Something the runner refused or reverted: a command, a write, a patch, a scope change."""

    attempt: int
    kind: str
    what: str
    reason: str


@dataclass(slots=True)
class FailedCommand:
    """A command that ran and exited non-zero, and what the agent did next."""

    attempt: int
    command: str
    exit_code: int
    timed_out: bool
    followed_by: str
    acted: bool


@dataclass(slots=True)
class TimelineEntry:
    """One recorded event as a line of the trajectory."""

    seq: int
    ts: str
    attempt: int | None
    window: int | None
    type: str
    summary: str


@dataclass(slots=True)
class Trajectory:
    """How the agent worked: steps, tools used, repeated actions, failed commands."""

    steps: int = 0
    tools: dict[str, int] = field(default_factory=dict)
    repeated: list[dict[str, Any]] = field(default_factory=list)
    failed_commands: list[FailedCommand] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)


def read_trajectory(events: list[Event]) -> tuple[Trajectory, dict[int, int], list[Blocked]]:
    """Steps, tools, repeats, failed commands and the timeline, in one pass over the log."""
    t = Trajectory()
    steps: Counter[int] = Counter()
    tools: Counter[str] = Counter()
    seen: Counter[tuple[int, str, str]] = Counter()
    blocked: list[Blocked] = []
    pending: list[FailedCommand] = []
    attempt: int | None = None
    window: int | None = None
    for e in events:
        d = e.data
        if e.type == "attempt_start":
            attempt, window = int(d["attempt"]), None
            pending = _settle(pending, "the attempt ended without another action")
        elif e.type == "window_start":
            window = int(d["window"])
        tool = _ACTIONS.get(e.type)
        if tool is not None and e.type != "tool_error":  # a tool_error's tool is the model's word
            tool = str(d.get("tool") or tool)
        n = attempt or 0
        if tool is not None:
            steps[n] += 1
            tools[tool] += 1
            arg = str(d.get("command", d.get("path", d.get("paths", ""))))
            seen[(n, tool, arg)] += 1
            pending = _settle_after(pending, e)
        if e.type == "command" and (d.get("exit_code") or d.get("timed_out")):
            fc = FailedCommand(n, str(d["command"]), int(d.get("exit_code") or 0),
                               bool(d.get("timed_out")), "", False)  # fmt: skip
            t.failed_commands.append(fc)
            pending.append(fc)
        if e.type in _DENIED:
            what = d.get("command") or d.get("path") or ", ".join(d.get("paths", []))
            blocked.append(Blocked(n, _DENIED[e.type], str(what), str(d.get("reason", ""))))
        elif e.type == "scope_reverted":
            for p in d.get("paths", []):
                blocked.append(Blocked(n, "scope violation", str(p), "reverted after the step"))
        elif e.type == "progress_refused":
            blocked.append(Blocked(n, "progress file", str(d.get("path")), str(d.get("reason"))))
        t.timeline.append(TimelineEntry(e.seq, e.ts, attempt, window, e.type, summarize(e)))
        if e.type == "attempt_end":
            attempt = window = None
    _settle(pending, "the attempt ended without another action")
    t.steps = sum(steps.values())
    t.tools = dict(tools.most_common())
    t.repeated = [
        {"attempt": a, "tool": tool, "action": arg, "times": k}
        for (a, tool, arg), k in seen.items()
        if k > 1 and tool not in ("update_progress", "finish")
    ]
    return t, dict(steps), blocked


def _settle_after(pending: list[FailedCommand], e: Event) -> list[FailedCommand]:
    """Decide, for failed commands waiting on the next action, whether ``e`` acted on them."""
    if not pending:
        return pending
    if e.type in _CHANGES:
        what = e.data.get("path") or ", ".join(e.data.get("paths", []))
        return _settle(pending, f"changed a file ({what})", acted=True)
    if e.type == "command":
        cmd = str(e.data["command"])
        if all(fc.command == cmd for fc in pending):
            return _settle(pending, "ran the same command again")
        return _settle(pending, f"ran a different command: {cmd}", acted=True)
    if e.type == "finish":
        return _settle(pending, "finished without changing anything after it")
    return pending  # reads and progress notes: keep waiting for a real next step


def _settle(pending: list[FailedCommand], text: str, acted: bool = False) -> list[FailedCommand]:
    for fc in pending:
        fc.followed_by, fc.acted = text, acted
    return []
