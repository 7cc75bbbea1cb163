"""Adversarial tests through the real path: workspace -> hardened container -> harvest.

Each test plays an agent that attacks from inside the sandbox, then runs what
corral does at the end of an attempt (kill and remove the container, harvest,
checkpoint, diff, rollback, remove) and checks the *host* afterwards. A marker
file on the host is the canary: if it exists, the attack ran code on the host
("exit 0 means breached").
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from sandbox.docker_backend import DockerBackend, DockerSandbox
from sandbox.harvest import Harvest, harvest
from sandbox.paths import worktrees_dir
from sandbox.spec import Mount, SandboxSpec
from sandbox.treefs import mount_scratch_fs
from sandbox.workspace import Workspace
from tests.support import drivers
from tests.support.demo import demo_files
from tests.support.gitfixtures import make_repo

pytestmark = pytest.mark.docker

FILES = demo_files({".gitignore": "*.pyc\n__pycache__/\n"})


@dataclass
class Attempt:
    ws: Workspace
    sb: DockerSandbox
    canary: Path
    secret: Path
    runtime: str

    def run(self, script: str, timeout: float = 30) -> Any:
        return self.sb.exec(script, timeout=timeout)

    def finish(self) -> Harvest:
        """What corral does at the end of an attempt: container gone first, then harvest."""
        self.sb.close()
        return _bounded(lambda: harvest(self.ws), seconds=60)


def _bounded(fn: Any, seconds: float) -> Any:
    """Run fn in a thread; fail (not hang) if it does not return in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"host operation hung for {seconds}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(params=["runc", "runsc"])
def attempt(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    corral_home: Path,
    docker_client: Any,
    sandbox_image: str,
) -> Iterator[Attempt]:
    repo = make_repo(tmp_path / "repo", FILES)
    canary = tmp_path / "CANARY-host-code-ran"
    secret = tmp_path / "host-secret.txt"
    secret.write_text("TOP-SECRET-HOST-VALUE\n")
    # Worktrees on a nosuid,nodev filesystem, as `corral doctor --fix` sets up for real homes.
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=2048), ExitStack() as stack:
        ws = Workspace.create(repo, "HEAD", "attack", corral_home)
        stack.callback(_bounded, ws.remove, seconds=60)
        spec = SandboxSpec(
            image=sandbox_image,
            workspace=str(ws.path),
            mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),),
            run_id="attack",
            owner_home=str(corral_home),
            runtime=request.param,
        )
        sb = DockerBackend(docker_client).start(spec)
        stack.callback(sb.close)
        yield Attempt(ws, sb, canary, secret, request.param)
    assert not canary.exists(), "an attack ran code on the host"


def _kinds(h: Harvest) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in h.findings:
        out.setdefault(f.path, set()).add(f.kind)
    return out


def _patch_paths(h: Harvest) -> set[str]:
    return {c.path for c in h.changes}


def test_git_pointer_is_read_only_inside(attempt: Attempt) -> None:
    before = (attempt.ws.path / ".git").read_bytes()
    r = attempt.run("printf 'gitdir: /tmp/evil\\n' > .git; echo rc=$?; mv .git x 2>&1; rm -f .git")
    assert (attempt.ws.path / ".git").read_bytes() == before
    h = attempt.finish()
    assert not any(f.kind == "git_pointer_changed" for f in h.findings), r.stdout


