"""What ``corral run`` was asked to do, and what a request reads from the user's world.

``RunRequest`` holds the command line; ``read_task`` turns the bug report into a
``Task``; ``repo_policy_files`` reads the repository's own policy layer from the
base revision (never from the possibly dirty checkout). Every input error is a
``UsageError`` naming the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.load import REPO_FILE
from runner.errors import UsageError
from runner.loop.agent import Task
from sandbox.git import HostGit, find_git_dirs


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What ``corral run`` was asked to do."""

    repo: Path
    bug: Path
    policy: str | None = None
    overrides: Mapping[str, Any] | None = None
    agent: str = "scripted"
    script: Path | None = None
    base_ref: str = "HEAD"
    runtime: str | None = None
    idempotency_key: str | None = None
    run_id: str | None = None
    image: str | None = None
    """Sandbox image to use instead of corral's own (tests, custom images)."""
    model: str | None = None
    base_url: str | None = None
    api_key_file: Path | None = None
    agent_cmd: str | None = None
    """The command of ``--agent cli:custom``."""


#: The largest bug report corral takes (bytes): it goes into every window's prompt, and agent CLIs
#: that take the prompt as one argument get at most 120 KiB (``runner.agents.external.PROMPT_ARG_MAX``).
MAX_BUG_BYTES = 64 * 1024


def read_task(repo: Path, bug: Path, base: str) -> Task:
    """The bug report: title from its first heading (or first line), body verbatim.

    Raises ``UsageError`` when it cannot be read, is not UTF-8 or is over ``MAX_BUG_BYTES``.
    """
    try:
        text = bug.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read bug report {bug} ({exc.strerror}); check --bug") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"bug report {bug} is not UTF-8 text ({exc.reason}): save it as UTF-8"
        ) from exc
    if (size := len(text.encode())) > MAX_BUG_BYTES:
        raise UsageError(
            f"bug report {bug} is {size // 1024} KiB, over corral's {MAX_BUG_BYTES // 1024} KiB:"
            " shorten it (put long logs in a file in the repository and name it)"
        )
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip() or bug.stem
    return Task(title=title[:200], body=text, repo=str(repo), base=base)


def repo_policy_files(repo: Path, base: str, common: Path | None = None) -> dict[str, bytes | None]:
    """``.corral.toml`` and ``pyproject.toml`` as committed at ``base`` (None where absent).

    ``common``: the repository's common git dir, when the caller found it already.
    One ``git cat-file --batch`` reads both. Raises ``GitError`` when git fails.
    """
    if common is None:
        _, common = find_git_dirs(repo)
    names = (REPO_FILE, "pyproject.toml")
    blobs = HostGit(common).cat_blobs([f"{base}:{name}" for name in names])
    return dict(zip(names, blobs, strict=True))


def runtime_of(value: str | None) -> Any:
    """``--runtime``: None (the policy's), ``runc`` or ``runsc``; else ``UsageError``."""
    if value not in (None, "runc", "runsc"):
        raise UsageError(f"unknown runtime {value!r}: use runc or runsc")
    return value
