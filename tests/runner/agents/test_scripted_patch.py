"""The scripted ``patch`` action end to end: a real run on Docker applies a diff file to ready_for_review.

Inside the sandbox the tree's ``.git`` pointer leads nowhere, so the diff is applied by ``git
apply`` with no repository; the paths it touches (as git reads them) must be writable first,
and the scope check after the action holds as for every write.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from runner.store.runs import RunStore
from tests.support.demo import CALC_MUL, FILES, FIXED_MUL, policy
from tests.support.gitfixtures import git
from tests.support.runenv import Env

pytestmark = pytest.mark.docker

POLICY = policy(attempts=2, steps=20, wall_seconds=900, timeout=300)
# The fix as a unified diff of the ``env`` fixture's project (the demo with mul()).
FIX = "".join(
    difflib.unified_diff(
        CALC_MUL.splitlines(keepends=True), FIXED_MUL.splitlines(keepends=True),
        "a/src/calc.py", "b/src/calc.py",
    )
)  # fmt: skip
# Without a/ b/ prefixes git strips `src/` (-p1): to git this changes setup.cfg, which is protected.
SNEAKY = """\
--- src/setup.cfg
+++ src/setup.cfg
@@ -1,2 +1,2 @@
 [metadata]
-name = calc
+name = pwned
"""


def test_a_patch_file_reaches_ready_for_review_and_a_protected_one_is_denied(env: Env) -> None:
    (env.root / "fix.diff").write_text(FIX)  # beside the script, which names them
    (env.root / "sneaky.diff").write_text(SNEAKY)
    result = env.run(
        """
        [[attempt]]
        [[attempt.window]]
        actions = [
          { patch = "sneaky.diff" },
          { finish = "renamed the project" },
        ]
        [[attempt]]
        [[attempt.window]]
        actions = [
          { patch = "fix.diff" },
          { run = "python3 -m pytest -q -p no:cacheprovider" },
          { finish = "add() adds" },
        ]
        """,
        policy=POLICY,
    )
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert (first.status, first.failure_domain) == ("failed", "governance")
    assert first.reason == (  # all it did was a refused patch: not an attempt that did nothing
        "the attempt only tried to change files it may not write:"
        " setup.cfg (protected by policy; patch refused whole)"
    )
    assert second.changed_files == ["src/calc.py"] and second.gates == {"tests": True}
    assert result.patch_path is not None
    patch = Path(result.patch_path).read_text()
    assert "+    return a + b" in patch and "setup.cfg" not in patch
    events = [(e.type, e.data) for e in RunStore(env.home).events(result.run_id)]
    denied = [d for k, d in events if k == "patch_denied"]
    applied = [d for k, d in events if k == "patch"]
    reason = "it touches files you may not write: setup.cfg (protected by policy); none of it was applied"
    assert [(d["paths"], d["refused"], d["reason"]) for d in denied] == [
        (["setup.cfg"], ["setup.cfg"], reason)
    ]
    assert [(d["paths"], d["exit_code"], d["tool"]) for d in applied] == [
        (["src/calc.py"], 0, "apply_patch")
    ]
    assert not any(k == "scope_reverted" for k, _ in events)
    assert (env.repo / "setup.cfg").read_text() == FILES["setup.cfg"]
    assert git(env.repo, "status", "--porcelain") == ""
    assert RunStore(env.home).verify(result.run_id).ok
