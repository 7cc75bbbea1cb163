"""What a run keeps across its processes (``runner.loop.resume``), on a real run store; no Docker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from policies.budget import Budget, BudgetExceeded
from runner.loop.resume import (
    RunMeter,
    answer_pending,
    decisions,
    record_runtime_error,
    resumable,
    wait_for,
)
from runner.store.runs import NewRun, RunStore
from sandbox.errors import GitError


def _store(tmp_path: Path) -> tuple[RunStore, str]:
    store = RunStore(tmp_path / "home")
    run = store.create(NewRun("/r", "b" * 40, "bug", "/bug.md", "scripted", None, "{}", "{}"))
    return store, run


def _budget(**kw: float) -> Budget:
    limits = {"steps": 10, "output_bytes": 1000, "tokens": 300, "cost_usd": 1.0, "deadline": 0.0}
    return Budget(**{**limits, **kw})  # type: ignore[arg-type]


def test_meter_saves_charges_and_seeds_the_next_process(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    first = RunMeter.open(store, run)
    budget = _budget()
    first.seed(budget, wall_limit=600)
    budget.step()
    first.charged(budget)  # a step alone writes nothing
    assert store.get(run).tokens == 0 and store.get(run).wall_seconds == 0
    budget.model(240, 0.25)
    first.charged(budget)
    rec = store.get(run)
    assert (rec.tokens, rec.cost_usd) == (240, 0.25) and rec.wall_seconds > 0

    second = RunMeter.open(store, run)  # a resume: a new process, a new Budget
    again = _budget()
    second.seed(again, wall_limit=600)
    assert (again.used_tokens, again.used_cost) == (240, 0.25)
    assert again.deadline == pytest.approx(second.started + 600 - rec.wall_seconds)
    with pytest.raises(BudgetExceeded) as crossed:
        again.model(120, 0.0)  # 360 > 300: crossed across the resume
    assert crossed.value.resource == "tokens"
    second.save(again)
    assert store.get(run).tokens == 360


def test_wall_time_spent_before_a_resume_counts(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    store.update(run, wall_seconds=600.5)
    budget = _budget()
    RunMeter.open(store, run).seed(budget, wall_limit=600)
    assert budget.deadline < time.monotonic()
    with pytest.raises(BudgetExceeded) as spent:
        budget.step()
    assert spent.value.resource == "wall_seconds"


def test_a_second_question_keeps_earlier_decisions(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    store.update(run, status="waiting")
    wait_for(store, run, {"kind": "command", "command": "echo first", "reason": "r"})
    assert answer_pending(store, run, "approve", "ann") == "approved `echo first`"
    wait_for(store, run, {"kind": "command", "command": "echo second", "reason": "r"})
    assert answer_pending(store, run, "reject", "ann", "no") == "rejected `echo second`"
    got = decisions(store.get(run).waiting_json)
    assert got.approved == {"echo first"} and got.rejected == {"echo second"}
    wait_for(store, run, {"kind": "command", "command": "echo first", "reason": "again"})
    answer_pending(store, run, "reject", "ann")  # a later answer replaces the earlier one
    got = decisions(store.get(run).waiting_json)
    assert got.approved == frozenset() and got.rejected == {"echo first", "echo second"}
    answers = [e for e in store.events(run) if e.type.startswith("human_")]
    assert [(e.type, e.data["command"], e.data["by"]) for e in answers] == [
        ("human_approved", "echo first", "ann"),
        ("human_rejected", "echo second", "ann"),
        ("human_rejected", "echo first", "ann"),
    ]


def test_a_scope_question_is_answered_per_attempt(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    store.update(run, status="waiting", waiting_json=json.dumps({"approved": ["make"]}))
    wait_for(store, run, {"kind": "scope", "attempt": 2, "commit": "c" * 40, "violations": ["x"]})
    assert decisions(store.get(run).waiting_json).scope == {}  # not answered yet
    assert (
        answer_pending(store, run, "approve", "ann") == "approved the scope violation of attempt 2"
    )
    got = decisions(store.get(run).waiting_json)
    assert got.scope == {2: "approved"} and got.approved == {"make"}
    wait_for(store, run, {"kind": "scope", "attempt": 3, "commit": "d" * 40, "violations": []})
    assert decisions(store.get(run).waiting_json).scope == {}  # an answer is for its question


def test_nothing_to_answer_is_none(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    store.update(run, status="ready_for_review")
    assert answer_pending(store, run, "approve", "ann") is None  # a review, not a question
    store.update(run, status="waiting", waiting_json=json.dumps({"kind": "paused", "reason": "x"}))
    assert answer_pending(store, run, "approve", "ann") is None  # nothing a human can answer


def test_a_runtime_error_is_recorded_with_evidence_and_resumable(tmp_path: Path) -> None:
    store, run = _store(tmp_path)
    seq = store.journal_start(run, "attempt", "1", {})
    assert not resumable(store, run)
    try:
        raise GitError(["write-tree"], 128, "fatal: x")
    except GitError as caught:
        exc, reason = caught, record_runtime_error(store, run, caught, "attempt 1")
    assert reason.startswith("attempt 1: GitError: git write-tree failed (128): fatal: x")
    assert f"corral resume {run}" in reason
    assert resumable(store, run)
    log = store.artifact_path(run, "runtime-error.log").read_text()
    assert "GitError" in log and "Traceback" in log
    event = next(e for e in store.events(run) if e.type == "runtime_error")
    assert event.data == {"error": "GitError", "message": str(exc), "where": "attempt 1"}
    store.journal_done(run, seq, {})
    store.journal_start(run, "attempt", "2", {})  # a later step: the run went on after it
    assert not resumable(store, run)
