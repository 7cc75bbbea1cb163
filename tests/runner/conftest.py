"""Fixtures shared by the runner's tests of more than one package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.paths import worktrees_dir
from sandbox.treefs import mount_scratch_fs
from tests.support.demo import WITH_MUL, build_demo
from tests.support.gitfixtures import checkout_state
from tests.support.runenv import Env


@pytest.fixture
def env(tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str) -> Iterator[Env]:
    """The demo project with ``mul()`` (``WITH_MUL``) for scripted runs on the real engine, its
    worktrees on a scratch filesystem; afterwards the user's checkout must be as it was."""
    build_demo(tmp_path, files=WITH_MUL)
    e = Env(tmp_path, corral_home, sandbox_image)
    e.settle()
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=1024):
        yield e
    assert checkout_state(e.repo) == e.before, "a run changed the user's checkout, branch or index"
