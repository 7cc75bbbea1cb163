"""Where corral keeps its state on the host.

``$CORRAL_HOME`` (default ``~/.corral``) is read when asked for, never at import
or in a default argument, so tests and users can point it anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def corral_home() -> Path:
    """The state directory: ``$CORRAL_HOME`` or ``~/.corral``. Not created here."""
    env = os.environ.get("CORRAL_HOME")
    return Path(env).expanduser().resolve() if env else (Path.home() / ".corral").resolve()


def worktrees_dir(home: Path) -> Path:
    """Where worktrees live: the ``nosuid,nodev`` size-limited mount when set up."""
    return home / "worktrees"


def workspaces_dir(home: Path) -> Path:
    """Per-run git dirs (corral-owned, agent-unreachable)."""
    return home / "gitdirs"


def locks_dir(home: Path) -> Path:
    """Run leases (flock files); a lease that can be taken means its owner is gone."""
    return home / "locks"
