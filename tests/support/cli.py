"""The ``corral`` CLI as a user runs it: a subprocess of this interpreter (``python -m runner``).

``corral(*args, home=..., cwd=..., env=...)`` runs it to the end and returns the completed
process (text, output captured; a non-zero exit is the test's to check, never raised).
``corral_argv`` and ``corral_env`` are its parts, for a test that starts the process itself
(``Popen`` to kill it, a terminal).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def corral_argv(*args: str) -> list[str]:
    """The command line of ``corral ARGS``."""
    return [sys.executable, "-m", "runner", *args]


def corral_env(
    home: Path | None = None, env: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """This process's environment with ``CORRAL_HOME=home`` (if given) and ``env`` on top: a
    variable mapped to ``None`` is removed."""
    merged: dict[str, str | None] = {**os.environ}
    if home is not None:
        merged["CORRAL_HOME"] = str(home)
    merged.update(env or {})
    return {k: v for k, v in merged.items() if v is not None}


def corral(
    *args: str,
    home: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``corral ARGS`` to its end (``timeout``: a hang guard) and return what it did."""
    return subprocess.run(
        corral_argv(*args), cwd=cwd, env=corral_env(home, env),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
