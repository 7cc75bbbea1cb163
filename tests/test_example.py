"""The bundled example end to end: each story through ``examples/run.sh`` (real Docker), as the
README's first command runs it, then what the run recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.store import RunStore
from sandbox.paths import worktrees_dir
from sandbox.storage import mount_scratch_fs

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


def run_story(story: str, home: Path, tmp: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    env = {**os.environ, "CORRAL_HOME": str(home), "TMPDIR": str(tmp),
           "CORRAL": str(Path(sys.executable).with_name("corral"))}  # fmt: skip
    with mount_scratch_fs(worktrees_dir(home), size_mb=512):
        proc = subprocess.run(
            ["bash", str(ROOT / "examples/run.sh"), story],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    runs = RunStore(home).list_runs()
    assert len(runs) == 1, proc.stdout + proc.stderr
    return proc, runs[0].run_id


def test_story_1_passes_on_the_first_attempt_and_ends_with_the_review(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    proc, run_id = run_story("discount", corral_home, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(corral_home)
    rec = store.get(run_id)
    assert rec.status == "ready_for_review" and rec.attempts_done == 1
    assert "invoice.py" in store.artifact_path(run_id, "candidate.diff").read_text()
    assert run_id in proc.stdout and f"corral approve {run_id}" in proc.stdout
    assert "ready_for_review" in proc.stdout  # the review (or status) is the last thing shown
    assert store.verify(run_id).ok


def test_story_2_rolls_back_a_protected_edit_denies_a_command_then_fixes(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    proc, run_id = run_story("quoted-names", corral_home, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = RunStore(corral_home)
    assert store.get(run_id).status == "ready_for_review"
    ends = [e.data for e in store.events(run_id) if e.type == "attempt_end"]
    first, second = ends
    assert first["status"] == "failed" and "conftest.py" in first["violations"]
    assert first["changed_files"] == []  # the protected edit was reverted; nothing survived
    assert any(e.type == "scope_reverted" for e in store.events(run_id))
    assert second["status"] == "passed" and second["changed_files"] == ["src/invoicer/lines.py"]
    assert len(second["denied"]) == 1 and "curl" in second["denied"][0]
    denied = [e.data for e in store.events(run_id) if e.type == "command_denied"]
    assert len(denied) == 1 and "curl" in denied[0]["command"]
    assert "conftest.py" in proc.stdout and f"corral approve {run_id}" in proc.stdout  # the review
    assert store.verify(run_id).ok


def test_story_3_never_passes_and_ends_failed_with_a_clear_reason(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    proc, run_id = run_story("weekend-due-date", corral_home, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rec = RunStore(corral_home).get(run_id)
    assert rec.status == "failed" and rec.failure_domain == "model" and rec.attempts_done == 2
    assert rec.reason and rec.reason.startswith("no attempt passed (2 attempts)")
    assert "gate typecheck failed" in rec.reason
    ends = [e.data for e in RunStore(corral_home).events(run_id) if e.type == "attempt_end"]
    assert "passed at base now fail" in ends[0]["reason"]
    assert not RunStore(corral_home).artifact_path(run_id, "candidate.diff").exists()


def test_setup_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    proc = subprocess.run(
        ["bash", str(ROOT / "examples/setup.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine\n"
