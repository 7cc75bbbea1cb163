"""`corral doctor`: the table, --json, and a clear failure when no engine answers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runner.ops.doctor import diagnose, ready
from tests.support.cli import corral


@pytest.mark.docker
def test_doctor_is_ready_on_a_set_up_machine(corral_home: Path, sandbox_image: str) -> None:
    checks = diagnose(corral_home)
    names = {c.name for c in checks}
    assert {"docker engine", "storage driver", "gVisor (runsc)", "host git", "free disk",
            "worktree filesystem", "image corral/sandbox:latest"} <= names  # fmt: skip
    assert ready(checks), [c for c in checks if not c.ok]
    proc = corral("doctor", "--json", home=corral_home)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"name", "ok", "detail", "fix", "severity"} <= set(data[0])
    table = corral("doctor", home=corral_home)
    assert table.returncode == 0 and "docker engine" in table.stdout


def test_doctor_without_an_engine_fails_and_names_the_fix(tmp_path: Path) -> None:
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    proc = corral("doctor", "--json", home=tmp_path, env=no_engine)
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["docker engine"]["ok"] is False
    assert checks["docker engine"]["fix"] == "corral doctor --fix"


def test_worktree_filesystem_without_nosuid_is_a_warning_not_an_error(tmp_path: Path) -> None:
    fs = next(c for c in diagnose(tmp_path) if c.name == "worktree filesystem")
    assert fs.severity == "warning" and (fs.ok or fs.fix == "corral doctor --fix")


@pytest.mark.docker
def test_doctor_fix_is_idempotent_on_a_set_up_machine(sandbox_image: str) -> None:
    """After the README's set-up command, `doctor --fix` finds nothing to do (default home)."""
    proc = corral("doctor", "--fix", "--json", env={"CORRAL_HOME": None})
    assert proc.returncode == 0, proc.stderr
    assert "fix:" not in proc.stderr
    assert all(c["ok"] for c in json.loads(proc.stdout) if c["severity"] == "error")


def test_fix_without_root_prints_every_command_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a non-root user `--fix` changes nothing and prints the whole plan, each line valid shell."""
    from runner.ops.doctor import fix, fix_plan
    from sandbox.engine import provision_commands

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    lines = fix(tmp_path)
    assert lines[0].startswith("not root") and lines[1:] == fix_plan(tmp_path)
    plan = "\n".join(lines[1:])
    for step in ("apt-get install -y docker.io runsc", "/etc/docker/daemon.json", "dockerd",
                 "mkfs.ext4", f"mount -o loop,nosuid,nodev,noatime {tmp_path}/worktrees.img "
                 f"{tmp_path}/worktrees", "corral image build", "corral doctor"):  # fmt: skip
        assert step in plan, step
    assert (
        plan.index("docker.io")
        < plan.index("dockerd")
        < plan.index("mount -o")
        < plan.index("image build")
    )
    for line in lines[1:]:
        subprocess.run(["bash", "-n", "-c", line], check=True)
    daemon = tmp_path / "etc" / "daemon.json"
    write = provision_commands(daemon_json=daemon)[1]
    subprocess.run(["bash", "-c", write], check=True)
    assert json.loads(daemon.read_text())["runtimes"]["runsc"]["runtimeArgs"] == [
        "--network=none",
        "--host-uds=open",
    ]
    assert not (tmp_path / "worktrees.img").exists()  # nothing was done
