"""``sandbox.gc.collect`` removes what dead runs left behind, and nothing else.

``corral gc`` and ``corral smoke`` around it (what they keep, and the CLI's report) are tested
with ``runner.ops.maintenance``, tests/runner/ops/test_maintenance.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sandbox.docker_backend import DockerBackend
from sandbox.errors import LeaseHeld
from sandbox.gatetree import ram_path
from sandbox.gc import collect
from sandbox.gitdir import scratch_path
from sandbox.lease import RunLease, is_live
from sandbox.spec import SandboxSpec
from sandbox.workspace import Workspace, list_workspaces
from tests.support.gitfixtures import make_repo
from tests.support.leases import hold_lease_in_child, kill


def test_workspaces_and_leases_of_dead_runs_are_removed(corral_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    dead = hold_lease_in_child(corral_home, "dead-run")
    live = hold_lease_in_child(corral_home, "live-run")
    try:
        for run_id in ("dead-run", "live-run"):
            Workspace.create(repo, "HEAD", run_id, corral_home)
        kill(dead)
        report = collect(corral_home, None)
        assert report.workspaces == ["dead-run"]
        assert "dead-run" in report.leases
        assert list_workspaces(corral_home) == ["live-run"]
        assert is_live(corral_home, "live-run")
        again = collect(corral_home, None)
        assert not again.removed_anything  # idempotent
    finally:
        kill(live)


def test_keep_spares_resumable_runs(corral_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    Workspace.create(repo, "HEAD", "waiting-run", corral_home)
    report = collect(corral_home, None, keep=lambda run_id: run_id == "waiting-run")
    assert report.workspaces == []
    assert list_workspaces(corral_home) == ["waiting-run"]


def test_dry_run_removes_nothing(corral_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    Workspace.create(repo, "HEAD", "orphan", corral_home)
    report = collect(corral_home, None, dry_run=True)
    assert report.workspaces == ["orphan"]
    assert list_workspaces(corral_home) == ["orphan"]


@pytest.mark.docker
def test_containers_of_dead_runs_only(
    corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    backend = DockerBackend(docker_client)
    home = str(corral_home)
    dead = hold_lease_in_child(corral_home, "dead")
    live = hold_lease_in_child(corral_home, "live")
    started = []
    try:
        for run_id, owner in (("dead", home), ("live", home), ("dead", "/elsewhere")):
            started.append(
                backend.start(SandboxSpec(image=sandbox_image, run_id=run_id, owner_home=owner))
            )
        foreign = docker_client.containers.run(
            sandbox_image, ["sleep", "infinity"], detach=True, init=True, network_mode="none"
        )
        kill(dead)
        report = collect(corral_home, docker_client)
        assert len(report.containers) == 1 and "(dead)" in report.containers[0]
        states = {}
        for sb in started:
            try:
                docker_client.containers.get(sb.id)
                states[sb.id] = "present"
            except Exception:
                states[sb.id] = "gone"
        assert [states[sb.id] for sb in started] == ["gone", "present", "present"]
        docker_client.containers.get(foreign.id)  # never corral's: untouched
    finally:
        kill(live)
        for sb in started:
            sb.close()
        foreign.remove(force=True)


def test_gc_holds_a_dead_runs_lease_while_it_removes(corral_home: Path, tmp_path: Path) -> None:
    """A run that starts while gc removes its leftovers cannot take its lease until gc is done."""
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    Workspace.create(repo, "HEAD", "racing", corral_home)
    seen: list[str] = []

    def keep(run_id: str) -> bool:  # called between gc's claim and the removal
        assert is_live(corral_home, run_id)
        with pytest.raises(LeaseHeld):
            RunLease(corral_home, run_id).acquire()
        seen.append(run_id)
        return False

    report = collect(corral_home, None, keep=keep)
    assert seen == ["racing"] and report.workspaces == ["racing"]
    with RunLease(corral_home, "racing"):  # released afterwards
        pass


def test_gc_removes_ram_gate_trees_of_deleted_homes_only(corral_home: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    gone_home = tmp_path / "deleted-home"
    trees = {}
    for home in (gone_home, corral_home):
        ws = Workspace.create(repo, "HEAD", "r1", home)
        trees[home] = ws.gate_tree().checkout(ws.base, ws.tree_listing(ws.base))
        assert trees[home] == ram_path(home, "r1")
    shutil.rmtree(gone_home)  # `rm -rf` of a whole $CORRAL_HOME: its RAM trees are orphans
    with RunLease(corral_home, "r1"):  # a live run of this home keeps its tree
        preview = collect(corral_home, None, dry_run=True)
        assert preview.ram_trees == [trees[gone_home].name] and trees[gone_home].is_dir()
        report = collect(corral_home, None)
    assert report.ram_trees == [trees[gone_home].name] and report.removed_anything
    assert not trees[gone_home].exists() and trees[corral_home].is_dir()
    assert collect(corral_home, None, keep=lambda run_id: True).ram_trees == []


def test_scratch_a_killed_set_up_or_gate_left_goes_with_its_run(corral_home: Path) -> None:
    """Set-up's checkout and a gate's report directory (``.<run>.<kind>``) belong to their run:
    gc keeps a live run's, even one whose name looks like another run id, and removes a dead
    run's, files inside owned by anyone."""
    dead = hold_lease_in_child(corral_home, "r.1")
    live = hold_lease_in_child(corral_home, "r")
    try:
        left = [scratch_path(corral_home, "r.1", k) for k in ("setup", "out-attempt-1")]
        kept = scratch_path(corral_home, "r", "setup")
        for path in (*left, kept):
            (path / "src/pkg.egg-info").mkdir(parents=True)
            (path / "src/pkg.egg-info/PKG-INFO").write_text("x\n")
        os.chmod(left[0] / "src", 0o500)  # as a sandbox user's tree can be
        assert list_workspaces(corral_home) == ["r", "r.1"]
        kill(dead)
        report = collect(corral_home, None)
        assert report.workspaces == ["r.1"] and report.kept_live == ["r"]
        assert not any(p.exists() for p in left) and kept.is_dir()
    finally:
        kill(live)
