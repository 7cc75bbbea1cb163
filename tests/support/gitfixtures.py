"""Declarative git fixtures: a tree from a dict, a repository with commits from dicts, and the
state of a user's checkout to compare before and after corral worked on it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.invalid",
}


def build_tree(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``files`` (path -> text or bytes) under ``root``; parents are created."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a user would (tests only), returning stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, env=_ENV, capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(
    root: Path, files: Mapping[str, str | bytes], *, message: str = "initial", branch: str = "main"
) -> Path:
    """A fresh repository at ``root`` whose first commit holds ``files``."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", branch)
    return commit(root, files, message)


def commit(repo: Path, files: Mapping[str, str | bytes], message: str) -> Path:
    """Write ``files`` and commit everything in ``repo``."""
    build_tree(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return repo


def tree_digest(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root`` with its mode and content (link target for symlinks), nothing followed."""
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = (st.st_mode, os.fsencode(os.readlink(path)))
            elif path.is_file():
                out[rel] = (st.st_mode, path.read_bytes())
            else:
                out[rel] = (st.st_mode, b"")
    return out


def checkout_state(repo: Path) -> dict[str, Any]:
    """What a user sees of ``repo``: the tree, index, HEAD, config, branches and status."""
    return {
        "tree": {k: v for k, v in tree_digest(repo).items() if not k.startswith(".git/")},
        "index": (repo / ".git/index").read_bytes(),
        "HEAD": (repo / ".git/HEAD").read_bytes(),
        "config": (repo / ".git/config").read_bytes(),
        "branches": git(repo, "for-each-ref", "refs/heads", "refs/tags"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
    }
