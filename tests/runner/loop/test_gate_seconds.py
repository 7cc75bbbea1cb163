"""Each gate's seconds, at base and on the candidate, go into the run record, per attempt.

Whole runs on ``FakeBackend`` (``tests.support.fastloop``): the attempt's report
carries ``gate_seconds`` (``corral run --json``), the journal keeps it
(``corral status --json``), the event log has it (``attempt_end``) and the
review shows it per attempt. The Docker review test checks them on a real
pytest gate (tests/runner/review/test_review.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.review.evidence import gather
from tests.support.cli import corral
from tests.support.demo import FIXED
from tests.support.fastloop import Project, finish, policy, run, script, write


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


def test_each_gate_runs_seconds_at_base_and_on_the_candidate_are_recorded(
    project: Project,
) -> None:
    result = project.start(script([[write("src/calc.py", FIXED), finish()]]), policy())
    assert result.status == "ready_for_review", result
    (only,) = result.attempts
    baseline = json.loads(project.store.artifact_path(result.run_id, "baseline.json").read_text())
    seconds = only.gate_seconds["adds"]
    assert seconds["baseline"] == round(baseline["adds"]["duration_s"], 3)
    assert isinstance(seconds["candidate"], float) and seconds["candidate"] > 0
    status = corral("status", result.run_id, "--json", home=project.home)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["attempts"][0]["gate_seconds"] == only.gate_seconds
    (end,) = project.events(result.run_id, "attempt_end")  # the event log has them too
    assert end.data["gate_seconds"] == only.gate_seconds
    review = gather(project.store, result.run_id).to_json()
    assert review["attempts"][0]["gate_seconds"] == only.gate_seconds


def test_an_attempt_that_never_reached_the_gates_has_no_gate_seconds(project: Project) -> None:
    result = project.start(script([[run("true"), finish()]]), policy(attempts=1))
    assert result.attempts[0].gate_seconds == {}
    assert gather(project.store, result.run_id).attempts[0].gate_seconds == {}
