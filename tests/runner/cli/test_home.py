"""An unusable ``$CORRAL_HOME`` (a file, read-only, full) is one line naming the fix and exit 2,
before anything starts; ``doctor`` says so, and ``doctor --fix`` never papers over a full disk."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.ops.doctor import _disk_checks
from sandbox.errors import StorageError
from sandbox.treefs import ensure_worktree_fs
from tests.support.cli import corral


@contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def _one_error_line(proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: CORRAL_HOME") and words in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def _run_args(tmp_path: Path) -> list[str]:
    (tmp_path / "bug.md").write_text("# x\n\ny\n")
    return ["run", "--repo", str(tmp_path), "--bug", str(tmp_path / "bug.md")]


def test_a_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    for args in (["list"], ["status", "x"], _run_args(tmp_path)):
        _one_error_line(corral(*args, home=home), "is not a directory: point CORRAL_HOME at")
    assert home.read_text() == "not a directory\n"


def test_a_read_only_home(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "home", "ro,size=1m") as home:
        for args in (["list"], _run_args(tmp_path)):
            _one_error_line(corral(*args, home=home), "is not writable")


def test_a_full_home_stops_a_run_up_front_and_doctor_says_so(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "home", "size=64m") as home:
        _one_error_line(corral(*_run_args(tmp_path), home=home), "less than the 256 MB a run needs")
        assert not (home / "runs.db").exists()  # nothing recorded, nothing to clean up
        first = _disk_checks(home)[0]
        assert (first.name, first.ok) == ("corral home", False) and "MB free" in first.detail
        with pytest.raises(StorageError, match="MiB free, less than the 8192 MiB"):
            ensure_worktree_fs(home)  # `doctor --fix` fails here instead of falling back to RAM
        assert not (home / "worktrees.img").exists()
        assert corral("list", home=home).returncode == 0  # reading needs no room
