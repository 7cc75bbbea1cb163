"""The scripted ``patch`` action end to end: a real run on Docker applies a diff file to ready_for_review.

Inside the sandbox the tree's ``.git`` pointer leads nowhere, so the diff is applied by ``git
apply`` with no repository; the paths it touches (as git reads them) must be writable first,
and the scope check after the action holds as for every write.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.ops.service import RunRequest, start_run
from runner.store.runs import RunStore
from sandbox.paths import worktrees_dir
from sandbox.treefs import mount_scratch_fs
from tests.support.gitfixtures import git, make_repo

pytestmark = pytest.mark.docker

CALC = "def add(a, b):\n    return a - b\n"
TESTS = "from src.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
SETUP = "[metadata]\nname = calc\n"
POLICY = """\
[budgets]
attempts = 2
steps = 20
wall_seconds = 900

[[gates]]
name = "tests"
command = "python3 -m pytest -q -p no:cacheprovider"
timeout = 300
"""
FIX = """\
--- a/src/calc.py
+++ b/src/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""
# Without a/ b/ prefixes git strips `src/` (-p1): to git this changes setup.cfg, which is protected.
SNEAKY = """\
--- src/setup.cfg
+++ src/setup.cfg
@@ -1,2 +1,2 @@
 [metadata]
-name = calc
+name = pwned
"""


@pytest.fixture
def project(tmp_path: Path, corral_home: Path, docker_client: Any) -> Iterator[Path]:
    make_repo(
        tmp_path / "repo",
        {"src/__init__.py": "", "src/calc.py": CALC, "tests/test_calc.py": TESTS,
         "setup.cfg": SETUP, ".gitignore": "__pycache__/\n"},
    )  # fmt: skip
    (tmp_path / "bug.md").write_text("# add() subtracts\n\nadd(1, 2) returns -1.\n")
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "fix.diff").write_text(FIX)
    (tmp_path / "sneaky.diff").write_text(SNEAKY)
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=1024):
        yield tmp_path


def test_a_patch_file_reaches_ready_for_review_and_a_protected_one_is_denied(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    (project / "script.toml").write_text(
        textwrap.dedent(
            """\
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
            """
        )
    )
    req = RunRequest(
        repo=project / "repo",
        bug=project / "bug.md",
        policy=str(project / "policy.toml"),
        script=project / "script.toml",
        image=sandbox_image,
    )
    result = start_run(corral_home, req)
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert first.status == "failed" and first.reason == "the attempt changed nothing"
    assert second.changed_files == ["src/calc.py"] and second.gates == {"tests": True}
    assert result.patch_path is not None
    patch = Path(result.patch_path).read_text()
    assert "+    return a + b" in patch and "setup.cfg" not in patch
    events = [(e.type, e.data) for e in RunStore(corral_home).events(result.run_id)]
    denied = [d for k, d in events if k == "patch_denied"]
    applied = [d for k, d in events if k == "patch"]
    assert [(d["paths"], d["reason"]) for d in denied] == [(["setup.cfg"], "it touches setup.cfg")]
    assert [(d["paths"], d["exit_code"], d["tool"]) for d in applied] == [
        (["src/calc.py"], 0, "apply_patch")
    ]
    assert not any(k == "scope_reverted" for k, _ in events)
    assert (project / "repo/setup.cfg").read_text() == SETUP
    assert git(project / "repo", "status", "--porcelain") == ""
    assert RunStore(corral_home).verify(result.run_id).ok
