"""A run's trajectory as ATIF ``trajectory.json`` (Agent Trajectory Interchange Format, v1.4).

ATIF is Harbor's (Terminal-Bench's) format for an agent's history: a root object with
``schema_version``, ``session_id``, ``agent`` (name, version, model) and ``steps``, each step
``system``, ``user`` or ``agent`` with a ``message``, an agent step's ``tool_calls`` and the
``observation`` of what they returned, and ``final_metrics``. The spec is the RFC
https://github.com/laude-institute/harbor/blob/main/docs/rfcs/0001-trajectory-format.md.

``to_atif(store, run_id)`` reads the run's record and event log (never the container) and maps:
the bug report to the one ``user`` step; each agent action (``runner.store.trajectory``'s
actions: a command, a read, a write, a patch, a progress note, ``finish``, and each refused one)
to an ``agent`` step with one tool call (its recorded arguments) whose observation is the
event's readable line (``runner.store.eventlines``: exit code, bytes, why it was denied; the
log keeps sizes, not outputs); a ``model_call`` to the ``metrics`` of the agent step after it;
and what the runner did around the agent (set-up, windows, gates, attempts, scope reverts, the
end) to ``system`` steps. Every step's ``extra`` names its event (``type``, ``seq``), so a step
can be found in ``corral logs``. ``final_metrics`` carries the run's recorded cost and tokens.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from runner.store.chain import Event
from runner.store.eventlines import summarize
from runner.store.runs import RunStore
from runner.store.trajectory import _ACTIONS as ACTIONS  # the events that are agent actions

SCHEMA_VERSION = "ATIF-v1.4"
#: Runner events that are not steps of their own: sandbox plumbing, and a model call (its
#: tokens and cost go on the agent step it led to).
_SKIPPED = frozenset({"sandbox_spec", "model_call", "progress_snapshot"})


def to_atif(store: RunStore, run_id: str) -> dict[str, Any]:
    """The run's ATIF trajectory as a JSON-able dict. ``UnknownRun`` for a run not in ``store``."""
    rec = store.get(run_id)
    steps: list[dict[str, Any]] = [
        {"step_id": 1, "timestamp": _iso(rec.created), "source": "user",
         "message": _bug_text(rec.bug_path, rec.bug_title), "extra": {"bug_path": rec.bug_path}}
    ]  # fmt: skip
    pending: dict[str, Any] | None = None
    prompt = completion = 0
    for e in store.events(run_id):
        if e.type == "model_call":
            pending = _metrics(e.data)
            prompt += int(e.data.get("prompt_tokens") or 0)
            completion += int(e.data.get("completion_tokens") or 0)
            continue
        if e.type in _SKIPPED:
            continue
        step = _agent_step(e) if e.type in ACTIONS else _system_step(e)
        step["step_id"] = len(steps) + 1
        if step["source"] == "agent" and pending is not None:
            step["metrics"], pending = pending, None
        steps.append(step)
    agent: dict[str, Any] = {"name": "corral", "version": _corral_version(),
                             "extra": {"agent": rec.agent}}  # fmt: skip
    if rec.model:
        agent["model_name"] = rec.model
    return {
        "schema_version": SCHEMA_VERSION,
        "session_id": run_id,
        "agent": agent,
        "steps": steps,
        "notes": "Exported by corral from the run's event log: an observation is the"
        " runner's one-line account of the action (exit code, sizes, why it was refused),"
        " not the command's output; system steps are what the runner did around the agent.",
        "final_metrics": {
            "total_prompt_tokens": prompt,
            "total_completion_tokens": completion,
            "total_cost_usd": rec.cost_usd,
            "total_steps": len(steps),
            "extra": {
                "tokens": rec.tokens,
                "status": rec.status,
                "failure_domain": rec.failure_domain,
                "reason": rec.reason or "",
                "wall_seconds": round(rec.wall_seconds, 3),
            },
        },
        "extra": {"repo": rec.repo, "base": rec.base, "idempotency_key": rec.idempotency_key},
    }


def _agent_step(e: Event) -> dict[str, Any]:
    """One agent action: a tool call with its recorded arguments, and what it returned."""
    call_id = f"call-{e.seq}"
    tool = str(e.data.get("tool") or ACTIONS[e.type])
    args = e.data.get("args")
    if not isinstance(args, dict):
        args = {k: v for k, v in e.data.items() if k in ("command", "path", "paths", "summary")}
    message = str(e.data.get("summary", "")) if e.type == "finish" else ""
    return {
        "timestamp": e.ts,
        "source": "agent",
        "message": message,
        "tool_calls": [{"tool_call_id": call_id, "function_name": tool, "arguments": args}],
        "observation": {"results": [{"source_call_id": call_id, "content": summarize(e)}]},
        "extra": {"type": e.type, "seq": e.seq},
    }


def _system_step(e: Event) -> dict[str, Any]:
    return {"timestamp": e.ts, "source": "system", "message": summarize(e),
            "extra": {"type": e.type, "seq": e.seq}}  # fmt: skip


def _metrics(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt_tokens": int(d.get("prompt_tokens") or 0),
        "completion_tokens": int(d.get("completion_tokens") or 0),
        "cost_usd": float(d.get("cost_usd") or 0.0),
        "extra": {"finish_reason": d.get("finish_reason")},
    }


def _bug_text(path: str, title: str) -> str:
    """The bug report the run was given (its file), or its title when the file is gone."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return title


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _corral_version() -> str:
    try:
        return version("corral")
    except PackageNotFoundError:
        return "unknown"


def write_trajectories(store: RunStore, runs: list[tuple[str, str]], directory: Path) -> list[Path]:
    """``directory/NAME/trajectory.json`` for each ``(NAME, run_id)``; the files written.

    ``OSError`` when ``directory`` cannot be made or written; ``UnknownRun`` for a run not in
    ``store``.
    """
    written = []
    for name, run_id in runs:
        path = directory / name / "trajectory.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_atif(store, run_id), indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written
