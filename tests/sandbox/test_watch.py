"""The tree watch that lets the per-step scope check skip the full scan when nothing changed.

What matters is that it never says "unchanged" after a change the scope check
must see: writes, new directories and what is written into them, renames,
deletions, attribute changes, a flood of events past the kernel's queue, and
writes made from inside a real container (runc and gVisor).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import watch as watch_mod
from sandbox.docker_backend import DockerBackend
from sandbox.paths import worktrees_dir
from sandbox.spec import Mount, SandboxSpec
from sandbox.treefs import mount_scratch_fs
from sandbox.watch import TreeWatch
from sandbox.workspace import Workspace
from tests.support.gitfixtures import make_repo


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "README.md").write_text("hi\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("obj\n")
    return root


@pytest.fixture
def watch(tree: Path) -> Iterator[TreeWatch]:
    with TreeWatch(tree, ignored=frozenset({"build/"})) as w:
        assert not w.changed(), "a fresh watch reports no change"
        yield w


def test_reads_are_not_changes(tree: Path, watch: TreeWatch) -> None:
    (tree / "src" / "pkg" / "mod.py").read_text()
    os.listdir(tree / "src")
    os.stat(tree / "README.md")
    with open(tree / "README.md", "rb") as f:
        f.read()
    assert not watch.changed()


@pytest.mark.parametrize(
    "act",
    [
        lambda t: (t / "src" / "pkg" / "mod.py").write_text("x = 2\n"),
        lambda t: (t / "src" / "pkg" / "new.py").write_text(""),
        lambda t: (t / "README.md").unlink(),
        lambda t: (t / "README.md").rename(t / "src" / "README.md"),
        lambda t: os.chmod(t / "README.md", 0o755),
        lambda t: os.utime(t / "README.md", (0, 0)),
        lambda t: (t / "src" / "link").symlink_to("/etc/passwd"),
        lambda t: (t / "build").rename(t / "src" / "build"),
        lambda t: os.link(t / "README.md", t / "src" / "hard"),
        lambda t: os.mkfifo(t / "src" / "fifo"),
    ],
    ids=["modify", "create", "delete", "rename", "chmod", "utime", "symlink", "move-ignored",
         "hardlink", "fifo"],
)  # fmt: skip
def test_every_kind_of_change_is_seen_once(tree: Path, watch: TreeWatch, act: Any) -> None:
    act(tree)
    assert watch.changed()
    assert not watch.changed(), "events are consumed by the call that reports them"


def test_writes_into_new_directories_are_seen(tree: Path, watch: TreeWatch) -> None:
    deep = tree / "src" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "early.py").write_text("written before the watch knew the directory\n")
    assert watch.changed()
    (deep / "late.py").write_text("written after\n")
    assert watch.changed(), "the new directory is watched once its creation was reported"
    (tree / "src" / "a").rename(tree / "src" / "z")
    assert watch.changed()
    (tree / "src" / "z" / "b" / "c" / "late.py").write_text("again\n")
    assert watch.changed(), "a moved directory keeps its watch"


def test_ignored_directories_are_not_watched_but_their_removal_is(
    tree: Path, watch: TreeWatch
) -> None:
    (tree / "build" / "out.o").write_text("rebuilt\n")
    (tree / "build" / "more.o").write_text("new\n")
    assert not watch.changed()
    (tree / "build" / "out.o").unlink()
    (tree / "build" / "more.o").unlink()
    (tree / "build").rmdir()
    assert watch.changed()


def test_a_symlink_swapped_in_for_a_directory_is_not_watched_through(
    tree: Path, tmp_path: Path, watch: TreeWatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "src" / "pkg" / "mod.py").unlink()
    (tree / "src" / "pkg").rmdir()
    (tree / "src" / "pkg").symlink_to(outside)
    assert watch.changed()
    (outside / "f").write_text("not in the tree\n")
    assert not watch.changed(), "the host directory behind the link must not be watched"


def test_a_flood_past_the_kernel_queue_still_reports_and_rewatches(
    tree: Path, watch: TreeWatch
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    flood = tree / "src" / "flood"
    flood.mkdir()
    for i in range(limit // 2 + 100):  # >= 2 events per new file: the queue overflows
        (flood / f"f{i}").write_bytes(b"")
    (flood / "sub").mkdir()  # created after the overflow: only a re-walk finds it
    assert watch.changed()
    assert not watch.changed()
    (flood / "sub" / "x").write_text("x\n")
    assert watch.changed()


def test_past_the_watch_bound_every_step_counts_as_changed(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_mod, "MAX_WATCHES", 2)
    with TreeWatch(tree) as w:
        assert w.degraded
        assert w.changed() and w.changed()


def test_open_returns_none_where_inotify_is_unavailable(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_inotify() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(watch_mod, "INotify", no_inotify)
    assert TreeWatch.open(tree) is None


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_writes_from_inside_the_container_are_seen(
    runtime: str, tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    repo = make_repo(tmp_path / "repo", {"src/calc.py": "x = 1\n", ".gitignore": "__pycache__/\n"})
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=256):
        ws = Workspace.create(repo, "HEAD", "watch", corral_home)
        try:
            spec = SandboxSpec(
                image=sandbox_image,
                workspace=str(ws.path),
                mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),),
                run_id="watch",
                owner_home=str(corral_home),
                runtime=runtime,  # type: ignore[arg-type]
            )
            with (
                TreeWatch(ws.path, ws.ignored()) as w,
                DockerBackend(docker_client).start(spec) as sb,
            ):
                w.changed()  # whatever starting the container did to the mount points
                assert sb.exec("cat src/calc.py; ls -laR; grep -r x . ; python3 -c pass").ok
                assert not w.changed(), "reading is not a change"
                assert sb.exec("echo y = 2 >> src/calc.py").ok
                assert w.changed()
                assert sb.exec("mkdir -p new/deep && echo 1 > new/deep/a.py").ok
                assert w.changed()
                assert sb.exec("echo 2 > new/deep/b.py").ok
                assert w.changed(), "a directory created in the container is watched"
                assert sb.exec("chmod +x src/calc.py").ok
                assert w.changed()
        finally:
            ws.remove()


def test_close_releases_the_instance_and_reports_changed_after(tree: Path) -> None:
    w = TreeWatch(tree)
    fd = w._inotify.fd
    os.fstat(fd)  # open
    w.close()
    assert w.changed(), "a closed watch can no longer vouch for anything"
    assert w.watches == 0
    closers = [t for t in threading.enumerate() if t.name == "corral-watch-close"]
    for t in closers:
        t.join(timeout=30)
    with pytest.raises(OSError):  # the inotify instance is closed, not leaked
        os.fstat(fd)
    w.close()  # twice is harmless


@pytest.mark.parametrize(
    ("act", "renamed"),
    [
        (lambda t: (t / "src" / "pkg" / "mod.py").write_text("x = 3\n"), False),
        (lambda t: (t / "README.md").chmod(0o600), False),
        (lambda t: (t / "src" / "pkg" / "new.py").write_text(""), True),
        (lambda t: (t / "README.md").unlink(), True),
        (lambda t: (t / "README.md").rename(t / "src" / "README.md"), True),
        (lambda t: (t / "src" / "sub").mkdir(), True),
        (lambda t: (t / "src" / ".gitignore").write_text("*.py\n"), True),
    ],
    ids=["modify", "chmod", "create", "delete", "rename", "mkdir", "gitignore"],
)
def test_names_changed_says_when_the_ignored_set_may_differ(
    tree: Path, act: Any, renamed: bool
) -> None:
    (tree / "src" / ".gitignore").write_text("*.pyc\n")
    with TreeWatch(tree, ignored=frozenset({"build/"})) as w:
        assert w.names_changed(), "nothing is known of a fresh watch"
        assert not w.changed() and not w.names_changed()
        act(tree)
        assert w.changed()
        assert w.names_changed() is renamed
        assert not w.names_changed(), "reported once"


def test_names_changed_after_lost_events_or_without_a_watch(tree: Path) -> None:
    w = TreeWatch(tree)
    w.names_changed()
    w._overflow()  # what a full event queue leads to
    assert w.names_changed()
    w.close()
    assert w.names_changed() and w.names_changed(), "a closed watch knows nothing"


def test_a_settled_watch_starts_from_no_name_change(tree: Path) -> None:
    with TreeWatch(tree, settled=True) as w:
        assert not w.names_changed()
        (tree / "src" / "pkg" / "made.py").write_text("")
        assert w.changed() and w.names_changed()
