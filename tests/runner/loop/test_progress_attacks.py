"""The progress file is the agent's: the runner (root, on the host) reads it without following
anything. Attacks through `corral run`, on Docker, each checked on the HOST.

The agent replaces ``.corral/`` (or the progress file in it) with a symlink to a host directory
(or file) holding a ``progress.md``. Were the runner to follow it, the host file would become the
run's progress snapshot, go into the next attempt's tree (where the scripted agent copies it into
the candidate), and so reach the patch, ``corral review`` and the HTML report. Each test looks
for the host file's text everywhere the run wrote and in what a reviewer reads, and for the
finding that says what the agent did.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import corral
from tests.support.demo import FIXED, build_demo, policy, run_args

pytestmark = pytest.mark.docker


def _script(plant: str) -> str:
    """Attempt 1 plants the link and gives up; attempt 2 copies whatever the runner carried into
    its tree as progress into the candidate, and fixes the bug (so the candidate is reviewed)."""
    leak = "cat .corral/progress.md > src/leak.txt 2>/dev/null; true"
    return (
        "[[attempt]]\n[[attempt.window]]\n"
        f'actions = [{{ run = {json.dumps(plant)} }}, {{ finish = "no idea" }}]\n'
        "[[attempt]]\n[[attempt.window]]\n"
        f"actions = [{{ run = {json.dumps(leak)} }}, "
        f'{{ write = "src/calc.py", content = {json.dumps(FIXED)} }}, {{ finish = "fixed" }}]\n'
    )


def _files_holding(root: Path, secret: bytes) -> list[str]:
    """Every file under ``root`` whose bytes hold ``secret`` (links not followed)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


def _attack(tmp_path: Path, home: Path, plant: str, host: Path) -> tuple[dict[str, Any], str]:
    """`corral run --json` of the attack; the run's result and the secret the host file holds."""
    secret = f"HOST-ONLY-{uuid.uuid4().hex}"
    host.mkdir(parents=True)
    (host / "progress.md").write_text(f"root's notes: {secret}\n")
    project = build_demo(tmp_path / "project", policy=policy(attempts=2, steps=20, timeout=300))
    (project / "script.toml").write_text(_script(plant.format(host=host)))
    args = run_args(project, "--agent", f"scripted:{project / 'script.toml'}", "--json")
    proc = corral(*args, home=home)
    assert proc.stdout.strip(), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result, secret


def _nowhere(tmp_path: Path, home: Path, run_id: str, secret: str) -> dict[str, Any]:
    """The secret is in no file the run wrote, nor in the review (text, JSON) or HTML report;
    the review as JSON."""
    assert _files_holding(home, secret.encode()) == []
    text = corral("review", run_id, home=home)
    assert text.returncode == 0, text.stderr
    as_json = corral("review", run_id, "--json", home=home)
    html = tmp_path / "review.html"
    assert corral("report", run_id, "--html", str(html), home=home).returncode == 0
    for shown in (text.stdout, as_json.stdout, html.read_text()):
        assert secret not in shown
    review: dict[str, Any] = json.loads(as_json.stdout)
    return review


def test_a_progress_directory_linked_to_a_host_directory_is_never_read(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    plant = "rm -rf .corral && ln -s {host} .corral && ls -la"
    result, secret = _attack(tmp_path, corral_home, plant, tmp_path / "host-notes")
    assert result["status"] == "ready_for_review", result
    review = _nowhere(tmp_path, corral_home, result["run_id"], secret)
    first = result["attempts"][0]
    assert any(f.startswith("ignored_file: .corral (") for f in first["findings"]), first
    shown = json.dumps(review)
    assert ".corral is not a real directory (a symbolic link): not followed" in shown, shown


def test_a_progress_file_linked_to_a_host_file_is_never_read(
    tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    host = tmp_path / "host-notes"
    plant = "mkdir -p .corral && ln -sfn {host}/progress.md .corral/progress.md"
    result, secret = _attack(tmp_path, corral_home, plant, host)
    assert result["status"] == "ready_for_review", result
    review = _nowhere(tmp_path, corral_home, result["run_id"], secret)
    shown = json.dumps(review)
    assert ".corral/progress.md is not a regular file (a symbolic link)" in shown, shown
