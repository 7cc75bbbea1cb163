"""The records of the run store: what a run, its statuses and its journal's steps are.

Plain frozen dataclasses and ``Literal`` types, shared by the store
(``runner.store.runs``), the loop and the review; ``runner.store.runs``
re-exports them, as the loop imports them from there.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

RunStatus = Literal[
    "created", "running", "waiting", "ready_for_review", "unverified", "failed",
    "budget_exhausted", "approved", "rejected", "merged",
]  # fmt: skip
"""``unverified``: an attempt left a candidate, but the policy has no required gate to check it
(and did not opt out with ``gates = []``); never approvable, exit 1."""
FailureDomain = Literal[
    "model", "context", "tool-interface", "harness", "runtime", "governance", "configuration"
]
"""``configuration``: the policy's gates cannot run at base (exit 2): the policy's fault."""
StepState = Literal["started", "done", "failed"]
STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
FAILURE_DOMAINS: tuple[FailureDomain, ...] = get_args(FailureDomain)


@dataclass(frozen=True, slots=True)
class NewRun:
    """What ``create`` records about a new run."""

    repo: str
    base: str
    bug_title: str
    bug_path: str
    agent: str
    model: str | None
    policy_json: str
    spec_json: str
    idempotency_key: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``runs`` (times are seconds since the epoch)."""

    run_id: str
    created: float
    updated: float
    repo: str
    base: str
    bug_title: str
    bug_path: str
    agent: str
    model: str | None
    status: RunStatus
    failure_domain: FailureDomain | None
    reason: str | None
    attempts_done: int
    policy_json: str
    spec_json: str
    idempotency_key: str | None
    cost_usd: float
    tokens: int
    current_attempt: int
    current_window: int
    waiting_json: str | None
    wall_seconds: float = 0.0
    """Wall-clock seconds spent by the run so far (all its processes; waiting not counted)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One journal entry: started before the step ran, done or failed after."""

    run_id: str
    seq: int
    kind: str
    key: str
    state: StepState
    started: float
    finished: float | None
    data: dict[str, Any]


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-<6 hex>`` in UTC."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
