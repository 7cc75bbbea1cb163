"""What a run and its attempts come to: the records ``corral run --json`` prints and the journal keeps.

``AttemptReport`` is one attempt (how it was judged, with its evidence),
``RunResult`` the run's end (the one JSON object of ``--json``, and the exit
code: 0 ready for review, 1 failed, unverified or out of budget, 2 failed as
``configuration`` (a required gate cannot run at base), 3 waiting for a human).

An attempt comes to exactly one ``AttemptOutcome``, a closed union the run's
attempt loop (``Runner._attempts``) reads, and nothing else does:

- ``Judged``: it ran to a verdict, passed or failed (then the next attempt runs);
- ``Waiting``: it waits for a human, with the ``Question`` recorded as the
  run's open question (a command to approve, a scope violation, a pause) and,
  for a pause, the ``ResumePoint`` it continues from;
- ``Stopped``: it failed, and the run ends with it (``RunStopped``: a run-wide
  budget, an agent error that says ``stops_run``, a tree not harvested).

Questions and resume points are kept in the journal and in ``waiting_json``
as the JSON their ``to_json`` gives (``question_of``/``ResumePoint.of`` read it
back); ``runner.loop.resume`` and ``corral approve``/``reject`` read that JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict, TypeGuard

from policies.gates import GateResult
from runner.store.runs import FAILURE_DOMAINS, FailureDomain, RunStatus, RunStore

EXIT_CODES = {
    "ready_for_review": 0, "failed": 1, "unverified": 1, "budget_exhausted": 1, "waiting": 3,
}  # fmt: skip
#: A run that failed as ``configuration`` is a usage error: the policy must change.
CONFIGURATION_EXIT = 2

#: How an attempt was judged: ``waiting`` when a human (or the model endpoint) must act first;
#: ``unverified`` when nothing failed but no required gate checked its candidate.
AttemptStatus = Literal["passed", "failed", "waiting", "unverified"]


class GateSeconds(TypedDict):
    """One gate's seconds in one attempt: its run at base (None: none recorded) and on the
    candidate (a confirmation run included)."""

    baseline: float | None
    candidate: float


def is_domain(value: object) -> TypeGuard[FailureDomain]:
    """Whether ``value`` names one of the failure domains (``runner.store.runs.FailureDomain``)."""
    return value in FAILURE_DOMAINS


@dataclass(slots=True)
class AttemptReport:
    """What one attempt did and how it was judged (the shape of ``--json``'s ``attempts``)."""

    attempt: int
    status: AttemptStatus = "failed"
    failure_domain: FailureDomain | None = None
    reason: str = ""
    changed_files: list[str] = field(default_factory=list)
    gates: dict[str, bool] = field(default_factory=dict)
    gate_seconds: dict[str, GateSeconds] = field(default_factory=dict)
    """Each gate that ran on the candidate: its seconds at base and on the candidate."""
    violations: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    tamper: list[str] = field(default_factory=list)
    """Tamper findings on the candidate (``policies.gates.with_findings``), first in reviews."""
    commit: str | None = None
    windows: int = 0
    strategy: str | None = None


@dataclass(slots=True)
class RunResult:
    """The end of ``execute``: the one JSON object ``corral run --json`` prints."""

    run_id: str
    status: RunStatus
    failure_domain: FailureDomain | None
    reason: str
    patch_path: str | None
    attempts: list[AttemptReport]

    @property
    def exit_code(self) -> int:
        if self.failure_domain == "configuration":
            return CONFIGURATION_EXIT
        return EXIT_CODES.get(self.status, 1)

    def to_json(self) -> dict[str, Any]:
        """``asdict``, with the attempts' tamper findings first after the status (``findings``)."""
        data = asdict(self)
        head = {"run_id": data.pop("run_id"), "status": data.pop("status")}
        findings = [{"attempt": a.attempt, "finding": f} for a in self.attempts for f in a.tamper]
        return {**head, "findings": findings, **data}


def result_of(store: RunStore, run_id: str) -> RunResult:
    """A finished (or waiting) run's result, from the store (here, not in ``runner.ops.service``,
    so that ``corral status`` reads it without importing the loop, the agents or the engine)."""
    rec = store.get(run_id)
    reports = [
        AttemptReport(**s.data["report"])
        for s in store.journal(run_id)
        if s.kind == "attempt" and s.data and "report" in s.data
    ]
    candidate = store.artifact_path(run_id, "candidate.diff")
    return RunResult(
        run_id=run_id,
        status=rec.status,
        failure_domain=rec.failure_domain,
        reason=rec.reason or "",
        patch_path=str(candidate) if candidate.is_file() else None,
        attempts=reports,
    )


@dataclass(frozen=True, slots=True)
class RunStopped:
    """The run ends with this attempt (not only the attempt): ``status`` and ``domain`` say how."""

    status: RunStatus
    domain: FailureDomain | None
    reason: str


# ----------------------------------------------------------------- questions for a human


@dataclass(frozen=True, slots=True)
class CommandQuestion:
    """An ``ask`` command: ``corral approve``/``reject`` decides whether it runs."""

    command: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": "command", "command": self.command, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ScopeQuestion:
    """An escalated scope violation: approved, attempt ``attempt``'s candidate goes to the gates."""

    attempt: int
    commit: str | None
    reason: str
    violations: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "scope", "attempt": self.attempt, "commit": self.commit,
                "reason": self.reason, "violations": list(self.violations)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PauseQuestion:
    """A pause (e.g. the model endpoint's circuit opened): nothing to answer, only ``corral resume``."""

    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": "paused", "reason": self.reason}


Question = CommandQuestion | ScopeQuestion | PauseQuestion


def question_of(data: Mapping[str, Any] | None) -> Question | None:
    """The question ``to_json`` wrote (a journal step's ``pending``); None for none or another kind."""
    if not data:
        return None
    reason = str(data.get("reason", ""))
    match data.get("kind"):
        case "command":
            return CommandQuestion(str(data["command"]), reason)
        case "scope":
            commit = data.get("commit")
            violations = tuple(str(v) for v in data.get("violations", ()))
            return ScopeQuestion(int(data["attempt"]), commit and str(commit), reason, violations)
        case "paused":
            return PauseQuestion(reason)
    return None


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a paused attempt continues: its window, that window's code state, its own budgets."""

    window: int
    code_state: str
    steps: int = 0
    output_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"window": self.window, "code_state": self.code_state,
                "steps": self.steps, "output_bytes": self.output_bytes}  # fmt: skip

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> ResumePoint | None:
        """The point ``to_json`` wrote (a journal step's ``resume``); None when there is none."""
        if not data:
            return None
        return cls(int(data["window"]), str(data["code_state"]),
                   int(data.get("steps", 0)), int(data.get("output_bytes", 0)))  # fmt: skip


# ----------------------------------------------------------------- what an attempt comes to


@dataclass(frozen=True, slots=True)
class Judged:
    """The attempt ran to a verdict (``report.status`` passed or failed); ``gates``: its gates' results."""

    report: AttemptReport
    gates: tuple[GateResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Waiting:
    """The attempt waits on ``question``; a paused one continues from ``resume``."""

    report: AttemptReport
    question: Question
    resume: ResumePoint | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    """The attempt failed and the run ends with it, as ``end`` says."""

    report: AttemptReport
    end: RunStopped


AttemptOutcome = Judged | Waiting | Stopped
