"""Honest reasons through the real CLI on Docker: an agent kept out of scope is not one that did nothing.

The scripted agent sends the fix of ``src/calc.py`` and a new ``tox.ini``
(protected) as one patch, and plants a ``conftest.py`` (protected) with bash.
The patch is refused whole and the ``conftest.py`` reverted, so the attempt's
only effect was writes the policy kept out: ``corral run`` exits 1 with the run
failed as ``governance``, its reason naming both files; ``corral status
--json``, ``corral review --json`` and ``corral logs`` name them too. The loop's
own cases are tests/runner/loop/test_honest_reasons.py (``FakeBackend``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import corral
from tests.support.demo import build_demo, policy, run_args

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

SCRIPT = """\
[[attempt]]
[[attempt.window]]
actions = [
  { patch = "mixed.diff" },
  { run = "echo 'collect_ignore = [\\"tests\\"]' > conftest.py" },
  { finish = "fixed, and the tests are configured" },
]
"""


@pytest.mark.docker
def test_a_run_kept_out_of_scope_fails_as_governance_naming_the_files(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = build_demo(tmp_path, policy=policy(attempts=1, timeout=300))
    (project / "mixed.diff").write_text(MIXED)
    (project / "script.toml").write_text(SCRIPT)
    args = run_args(project, "--agent", f"scripted:{project / 'script.toml'}", "--json")
    proc = corral(*args, home=corral_home)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    why = (
        "the attempt only tried to change files it may not write: conftest.py (protected by"
        " policy; reverted); tox.ini (protected by policy; patch refused whole)"
    )
    assert (result["status"], result["failure_domain"]) == ("failed", "governance")
    assert result["reason"] == f"no attempt passed (1 attempts); last: governance: {why}"
    (only,) = result["attempts"]
    assert (only["failure_domain"], only["reason"]) == ("governance", why)
    assert only["denied"] == ["patch touching tox.ini"] and only["violations"] == ["conftest.py"]
    assert only["changed_files"] == [] and only["gate_seconds"] == {}  # never reached the gates
    run_id = result["run_id"]

    status = json.loads(corral("status", run_id, "--json", home=corral_home).stdout)
    assert status["failure_domain"] == "governance" and status["attempts"][0]["reason"] == why
    review = json.loads(corral("review", run_id, "--json", home=corral_home).stdout)
    assert review["attempts"][0]["reason"] == why
    assert "denied patch touching tox.ini" in review["attempts"][0]["evidence"]
    (refused,) = [b for b in review["blocked"] if b["kind"] == "patch denied"]
    assert "tox.ini (protected by policy)" in refused["reason"]
    assert "src/calc.py" not in refused["reason"]  # what it touched is not what it was refused for
    logs = corral("logs", run_id, home=corral_home).stdout
    assert "patch denied" in logs and "tox.ini (protected by policy)" in logs
    assert corral("verify", run_id, home=corral_home).returncode == 0
