"""Workspaces on the host: creation, checkpoints, diffs, rollback, removal, and the user's repo untouched."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sandbox import gatetree
from sandbox.errors import GitError, WorkspaceError
from sandbox.gatetree import GateTree, gate_tree_path, ram_path, remove_gate_tree
from sandbox.harvest import harvest
from sandbox.paths import worktrees_dir
from sandbox.spec import SANDBOX_UID
from sandbox.treefs import mount_scratch_fs
from sandbox.workspace import Change, Workspace, list_workspaces, remove_workspace
from tests.support.demo import FIXED, demo_files
from tests.support.gitfixtures import build_tree, checkout_state, commit, git, make_repo

# The demo project, with a nested package, an executable script and a binary file.
FILES = demo_files(
    {
        "src/util/strings.py": "def up(s):\n    return s.upper()\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
        ".gitignore": "*.pyc\n__pycache__/\nbuild/\n",
        "data.bin": bytes(range(256)) * 4,
    }
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", FILES)
    (repo / "bin/run.sh").chmod(0o755)
    return commit(repo, {}, "exec bit") if git(repo, "status", "--porcelain") else repo


@pytest.fixture
def ws(repo: Path, corral_home: Path) -> Workspace:
    return Workspace.create(repo, "HEAD", "run-1", corral_home)


def test_create_checks_out_base_in_corral_home_not_the_users_checkout(
    ws: Workspace, repo: Path, corral_home: Path
) -> None:
    assert ws.path.is_relative_to(corral_home) and not ws.path.is_relative_to(repo)
    assert (ws.path / "src/calc.py").read_text() == FILES["src/calc.py"]
    assert (ws.path / "data.bin").read_bytes() == FILES["data.bin"]
    assert os.stat(ws.path / "bin/run.sh").st_mode & stat.S_IXUSR
    assert ws.base == git(repo, "rev-parse", "HEAD")
    assert (ws.path / ".git").read_text() == f"gitdir: {ws.git_dir}\n"
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/corral") == (
        "refs/corral/runs/run-1/base"
    )
    assert Workspace.open(corral_home, "run-1") == ws


def test_tree_is_owned_by_the_sandbox_user_and_the_pointer_by_root(ws: Workspace) -> None:
    if os.geteuid() != 0:
        pytest.fail("ownership tests need root (the sandbox uid is not the caller's)")
    assert os.lstat(ws.path).st_uid == SANDBOX_UID
    assert os.lstat(ws.path / "src/calc.py").st_uid == SANDBOX_UID
    pointer = os.lstat(ws.path / ".git")
    assert pointer.st_uid == 0 and stat.S_IMODE(pointer.st_mode) == 0o444


def test_dirty_user_checkout_is_fine_and_untouched(repo: Path, corral_home: Path) -> None:
    build_tree(repo, {"src/calc.py": "# user's uncommitted edit\n", "scratch.txt": "wip\n"})
    git(repo, "add", "scratch.txt")
    before = checkout_state(repo)
    ws = Workspace.create(repo, "HEAD", "dirty", corral_home)
    (ws.path / "src/calc.py").write_text(FIXED)
    h = harvest(ws, label="a1")
    ws.rollback(ws.base)
    ws.remove()
    assert (ws.path / "src").exists() is False
    assert checkout_state(repo) == before
    assert "a + b" in h.patch and "user's uncommitted" not in h.patch
    assert git(repo, "for-each-ref", "refs/corral") == ""


def test_base_ref_can_be_any_commit(repo: Path, corral_home: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    commit(repo, {"src/calc.py": "changed later\n"}, "later")
    ws = Workspace.create(repo, first, "old-base", corral_home)
    assert (ws.path / "src/calc.py").read_text() == FILES["src/calc.py"]


def test_bad_repo_and_bad_ref_are_clear_errors_that_leave_nothing(
    repo: Path, tmp_path: Path, corral_home: Path
) -> None:
    with pytest.raises(GitError, match="names no commit"):
        Workspace.create(repo, "no-such-branch", "bad-ref", corral_home)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        Workspace.create(plain, "HEAD", "bad-repo", corral_home)
    assert list_workspaces(corral_home) == []
    assert git(repo, "for-each-ref", "refs/corral") == ""


def test_a_run_id_gets_one_workspace(ws: Workspace, repo: Path, corral_home: Path) -> None:
    with pytest.raises(WorkspaceError, match="already has a workspace"):
        Workspace.create(repo, "HEAD", ws.run_id, corral_home)
    with pytest.raises(ValueError, match="invalid run id"):
        Workspace.create(repo, "HEAD", "../escape", corral_home)


def test_changes_cover_add_modify_delete_mode_and_type(ws: Workspace) -> None:
    (ws.path / "src/calc.py").write_text(FIXED)
    (ws.path / "src/new.py").write_text("NEW = 1\n")
    (ws.path / "src/util/strings.py").unlink()
    (ws.path / "tests/test_calc.py").chmod(0o755)
    (ws.path / "bin/run.sh").unlink()
    os.symlink("../src/calc.py", ws.path / "bin/run.sh")
    got = {c.path: c for c in ws.changes()}
    assert got == {
        "src/calc.py": Change("src/calc.py", "modified", "100644", "100644"),
        "src/new.py": Change("src/new.py", "added", None, "100644"),
        "src/util/strings.py": Change("src/util/strings.py", "deleted", "100644", None),
        "tests/test_calc.py": Change("tests/test_calc.py", "mode_changed", "100644", "100755"),
        "bin/run.sh": Change("bin/run.sh", "type_changed", "100755", "120000"),
    }


def test_checkpoint_diff_applies_to_the_users_repo(ws: Workspace, repo: Path) -> None:
    (ws.path / "src/calc.py").write_text(FIXED)
    (ws.path / "data.bin").write_bytes(bytes(reversed(range(256))) * 3)
    (ws.path / "tool.sh").write_text("#!/bin/sh\n")
    (ws.path / "tool.sh").chmod(0o755)
    sha = ws.checkpoint("attempt-1")
    assert ws.changes(sha) == ws.changes()
    patch = ws.patch_bytes(sha)
    assert b"GIT binary patch" in patch
    subprocess.run(
        ["git", "apply", "--check", "-"], cwd=repo, input=patch, check=True, capture_output=True
    )
    private_refs = subprocess.run(
        ["git", f"--git-dir={ws.git_dir}", "for-each-ref", "--format=%(refname)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "refs/corral/checkpoints/attempt-1" in private_refs
    assert git(repo, "for-each-ref", "refs/corral/checkpoints") == ""


def test_real_index_and_head_are_untouched_by_checkpoints(ws: Workspace) -> None:
    index = (ws.git_dir / "index").read_bytes()
    head = (ws.git_dir / "HEAD").read_bytes()
    (ws.path / "src/calc.py").write_text("changed\n")
    ws.checkpoint("c1")
    ws.diff()
    assert (ws.git_dir / "index").read_bytes() == index
    assert (ws.git_dir / "HEAD").read_bytes() == head


def test_checkpoint_labels_are_validated(ws: Workspace) -> None:
    for label in ("", "../x", "a b", "-rf", "x" * 200):
        with pytest.raises(WorkspaceError, match="invalid checkpoint label"):
            ws.checkpoint(label)


def test_rollback_restores_exactly_whatever_was_left(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("host file\n")
    root = ws.path
    (root / "src/calc.py").write_text("broken\n")
    (root / "tests/test_calc.py").unlink()
    (root / "bin/run.sh").chmod(0o644)
    os.mkfifo(root / "pipe")
    (root / "build").mkdir()
    (root / "build/out.o").write_bytes(b"\0" * 10)
    (root / "nested").mkdir()
    subprocess.run(["git", "init", "-q", str(root / "nested")], check=True)
    build_tree(root, {"deep/a/b/c.txt": "x"})
    shutil.rmtree(root / "src/util")
    os.symlink(outside, root / "src/util")  # a directory replaced by a link to the host
    (root / "data.bin").unlink()
    (root / "data.bin").mkdir()  # a file replaced by a directory
    ws.rollback(ws.base)
    assert ws.changes() == []
    assert not (root / "pipe").exists() and not (root / "nested").exists()
    assert not (root / "build").exists() and not (root / "deep").exists()
    assert (root / "src/util").is_dir() and not (root / "src/util").is_symlink()
    assert (outside / "keep.txt").read_text() == "host file\n"
    assert os.stat(root / "bin/run.sh").st_mode & stat.S_IXUSR
    assert (root / "data.bin").read_bytes() == FILES["data.bin"]


def test_rollback_to_a_checkpoint(ws: Workspace) -> None:
    (ws.path / "src/calc.py").write_text("attempt one\n")
    (ws.path / "added.py").write_text("A = 1\n")
    one = ws.checkpoint("one")
    (ws.path / "src/calc.py").write_text("attempt two\n")
    (ws.path / "added.py").unlink()
    (ws.path / "other.py").write_text("B = 2\n")
    ws.rollback(one)
    assert (ws.path / "src/calc.py").read_text() == "attempt one\n"
    assert (ws.path / "added.py").exists() and not (ws.path / "other.py").exists()
    assert {c.path for c in ws.changes()} == {"src/calc.py", "added.py"}


def test_remove_is_idempotent_and_gc_can_remove_half_made_workspaces(
    ws: Workspace, corral_home: Path
) -> None:
    ws.remove()
    ws.remove()
    assert list_workspaces(corral_home) == []
    (corral_home / "worktrees" / "half").mkdir(parents=True)
    assert list_workspaces(corral_home) == ["half"]
    remove_workspace(corral_home, "half")
    assert list_workspaces(corral_home) == []


def test_restore_paths_reverts_single_paths_without_following_links(
    ws: Workspace, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "strings.py").write_text("host file\n")
    (ws.path / "tests/test_calc.py").write_text("def test_add():\n    assert True\n")
    (ws.path / "conftest.py").write_text("import os\n")
    shutil.rmtree(ws.path / "src/util")
    os.symlink(outside, ws.path / "src/util")
    ws.restore_paths(["tests/test_calc.py", "conftest.py", "src/util/strings.py"])
    assert (ws.path / "tests/test_calc.py").read_text() == FILES["tests/test_calc.py"]
    assert not (ws.path / "conftest.py").exists()
    assert (ws.path / "src/util/strings.py").read_text() == FILES["src/util/strings.py"]
    assert not (ws.path / "src/util").is_symlink()
    assert (outside / "strings.py").read_text() == "host file\n"
    assert ws.changes() == []


def test_exclude_keeps_policy_artifacts_and_progress_out_of_checkpoints(ws: Workspace) -> None:
    (ws.path / ".corral").mkdir()
    (ws.path / ".corral/progress.md").write_text("tried X\n")
    (ws.path / "coverage.dat").write_text("junk\n")
    (ws.path / "src/calc.py").write_text("fixed\n")

    def exclude(path: str) -> str | None:
        return {".corral/progress.md": "", "coverage.dat": "policy artifact"}.get(path)

    snap = ws.with_exclude(exclude).snapshot()
    assert set(snap.entries) - set(ws.tree_listing(ws.base)) == set()
    assert [(f.kind, f.path) for f in snap.findings] == [("ignored_file", "coverage.dat")]


def test_compose_takes_selected_paths_from_base_and_export_writes_a_plain_tree(
    ws: Workspace, tmp_path: Path
) -> None:
    (ws.path / "src/calc.py").write_text("fixed\n")
    (ws.path / "tests/test_calc.py").write_text("def test_add():\n    assert True\n")
    (ws.path / "conftest.py").write_text("import sys\n")
    candidate = ws.checkpoint("cand")
    gate = ws.compose(
        candidate, lambda p: p.startswith("tests/") or p == "conftest.py", "gate tree"
    )
    assert {c.path for c in ws.changes(gate)} == {"src/calc.py"}
    dest = tmp_path / "export"
    ws.export(gate, dest)
    assert (dest / "src/calc.py").read_text() == "fixed\n"
    assert (dest / "tests/test_calc.py").read_text() == FILES["tests/test_calc.py"]
    assert not (dest / "conftest.py").exists() and not (dest / ".git").exists()
    with pytest.raises(WorkspaceError, match="exists"):
        ws.export(gate, dest)


def test_compose_returns_the_revision_itself_when_no_selected_path_differs(ws: Workspace) -> None:
    def tests(p: str) -> bool:
        return p.startswith("tests/")

    assert ws.compose(ws.base, tests, "gate input") == ws.base
    (ws.path / "src/calc.py").write_text("fixed\n")
    candidate = ws.checkpoint("cand")
    assert ws.compose(candidate, tests, "gate input") == candidate
    (ws.path / "tests/test_new.py").write_text("def test_x():\n    pass\n")  # added: differs
    added = ws.checkpoint("added")
    gate = ws.compose(added, tests, "gate input")
    assert gate != added and {c.path for c in ws.changes(gate)} == {"src/calc.py"}


def _listing_on_disk(root: Path) -> dict[str, bytes]:
    """Every non-directory under ``root`` with its bytes (a link: its target), nothing followed."""
    return {
        str(p.relative_to(root)): os.fsencode(os.readlink(p)) if p.is_symlink() else p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or not p.is_dir()
    }


def _expected(ws: Workspace, rev: str) -> dict[str, bytes]:
    """What ``_listing_on_disk`` must find for ``rev``: each blob read from the private git dir."""
    cat = ["git", f"--git-dir={ws.git_dir}", "cat-file", "blob"]
    return {
        path: subprocess.run([*cat, sha], capture_output=True, check=True).stdout
        for path, (_, sha) in ws.tree_listing(rev).items()
    }


@pytest.fixture
def revs(ws: Workspace) -> tuple[str, str]:
    """A candidate (one file changed, one added, one deleted) beside base."""
    (ws.path / "src/calc.py").write_text(FIXED)
    (ws.path / "src/new.py").write_text("NEW = 1\n")
    (ws.path / "src/util/strings.py").unlink()
    return ws.base, ws.checkpoint("cand")


def test_the_gate_tree_is_updated_in_place_to_exactly_each_revision(
    ws: Workspace, revs: tuple[str, str], corral_home: Path
) -> None:
    base, cand = revs
    tree = ws.gate_tree()
    path = tree.checkout(base, ws.tree_listing(base))
    assert path == gate_tree_path(corral_home, ws.run_id) and not (path / ".git").exists()
    assert (path / "src/util/strings.py").is_file()
    kept = os.stat(path / "tests/test_calc.py").st_ino
    assert tree.checkout(cand, ws.tree_listing(cand)) == path
    assert (path / "src/calc.py").read_text().endswith("a + b\n")
    assert (path / "src/new.py").is_file() and not (path / "src/util/strings.py").exists()
    assert os.stat(path / "tests/test_calc.py").st_ino == kept  # untouched: not written again
    assert tree.checkout(base, ws.tree_listing(base)) == path  # and back
    assert (path / "src/util/strings.py").read_text() == FILES["src/util/strings.py"]
    assert not (path / "src/new.py").exists() and tree.unchanged()
    assert os.stat(path / "tests/test_calc.py").st_ino == kept


@pytest.mark.parametrize(
    "tamper",
    ["plant_file", "edit_same_size_and_mtime", "plant_dir", "swap_dir_for_link", "chmod"],
)
def test_anything_that_changed_the_gate_tree_makes_it_rebuilt(
    ws: Workspace, revs: tuple[str, str], tmp_path: Path, tamper: str
) -> None:
    base, cand = revs
    tree = ws.gate_tree()
    path = tree.checkout(base, ws.tree_listing(base))
    target = path / "src/calc.py"
    if tamper == "plant_file":
        (path / "src/conftest.py").write_text("import os; os._exit(0)\n")
    elif tamper == "edit_same_size_and_mtime":
        st = os.stat(target)
        data = target.read_bytes()
        target.write_bytes(data.replace(b"-", b"+"))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # ctime still moves
    elif tamper == "plant_dir":
        (path / "tests/__pycache__").mkdir()
    elif tamper == "swap_dir_for_link":
        outside = tmp_path / "outside"
        outside.mkdir()
        shutil.rmtree(path / "src/util")
        (path / "src/util").symlink_to(outside)
    else:
        target.chmod(0o777)
    assert not tree.unchanged()
    for rev in (base, cand):  # the same revision or the next one: built afresh, exact
        assert tree.checkout(rev, ws.tree_listing(rev)) == path
        assert _listing_on_disk(path) == _expected(ws, rev)
        assert os.stat(path / "src/calc.py").st_mode & 0o777 == 0o644
        assert tree.unchanged()
    if tamper == "swap_dir_for_link":
        assert list((tmp_path / "outside").iterdir()) == []  # nothing written through the link


def test_a_new_process_rebuilds_the_gate_tree_once(ws: Workspace, revs: tuple[str, str]) -> None:
    base, _ = revs
    path = ws.gate_tree().checkout(base, ws.tree_listing(base))
    (path / "stale.txt").write_text("left by an earlier process\n")
    fresh = GateTree.of(ws.git_dir.parent.parent, ws.run_id, ws.git_dir, ws.tree_bytes(base))
    assert not fresh.unchanged()
    fresh.checkout(base, ws.tree_listing(base))
    assert _listing_on_disk(path) == _expected(ws, base)


def test_gate_trees_are_listed_and_removed_with_the_workspace(
    ws: Workspace, revs: tuple[str, str], corral_home: Path
) -> None:
    base, _ = revs
    path = ws.gate_tree().checkout(base, ws.tree_listing(base))
    remove_gate_tree(corral_home, ws.run_id)
    assert not path.exists()
    remove_gate_tree(corral_home, ws.run_id)  # idempotent
    ws.gate_tree().checkout(base, ws.tree_listing(base))
    shutil.rmtree(ws.path)
    shutil.rmtree(ws.git_dir)  # a crash left only the gate tree
    assert list_workspaces(corral_home) == [ws.run_id]
    remove_workspace(corral_home, ws.run_id)
    assert not path.exists() and list_workspaces(corral_home) == []


def test_a_small_gate_tree_lives_in_ram_and_a_large_one_on_disk(
    ws: Workspace, revs: tuple[str, str], corral_home: Path
) -> None:
    base, _ = revs
    assert ws.tree_bytes(base) == sum(
        len(v if isinstance(v, bytes) else v.encode()) for v in FILES.values()
    )
    path = ws.gate_tree().checkout(base, ws.tree_listing(base))
    assert path == ram_path(corral_home, ws.run_id) == gate_tree_path(corral_home, ws.run_id)
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert list_workspaces(corral_home) == [ws.run_id]
    # a new process judges a tree too large for RAM: the RAM copy goes, one tree is left
    big = GateTree.of(corral_home, ws.run_id, ws.git_dir, gatetree.RAM_MAX_BYTES + 1)
    assert not path.exists() and big.path == worktrees_dir(corral_home) / f".{ws.run_id}.gate"
    assert big.checkout(base, ws.tree_listing(base)) == big.path
    assert gate_tree_path(corral_home, ws.run_id) == big.path
    assert _listing_on_disk(big.path) == _expected(ws, base)
    remove_gate_tree(corral_home, ws.run_id)
    assert gate_tree_path(corral_home, ws.run_id) is None


@pytest.mark.parametrize("parent", ["shared_mode", "symlink", "other_owner", "noexec"])
def test_gate_trees_stay_on_disk_unless_the_ram_directory_is_private_and_usable(
    ws: Workspace, revs: tuple[str, str], corral_home: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, parent: str,
) -> None:  # fmt: skip
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(gatetree, "RAM_ROOT", shm)
    top = shm / f"corral-{os.geteuid()}"
    if parent == "shared_mode":
        top.mkdir(mode=0o755)
        top.chmod(0o777)  # anyone could plant a tree the gates then trust
    elif parent == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        top.symlink_to(tmp_path / "elsewhere")
    elif parent == "other_owner":
        top.mkdir(mode=0o700)
        os.chown(top, 12345, 12345)
    base, _ = revs
    with contextlib.ExitStack() as stack:
        if parent == "noexec":  # tests may run scripts of the tree: a noexec tmpfs will not do
            stack.enter_context(mount_scratch_fs(shm, 16, noexec=True))
        path = ws.gate_tree().checkout(base, ws.tree_listing(base))
        assert path == worktrees_dir(corral_home) / f".{ws.run_id}.gate"
        assert not any(p.name.endswith(".gate") for p in shm.rglob("*"))


def test_a_gate_tree_that_cannot_become_the_revision_is_an_error(
    ws: Workspace, revs: tuple[str, str]
) -> None:
    base, cand = revs
    with pytest.raises(WorkspaceError, match="did not become"):
        ws.gate_tree().checkout(base, ws.tree_listing(cand))  # git writes base, not that listing


def test_gc_removes_a_dead_runs_gate_tree_and_keeps_a_live_ones(
    ws: Workspace, revs: tuple[str, str], corral_home: Path
) -> None:
    from sandbox.gc import collect
    from sandbox.lease import RunLease

    base, _ = revs
    path = ws.gate_tree().checkout(base, ws.tree_listing(base))
    with RunLease(corral_home, ws.run_id):  # a live run: nothing of it is touched
        report = collect(corral_home, None)
        assert report.kept_live == [ws.run_id] and path.is_dir()
    report = collect(corral_home, None)  # its process is gone (a crash): all of it goes
    assert report.workspaces == [ws.run_id]
    assert not path.exists() and not ws.path.exists() and not ws.git_dir.exists()


def test_the_gate_tree_directory_stays_the_one_a_container_mounted(
    ws: Workspace, revs: tuple[str, str]
) -> None:
    base, cand = revs
    tree = ws.gate_tree()
    root = tree.root()  # what a gate's container mounts before the checkout fills it
    inode = root.stat().st_ino
    tree.checkout(base, ws.tree_listing(base))
    (root / "src/conftest.py").write_text("planted\n")  # forces a rebuild from empty
    tree.checkout(cand, ws.tree_listing(cand))
    assert root.stat().st_ino == inode and not (root / "src/conftest.py").exists()
    assert _listing_on_disk(root) == _expected(ws, cand)
    shutil.rmtree(root)  # replaced behind the container's back: no tree is trusted
    root.mkdir()
    with pytest.raises(WorkspaceError, match="replaced while it was in use"):
        tree.checkout(base, ws.tree_listing(base))
