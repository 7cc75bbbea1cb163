"""Target tests, hidden tests and flaky baselines, through whole runs on the fake backend.

The gate is real pytest on the host (``PytestFake`` lets it write its junit
report), so targets are judged on the runner's own report exactly as on
Docker. What needs the kernel (the agent cannot reach the hidden patch in its
container) is in ``test_targets_docker.py``.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.errors import UsageError
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from runner.review.evidence import gather, judging_rows
from runner.review.report_html import render_html
from tests.support.demo import BUG, FIXED
from tests.support.fastloop import (
    PYTEST_GATE,
    Project,
    PytestFake,
    finish,
    gate,
    policy,
    script,
    write,
)

FIX = script([[write("src/calc.py", FIXED), finish()]])
TARGET = "tests/test_calc.py::test_add"
PYTEST = policy(gates=[PYTEST_GATE], attempts=1)


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


def gate_ends(project: Project, run_id: str, label: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in project.events(run_id, "gate_end") if e.data["label"] == label]


# ----------------------------------------------------------------- targets


def test_a_target_that_ran_and_passed_makes_the_candidate_ready(project: Project) -> None:
    result = project.start(FIX, PYTEST, backend=PytestFake(), must_pass=(TARGET,))
    assert result.status == "ready_for_review", result
    (end,) = gate_ends(project, result.run_id, "attempt-1")
    assert end["passed"] and end["targets"] == {TARGET: "passed"}
    project.verified(result.run_id)


def test_a_target_missing_from_the_report_fails_the_candidate_naming_it(project: Project) -> None:
    nope = "tests/test_calc.py::test_nope"
    result = project.start(FIX, PYTEST, backend=PytestFake(), must_pass=(TARGET, nope))
    assert result.status == "failed" and result.failure_domain == "model", result
    assert f"gate tests failed: {nope} did not run" in result.reason
    (end,) = gate_ends(project, result.run_id, "attempt-1")
    assert not end["passed"] and end["targets"] == {TARGET: "passed", nope: "did not run"}


def test_a_target_that_still_fails_fails_the_candidate(project: Project) -> None:
    tests = "from src.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n" \
        "def test_add_negative():\n    assert add(-1, -2) == -3\n"  # fmt: skip
    project.root.joinpath("repo/tests/test_calc.py").write_text(tests)
    _commit(project)
    half = script([[write("src/calc.py", "def add(a, b):\n    return 3\n"), finish()]])
    result = project.start(half, PYTEST, backend=PytestFake(),
                           must_pass=("tests/test_calc.py::test_add_negative",))  # fmt: skip
    # without the target the gate would pass: test_add is fixed, nothing new fails
    assert result.status == "failed", result
    assert "tests/test_calc.py::test_add_negative failed" in result.reason


def test_a_gates_own_must_pass_is_judged_on_its_report(project: Project) -> None:
    own = gate("tests", PYTEST_GATE.split('command = "')[1].split('"')[0], kind="pytest")
    own = own.replace("timeout = 30", 'timeout = 30\nmust_pass = ["tests/test_calc.py::test_gone"]')
    result = project.start(FIX, policy(gates=[own], attempts=1), backend=PytestFake())
    assert result.status == "failed", result
    assert "tests/test_calc.py::test_gone did not run" in result.reason


def test_targets_in_the_bug_reports_front_matter_are_kept_from_the_agent(
    project: Project,
) -> None:
    front = f"---\n# what reproduces it\nmust_pass:\n  - {TARGET}\n  - 'tests/test_calc.py::test_x[1, 2]'\n---\n"
    project.root.joinpath("bug.md").write_text(front + BUG)
    result = project.start(FIX, PYTEST, backend=PytestFake(), must_pass=(TARGET,))
    assert result.status == "failed", result
    assert "tests/test_calc.py::test_x[1, 2] did not run" in result.reason
    rec = project.store.get(result.run_id)
    assert rec.bug_title == "add() subtracts"  # the title is the report's, not the front matter
    targets = json.loads(rec.policy_json)["policy"]["targets"]["must_pass"]
    assert targets == [TARGET, "tests/test_calc.py::test_x[1, 2]"]  # once each, flags last


def test_malformed_front_matter_is_an_error_naming_the_line(project: Project) -> None:
    project.root.joinpath("bug.md").write_text(f"---\nmust_pass: [{TARGET}]\nowner: me\n---\n{BUG}")
    with pytest.raises(UsageError, match=r"bug\.md, front matter line 3: unknown key 'owner'"):
        project.start(FIX, PYTEST, backend=PytestFake())
    assert project.store.list_runs() == []


def test_targets_without_a_required_pytest_gate_are_a_policy_error(project: Project) -> None:
    from policies.load import PolicyError

    with pytest.raises(PolicyError, match="need a required pytest gate"):
        project.start(FIX, policy(attempts=1), must_pass=(TARGET,))


# ----------------------------------------------------------------- hidden tests

HIDDEN_NAME = "test_hidden_regression"
HIDDEN = textwrap.dedent(f"""\
    diff --git a/tests/test_hidden.py b/tests/test_hidden.py
    new file mode 100644
    --- /dev/null
    +++ b/tests/test_hidden.py
    @@ -0,0 +1,5 @@
    +from src.calc import add
    +
    +
    +def {HIDDEN_NAME}():
    +    assert add(2, 5) == 7
