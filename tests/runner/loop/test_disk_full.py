"""A disk that fills up mid-run: the run ends ``failed`` (``runtime``) with a reason that says so,
nothing is left running or in RAM, the event log verifies, and once there is room ``corral
resume`` finishes it. The home is a small tmpfs; the agent fills it with incompressible files the
runner must then store as the attempt's checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from sandbox.gatetree import gate_tree_path
from tests.support.cli import corral
from tests.support.demo import build_demo, fix_script, run_args

pytestmark = pytest.mark.docker

#: 12 files of 15 MB of random bytes (each under the scan's 16 MB limit: they enter checkpoints).
FILL = "for i in $(seq 1 12); do head -c 15M /dev/urandom > blob$i.bin || exit 1; done"


def test_a_disk_that_fills_mid_run_fails_it_resumably_and_leaks_nothing(
    tmp_path: Path, sandbox_image: str, docker_client: Any
) -> None:
    project = build_demo(tmp_path / "project")
    script = project / "script.toml"
    script.write_text(fix_script(first=FILL))
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(home)], check=True)
    try:
        args = run_args(project, "--agent", f"scripted:{script}", "--json", "--run-id", "full")
        proc = corral(*args, "--set", "budgets.attempts=1", home=home)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        result = json.loads(proc.stdout)
        assert (result["status"], result["failure_domain"]) == ("failed", "runtime"), result
        assert result["reason"].startswith("the disk is full: free space in"), result["reason"]
        mine = ["corral.run=full", f"corral.home={home}"]
        assert docker_client.containers.list(all=True, filters={"label": mine}) == []
        assert gate_tree_path(home, "full") is None  # no gate tree left in RAM
        assert corral("verify", "full", home=home).returncode == 0  # no torn event
        status = corral("status", "full", home=home).stdout
        assert status.startswith("full  failed") and "disk is full" in status
        # room again: resume finishes the run on its recorded state
        subprocess.run(["mount", "-o", "remount,size=1200m", str(home)], check=True)
        resumed = corral("resume", "full", "--json", home=home)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads(resumed.stdout)["status"] == "ready_for_review"
        assert corral("verify", "full", home=home).returncode == 0
        types = [e.type for e in RunStore(home).events("full")]
        assert "runtime_error" in types and types[-1] == "run_end"
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)
