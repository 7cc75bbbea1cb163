"""The bundled example end to end: each story through ``examples/run.sh`` (real Docker), as the
README's first command runs it, then what the run recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from sandbox.paths import worktrees_dir
from sandbox.treefs import mount_scratch_fs

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


def run_story(
    story: str, home: Path, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], str]:
    env = {**os.environ, **(env or {}), "CORRAL_HOME": str(home), "TMPDIR": str(tmp),
           "COLUMNS": "200", "CORRAL": str(Path(sys.executable).with_name("corral"))}  # fmt: skip
    with mount_scratch_fs(worktrees_dir(home), size_mb=512):
        proc = subprocess.run(
            ["bash", str(ROOT / "examples/run.sh"), story, *args],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    runs = RunStore(home).list_runs()
    assert len(runs) == 1, proc.stdout + proc.stderr
    return proc, runs[0].run_id


def review_on_screen(stdout: str, run_id: str) -> str:
    """The part of run.sh's output that ``corral review`` printed; asserts it is all there."""
    start = stdout.find(f"run {run_id}")
    assert start != -1, stdout
    review = stdout[start:]
    for marker in ("status", "event log", "intact", "gates", "baseline", "attempts",
                   "blocked and reverted", "trajectory:"):  # fmt: skip
        assert marker in review, (marker, stdout)
    # the gates as a table where it fits ("run on" heads a column), else one stacked row per gate
    assert "run on" in review or " on attempt-1: " in review, stdout
    assert "repository: " in review and f"run: {run_id}" in review  # run.sh's own last lines
    return review


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
    assert first["failure_domain"] == "governance"  # it tried, and was kept out
    assert first["reason"] == (
        "the attempt only tried to change files it may not write:"
        " conftest.py (protected by policy; reverted)"
    )
    assert any(e.type == "scope_reverted" for e in store.events(run_id))
    assert second["status"] == "passed" and second["changed_files"] == ["src/invoicer/lines.py"]
    assert len(second["denied"]) == 1 and "curl" in second["denied"][0]
    denied = [e.data for e in store.events(run_id) if e.type == "command_denied"]
    assert len(denied) == 1 and "curl" in denied[0]["command"]
    review = review_on_screen(proc.stdout, run_id)
    assert "candidate diff" in review and "src/invoicer/lines.py  [writable]" in review
    assert "+import csv" in review  # the diff itself
    assert "conftest.py" in review and "curl" in review  # blocked and reverted, denied
    assert f"corral approve {run_id}" in proc.stdout
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
    assert "gate tests failed" in ends[0]["reason"] and "now fail" in ends[0]["reason"]
    assert not RunStore(corral_home).artifact_path(run_id, "candidate.diff").exists()
    review = review_on_screen(proc.stdout, run_id)
    assert "failed (model)" in review
    assert "no attempt passed (2 attempts)" in " ".join(review.split())
    assert "gate typecheck failed" in " ".join(review.split())
    assert "diff of the last attempt (attempt-2/patch.diff; not a candidate)" in review


def test_readme_second_line_a_model_endpoint_fixes_story_2_and_ends_with_the_review(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    """``examples/run.sh quoted-names --model M --base-url http://127.0.0.1:PORT/v1`` with
    ``CORRAL_API_KEY`` set, against the scripted loopback model server (a model that fixes it)."""
    import tomllib

    from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall

    story = tomllib.loads((ROOT / "examples/agents/quoted-names.toml").read_text())
    fix = next(a for a in story["attempt"][1]["window"][0]["actions"] if "write" in a)
    pytest_cmd = "python3 -m pytest -q -p no:cacheprovider tests/test_lines.py"
    script = [
        ToolCall("read_file", {"path": "src/invoicer/lines.py"}),
        ToolCall("write_file", {"path": fix["write"], "content": fix["content"]}),
        ToolCall("bash", {"command": pytest_cmd}),
        ToolCall("finish", {"summary": "parse_line reads the record with csv.reader"}),
    ]
    key = "sk-example-0123456789"
    with ScriptedModelServer([ScriptedReply(tool_calls=[c]) for c in script]) as server:
        url = server.base_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        proc, run_id = run_story(
            "quoted-names", corral_home, tmp_path, "--model", "scripted-model",
            "--base-url", url, env={"CORRAL_API_KEY": key},
        )  # fmt: skip
        served = server.served
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert served == len(script)
    rec = RunStore(corral_home).get(run_id)
    assert rec.status == "ready_for_review" and rec.agent == "corral"
    assert rec.model == "scripted-model" and rec.attempts_done == 1
    review = review_on_screen(proc.stdout, run_id)
    assert "model scripted-model" in review and "+import csv" in review
    assert f"corral approve {run_id}" in proc.stdout
    assert key not in proc.stdout + proc.stderr


def test_setup_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine\n")
    proc = subprocess.run(
        ["bash", str(ROOT / "examples/setup.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine\n"
