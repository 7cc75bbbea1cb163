"""What a run keeps across its processes: run-wide budget usage, pending human decisions, runtime failures.

A run may be paused (an ``ask`` command, an escalated scope violation, the
model's circuit breaker), killed, or stopped by a broken engine or git, and
then resumed by another process. Three things must survive that:

- ``RunMeter``: tokens, cost and wall-clock seconds are budgets of the whole
  run, so they are written to the run record (``tokens``, ``cost_usd``,
  ``wall_seconds``) after every model charge, window and attempt, and the next
  process starts its ``Budget`` from them. Waiting for a human is not counted
  as wall time (no process runs); a process killed mid-window loses at most
  the usage since its last save (for an agent CLI: the invocation running).
- ``waiting_json``: the one pending decision (``kind`` ``command`` or
  ``scope``) plus every decision already taken (``approved``/``rejected``
  command lists), merged, never overwritten by the next question.
- a ``runtime_error`` journal step: an infrastructure failure (engine, image,
  host git) ends the run as ``failed`` (``runtime``) with the evidence, and
  ``resume`` may run it again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.budget import Budget
from runner.errors import RunInterrupted
from runner.store.runs import RunStore

log = logging.getLogger(__name__)

Verdict = Literal["approve", "reject"]


@dataclass(slots=True)
class RunMeter:
    """The run-wide counters of one process of a run, seeded from and saved to its record."""

    store: RunStore
    run_id: str
    wall_before: float = 0.0
    """Wall seconds earlier processes of the run spent."""
    started: float = field(default_factory=time.monotonic)
    _saved: tuple[int, float] = (0, 0.0)

    @classmethod
    def open(cls, store: RunStore, run_id: str) -> RunMeter:
        """A meter that starts now, from what the record says the run used. ``UnknownRun`` if none."""
        rec = store.get(run_id)
        meter = cls(store, run_id, wall_before=rec.wall_seconds)
        meter._saved = (rec.tokens, rec.cost_usd)
        return meter

    def seed(self, budget: Budget, wall_limit: float) -> None:
        """Give ``budget`` the run's usage so far: tokens, cost, and a deadline net of spent time."""
        budget.used_tokens, budget.used_cost = self._saved
        budget.deadline = self.started + wall_limit - self.wall_before

    def wall_used(self) -> float:
        return self.wall_before + (time.monotonic() - self.started)

    def save(self, budget: Budget) -> None:
        """Write the counters to the record now (raises what ``RunStore.update`` raises)."""
        self._saved = (budget.used_tokens, budget.used_cost)
        self.store.update(
            self.run_id,
            tokens=budget.used_tokens,
            cost_usd=budget.used_cost,
            wall_seconds=self.wall_used(),
        )

    def charged(self, budget: Budget) -> None:
        """Save when tokens or cost changed since the last save (steps alone write nothing)."""
        if (budget.used_tokens, budget.used_cost) != self._saved:
            self.save(budget)


# ----------------------------------------------------------------- pending decisions


@dataclass(frozen=True, slots=True)
class Decisions:
    """What humans answered so far: commands allowed or denied, escalated scope by attempt."""

    approved: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()
    scope: Mapping[int, str] = field(default_factory=dict)
    """Attempt number -> ``approved``/``rejected`` for an escalated scope violation."""


def pending_of(waiting_json: str | None) -> dict[str, Any]:
    """The record's ``waiting_json`` as a dict (empty when there is none)."""
    data = json.loads(waiting_json) if waiting_json else {}
    return data if isinstance(data, dict) else {}


def decisions(waiting_json: str | None) -> Decisions:
    """The decisions a resume honours, from the record's ``waiting_json``."""
    data = pending_of(waiting_json)
    scope: dict[int, str] = {}
    if data.get("kind") == "scope" and data.get("answer") in ("approved", "rejected"):
        scope[int(data["attempt"])] = data["answer"]
    return Decisions(
        frozenset(data.get("approved", [])), frozenset(data.get("rejected", [])), scope
    )


