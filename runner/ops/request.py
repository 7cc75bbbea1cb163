"""What ``corral run`` was asked to do, and what a request reads from the user's world.

``RunRequest`` holds the command line; ``read_bug`` turns the bug report into a
``Task`` and the target tests its front matter names (``front_matter``);
``repo_policy_files`` reads the repository's own policy layer from the base
revision (never from the possibly dirty checkout); ``open_repo``,
``base_commit`` and ``check_writable`` check the repository, the base and
the writable scope before anything is recorded. Every input error is a
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

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.load import REPO_FILE, LoadedPolicy
from policies.scope import Scope
from policies.targets import check_test_id
from runner.errors import UsageError
from runner.loop.agent import Task
from sandbox.errors import GitError
from sandbox.git import HostGit, find_git_dirs
from sandbox.gitdir import listing


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


def bug_text(bug: Path) -> str:
    """The bug report's text, read as a file of at most ``MAX_BUG_BYTES``.

    Raises ``UsageError`` when it cannot be read, holds NUL bytes (a binary
    file), is not UTF-8 or is over ``MAX_BUG_BYTES``.
    """
    try:
        with bug.open("rb") as f:
            data = f.read(MAX_BUG_BYTES + 1)
            size = max(len(data), os.fstat(f.fileno()).st_size)  # a pipe's is 0
    except OSError as exc:
        raise UsageError(f"cannot read bug report {bug} ({exc.strerror}); check --bug") from exc
    if b"\0" in data:
        raise UsageError(
            f"bug report {bug} is not a text file (it holds NUL bytes): give --bug the markdown"
            " or text file that describes the bug"
        )
    if size > MAX_BUG_BYTES:
        raise UsageError(
            f"bug report {bug} is {size // 1024} KiB, over corral's {MAX_BUG_BYTES // 1024} KiB:"
            " shorten it (put long logs in a file in the repository and name it)"
        )
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"bug report {bug} is not UTF-8 text ({exc.reason}): save it as UTF-8"
        ) from exc


def read_task(repo: Path, bug: Path, base: str) -> Task:
    """The bug report as the agent sees it (``read_bug`` without the targets)."""
    return read_bug(repo, bug, base)[0]


def read_bug(repo: Path, bug: Path, base: str) -> tuple[Task, tuple[str, ...]]:
    """The bug report: title from its first heading (or first line), body verbatim but for
    its front matter; and the target tests the front matter names.

    Raises ``UsageError`` when it cannot be read or is not text (``bug_text``),
    has malformed front matter (``front_matter``) or nothing after it.
    """
    text = bug_text(bug)
    keys, text = front_matter(text, f"bug report {bug}")
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise UsageError(f"bug report {bug} is empty: write what goes wrong, and how to see it")
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


def open_repo(given: Path) -> tuple[Path, Path]:
    """``--repo``: the repository's resolved path and its common git dir.

    Raises ``UsageError`` naming the fix when ``given`` is not a directory, is a
    bare repository (corral needs a checkout) or is no git repository at all.
    """
    repo = given.resolve()
    if not repo.is_dir():
        raise UsageError(f"--repo {given} is not a directory")
    try:
        return repo, find_git_dirs(repo)[1]
    except GitError:
        pass
    if (repo / "HEAD").is_file() and (repo / "objects").is_dir() and (repo / "refs").is_dir():
        raise UsageError(
            f"--repo {given} is a bare repository: corral needs a checkout; clone it"
            f" (`git clone {given} DIR`) and give --repo DIR"
        )
    raise UsageError(
        f"--repo {given} is not a git repository: give the checkout of the project to fix"
        " (or `git init` and commit it there first)"
    )


def base_commit(given: Path, common: Path, base_ref: str) -> str:
    """``--base`` of the repository ``given`` (common git dir ``common``) as a full commit id.

    Raises ``UsageError`` naming the fix when it names no commit: the repository
    has none yet (``HEAD``), or the ref is unknown.
    """
    git = HostGit(common)
    try:
        return git.rev_parse(base_ref)
    except GitError:
        pass
    if base_ref == "HEAD":
        raise UsageError(
            f"--repo {given} has no commits yet: commit the code to fix"
            " (`git add -A && git commit`), or give --base REF"
        )
    raise UsageError(
        f"--base {base_ref} is not a commit of {given}: give a branch, tag or commit id"
        f" (`git -C {given} log --oneline` lists commits, `git -C {given} branch -a` branches)"
    )


def dead_writable(
    loaded: LoadedPolicy, common: Path, base: str, where: str
) -> tuple[list[str], bool]:
    """The warning lines for the writable globs through which the agent can change no file of
    commit ``base`` (``Scope.dead_writable``; ``where`` names the tree), and whether it can
    change any file of it at all (an empty tree: yes, there is nothing to miss).

    A preset's globs are left out while some file is writable: a file type the
    project happens not to have (``**/*.pyi``) is no mistake of the user's.
    """
    paths = list(listing(HostGit(common), base)[0])
    scope = Scope(loaded.policy)
    lines = scope.dead_writable(paths, where)
    any_writable = not paths or any(scope.classify(p) == "writable" for p in paths)
    if any_writable and (loaded.set_by("scope", "writable") or "preset:").startswith("preset:"):
        lines = []
    return lines, any_writable


def check_writable(loaded: LoadedPolicy, common: Path, base: str, where: str) -> list[str]:
    """``dead_writable``'s warning lines for a run; ``UsageError`` when the agent could change
    no file of ``base`` at all, since every attempt would then fail."""
    lines, any_writable = dead_writable(loaded, common, base, where)
    if any_writable:
        return lines
    why = "; ".join(line.removeprefix("scope.writable ") for line in lines) or "it is empty"
    raise UsageError(
        f"no file of {where} is writable: scope.writable {why}; make scope.writable match the"
        " files the fix changes (`corral policy check FILE --repo REPO` checks each glob)"
    )


def runtime_of(value: str | None) -> Any:
    """``--runtime``: None (the policy's), ``runc`` or ``runsc``; else ``UsageError``."""
    if value not in (None, "runc", "runsc"):
        raise UsageError(f"unknown runtime {value!r}: use runc or runsc")
    return value
