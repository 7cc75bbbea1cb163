"""What ``corral run`` was asked to do, and what a request reads from the user's world.

``RunRequest`` holds the command line; ``read_bug`` turns the bug report into a
``Task`` and the target tests its front matter names (``front_matter``);
``repo_policy_files`` reads the repository's own policy layer from the base
revision (never from the possibly dirty checkout). Every input error is a
``UsageError`` naming the fix.

A bug report's front matter is a block at its very top, between two lines of
``---``; the agent sees the report without it. Inside: blank lines, ``#``
comments and ``key: value`` lines (``key = value`` too). The one key is
``must_pass``, the target tests, as pytest node ids: a flow list
(``must_pass: [tests/test_x.py::test_y, "tests/test_x.py::test_z[a, b]"]``),
one id, or nothing after the colon and then one ``- ID`` line per test.
Anything else (another key, a key twice, a block never closed, an id that is
not ``PATH.py::TEST``) is an error naming the report and the line. A
hand-written parser (the standard library has no YAML), kept this small on
purpose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.load import REPO_FILE
from policies.targets import check_test_id
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
    must_pass: tuple[str, ...] = ()
    """Target tests (``--must-pass``), added to the policy's ``targets.must_pass``."""
    hidden_tests: Path | None = None
    """A test patch for the gates only (``--hidden-tests``): ``targets.hidden_tests``."""


#: The largest bug report corral takes (bytes): it goes into every window's prompt, and agent CLIs
#: that take the prompt as one argument get at most 120 KiB (``runner.agents.external.PROMPT_ARG_MAX``).
MAX_BUG_BYTES = 64 * 1024


def read_task(repo: Path, bug: Path, base: str) -> Task:
    """The bug report as the agent sees it (``read_bug`` without the targets)."""
    return read_bug(repo, bug, base)[0]


def read_bug(repo: Path, bug: Path, base: str) -> tuple[Task, tuple[str, ...]]:
    """The bug report: title from its first heading (or first line), body verbatim but for
    its front matter; and the target tests the front matter names.

    Raises ``UsageError`` when it cannot be read, is not UTF-8, is over
    ``MAX_BUG_BYTES`` or has malformed front matter (``front_matter``).
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
    keys, text = front_matter(text, f"bug report {bug}")
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = first.lstrip("#").strip() or bug.stem
    return Task(title=title[:200], body=text, repo=str(repo), base=base), keys.get("must_pass", ())


#: The keys a bug report's front matter may have; the most lines it may take.
FRONT_MATTER_KEYS = ("must_pass",)
MAX_FRONT_MATTER_LINES = 200
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(.*)")
#: One list item: quoted, or unquoted up to a comma (a ``[...]`` of parameters may hold commas).
_ITEM = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|((?:[^,\[\]"'\s]|\[[^\]]*\])+))\s*""")


def front_matter(text: str, where: str) -> tuple[dict[str, tuple[str, ...]], str]:
    """The front matter's keys (see the module docstring) and the text after it.

    Text that does not start with a ``---`` line has none: ``({}, text)``.
    Raises ``UsageError`` naming ``where`` and the line for anything malformed.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None or end > MAX_FRONT_MATTER_LINES:
        raise UsageError(
            f"{where}: front matter opened by `---` on line 1 is not closed by a `---` line"
            f" within {MAX_FRONT_MATTER_LINES} lines"
        )
    keys: dict[str, list[str]] = {}
    current: list[str] | None = None  # the key whose `- item` lines follow
    for n, raw in enumerate(lines[1:end], 2):
        line = raw.strip()

        def bad(why: str, n: int = n) -> UsageError:
            return UsageError(f"{where}, front matter line {n}: {why}")

        if not line or line.startswith("#"):
            continue
        if line.startswith("- ") and current is not None:
            current.extend(_list(line[2:], bad))
            continue
        match = _KEY.fullmatch(line)
        if match is None:
            raise bad(f"expected `key: value`, got {line[:80]!r}")
        key, value = match.groups()
        if key not in FRONT_MATTER_KEYS:
            raise bad(f"unknown key {key!r} (known: {', '.join(FRONT_MATTER_KEYS)})")
        if key in keys:
            raise bad(f"{key} given twice")
        if value.startswith("[") and not value.endswith("]"):
            raise bad("a list must open with `[` and close with `]` on the same line")
        items = _list(value[1:-1] if value.startswith("[") else value, bad)
        keys[key] = items
        current = items if not value else None
    found = {}
    for key, items in keys.items():
        try:
            found[key] = tuple(check_test_id(item) for item in items)
        except ValueError as exc:
            raise UsageError(f"{where}, front matter {key}: {exc}") from exc
    return found, "".join(lines[end + 1 :])


def _list(raw: str, bad: Any) -> list[str]:
    """The items of a list's inside (``a, "b", 'c'``), or of one item."""
    items: list[str] = []
    pos = 0
    while pos < len(raw):
        match = _ITEM.match(raw, pos)
        if match is None or match.end() == pos:
            raise bad(f"cannot read a test id at {raw[pos : pos + 40]!r} (quote ids with commas)")
        items.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
        if pos < len(raw):
            if raw[pos] != ",":
                raise bad(f"expected `,` between ids at {raw[pos : pos + 40]!r}")
            pos += 1
    return items


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
