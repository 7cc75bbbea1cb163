"""Tamper findings in whole runs on ``FakeBackend``: the verdict, the domain, the review.

A candidate that fixes ``add()`` but also plants an exit at import: by default
(``on_finding = "fail"``) its gate fails and the attempt fails as ``governance``, with
the file, line and construct in the reason; with ``"flag"`` the verdict stands and the
finding is shown first in the review. The same runs on Docker with real attacks are
tests/runner/loop/test_fake_green.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from runner.cli.review import render
from runner.review.evidence import gather
from runner.review.report_html import render_html
from tests.support.demo import FIXED
from tests.support.fastloop import GATE, Project, finish, gate, policy, script, write

EXIT = "import atexit\nimport os\n\natexit.register(os._exit, 0)\n"
PLANTED = script([[write("src/calc.py", FIXED), write("src/__init__.py", EXIT), finish()]])
WHERE = "src/__init__.py:4: atexit.register at import"


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


def _policy(on_finding: str | None = None) -> str:
    table = gate("adds", GATE) + (f'on_finding = "{on_finding}"\n' if on_finding else "")
    return policy(gates=[table], attempts=1)


def test_a_finding_fails_the_gate_and_the_attempt_as_governance(project: Project) -> None:
    result = project.start(PLANTED, _policy())
    assert (result.status, result.failure_domain) == ("failed", "governance"), result
    (attempt,) = result.attempts
    assert attempt.gates == {"adds": False} and attempt.failure_domain == "governance"
    assert f"gate adds failed: finding: {WHERE}" in attempt.reason
    assert attempt.tamper[0].startswith(WHERE)
    (end,) = project.events(result.run_id, "gate_end")[-1:]
    assert end.data["passed"] is False and WHERE in end.data["reason"]
    project.verified(result.run_id)


def test_a_flagged_finding_leaves_the_verdict_and_leads_the_review(project: Project) -> None:
    result = project.start(PLANTED, _policy("flag"))
    assert result.status == "ready_for_review", result
    (attempt,) = result.attempts
    assert attempt.gates == {"adds": True} and attempt.tamper[0].startswith(WHERE)
    data = result.to_json()
    assert list(data)[:3] == ["run_id", "status", "findings"]
    assert data["findings"][0] == {"attempt": 1, "finding": attempt.tamper[0]}

    review = gather(project.store, result.run_id)
    assert [f.finding for f in review.findings] == attempt.tamper
    assert next(iter(review.to_json())) == "findings"
    console = Console(file=io.StringIO(), width=200, record=True)
    for part in render(review):
        console.print(part)
    text = console.export_text()
    assert text.index("Findings (") < text.index(WHERE) < text.index(f"run {result.run_id}")
    html = render_html(review)
    assert html.index('id="findings"') < html.index(WHERE) < html.index("<h1>")


def test_a_clean_candidate_has_no_findings_and_no_findings_section(project: Project) -> None:
    result = project.start(script([[write("src/calc.py", FIXED), finish()]]), _policy())
    assert result.status == "ready_for_review" and result.attempts[0].tamper == []
    assert result.to_json()["findings"] == []
    review = gather(project.store, result.run_id)
    assert review.findings == [] and 'id="findings"' not in render_html(review)
