"""Attacks on host git without a container: the tree and the environment are hostile.

Each test plants what an agent (or a poisoned environment) could, runs what
corral runs on the host, and checks a canary file: if it exists, code ran on
the host ("exit 0 means breached").
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from sandbox.git import HostGit, find_git_dirs
from sandbox.harvest import harvest
from sandbox.workspace import Workspace
from tests.support import drivers
from tests.support.demo import FIXED, demo_files
from tests.support.gitfixtures import commit, git, make_repo

FILES = demo_files({"README.md": "calc\n"})


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "CANARY"


def _full_cycle(ws: Workspace) -> None:
    """Everything corral does on the host with an agent-touched tree (gate export included)."""
    h = harvest(ws, label="after")
    ws.changes()
    ws.diff()
    ws.diff(h.commit)
    with tempfile.TemporaryDirectory() as tmp:
        ws.export(h.commit, Path(tmp) / "gate")
    ws.rollback(h.commit)
    ws.rollback(ws.base)
    ws.remove()


def test_users_own_fsmonitor_hooks_and_replace_refs_are_not_used(
    tmp_path: Path, corral_home: Path, canary: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "side")
    fake = git(commit(repo, {"src/calc.py": "REPLACED\n"}, "side"), "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "update-ref", f"refs/replace/{head}", fake)
    assert git(repo, "show", "HEAD:src/calc.py") == "REPLACED"  # git itself would use it
    payload = drivers.payload(tmp_path, canary)
    git(repo, "config", "core.fsmonitor", str(payload))
    git(repo, "config", "core.hooksPath", str(tmp_path / "hooks"))
    (tmp_path / "hooks").mkdir()
    for hook in ("reference-transaction", "post-checkout", "post-index-change"):
        (tmp_path / "hooks" / hook).symlink_to(payload)
    ws = Workspace.create(repo, "HEAD", "hooks", corral_home)
    assert ws.base == head
    assert (ws.path / "src/calc.py").read_text() == FILES["src/calc.py"]
    (ws.path / "src/calc.py").write_text("x\n")
    _full_cycle(ws)
    assert not canary.exists()


def test_planted_git_dir_config_in_the_tree_is_data(
    tmp_path: Path, corral_home: Path, canary: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "planted", corral_home)
    payload = drivers.payload(tmp_path, canary)
    evil = ws.path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    with (evil / "config").open("a") as f:
        f.write(
            f"[core]\n\tfsmonitor = {payload}\n\tworktree = /\n"
            f'[filter "x"]\n\tclean = {payload}\n\tsmudge = {payload}\n\tprocess = {payload}\n'
            f'[diff "x"]\n\ttextconv = {payload}\n\tcommand = {payload}\n'
        )
    (ws.path / ".gitattributes").write_text("* filter=x diff=x merge=x\n")
    (ws.path / "src/calc.py").write_text(FIXED)
    h = harvest(ws)
    assert any(f.kind == "nested_git" and f.path == "evil.git" for f in h.findings)
    assert {c.path for c in h.changes} == {".gitattributes", "src/calc.py"}
    _full_cycle(ws)
    assert not canary.exists()


def test_drivers_named_by_planted_attributes_never_run_on_the_host(
    tmp_path: Path, corral_home: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filter, textconv, external-diff and merge drivers defined in every config host git could
    read (global, the user's repository, the run's own git dir), named by ``.gitattributes`` at
    base and by the agent: checkout, scan, diff, export and rollback run none of them."""
    repo = make_repo(tmp_path / "repo", {**FILES, ".gitattributes": drivers.ATTRIBUTES})
    script = drivers.payload(tmp_path, canary)
    glob = drivers.plant(monkeypatch, tmp_path / "home", script)
    drivers.define_in(repo / ".git", script)
    ws = Workspace.create(repo, "HEAD", "drivers", corral_home)  # checks out a base naming them
    drivers.define_in(ws.git_dir, script)
    (ws.path / ".gitattributes").write_text(drivers.ATTRIBUTES + "*.py diff=evil filter=evil\n")
    (ws.path / "src/calc.py").write_text(FIXED)
    (ws.path / "new.py").write_text("y = 2\n")
    _full_cycle(ws)
    assert not canary.exists()
    drivers.assert_live(tmp_path, drivers.ATTRIBUTES, glob, canary)


def test_poisoned_caller_environment_is_not_inherited(
    tmp_path: Path, corral_home: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    payload = drivers.payload(tmp_path, canary)
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='{payload}'")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "diff.external")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(payload))
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", str(payload))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("GIT_PAGER", str(payload))
    ws = Workspace.create(repo, "HEAD", "env", corral_home)
    (ws.path / "src/calc.py").write_text("y\n")
    _full_cycle(ws)
    assert not canary.exists()


def test_redirected_pointer_file_is_flagged_and_not_followed(
    tmp_path: Path, corral_home: Path, canary: Path
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "pointer", corral_home)
    evil = tmp_path / "evil-gitdir"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    with (evil / "config").open("a") as f:
        f.write(f"[core]\n\tfsmonitor = {drivers.payload(tmp_path, canary)}\n\tworktree = /\n")
    os.chmod(ws.path / ".git", 0o644)
    (ws.path / ".git").write_text(f"gitdir: {evil}\n")
    h = harvest(ws)
    assert [f.kind for f in h.findings] == ["git_pointer_changed"]
    assert h.blocked
    _full_cycle(ws)
    assert not canary.exists()
    assert not list(evil.glob("refs/corral/**/*"))


def test_option_like_names_never_reach_git_as_options(tmp_path: Path, corral_home: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "names", corral_home)
    (ws.path / "--output=escaped").write_text("x\n")
    (ws.path / "-rf").write_text("y\n")
    (ws.path / "bidi\u202ename.py").write_text("z\n")
    (ws.path / "ok.py").write_text("fine\n")
    h = harvest(ws)
    bad = {f.path for f in h.findings if f.kind == "bad_name"}
    assert bad == {"--output=escaped", "-rf", "bidi\u202ename.py"}
    assert {c.path for c in h.changes} == {"ok.py"}
    _full_cycle(ws)
    assert not list(tmp_path.rglob("escaped"))


def test_find_git_dirs_does_not_discover_upwards(tmp_path: Path) -> None:
    make_repo(tmp_path / "outer", FILES)
    inner = tmp_path / "outer" / "src"
    from sandbox.errors import GitError

    with pytest.raises(GitError, match="not a git repository"):
        find_git_dirs(inner)


def test_host_git_runs_from_root_with_a_fixed_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    g = HostGit(repo / ".git", repo)
    env = g.env()
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_NO_REPLACE_OBJECTS"] == "1"
    assert "GIT_CONFIG_PARAMETERS" not in env and env["GIT_CEILING_DIRECTORIES"] == "/"
    argv = " ".join(g.argv(["status"]))
    for pair in (
        "core.fsmonitor=false",
        "core.hooksPath=/dev/null",
        "safe.bareRepository=explicit",
    ):
        assert pair in argv
    assert "safe.directory=*" not in argv and f"safe.directory={repo}" in argv
    assert g.text("rev-parse", "--show-toplevel") == str(repo)
