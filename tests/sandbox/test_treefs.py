"""The worktree filesystem: nosuid,nodev with a size limit, set up idempotently."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox.paths import worktrees_dir
from sandbox.treefs import (
    StorageError,
    check_worktree_fs,
    ensure_worktree_fs,
    mount_scratch_fs,
    unmount_worktree_fs,
)


def test_scratch_fs_is_nosuid_nodev_and_goes_away(tmp_path: Path) -> None:
    target = tmp_path / "scratch"
    with mount_scratch_fs(target, size_mb=16):
        st = check_worktree_fs(target)
        assert st.ok and st.fstype == "tmpfs" and st.mountpoint == str(target)
        assert st.size_bytes == 16 * 1024 * 1024
    assert check_worktree_fs(target).mountpoint != str(target)


def test_plain_directory_is_reported_unsafe_unless_its_mount_is(tmp_path: Path) -> None:
    st = check_worktree_fs(tmp_path / "does" / "not" / "exist")
    vfs = os.statvfs(tmp_path)
    assert st.ok == bool(vfs.f_flag & os.ST_NOSUID and vfs.f_flag & os.ST_NODEV)
    assert "GiB free" in st.detail


def test_ensure_worktree_fs_mounts_a_loop_image_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        steps = ensure_worktree_fs(home, size_mb=64)
        assert steps and "nosuid" in steps[-1]
        st = check_worktree_fs(worktrees_dir(home))
        assert st.ok and st.mountpoint == str(worktrees_dir(home))
        assert st.size_bytes <= 64 * 1024 * 1024
        assert ensure_worktree_fs(home, size_mb=64) == []
    finally:
        unmount_worktree_fs(home)
    assert not unmount_worktree_fs(home)


def test_existing_worktrees_are_never_hidden_by_a_mount(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (worktrees_dir(home) / "run-1").mkdir(parents=True)
    with pytest.raises(StorageError, match="corral gc"):
        ensure_worktree_fs(home, size_mb=64)
    assert (worktrees_dir(home) / "run-1").is_dir()


def test_setuid_binary_on_the_worktree_fs_gives_no_privilege(tmp_path: Path) -> None:
    """Exit 0 means breached: a setuid-root copy of `id` run by nobody must not report euid 0."""
    target = tmp_path / "wt"
    with mount_scratch_fs(target, size_mb=16):
        binary = target / "id"
        shutil.copy("/usr/bin/id", binary)
        os.chown(binary, 0, 0)
        binary.chmod(0o4755)
        out = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(binary), "-u"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == "65534"