def wait_for(store: RunStore, run_id: str, pending: Mapping[str, Any]) -> None:
    """Record ``pending`` as the run's open question, keeping every decision taken before."""
    old = pending_of(store.get(run_id).waiting_json)
    kept = {k: old[k] for k in ("approved", "rejected") if old.get(k)}
    store.update(run_id, waiting_json=json.dumps({**kept, **pending}))


def answer_pending(
    store: RunStore, run_id: str, verdict: Verdict, by: str, comment: str | None = None
) -> str | None:
    """Answer a waiting run's open question; None when it has none (e.g. it is ready for review).

    A ``command`` question moves the command to ``approved`` or ``rejected``
    (a later answer replaces an earlier one); a ``scope`` question records the
    answer for that attempt. Either is recorded as ``human_approved`` /
    ``human_rejected``; the next ``resume`` honours it. Returns what was
    answered, for the CLI to print. ``UnknownRun`` for an unknown run.
    """
    rec = store.get(run_id)
    pending = pending_of(rec.waiting_json)
    if rec.status != "waiting":
        return None
    key, other = ("approved", "rejected") if verdict == "approve" else ("rejected", "approved")
    event: dict[str, Any] = {"by": by, "comment": comment or ""}
    if pending.get("kind") == "scope":
        pending["answer"] = key
        event.update(scope=pending.get("violations", []), attempt=pending.get("attempt"))
        what = f"{key} the scope violation of attempt {pending.get('attempt')}"
    elif pending.get("command"):
        command = pending["command"]
        pending[key] = sorted(set(pending.get(key, [])) | {command})
        pending[other] = sorted(set(pending.get(other, [])) - {command})
        event["command"] = command
        what = f"{key} `{command}`"
    else:
        return None
    store.update(run_id, waiting_json=json.dumps(pending))
    store.append(run_id, f"human_{key}", event)
    return what


# ----------------------------------------------------------------- infrastructure failures


def record_runtime_error(store: RunStore, run_id: str, exc: BaseException, where: str) -> str:
    """Record an infrastructure failure (engine, image, host git) with its evidence; return the reason.

    The traceback goes to the artifact ``runtime-error.log``, a ``runtime_error``
    event names the error and a ``runtime_error`` journal step marks the run as
    resumable (``resumable``). The caller sets the status (``failed``, ``runtime``).
    """
    name = type(exc).__name__
    message = str(exc)[:2000]
    data = {"error": name, "message": message, "where": where}
    try:  # on a full disk as much as fits: the journal step first, it makes the run resumable
        seq = store.journal_start(run_id, "runtime_error", where, data)
        store.journal_failed(run_id, seq, data)
        store.append(run_id, "runtime_error", data)
        trace = "".join(traceback.format_exception(exc))
        store.write_artifact(run_id, "runtime-error.log", trace)
    except (OSError, sqlite3.Error) as again:
        log.warning("run %s: runtime error only partly recorded: %s", run_id, again)
    return f"{where}: {name}: {message}; see runtime-error.log, then `corral resume {run_id}`"


def record_interruption(store: RunStore, run_id: str) -> RunInterrupted:
    """Record that Ctrl-C (or SIGTERM) stopped the run, where (its unfinished step); the
    exception to raise. The status stays as it was: ``corral status`` shows ``interrupted``
    once no process holds the run, and ``resume`` goes on from the last finished step."""
    step = store.last_incomplete(run_id)
    where = f"{step.kind} {step.key}".strip() if step is not None else "its start"
    try:
        store.append(run_id, "run_interrupted", {"where": where})
    except Exception:  # a second Ctrl-C or a broken disk: the lease still shows it
        log.warning("run %s: interruption not recorded", run_id, exc_info=True)
    return RunInterrupted(run_id, where)


def resumable(store: RunStore, run_id: str) -> bool:
    """Whether a ``failed`` run ended on an infrastructure failure (its last journal step)."""
    steps = store.journal(run_id)
    return bool(steps) and steps[-1].kind == "runtime_error"
