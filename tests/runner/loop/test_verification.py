"""No verification, no green; a gate that cannot run at base is the configuration's fault.

Whole runs on ``FakeBackend`` (``tests.support.fastloop``): a policy with no
required gate ends ``unverified`` (exit 1) unless it says ``gates = []`` on
purpose; a required gate that cannot run at base (here exit 127) ends the run
as a configuration error (exit 2) before any attempt is judged; a gate that
runs and fails at base (the bug) is the usual case, and an advisory gate that
cannot run is reported, not fatal. The Docker test of a pytest gate that cannot
run is in test_run_loop.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from runner.cli.review import render
from runner.errors import MergeRefused
from runner.review.evidence import gather
from runner.review.merge import review_decision
from tests.support.demo import FIXED
from tests.support.fastloop import ADDS, Project, finish, gate, policy, run, script, write

FIX = script([[write("src/calc.py", FIXED), finish("add() adds")]])
#: A command the gate's shell does not find: exit 127 at base and on every candidate.
MISSING = "no-such-checker --all"


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


def header(project: Project, run_id: str) -> str:
    """The header panel of ``corral review RUN`` as plain text."""
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(render(gather(project.store, run_id))[0])
    return console.export_text()


# ----------------------------------------------------------------- no verification, no green


def test_no_gates_ends_unverified_exit_1_with_the_candidate_kept_for_a_human(
    project: Project,
) -> None:
    result = project.start(FIX, policy(gates=()))
    run_id = result.run_id
    assert result.status == "unverified" and result.exit_code == 1, result
    assert result.failure_domain is None
    assert "no required gate" in result.reason
    (only,) = result.attempts  # nothing a next attempt could change: the run ends
    assert only.status == "unverified" and only.gates == {}
    assert "+    return a + b" in Path(result.patch_path or "").read_text()
    (end,) = project.events(run_id, "run_end")
    assert end.data["status"] == "unverified" and "candidate_sha256" in end.data
    (step,) = project.attempt_steps(run_id)
    assert step.state == "done" and step.data["report"]["status"] == "unverified"
    assert project.store.get(run_id).status == "unverified"
    assert "no gates: nothing verified this candidate" in header(project, run_id)
    with pytest.raises(MergeRefused, match="is unverified"):
        review_decision(project.store, run_id, "approve", "rev", None)
    again = project.resume(run_id)  # an ended run: resume only reports it
    assert again.status == "unverified" and len(project.events(run_id, "run_end")) == 1
    project.verified(run_id)


def test_only_advisory_gates_verify_nothing(project: Project) -> None:
    result = project.start(FIX, policy(gates=[gate("adds", "true", required=False)]))
    assert result.status == "unverified" and result.exit_code == 1, result
    assert result.attempts[0].gates == {"adds": True}


def test_gates_opted_out_on_purpose_end_ready_for_review_and_the_review_says_so(
    project: Project,
) -> None:
    result = project.start(FIX, policy(gates=(), top="gates = []"))
    assert result.status == "ready_for_review" and result.exit_code == 0, result
    assert "the policy opted out of verification (gates = [])" in result.reason
    stored = project.store.get(result.run_id).policy_json
    assert '"gates": []' in stored  # resume reads the same opt-out back
    assert "no gates: the policy opted out of verification" in header(project, result.run_id)
    decided = review_decision(project.store, result.run_id, "approve", "rev", None)
    assert decided.status == "approved" and not decided.already


def test_a_required_gate_that_passes_is_what_makes_a_run_ready(project: Project) -> None:
    result = project.start(FIX, policy())
    assert result.status == "ready_for_review", result
    assert "required gates: adds" in header(project, result.run_id)


# ----------------------------------------------------------------- a gate that cannot run at base


def test_a_required_gate_that_cannot_run_at_base_is_a_configuration_error_exit_2(
    project: Project,
) -> None:
    result = project.start(FIX, policy(gates=[ADDS, gate("lint", MISSING)]))
    run_id = result.run_id
    assert result.status == "failed" and result.failure_domain == "configuration", result
    assert result.exit_code == 2
    log = project.store.artifact_path(run_id, "baseline/gate-lint.log")
    assert "gate lint cannot run at base: exit 127" in result.reason
    assert str(log) in result.reason and log.is_file()
    (only,) = result.attempts  # attempt 1 worked meanwhile, and was never judged
    assert only.failure_domain == "configuration" and only.gates == {}
    labels = {e.data["label"] for e in project.events(run_id, "gate_start")}
    assert labels == {"baseline"}
    assert len(project.events(run_id, "attempt_start")) == 1
    (broken,) = project.events(run_id, "gate_cannot_run")
    assert broken.data["gate"] == "lint" and broken.data["required"] is True
    assert broken.data["exit_code"] == 127 and broken.data["log"] == str(log)
    again = project.resume(run_id)  # not an infrastructure failure: nothing to resume
    assert again.status == "failed" and again.exit_code == 2
    project.verified(run_id)


def test_a_broken_gate_is_named_even_when_no_attempt_reached_the_gates(project: Project) -> None:
    idle = script([[run("true"), finish("nothing to do")]])  # every attempt changes nothing
    result = project.start(idle, policy(gates=[ADDS, gate("lint", MISSING)], attempts=2))
    assert result.status == "failed" and result.failure_domain == "configuration", result
    assert result.exit_code == 2
    assert "gate lint cannot run at base: exit 127" in result.reason
    assert all(a.failure_domain == "model" for a in result.attempts)  # changed nothing, as reported
    assert {e.data["label"] for e in project.events(result.run_id, "gate_start")} == {"baseline"}
    (broken,) = project.events(result.run_id, "gate_cannot_run")
    assert broken.data["gate"] == "lint" and broken.data["required"] is True
    project.verified(result.run_id)


def test_a_gate_that_runs_and_fails_at_base_lets_a_good_candidate_pass(project: Project) -> None:
    result = project.start(FIX, policy())
    assert result.status == "ready_for_review", result
    base = [e.data for e in project.events(result.run_id, "gate_end")
            if e.data["label"] == "baseline"]  # fmt: skip
    assert [(g["gate"], g["passed"], g["exit_code"]) for g in base] == [("adds", False, 1)]
    assert not project.events(result.run_id, "gate_cannot_run")


def test_an_advisory_gate_that_cannot_run_is_reported_not_fatal(project: Project) -> None:
    result = project.start(FIX, policy(gates=[ADDS, gate("lint", MISSING, required=False)]))
    assert result.status == "ready_for_review", result
    assert result.attempts[0].gates == {"adds": True, "lint": False}
    (broken,) = project.events(result.run_id, "gate_cannot_run")
    assert broken.data["gate"] == "lint" and broken.data["required"] is False
