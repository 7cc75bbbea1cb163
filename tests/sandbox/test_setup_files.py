"""What set-up leaves in its tree: read off it, carried into every attempt and gate tree, never
into a candidate or a patch (``sandbox.images.setup_files``, ``Workspace(environment=...)``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandbox.errors import ImageError
from sandbox.git import HostGit, find_git_dirs
from sandbox.gitdir import SETUP_OBJECTS, listing, setup_checkout
from sandbox.harvest import harvest
from sandbox.images import setup_files
from sandbox.images.setup_files import capture, pack, unpack
from sandbox.scan import MODE_EXEC, MODE_FILE, MODE_LINK
from sandbox.workspace import Workspace
from tests.support.demo import demo_files
from tests.support.gitfixtures import build_tree, commit, git, make_repo

#: What ``pip install -e .`` of a setuptools-scm project leaves: ignored, and one not ignored.
LEFT = {
    "src/pkg.egg-info/entry_points.txt": (MODE_FILE, b"[pytest11]\nmine = pkg.plugin\n"),
    "src/pkg.egg-info/PKG-INFO": (MODE_FILE, b"Name: pkg\nVersion: 1.2.3\n"),
    "src/_version.py": (MODE_FILE, b"version = '1.2.3'\n"),
    "build/tool": (MODE_EXEC, b"#!/bin/sh\n"),
    "build/latest": (MODE_LINK, b"tool"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = demo_files({".gitignore": "*.egg-info/\nbuild/\n__pycache__/\n"})
    return make_repo(tmp_path / "repo", files)


@pytest.fixture
def ws(repo: Path, corral_home: Path) -> Workspace:
    return Workspace.create(repo, "HEAD", "run-1", corral_home, environment=LEFT)


def _tree_has(root: Path, files: dict[str, tuple[str, bytes]]) -> None:
    for rel, (mode, data) in files.items():
        if mode == MODE_LINK:
            assert os.readlink(root / rel).encode() == data
        else:
            assert (root / rel).read_bytes() == data
            assert bool(os.stat(root / rel).st_mode & 0o100) == (mode == MODE_EXEC)


def test_the_tree_starts_with_what_set_up_left_and_it_is_no_change(ws: Workspace) -> None:
    _tree_has(ws.path, LEFT)
    assert ws.start != ws.base and set(ws.environment()) == set(LEFT)
    assert ws.changes() == []  # the agent's view: nothing changed yet
    got = harvest(ws)
    assert got.changes == () and got.patch_bytes == b""
    assert not [f for f in got.findings if f.path.startswith(("src/pkg.egg", "build"))]


def test_a_candidate_and_its_patch_never_hold_set_up_files(ws: Workspace, repo: Path) -> None:
    (ws.path / "src/calc.py").write_text("def add(a, b):\n    return a + b\n")
    (ws.path / "src/_version.py").write_text("version = 'hacked'\n")  # not ignored, in scope
    (ws.path / "src/pkg.egg-info/entry_points.txt").unlink()
    got = harvest(ws)
    assert [c.path for c in got.changes] == ["src/calc.py"]
    assert b"_version" not in got.patch_bytes and b"egg-info" not in got.patch_bytes
    changed = {f.path for f in got.findings if f.kind == "setup_file_changed"}
    assert changed == {"src/_version.py", "src/pkg.egg-info/entry_points.txt"}
    # the patch applies to the user's own checkout of base, where set-up never ran
    subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=got.patch_bytes, check=True)


def test_gates_see_set_up_files_as_set_up_left_them(ws: Workspace) -> None:
    (ws.path / "src/_version.py").write_text("version = 'hacked'\n")
    cand = harvest(ws).commit
    for rev in (ws.base, cand):
        gate = ws.tree_listing(ws.compose(rev, lambda p: False, "gate input"))
        for rel, (mode, data) in LEFT.items():
            blob = HostGit(ws.git_dir).run("cat-file", "blob", gate[rel][1])
            assert gate[rel][0] == mode and blob == data


def test_rollback_to_base_or_a_candidate_keeps_the_environment(ws: Workspace) -> None:
    (ws.path / "src/calc.py").write_text("x = 1\n")
    (ws.path / "src/pkg.egg-info/PKG-INFO").unlink()
    cand = harvest(ws).commit
    for rev in (ws.base, cand, ws.start):
        ws.rollback(rev)
        _tree_has(ws.path, LEFT)
    assert harvest(ws).changes == ()


def test_a_clash_with_a_set_up_directory_is_left_out(ws: Workspace) -> None:
    """A file where set-up made a directory, or below one of its files: env wins, a finding."""
    import shutil

    shutil.rmtree(ws.path / "build")
    (ws.path / "build").write_text("not a dir\n")
    got = harvest(ws)
    assert "build" not in {c.path for c in got.changes}
    assert "build" in {f.path for f in got.findings if f.kind == "setup_file_changed"}
    ws.rollback(got.commit)
    _tree_has(ws.path, LEFT)


def test_a_resumed_run_opens_the_same_start(ws: Workspace, corral_home: Path) -> None:
    again = Workspace.open(corral_home, "run-1")
    assert again.start == ws.start and again.environment() == ws.environment()


def test_set_up_files_that_are_paths_of_base_are_refused(repo: Path, corral_home: Path) -> None:
    from sandbox.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="paths of base"):
        Workspace.create(
            repo, "HEAD", "run-2", corral_home, environment={"src/calc.py": (MODE_FILE, b"x")}
        )


def test_capture_reads_new_paths_only_and_packs_round_trip(repo: Path, tmp_path: Path) -> None:
    _, common = find_git_dirs(repo)
    base = listing(HostGit(common), git(repo, "rev-parse", "HEAD"))[0]
    tree = tmp_path / "setup"
    tree.mkdir()
    HostGit(common, tree).run("read-tree", "--reset", "-u", "HEAD", index_file=tmp_path / "i")
    build_tree(tree, {"src/pkg.egg-info/PKG-INFO": "Name: pkg\n", "src/__pycache__/x.pyc": "c"})
    (tree / "src/calc.py").write_text("changed by set-up\n")
    (tree / "out").symlink_to("/etc/passwd")  # leaves the tree: never carried
    got = capture(tree, base)
    assert set(got.files) == {"src/pkg.egg-info/PKG-INFO"}
    notes = "\n".join(got.notes)
    assert "src/calc.py" in notes and "out" in notes
    assert unpack(pack(LEFT)) == LEFT


def test_capture_refuses_more_than_it_carries(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(setup_files, "MAX_FILES", 3)
    tree = tmp_path / "setup"
    build_tree(tree, {f"build/f{i}": "x" for i in range(5)})
    with pytest.raises(ImageError, match=r"build \(0 MB\).*Remove build outputs"):
        capture(tree, {})


def test_setup_checkout_has_head_tags_and_index_at_base(repo: Path, tmp_path: Path) -> None:
    commit(repo, {"README.md": "v1\n"}, "release")
    git(repo, "tag", "-a", "v1.2.3", "-m", "release 1.2.3")
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, {"README.md": "later\n"}, "after")
    git(repo, "tag", "later")
    _, common = find_git_dirs(repo)
    tree = tmp_path / "setup"
    tree.mkdir()
    setup_checkout(common, base, tree)
    assert (tree / "README.md").read_text() == "v1\n"
    assert (tree / ".git/objects/info/alternates").read_text() == f"{SETUP_OBJECTS}\n"
    # git in set-up's container sees HEAD at base and the tags (objects as mounted there)
    (tree / ".git/objects/info/alternates").write_text(f"{common / 'objects'}\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    describe = subprocess.run(
        ["git", "describe", "--tags", "--long", "--dirty"],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert describe.startswith("v1.2.3-0-g")
    assert not [h for h in (tree / ".git/hooks").glob("*")]


def test_set_up_files_in_artifact_directories_are_still_the_environment(ws: Workspace) -> None:
    """``*.egg-info/`` and ``build/`` are build artifacts to a policy, but set-up's own are the
    environment: scanned (so no spurious finding), while a new file there stays an artifact."""

    def artifacts(path: str) -> str | None:
        return "policy: build artifact" if path.startswith(("build", "src/pkg.egg-info")) else None

    ws = ws.with_exclude(artifacts)
    (ws.path / "src/pkg.egg-info/new.txt").write_text("made by the agent\n")
    got = harvest(ws)
    assert got.changes == ()
    assert [(f.kind, f.path) for f in got.findings] == [
        ("ignored_file", "src/pkg.egg-info/new.txt")
    ]
