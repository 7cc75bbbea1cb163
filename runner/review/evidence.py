"""What a reviewer reads about a run, gathered from the run store (records, journal, events, artifacts).

``gather(store, run_id)`` returns one ``Review``: the tamper findings first
(``findings``: constructs in a candidate that could talk a gate round; each
renderer shows them before anything else), the header (status, agent,
model, policy sources, what verified the candidate, budgets used vs limits, tokens, cost, duration), the
diff parsed per file with each file's scope class, the gates (baseline vs each
attempt that ran them, per test from the junit artifacts), what was blocked in
every attempt, why attempts failed, and a trajectory summary built from the
event log (``runner.store.trajectory``). ``corral review`` (rich), ``corral review --json`` and ``corral
report --html`` all render this one object, so they cannot disagree.

Nothing here writes to the store or runs anything; text from the run (diff,
bug title, command lines, logs) is kept as it was recorded, and each renderer
escapes it for its medium (``runner.review.text``). The diff is parsed by
``runner.review.diffview``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from policies.junit import TestOutcomes, compare, parse_junit
from policies.policy import Policy
from policies.scope import Scope
from runner.review.diffview import FileDiff, parse_diff
from runner.store.chain import Event
from runner.store.runs import RunStore
from runner.store.trajectory import Blocked, Trajectory, read_trajectory

REVIEW_FORMAT = 1


@dataclass(slots=True)
class GateRow:
    """One gate in one attempt (or at base), with per-test results against the baseline."""

    label: str
    name: str
    passed: bool | None
    exit_code: int | None
    reason: str
    baseline_passed: bool | None
    fixed: list[str] = field(default_factory=list)
    still_failing: list[str] = field(default_factory=list)
    newly_failing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    log: str = ""
    baseline_log: str = ""


@dataclass(slots=True)
class AttemptView:
    """One attempt: outcome, what it changed, and what was blocked."""

    attempt: int
    status: str
    failure_domain: str | None
    reason: str
    changed_files: list[str]
    findings: list[str]
    evidence: list[str]
    windows: int
    steps: int
    gates: dict[str, bool]
    gate_seconds: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Each gate's seconds at base and on this attempt's candidate (``AttemptReport.gate_seconds``)."""


#: What every rendering says above the tamper findings.
FINDINGS_NOTE = "the candidate's code runs in the gates; read these before its gate results"


@dataclass(slots=True)
class FindingRow:
    """One tamper finding on one attempt's candidate (``AttemptReport.tamper``)."""

    attempt: int
    finding: str


