"""Honest reasons: an attempt that only tried to change what it may not write is ``governance``.

Whole runs on ``FakeBackend`` (``tests.support.fastloop``). A patch that touches
one protected file is refused whole, and names that file in its event, in the
attempt's ``denied`` list, its reason and the review; an attempt whose only
effect was refused or reverted writes fails as ``governance``, naming the
paths, and a run whose every attempt did so ends ``governance``; an attempt
that truly changed nothing stays ``model``. The Docker run through ``corral
run`` is in tests/runner/cli/test_honest_reasons_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.ops.service import result_of
from runner.review.evidence import gather
from tests.support.demo import FIXED
from tests.support.fastloop import Project, finish, policy, run, script, write

#: The fix of ``src/calc.py`` and a new ``tox.ini`` (protected) in one diff.
MIXED = """\
diff --git a/src/calc.py b/src/calc.py
--- a/src/calc.py
+++ b/src/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
diff --git a/tox.ini b/tox.ini
new file mode 100644
--- /dev/null
+++ b/tox.ini
@@ -0,0 +1,2 @@
+[tox]
+skipsdist = true
"""


def patch(diff: str) -> str:
    return f"{{ patch = {json.dumps(diff)} }}"


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


def test_a_patch_partly_out_of_scope_is_refused_whole_and_names_the_file(
    project: Project,
) -> None:
    result = project.start(script([[patch(MIXED), finish("fixed, and tox runs it")]]),
                           policy(attempts=2))  # fmt: skip
    run_id = result.run_id
    only = "the attempt only tried to change files it may not write: tox.ini (protected by policy;"
    for a in result.attempts:  # the script's one attempt, repeated
        assert (a.status, a.failure_domain) == ("failed", "governance"), a
        assert a.reason == f"{only} patch refused whole)"
        assert a.denied == ["patch touching tox.ini"] and a.changed_files == []
    assert (result.status, result.failure_domain) == ("failed", "governance")
    assert result.reason.startswith("no attempt passed (2 attempts); last: governance: " + only)
    (denied, _) = project.events(run_id, "patch_denied")
    assert denied.data["paths"] == ["src/calc.py", "tox.ini"]  # what the patch touches
    assert denied.data["refused"] == ["tox.ini"]  # what it was refused for
    assert "tox.ini (protected by policy)" in denied.data["reason"]
    assert "src/calc.py" not in denied.data["reason"]
    patch1 = project.store.artifact_path(run_id, "attempt-1/patch.diff").read_text()
    assert patch1 == ""  # nothing of it applied, the fix neither

    review = gather(project.store, run_id)
    first = review.attempts[0]
    assert first.failure_domain == "governance" and "tox.ini" in first.reason
    assert "denied patch touching tox.ini" in first.evidence
    (blocked, _) = [b for b in review.blocked if b.kind == "patch denied"]
    assert "tox.ini (protected by policy)" in blocked.reason
    project.verified(run_id)


def test_refused_and_reverted_writes_fail_every_attempt_and_the_run_as_governance(
    project: Project,
) -> None:
    cheat = script([[
        write("tests/test_calc.py", "def test_add():\n    pass\n"),
        run("echo 'collect_ignore = [\"tests\"]' > conftest.py"),
        write("src/calc.py", FIXED.replace("a + b", "a - b")),  # the base text: no change
        finish("the tests pass now"),
    ]])  # fmt: skip
    result = project.start(cheat, policy(attempts=3))
    why = (
        "the attempt only tried to change files it may not write: conftest.py (protected by"
        " policy; reverted); tests/test_calc.py (protected by policy; write refused)"
    )
    assert [(a.failure_domain, a.reason) for a in result.attempts] == [("governance", why)] * 2
    first = result.attempts[0]
    assert first.violations == ["conftest.py"] and first.denied == ["write tests/test_calc.py"]
    # the same commands twice: the repeated-strategy stop, yet every attempt was governance
    assert (result.status, result.failure_domain) == ("failed", "governance")
    assert "repeated strategy" in result.reason and why in result.reason
    assert project.events(result.run_id, "repeated_strategy")
    status = result_of(project.store, result.run_id)  # what `corral status --json` prints
    assert status.failure_domain == "governance" and status.attempts[0].reason == why
    project.verified(result.run_id)


def test_an_attempt_that_truly_changed_nothing_stays_model(project: Project) -> None:
    idle = script([[run("true"), write("src/calc.py", FIXED.replace("a + b", "a - b")),
                    finish("nothing to do")]])  # fmt: skip
    result = project.start(idle, policy(attempts=1))
    (only,) = result.attempts
    assert (only.failure_domain, only.reason) == ("model", "the attempt changed nothing")
    assert only.violations == [] and only.denied == []
    assert (result.status, result.failure_domain) == ("failed", "model")


def test_an_in_scope_change_after_a_refused_write_goes_to_the_gates(project: Project) -> None:
    mixed = script([[
        write("setup.cfg", "[metadata]\nname = pwned\n"),
        write("src/calc.py", FIXED),
        finish("fixed"),
    ]])  # fmt: skip
    result = project.start(mixed, policy(attempts=1))
    (only,) = result.attempts
    assert result.status == "ready_for_review" and only.status == "passed", result
    assert only.denied == ["write setup.cfg"] and only.changed_files == ["src/calc.py"]
