"""``HostGit`` reading a committed revision: what ``cat_blobs`` returns and raises."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import GitError
from sandbox.git import HostGit, find_git_dirs
from tests.support.gitfixtures import git, make_repo


def test_cat_blobs_reads_blobs_in_order_and_none_for_missing_or_not_a_blob(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.txt": "one\n", "dir/b.bin": b"\x00two\n\n"})
    _, common = find_git_dirs(repo)
    head = git(repo, "rev-parse", "HEAD")
    blob = git(repo, "rev-parse", "HEAD:a.txt")
    got = HostGit(common).cat_blobs(
        [f"{head}:dir/b.bin", f"{head}:gone", f"{head}:dir", blob, "HEAD:a.txt"]
    )
    assert got == [b"\x00two\n\n", None, None, b"one\n", b"one\n"]
    assert HostGit(common).cat_blobs([]) == []


def test_cat_blobs_raises_git_error_when_git_fails(tmp_path: Path) -> None:
    with pytest.raises(GitError):
        HostGit(tmp_path / "not-a-git-dir").cat_blobs(["HEAD:a.txt"])
