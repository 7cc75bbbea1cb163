"""Target tests and hidden tests through `corral run` on Docker, the way a user runs them.

``--must-pass`` names the tests that reproduce the bug: the candidate is ready
only if each ran and passed in the runner's own report. ``--hidden-tests`` adds
tests to the gates' tree alone: an agent that searches its container and reads
its prompts (every request the model endpoint got) finds nothing of them. The
loop's own cases are ``tests/runner/loop/test_targets.py`` (fake backend).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runner.llm.scripted_server import ScriptedModelServer
from tests.support.agentruns import call, run_corral
from tests.support.cli import corral
from tests.support.demo import FIXED, POLICY, build_demo, fix_script, policy, run_args

pytestmark = pytest.mark.docker

TARGET = "tests/test_calc.py::test_add"


def test_must_pass_makes_a_candidate_ready_only_with_its_targets_passed(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = build_demo(tmp_path, policy=POLICY)
    (project / "script.toml").write_text(fix_script())
    args = run_args(project, "--agent", f"scripted:{project / 'script.toml'}", "--json")

    ready = corral(*args, "--must-pass", TARGET, home=corral_home)
    assert ready.returncode == 0, ready.stderr
    assert json.loads(ready.stdout)["status"] == "ready_for_review"

    nope = "tests/test_calc.py::test_nope"
    failed = corral(*args, "--attempts", "1", "--must-pass", TARGET, "--must-pass", nope,
                    home=corral_home)  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    result = json.loads(failed.stdout)
    assert result["status"] == "failed" and f"{nope} did not run" in result["reason"]
    review = corral("review", result["run_id"], home=corral_home)
    assert "target tests" in review.stdout and nope in review.stdout
    data = json.loads(corral("review", result["run_id"], "--json", home=corral_home).stdout)
    assert data["targets"] == [TARGET, nope]


NAME = "hidden_regression"  # the agent searches for this; nothing it is shown may hold it
PATCH = textwrap.dedent(f"""\
    diff --git a/tests/test_more.py b/tests/test_more.py
    new file mode 100644
    --- /dev/null
    +++ b/tests/test_more.py
    @@ -0,0 +1,5 @@
    +from src.calc import add
    +
    +
    +def test_{NAME}():
    +    assert add(2, 5) == 7
""")
#: Searches the whole container, its environment and the tree; the pattern is not the name.
SEARCH = (
    "grep -rIlE 'hidden_[r]egression|test_[m]ore' / --exclude-dir=proc --exclude-dir=sys"
    " --exclude-dir=dev 2>/dev/null; env | grep -E 'hidden_[r]egression'; ls tests"
)


def test_gates_run_tests_the_agent_never_finds_in_its_container_or_prompts(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = build_demo(tmp_path, policy=POLICY)
    patch = tmp_path / "more.diff"
    patch.write_text(PATCH)
    replies = []
    for content in ("def add(a, b):\n    return 3\n", FIXED):  # passes only the visible test
        replies += [call("bash", command=SEARCH),
                    call("write_file", path="src/calc.py", content=content),
                    call("finish", summary="done")]  # fmt: skip
    target = f"tests/test_more.py::test_{NAME}"
    with ScriptedModelServer(replies) as server:
        result = run_corral(project, corral_home, server, policy(attempts=2),
                            "--hidden-tests", str(patch), "--must-pass", target)  # fmt: skip
        prompts = json.dumps([r.body for r in server.requests if r.body])
    assert result["exit"] == 0 and result["status"] == "ready_for_review", result
    first = result["attempts"][0]
    assert first["status"] == "failed" and f"{target} failed" in first["reason"]
    assert '"content": "[exit 0]\\ntest_calc.py' in prompts  # it searched: nothing found
    assert NAME not in prompts and "test_more" not in prompts
    review = corral("review", result["run_id"], home=corral_home).stdout
    assert "hidden tests" in review and "tests/test_more.py" in review
    data = json.loads(corral("review", result["run_id"], "--json", home=corral_home).stdout)
    assert data["hidden_tests"] == f"tests/test_more.py (from {patch}; never shown to the agent)"