""")
#: Passes the visible test (add(1, 2) == 3), not the hidden one.
CONSTANT = "def add(a, b):\n    return 3\n"


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer([]) as server:
        yield server


def _calls(*tool_calls: tuple[str, dict[str, Any]]) -> ScriptedReply:
    return ScriptedReply(tool_calls=[ToolCall(name, args) for name, args in tool_calls])


def test_tests_kept_from_the_agent_judge_its_candidate(  # no "hidden" in tmp_path
    project: Project, model: ScriptedModelServer, tmp_path: Path
) -> None:
    patch = tmp_path / "hidden.diff"
    patch.write_text(HIDDEN)
    look = "grep -rn hidden . ; ls -R tests; cat tests/*.py"
    model.extend([
        _calls(("bash", {"command": look}), ("write_file", {"path": "src/calc.py", "content": CONSTANT})),
        _calls(("finish", {"summary": "returns 3"})),
        _calls(("bash", {"command": look}), ("write_file", {"path": "src/calc.py", "content": FIXED})),
        _calls(("finish", {"summary": "adds"})),
    ])  # fmt: skip
    agent = {"agent": "corral", "model": "scripted-model", "base_url": model.base_url}
    target = f"tests/test_hidden.py::{HIDDEN_NAME}"  # a hidden test failing at base too is not
    result = project.start(None, policy(gates=[PYTEST_GATE], attempts=2), backend=PytestFake(),
                           hidden_tests=patch, must_pass=(target,), **agent)  # fmt: skip
    assert result.status == "ready_for_review", result
    first = result.attempts[0]
    assert first.status == "failed" and f"gate tests failed: {target} failed" in first.reason
    # the gates ran the hidden test: it failed at base and on attempt 1, passed on attempt 2
    base, one, two = (gate_ends(project, result.run_id, label)[0]
                      for label in ("baseline", "attempt-1", "attempt-2"))  # fmt: skip
    assert not base["passed"] and one["comparison"]["still_failing"] == 1
    assert two["comparison"]["fixed"] == 2
    junit = project.store.artifact_path(result.run_id, "attempt-1/junit-tests.xml").read_text()
    assert HIDDEN_NAME in junit  # the runner's report has it; the agent's world does not
    prompts = json.dumps([r.body for r in model.requests if r.body])
    assert prompts.count("[exit 0]\\ntests:\\ntest_calc.py") == 2  # its grep found nothing ...
    assert HIDDEN_NAME not in prompts and "test_hidden" not in prompts  # ... finding nothing
    assert "[gate output withheld" in prompts  # attempt 2's feedback has no gate log ...
    assert "gate tests failed: [hidden test] failed" in prompts  # ... and names no hidden test
    assert [a.changed_files for a in result.attempts] == [["src/calc.py"]] * 2  # nothing hidden
    (event,) = project.events(result.run_id, "hidden_tests")
    assert event.data["paths"] == ["tests/test_hidden.py"]
    review = gather(project.store, result.run_id)
    line = f"tests/test_hidden.py (from {patch}; never shown to the agent)"
    assert review.hidden_tests == line and review.to_json()["hidden_tests"] == line
    assert ("hidden tests", line) in judging_rows(review)  # the text and HTML headers' row
    assert html.escape(line) in render_html(review)
    project.verified(result.run_id)


def test_a_hidden_patch_that_does_not_apply_at_base_is_a_usage_error(
    project: Project, tmp_path: Path
) -> None:
    patch = tmp_path / "stale.diff"
    patch.write_text(HIDDEN.replace("new file mode 100644\n--- /dev/null", "--- a/tests/test_hidden.py")
                     .replace("@@ -0,0 +1,5 @@", "@@ -1,1 +1,5 @@\n-old line"))  # fmt: skip
    with pytest.raises(UsageError, match=rf"hidden tests {patch} does not apply at the base"):
        project.start(FIX, PYTEST, backend=PytestFake(), hidden_tests=patch)
    with pytest.raises(UsageError, match=r"cannot read hidden tests .*missing\.diff"):
        project.start(FIX, PYTEST, backend=PytestFake(), hidden_tests=tmp_path / "missing.diff")
    assert project.store.list_runs() == []


# ----------------------------------------------------------------- flaky baselines


def test_a_test_that_flips_at_base_is_flaky_never_blamed_and_never_fixed(
    project: Project, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"  # outside the tree: the fake isolates nothing
    flaky = ("import pathlib\n\n\ndef test_sometimes():\n"
             f"    p = pathlib.Path({str(counter)!r})\n"
             "    n = int(p.read_text()) if p.exists() else 0\n"
             "    p.write_text(str(n + 1))\n    assert n % 3 == 0\n")  # fmt: skip
    project.root.joinpath("repo/tests/test_flaky.py").write_text(flaky)
    _commit(project)
    repeated = PYTEST_GATE.replace("timeout = 30", "timeout = 30\nbaseline_runs = 2")
    result = project.start(FIX, policy(gates=[repeated], attempts=1), backend=PytestFake())
    assert result.status == "ready_for_review", result  # it failed on the candidate: not blamed
    (event,) = project.events(result.run_id, "flaky_tests")
    assert event.data == {"gate": "tests", "runs": 2, "tests": ["tests.test_flaky::test_sometimes"]}
    (end,) = gate_ends(project, result.run_id, "attempt-1")
    assert end["comparison"]["fixed"] == 1  # test_add; the flaky test counts for nothing
    assert "1 flaky at base (not blamed)" in end["reason"] and "confirmed" in end["reason"]
    review = gather(project.store, result.run_id)
    assert review.flaky == {"tests": ["tests.test_flaky::test_sometimes"]}


def _commit(project: Project) -> None:
    """Commit what the test changed in the demo repository (the base of the next run)."""
    import subprocess

    repo = project.root / "repo"
    for args in (["add", "-A"], ["commit", "-qm", "test variant"]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True)  # fmt: skip
