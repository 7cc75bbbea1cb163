"""``corral gc`` and ``corral smoke`` (``runner.ops.maintenance``): what a run still needs is
kept, and the CLI reports what was removed. What ``sandbox.gc.collect`` removes is tested in
tests/sandbox/test_gc.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from runner.ops.maintenance import SmokeRow
from sandbox.docker_backend import DockerSandbox
from sandbox.gc import GcReport, collect
from sandbox.lease import RunLease
from sandbox.workspace import Workspace, list_workspaces
from tests.support.gitfixtures import make_repo


def test_cli_gc_without_docker(corral_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    Workspace.create(repo, "HEAD", "crashed", corral_home)
    with RunLease(corral_home, "held-here"):
        result = CliRunner().invoke(app, ["gc", "--no-docker"])
    assert result.exit_code == 0, result.output
    assert "removed 1 workspaces: crashed" in result.output
    assert list_workspaces(corral_home) == []


def test_ops_gc_keeps_waiting_runs_trees(
    corral_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.ops.maintenance import gc
    from tests.support.storefixtures import stored_run

    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    for run_id, status in (("asks", "waiting"), ("done", "failed"), ("unrecorded", None)):
        if status is not None:
            stored_run(corral_home, run_id, status=status).close()
        Workspace.create(repo, "HEAD", run_id, corral_home)
    monkeypatch.setenv("CORRAL_HOME", str(corral_home))
    report = gc(docker=False)
    assert sorted(report.workspaces) == ["done", "unrecorded"]
    assert list_workspaces(corral_home) == ["asks"]  # `corral resume asks` still has its tree


@pytest.mark.docker
def test_smoke_holds_a_lease_and_measures_the_fast_path(
    corral_home: Path, docker_client: Any, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.ops.maintenance as ops

    monkeypatch.setenv("CORRAL_HOME", str(corral_home))
    collected: list[GcReport] = []
    real = ops._fast_path_row

    def row_then_gc(sb: DockerSandbox) -> SmokeRow:  # a `corral gc` while the smoke runs
        collected.append(collect(corral_home, docker_client))
        return real(sb)

    monkeypatch.setattr(ops, "_fast_path_row", row_then_gc)
    rows = {r.name: r for r in ops.smoke()}
    assert all(r.ok for r in rows.values()), rows
    assert collected[0].containers == [] and collected[0].kept_live[0].startswith("smoke-")
    fast = rows["fast command path"].detail
    assert "with a docker exec" in fast and "median" in fast
