"""Where corral keeps its state on the host.

``$CORRAL_HOME`` (default ``~/.corral``) is read when asked for, never at import
or in a default argument, so tests and users can point it anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.errors import HomeUnusable

#: The free space a run needs in ``$CORRAL_HOME`` to start (worktrees, gate trees, logs).
MIN_FREE_BYTES = 256 * 1024 * 1024
_FIX = "point CORRAL_HOME at a directory corral may write (unset, it is ~/.corral)"


def corral_home() -> Path:
    """The state directory: ``$CORRAL_HOME`` or ``~/.corral``. Not created here."""
    env = os.environ.get("CORRAL_HOME")
    return Path(env).expanduser().resolve() if env else (Path.home() / ".corral").resolve()


def check_home(home: Path, *, room: int = 0) -> Path:
    """``home``, made if need be, checked to be a directory corral can write with ``room`` bytes
    free. Raises ``HomeUnusable`` (one line naming the fix) otherwise."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HomeUnusable(f"CORRAL_HOME {home} is not a directory: {_FIX}") from None
    except OSError as exc:
        raise HomeUnusable(f"CORRAL_HOME {home} cannot be made ({exc.strerror}): {_FIX}") from exc
    if not home.is_dir():
        raise HomeUnusable(f"CORRAL_HOME {home} is not a directory: {_FIX}")
    try:
        vfs = os.statvfs(home)
    except OSError as exc:
        raise HomeUnusable(f"CORRAL_HOME {home} cannot be read ({exc.strerror}): {_FIX}") from exc
    if vfs.f_flag & os.ST_RDONLY or not os.access(home, os.W_OK | os.X_OK):
        raise HomeUnusable(f"CORRAL_HOME {home} is not writable: {_FIX}")
    free = vfs.f_bavail * vfs.f_frsize
    if free < room:
        raise HomeUnusable(
            f"CORRAL_HOME {home} has {free // 2**20} MB free, less than the {room // 2**20} MB a"
            " run needs: free space there, or point CORRAL_HOME at another disk"
        )
    return home


def worktrees_dir(home: Path) -> Path:
    """Where worktrees live: the ``nosuid,nodev`` size-limited mount when set up."""
    return home / "worktrees"


def workspaces_dir(home: Path) -> Path:
    """Per-run git dirs (corral-owned, agent-unreachable)."""
    return home / "gitdirs"


def locks_dir(home: Path) -> Path:
    """Run leases (flock files); a lease that can be taken means its owner is gone."""
    return home / "locks"
