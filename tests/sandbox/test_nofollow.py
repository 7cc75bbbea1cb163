"""Host-side reads and writes in an agent-touched tree follow nothing (``sandbox.nofollow``).

``read_regular`` is how the runner reads a file the agent wrote (the progress file): a link or
file in place of a directory on the way, or anything but a regular file at the end, is refused
and named, and no more than the limit is read. ``write_at`` sets a new file's mode and owner
through its descriptor: the per-step revert writes while the sandbox runs, and a process of the
agent's swapping a link to a host file in under the name must not get that file's mode changed.
The end-to-end attacks are tests/runner/loop/test_progress_attacks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.errors import NotFollowed
from sandbox.nofollow import read_regular, write_at


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory outside the tree, with a file only root should read."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "progress.md").write_text("host secret\n")
    (d / "progress.md").chmod(0o600)
    return d


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    (t / ".corral").mkdir(parents=True)
    return t


def test_a_regular_file_is_read_up_to_the_limit(tree: Path) -> None:
    (tree / ".corral/progress.md").write_bytes(b"x" * 100)
    assert read_regular(tree, ".corral/progress.md", 10) == b"x" * 10
    assert read_regular(tree, ".corral/progress.md", 1000) == b"x" * 100


def test_a_missing_file_or_directory_is_file_not_found(tree: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular(tree, ".corral/progress.md", 10)
    with pytest.raises(FileNotFoundError):
        read_regular(tree, "nowhere/progress.md", 10)


def test_a_directory_linked_out_of_the_tree_is_not_followed(tree: Path, host: Path) -> None:
    (tree / ".corral").rmdir()
    (tree / ".corral").symlink_to(host)
    with pytest.raises(NotFollowed) as err:
        read_regular(tree, ".corral/progress.md", 1000)
    assert str(err.value) == ".corral is not a real directory (a symbolic link): not followed"
    assert err.value.path == ".corral"


def test_a_deeper_directory_link_or_a_file_on_the_way_is_named(tree: Path, host: Path) -> None:
    (tree / "a/b").mkdir(parents=True)
    (tree / "a/b/c").symlink_to(host)
    with pytest.raises(NotFollowed, match=r"^a/b/c is not a real directory \(a symbolic link\)"):
        read_regular(tree, "a/b/c/progress.md", 1000)
    (tree / "a/f").write_text("")
    with pytest.raises(NotFollowed, match=r"^a/f is not a real directory \(a file\)"):
        read_regular(tree, "a/f/progress.md", 1000)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda p, host: p.symlink_to(host / "progress.md"), "a symbolic link"),
        (lambda p, host: os.mkfifo(p), "a named pipe"),
        (lambda p, host: p.mkdir(), "a directory"),
    ],
)
def test_anything_but_a_regular_file_is_not_read(tree: Path, host: Path, make, what: str) -> None:  # type: ignore[no-untyped-def]
    make(tree / ".corral/progress.md", host)
    with pytest.raises(NotFollowed) as err:
        read_regular(tree, ".corral/progress.md", 1000)  # a FIFO would block a plain open
    assert str(err.value) == f".corral/progress.md is not a regular file ({what}): not read"


def test_write_at_sets_mode_and_owner_on_the_file_it_made(tmp_path: Path) -> None:
    write_at(tmp_path, "d/e/run.sh", b"#!/bin/sh\n", executable=True, owner=(65532, 65532))
    st = (tmp_path / "d/e/run.sh").stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o755, 65532, 65532)
    assert (tmp_path / "d/e").stat().st_uid == 65532
    write_at(tmp_path, "d/plain.txt", b"x")
    assert (tmp_path / "d/plain.txt").stat().st_mode & 0o777 == 0o644


SWAPPER = """
import os, sys
tree, target = sys.argv[1], sys.argv[2]
tmp = os.path.join(tree, ".swap")
while True:
    try:
        os.symlink(target, tmp)
        os.rename(tmp, os.path.join(tree, "README.md"))
    except OSError:
        pass
"""
#: Reverts raced against the swapper (each a few syscalls; enough for the old by-name chmod to
#: lose the race many times over).
ROUNDS = 20_000


def test_a_link_swapped_in_while_the_revert_writes_never_gets_the_host_files_mode(
    tmp_path: Path, host: Path
) -> None:
    # what the per-step revert does while the agent's background process swaps a link to a host
    # file in under the name, as fast as it can: the host file keeps its mode and its bytes
    tree, secret = tmp_path / "swap-tree", host / "progress.md"
    tree.mkdir()
    swapper = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SWAPPER), tree, secret])
    writes = 0
    try:
        for _ in range(ROUNDS):
            try:
                os.unlink(tree / "README.md")
                write_at(tree, "README.md", b"# demo\n", owner=(65532, 65532))
                writes += 1
            except OSError:
                pass  # the swapper's link was there first: the revert fails, the host file is kept
    finally:
        swapper.kill()
        swapper.wait(timeout=30)
    assert writes > 0
    st = secret.stat()
    assert (st.st_mode & 0o777, st.st_uid, secret.read_text()) == (0o600, 0, "host secret\n")
