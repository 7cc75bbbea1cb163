"""``corral rm RUN`` through the real CLI: a run that is over goes for good (record, journal,
events, artifacts, worktree, private git dir, gate tree, the keep-alive ref in the user's
repository, containers); a live run never, and a run waiting for a human only with ``--force``.

No Docker but for the one test that removes a run's container (marked ``docker``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from sandbox.gatetree import gate_tree_path
from sandbox.lease import RunLease
from sandbox.workspace import Workspace, list_workspaces
from tests.support.cli import corral
from tests.support.gitfixtures import git, make_repo
from tests.support.storefixtures import stored_run


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _runs(home: Path) -> list[str]:
    with RunStore(home) as store:
        return [rec.run_id for rec in store.list_runs()]


def _finished_run(home: Path, root: Path, run_id: str, status: str = "failed") -> Workspace:
    """A run recorded as ``status`` with a candidate patch and its workspace (tree, git dir)."""
    repo = root / "repo"
    if not repo.exists():
        make_repo(repo, {"a.py": "x = 1\n"})
    stored_run(home, run_id, status=status, candidate=b"diff\n").close()
    return Workspace.create(repo, "HEAD", run_id, home)


def test_rm_removes_a_runs_record_events_artifacts_and_workspace(
    tmp_path: Path, corral_home: Path
) -> None:
    ws = _finished_run(corral_home, tmp_path, "done")
    _finished_run(corral_home, tmp_path, "other")
    run_dir = RunStore(corral_home).run_dir("done")
    assert (run_dir / "candidate.diff").is_file() and ws.path.is_dir()
    proc = corral("rm", "done", "--no-docker", home=corral_home)
    assert proc.returncode == 0, proc.stderr
    assert "removed run done" in proc.stdout
    assert _runs(corral_home) == ["other"]
    assert not run_dir.exists() and not ws.path.exists()
    assert gate_tree_path(corral_home, "done") is None
    assert list_workspaces(corral_home) == ["other"]
    refs = git(tmp_path / "repo", "for-each-ref", "--format=%(refname)", "refs/corral/")
    assert refs.split() == ["refs/corral/runs/other/base"]
    status = corral("status", "done", home=corral_home)
    assert status.returncode == 2 and "`corral list` shows runs" in status.stderr
    again = corral("rm", "done", "--no-docker", home=corral_home)
    assert again.returncode == 2 and "`corral list` shows runs" in _one_error_line(again.stderr)


def test_rm_removes_a_run_left_created_by_a_crash(tmp_path: Path, corral_home: Path) -> None:
    _finished_run(corral_home, tmp_path, "crashed", status="created")
    proc = corral("rm", "crashed", "--no-docker", home=corral_home)
    assert proc.returncode == 0, proc.stderr
    assert _runs(corral_home) == [] and list_workspaces(corral_home) == []


def test_rm_refuses_a_live_run_even_with_force(tmp_path: Path, corral_home: Path) -> None:
    ws = _finished_run(corral_home, tmp_path, "busy", status="running")
    with RunLease(corral_home, "busy"):
        for extra in ((), ("--force",)):
            proc = corral("rm", "busy", "--no-docker", *extra, home=corral_home)
            assert proc.returncode == 2, proc.stderr
            line = _one_error_line(proc.stderr)
            assert "run busy is live" in line and "stop it first" in line, line
    assert _runs(corral_home) == ["busy"] and ws.path.is_dir()


def test_rm_of_a_run_waiting_for_a_human_needs_force(tmp_path: Path, corral_home: Path) -> None:
    ws = _finished_run(corral_home, tmp_path, "asks", status="waiting")
    proc = corral("rm", "asks", "--no-docker", home=corral_home)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "run asks waits for a human" in line and "corral rm --force asks" in line, line
    assert _runs(corral_home) == ["asks"] and ws.path.is_dir()
    proc = corral("rm", "--force", "asks", "--no-docker", home=corral_home)
    assert proc.returncode == 0, proc.stderr
    assert _runs(corral_home) == [] and not ws.path.exists()


@pytest.mark.docker
def test_rm_removes_the_runs_containers(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    from sandbox.docker_backend import DockerBackend
    from sandbox.spec import SandboxSpec

    _finished_run(corral_home, tmp_path, "left")
    backend = DockerBackend(docker_client)
    spec = SandboxSpec(image=sandbox_image, run_id="left", owner_home=str(corral_home))
    sandbox = backend.start(spec)
    other = backend.start(spec.model_copy(update={"run_id": "another"}))
    try:
        proc = corral("rm", "left", home=corral_home)
        assert proc.returncode == 0, proc.stderr
        assert "1 container" in proc.stdout
        labels = {"label": ["corral.run=left", f"corral.home={corral_home}"]}
        assert docker_client.containers.list(all=True, filters=labels) == []
        other_labels = {"label": ["corral.run=another", f"corral.home={corral_home}"]}
        assert len(docker_client.containers.list(all=True, filters=other_labels)) == 1
    finally:
        sandbox.close()
        other.close()