@dataclass(slots=True)
class Review:
    """Everything ``corral review`` shows; ``to_json`` is ``--json``."""

    findings: list[FindingRow]
    """Tamper findings, first in every rendering: the code under test runs in the gates."""
    run_id: str
    status: str
    failure_domain: str | None
    reason: str
    bug_title: str
    repo: str
    base: str
    agent: str
    model: str | None
    policy_sources: list[str]
    verification: str
    """What verified the candidate: the required gates, or why nothing did (``verification``)."""
    created: float
    duration_s: float
    attempts_done: int
    budgets: dict[str, dict[str, float | None]]
    tokens: int
    cost_usd: float
    diff_source: str | None
    files: list[FileDiff]
    gates: list[GateRow]
    attempts: list[AttemptView]
    blocked: list[Blocked]
    trajectory: Trajectory
    chain_ok: bool
    chain_problem: str | None = None
    targets: list[str] = field(default_factory=list)
    """The target tests a candidate had to run and pass (``targets.must_pass``, each gate's)."""
    hidden_tests: str | None = None
    """The hidden tests the gates ran (paths, and the patch's file); the agent never saw them."""
    flaky: dict[str, list[str]] = field(default_factory=dict)
    """Per gate, the tests whose outcome flipped across its runs at base: never blamed."""
    format: int = REVIEW_FORMAT
    """The version of this shape (``--json`` consumers check it)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gather(store: RunStore, run_id: str) -> Review:
    """The review of ``run_id``. Raises ``UnknownRun`` for an id the store does not have."""
    rec = store.get(run_id)
    stored = json.loads(rec.policy_json)
    policy = Policy.model_validate(stored["policy"])
    events = store.events(run_id)
    reports = [
        s.data["report"]
        for s in store.journal(run_id)
        if s.kind == "attempt" and s.data and "report" in s.data
    ]
    trajectory, per_attempt_steps, blocked = read_trajectory(events)
    attempts = [
        AttemptView(
            attempt=r["attempt"],
            status=r["status"],
            failure_domain=r.get("failure_domain"),
            reason=r.get("reason", ""),
            changed_files=list(r.get("changed_files", [])),
            findings=list(r.get("findings", [])),
            evidence=[],
            windows=r.get("windows", 0),
            steps=per_attempt_steps.get(r["attempt"], 0),
            gates=dict(r.get("gates", {})),
            gate_seconds=dict(r.get("gate_seconds", {})),
        )
        for r in reports
    ]
    _patch_violations(attempts, reports, blocked)
    gates = _gates(store, run_id, events)
    _evidence(attempts, reports, gates)
    diff_source, patch = _patch(store, run_id, attempts)
    b = policy.budgets
    duration = _duration(events, rec.created, rec.updated)
    steps_used = max(per_attempt_steps.values(), default=0)
    budgets: dict[str, dict[str, float | None]] = {
        "attempts": {"used": rec.attempts_done, "limit": b.attempts},
        "steps (most in one attempt)": {"used": steps_used, "limit": b.steps},
        "tokens": {"used": rec.tokens, "limit": b.tokens},
        "cost_usd": {"used": round(rec.cost_usd, 6), "limit": b.cost_usd},
        "wall_seconds": {"used": round(duration, 1), "limit": b.wall_seconds},
    }
    chain = store.verify(run_id)
    return Review(
        findings=[FindingRow(r["attempt"], str(f)) for r in reports for f in r.get("tamper", [])],
        run_id=run_id, status=rec.status, failure_domain=rec.failure_domain,
        reason=rec.reason or "", bug_title=rec.bug_title, repo=rec.repo, base=rec.base,
        agent=rec.agent, model=rec.model, policy_sources=list(stored.get("sources", [])),
        verification=verification(policy), created=rec.created, duration_s=round(duration, 3), attempts_done=rec.attempts_done,
        budgets=budgets, tokens=rec.tokens, cost_usd=rec.cost_usd, diff_source=diff_source,
        files=parse_diff(patch, Scope(policy)), gates=gates,
        attempts=attempts, blocked=blocked, trajectory=trajectory, chain_ok=chain.ok,
        chain_problem=chain.problem, **_judging(policy, events),
    )  # fmt: skip


def judging_rows(rv: Review) -> list[tuple[str, str]]:
    """The header's rows on targets, hidden tests and flaky tests (none when the run had none)."""
    rows = []
    if rv.targets:
        rows.append(("target tests", ", ".join(rv.targets)))
    if rv.hidden_tests is not None:
        rows.append(("hidden tests", rv.hidden_tests))
    for gate, tests in rv.flaky.items():
        rows.append((f"flaky at base ({gate})", ", ".join(tests) + " (never blamed)"))
    return rows


def _judging(policy: Policy, events: list[Event]) -> dict[str, Any]:
    """What a verdict rested on besides the gates: targets, hidden tests, flaky tests."""
    targets = [*policy.targets.must_pass, *(t for g in policy.gates for t in g.must_pass)]
    hidden = next((e.data for e in events if e.type == "hidden_tests"), None)
    return {
        "targets": list(dict.fromkeys(targets)),
        "hidden_tests": None if hidden is None else
        f"{', '.join(hidden['paths'])} (from {hidden['file']}; never shown to the agent)",
        "flaky": {str(e.data["gate"]): list(e.data["tests"])
                  for e in events if e.type == "flaky_tests"},
    }  # fmt: skip


def verification(policy: Policy) -> str:
    """One line for the review's header: the required gates, or why no gate verified anything."""
    if policy.required_gates:
        return "required gates: " + ", ".join(policy.required_gates)
    if policy.gates_opted_out:
        return "no gates: the policy opted out of verification (gates = [])"
    return "no gates: nothing verified this candidate (the policy has no required gate)"


def _patch(store: RunStore, run_id: str, attempts: list[AttemptView]) -> tuple[str | None, str]:
    """The candidate patch, else the last attempt's (named so the reader knows which)."""
    candidate = store.artifact_path(run_id, "candidate.diff")
    if candidate.is_file():
        return "candidate.diff", candidate.read_bytes().decode(errors="replace")
    for a in reversed(attempts):
        path = store.artifact_path(run_id, f"attempt-{a.attempt}/patch.diff")
        if path.is_file():
            return f"attempt-{a.attempt}/patch.diff", path.read_bytes().decode(errors="replace")
    return None, ""


