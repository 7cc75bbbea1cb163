"""Git drivers an attack names from the tree, defined where host git would read them.

An agent controls the tree, so it can write ``.gitattributes`` that name a
filter, diff (textconv, external command) or merge driver. It cannot define
the driver; but drivers are defined in config host git reads unless corral's
hardening stops it: the user's ``~/.gitconfig`` (``HOME``,
``GIT_CONFIG_GLOBAL``, ``XDG_CONFIG_HOME``), the user's ``.git/config``, and
the run's private git dir's ``config``. ``plant`` defines a driver named
``evil`` in all of them, running a payload that touches the canary;
``assert_live`` proves with ordinary git that those bytes do run it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

#: What the agent writes into the tree: every path uses the ``evil`` drivers.
ATTRIBUTES = "* filter=evil diff=evil merge=evil\n"


def payload(tmp_path: Path, canary: Path) -> Path:
    """An executable that touches ``canary`` and passes its input through (a working filter)."""
    script = tmp_path / "driver-payload.sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}\ncat\n")
    script.chmod(0o755)
    return script


def config_text(script: Path) -> str:
    return (
        f'[filter "evil"]\n\tclean = {script}\n\tsmudge = {script}\n'
        f'[diff "evil"]\n\ttextconv = {script}\n\tcommand = {script}\n'
        f'[merge "evil"]\n\tdriver = {script} %O %A %B\n'
        f"[diff]\n\texternal = {script}\n"
        f"[core]\n\tfsmonitor = {script}\n"
    )


def plant(monkeypatch: pytest.MonkeyPatch, home: Path, script: Path) -> Path:
    """Define the drivers globally: ``~/.gitconfig``, ``$XDG_CONFIG_HOME/git/config`` and
    ``GIT_CONFIG_GLOBAL``, with ``HOME`` pointed at ``home``. Returns the global config file."""
    (home / ".config" / "git").mkdir(parents=True, exist_ok=True)
    glob = home / ".gitconfig"
    glob.write_text(config_text(script))
    (home / ".config" / "git" / "config").write_text(config_text(script))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    return glob


def define_in(git_dir: Path, script: Path) -> None:
    """Define the drivers in ``git_dir``'s own config (the user's repository, the run's git dir)."""
    with (git_dir / "config").open("a") as f:
        f.write(config_text(script))


def assert_live(tmp_path: Path, attributes: str, global_config: Path, canary: Path) -> None:
    """Ordinary git, with the same attributes and config, does run the payload (then clean up)."""
    assert not canary.exists()
    repo = tmp_path / "control"
    repo.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(global_config.parent),
           "GIT_CONFIG_GLOBAL": str(global_config), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    (repo / ".gitattributes").write_text(attributes)
    (repo / "f.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    assert canary.exists(), "control: the planted drivers did not run under ordinary git"
    canary.unlink()