def test_planted_git_config_fsmonitor_hooks_and_filters_never_run(
    attempt: Attempt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drivers are defined where host git reads config (global, the run's git dir); the agent
    names them from the tree and plants nested repositories with hooks and fsmonitor of their own."""
    script = drivers.payload(tmp_path, attempt.canary)
    glob = drivers.plant(monkeypatch, tmp_path / "home", script)
    drivers.define_in(attempt.ws.git_dir, script)
    in_tree = f"#!/bin/sh\ntouch {attempt.canary}\ncat\n"  # the same payload, planted by the agent
    r = attempt.run(f"""
set -e
mkdir -p evil
git init -q --bare evil/repo.git
printf '%s' '{in_tree}' > evil/hook.sh && chmod +x evil/hook.sh
for h in pre-commit post-checkout post-index-change reference-transaction; do
  cp evil/hook.sh evil/repo.git/hooks/$h
done
printf '[core]\\n\\tfsmonitor = %s\\n\\tworktree = /\\n\\thooksPath = %s\\n' \\
  "$PWD/evil/hook.sh" "$PWD/evil/repo.git/hooks" >> evil/repo.git/config
printf '{drivers.ATTRIBUTES}' > .gitattributes
mkdir -p sub && (cd sub && git init -q . && cp ../evil/repo.git/config .git/config)
printf 'def add(a, b):\\n    return a + b\\n' > src/calc.py
""")
    assert r.exit_code == 0, r.stderr
    h = attempt.finish()
    attempt.ws.checkpoint("after-attack")
    diff = attempt.ws.diff()
    attempt.ws.export(h.commit, tmp_path / "gate-input")  # what the gates get: a checkout of it
    attempt.ws.rollback(h.commit)
    attempt.ws.rollback(attempt.ws.base)
    kinds = _kinds(h)
    assert "nested_git" in kinds.get("sub", set()) | kinds.get("sub/.git", set())
    assert any("nested_git" in k for p, k in kinds.items() if p.startswith("evil"))
    assert {"src/calc.py", ".gitattributes"} <= _patch_paths(h) and "a + b" in diff
    assert not any(p.startswith(("sub/", "evil/repo.git/")) for p in _patch_paths(h))
    assert not attempt.canary.exists()
    drivers.assert_live(tmp_path, (tmp_path / "gate-input" / ".gitattributes").read_text(), glob,
                        attempt.canary)  # fmt: skip


def test_option_like_file_name_writes_nothing_outside(attempt: Attempt, tmp_path: Path) -> None:
    r = attempt.run(
        "mkdir -- '--output=..' && echo x > './--output=../escaped' && echo y > ./-rf"
        " && echo z > $'new\\nline' && echo rc=$?"
    )
    assert "rc=0" in r.stdout, r.stderr
    h = attempt.finish()
    attempt.ws.diff()
    attempt.ws.rollback(attempt.ws.base)
    assert not (attempt.ws.path.parent / "escaped").exists()
    assert not list(tmp_path.rglob("escaped"))
    kinds = _kinds(h)
    assert "bad_name" in kinds["--output=.."]
    assert "bad_name" in kinds["-rf"]
    assert "bad_name" in kinds["new\nline"]
    assert not any(p.startswith(("--output", "-rf", "new")) for p in _patch_paths(h))


def test_git_inside_the_sandbox_sees_no_repository(attempt: Attempt) -> None:
    r = attempt.run("git status 2>&1; echo rc=$?; test -e \"$(sed 's/^gitdir: //' .git)\"; echo $?")
    assert "rc=0" not in r.stdout
    assert r.stdout.splitlines()[-1] == "1", r.stdout  # the private git dir is not in the sandbox
    assert attempt.run("test -e /var/run/docker.sock; echo $?").stdout.strip() == "1"


def test_symlinks_to_host_files_are_flagged_and_never_followed(attempt: Attempt) -> None:
    secret = attempt.secret
    attempt.run(
        f"ln -s {secret} leak; ln -s /etc/shadow shadow; ln -s ../../../../ up; "
        "ln -s src/calc.py inside"
    )
    h = attempt.finish()
    kinds = _kinds(h)
    assert "symlink_escape" in kinds["leak"] and "symlink_escape" in kinds["shadow"]
    assert "symlink_escape" in kinds["up"]
    assert "symlink" in kinds["inside"] | kinds.get("inside", set())
    assert not _patch_paths(h) & {"leak", "shadow", "up"}
    assert "TOP-SECRET" not in h.patch
    attempt.ws.rollback(attempt.ws.base)
    assert secret.read_text() == "TOP-SECRET-HOST-VALUE\n"  # rollback did not follow the link
    assert Path("/etc/shadow").exists()


def test_fifo_socket_setuid_and_hardlink_are_flagged(attempt: Attempt) -> None:
    r = attempt.run(
        "mkfifo pipe && cp /bin/true suid && chmod 4755 suid && cp /bin/true sgid && chmod 2755 sgid"
        " && ln src/calc.py hard"
        " && python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')\""
    )
    assert r.exit_code == 0, r.stderr
    h = _bounded(attempt.finish, seconds=60)
    kinds = _kinds(h)
    specials = {"pipe": "fifo", "sock": "socket", "suid": "setuid", "sgid": "setgid"}
    for name, kind in specials.items():
        on_host = os.path.lexists(attempt.ws.path / name)
        # gVisor keeps FIFOs and sockets inside its own kernel: then there is nothing to flag.
        if on_host or attempt.runtime == "runc":
            assert kind in kinds.get(name, set()), (name, kinds)
    assert "hardlink" in kinds["hard"] or "hardlink" in kinds["src/calc.py"]
    assert not _patch_paths(h) & {"pipe", "sock", "suid", "sgid", "hard"}
    _bounded(lambda: attempt.ws.rollback(attempt.ws.base), seconds=60)
    assert not (attempt.ws.path / "pipe").exists()


def test_setuid_file_is_inert_on_the_host(attempt: Attempt) -> None:
    attempt.run("cp /bin/true suid && chmod 4755 suid")
    suid = attempt.ws.path / "suid"
    attempt.finish()
    mode = os.lstat(suid).st_mode
    assert mode & stat.S_ISUID  # the bit exists ...
    flags = os.statvfs(attempt.ws.path).f_flag
    if not flags & os.ST_NOSUID:
        pytest.fail("worktree filesystem lacks nosuid: run `corral doctor --fix`")


def test_device_nodes_cannot_be_created(attempt: Attempt) -> None:
    r = attempt.run("mknod dev c 1 3; echo rc=$?; mknod blk b 7 0; echo rc=$?")
    assert "rc=0" not in r.stdout
    h = attempt.finish()
    assert not (attempt.ws.path / "dev").exists()
    assert not _patch_paths(h) & {"dev", "blk"}


def test_huge_sparse_file_is_bounded_and_flagged(attempt: Attempt) -> None:
    r = attempt.run("truncate -s 8G huge; echo rc=$?; truncate -s 900M big; echo rc=$?")
    assert r.stdout.splitlines()[0] != "rc=0", "fsize ulimit did not stop an 8 GiB file"
    assert os.lstat(attempt.ws.path / "big").st_size == 900 * 2**20  # sparse: costs no disk
    me = psutil.Process()
    before = me.io_counters().read_chars
    h = attempt.finish()  # bounded by _bounded: a hang fails, not a slow machine
    read = me.io_counters().read_chars - before
    assert "oversize" in _kinds(h)["big"]
    assert "big" not in _patch_paths(h)
    # the 900 MiB file was flagged from its lstat size, never read (this process's read bytes)
    assert read < 64 * 2**20, f"the harvest read {read} bytes"


def test_process_left_running_cannot_change_files_after_the_attempt(attempt: Attempt) -> None:
    attempt.run(
        "nohup setsid bash -c 'sleep 2; echo tampered > src/calc.py' >/dev/null 2>&1 &"
        " disown; echo started"
    )
    h = attempt.finish()  # kills and removes the container before scanning
    snapshot = (attempt.ws.path / "src/calc.py").read_text()
    time.sleep(3)
    assert (attempt.ws.path / "src/calc.py").read_text() == snapshot
    assert "tampered" not in snapshot
    assert "src/calc.py" not in _patch_paths(h)


def test_stale_ignored_artifacts_are_reported(attempt: Attempt) -> None:
    attempt.run("mkdir -p src/__pycache__ && echo junk > src/__pycache__/calc.cpython-311.pyc")
    h = attempt.finish()
    assert any(f.kind == "ignored_file" for f in h.findings)
    assert not any(p.endswith(".pyc") for p in _patch_paths(h))
    attempt.ws.rollback(attempt.ws.base)
    assert not (attempt.ws.path / "src/__pycache__").exists()