def _duration(events: list[Event], created: float, updated: float) -> float:
    if len(events) >= 2:
        first = datetime.fromisoformat(events[0].ts.replace("Z", "+00:00"))
        last = datetime.fromisoformat(events[-1].ts.replace("Z", "+00:00"))
        return (last - first).total_seconds()
    return max(0.0, updated - created)


def _gates(store: RunStore, run_id: str, events: list[Event]) -> list[GateRow]:
    """Baseline rows, then each attempt's rows, per test from the junit artifacts."""
    base_path = store.artifact_path(run_id, "baseline.json")
    baseline = json.loads(base_path.read_text()) if base_path.is_file() else {}
    rows: list[GateRow] = []
    for name, g in baseline.items():
        rows.append(GateRow(label="baseline", name=name, passed=g["passed"],
                            exit_code=g["exit_code"], reason=g["reason"], baseline_passed=None,
                            log=_artifact(store, run_id, f"baseline/gate-{name}.log")))  # fmt: skip
    latest: dict[tuple[str, str], GateRow] = {}  # a resumed attempt's gates replace its earlier
    for e in events:
        if e.type != "gate_end" or e.data.get("label") == "baseline":
            continue
        label, name = str(e.data["label"]), str(e.data["gate"])
        base = baseline.get(name)
        row = GateRow(
            label=label, name=name, passed=e.data.get("passed"), exit_code=e.data.get("exit_code"),
            reason=str(e.data.get("reason", "")),
            baseline_passed=base["passed"] if base else None,
            log=_artifact(store, run_id, f"{label}/gate-{name}.log"),
            baseline_log=_artifact(store, run_id, f"baseline/gate-{name}.log"),
        )  # fmt: skip
        before = _junit(store, run_id, f"baseline/junit-{name}.xml")
        after = _junit(store, run_id, f"{label}/junit-{name}.xml")
        if before is not None and after is not None:
            c = compare(before, after)
            row.fixed, row.still_failing = list(c.fixed), list(c.still_failing)
            row.newly_failing, row.missing = list(c.newly_failing), list(c.missing)
        latest.pop((label, name), None)
        latest[(label, name)] = row
    return rows + list(latest.values())


def _evidence(
    attempts: list[AttemptView], reports: list[dict[str, Any]], gates: list[GateRow]
) -> None:
    """Why each failed attempt failed, beyond its reason: broken tests, violations, denials."""
    for view, r in zip(attempts, reports, strict=True):
        if view.status == "passed":
            continue
        for g in gates:
            if g.label == f"attempt-{view.attempt}" and not g.passed:
                view.evidence += [f"{g.name}: newly failing {t}" for t in g.newly_failing]
                view.evidence += [f"{g.name}: missing {t}" for t in g.missing]
                view.evidence += [f"{g.name}: still failing {t}" for t in g.still_failing]
                if not (g.newly_failing or g.missing or g.still_failing):
                    view.evidence.append(f"{g.name}: {g.reason}")
        view.evidence += [f"violation {v}" for v in r.get("violations", [])]
        view.evidence += [f"denied {d}" for d in r.get("denied", [])]
        view.evidence += [f"finding {f}" for f in r.get("findings", [])]


def _artifact(store: RunStore, run_id: str, name: str) -> str:
    """An artifact's text, or "" when it is missing or its name is not a valid artifact name."""
    try:
        path = store.artifact_path(run_id, name)
    except ValueError:
        return ""
    return path.read_bytes().decode(errors="replace") if path.is_file() else ""


def _junit(store: RunStore, run_id: str, name: str) -> TestOutcomes | None:
    try:
        return parse_junit(store.artifact_path(run_id, name))
    except ValueError:
        return None


def _patch_violations(
    attempts: list[AttemptView], reports: list[dict[str, Any]], blocked: list[Blocked]
) -> None:
    """Violations found on the final patch (not reverted per step) join the blocked list."""
    seen = {(b.attempt, b.what) for b in blocked}
    for view, r in zip(attempts, reports, strict=True):
        for v in r.get("violations", []):
            if (view.attempt, v) not in seen:
                blocked.append(Blocked(view.attempt, "scope violation", v, "in the patch"))
        for f in r.get("findings", []):
            blocked.append(Blocked(view.attempt, "harvest finding", f, "kept out of the patch"))
    blocked.sort(key=lambda b: b.attempt)
