"""An eval's task list: corral's own JSONL or TOML file of bug reports to run.

One task per JSONL line (blank lines and lines starting with ``#`` are skipped),
or one ``[[task]]`` table each in TOML (or a ``.json`` list). ``corral eval --tasks``
reads its file through ``runner.eval.swebench.load_task_file``, which hands a file of
SWE-bench instances (told apart by their keys) to its own reader and any other here. Keys (``TaskEntry``): ``id``, ``repo`` (a
local checkout), ``base`` (default ``HEAD``), ``bug`` (the report's text, or the
path of a file holding it), and optionally ``policy`` (a preset name or a policy
file, for this task instead of ``--policy``), ``must_pass`` (target tests),
``hidden_tests`` (a test patch for the gates only) and ``gold`` (the reference
patch the ``gold`` pseudo-agent applies). Relative paths are read from the task
file's directory. ``bug`` is a file when it is one line naming an existing file;
anything else is the report's text.

pydantic checks each entry at the edge (``extra="forbid"``); inside, a task is a
frozen ``EvalTask``. Every problem is one ``UsageError`` line naming the file,
the line (JSONL) or table (TOML), and the fix.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import UsageError

#: The largest task file corral reads, and the most tasks in one.
MAX_TASK_FILE_BYTES = 16 * 1024 * 1024
MAX_TASKS = 10_000
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class TaskEntry(BaseModel):
    """One task as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=f"^{TASK_ID.pattern}$")
    """Names the task in reports and idempotency keys: letters, digits, ``.``, ``_``, ``-``."""
    repo: str
    """The project's git checkout (a local path)."""
    base: str = "HEAD"
    """The commit, branch or tag the bug is at."""
    bug: str
    """The bug report: its text, or the path of a file holding it."""
    policy: str | None = None
    """A preset name or policy file for this task (its set-up and gates); else ``--policy``."""
    must_pass: tuple[str, ...] = ()
    """Target tests (pytest node ids) a candidate must run and pass."""
    hidden_tests: str | None = None
    """A test patch applied to the gates' tree only (``--hidden-tests``)."""
    gold: str | None = None
    """The reference fix as a patch file: what the ``gold`` pseudo-agent applies."""


@dataclass(frozen=True, slots=True)
class EvalTask:
    """One task, paths resolved against the task file's directory."""

    id: str
    repo: Path
    base: str
    bug: str
    """The report's text (``bug_file`` None) or the file's path as given."""
    bug_file: Path | None
    policy: str | None
    must_pass: tuple[str, ...]
    hidden_tests: Path | None
    gold: Path | None

    def to_json(self) -> dict[str, Any]:
        """The task as recorded in an eval (paths as absolute strings)."""
        return {
            "id": self.id, "repo": str(self.repo), "base": self.base,
            "bug": self.bug, "bug_file": str(self.bug_file) if self.bug_file else None,
            "policy": self.policy,
            "must_pass": list(self.must_pass),
            "hidden_tests": str(self.hidden_tests) if self.hidden_tests else None,
            "gold": str(self.gold) if self.gold else None,
        }  # fmt: skip


def load_tasks(path: Path) -> tuple[EvalTask, ...]:
    """The tasks of ``path`` (``.jsonl``/``.json`` or ``.toml``), in file order.

    Raises ``UsageError`` when the file cannot be read, is neither format, holds
    no task or more than ``MAX_TASKS``, an entry is malformed, or two share an id.
    """
    entries = read_entries(path)
    return unique(entries, [_task(raw, where, path.parent) for where, raw in entries])


def read_entries(path: Path) -> list[tuple[str, Any]]:
    """The entries of a task file, each with where it is (``path line N``), not yet checked.

    Raises ``UsageError`` when the file cannot be read, is not JSONL, a JSON list
    or TOML, or holds no entry or more than ``MAX_TASKS``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read task file {path} ({exc.strerror}); check --tasks") from exc
    if len(data) > MAX_TASK_FILE_BYTES:
        raise UsageError(f"task file {path} is over {MAX_TASK_FILE_BYTES >> 20} MiB: split it")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise UsageError(f"task file {path} is not UTF-8 text ({exc.reason})") from exc
    if path.suffix == ".toml":
        raws = _toml_entries(text, path)
    elif path.suffix == ".json" and text.lstrip().startswith("["):
        raws = _json_list_entries(text, path)
    elif path.suffix in (".jsonl", ".json"):
        raws = _jsonl_entries(text, path)
    else:
        raise UsageError(
            f"task file {path}: name it .jsonl (one JSON object a line) or .toml ([[task]] tables)"
        )
    if not raws:
        raise UsageError(f"task file {path} holds no task: add one (keys: id, repo, bug)")
    if len(raws) > MAX_TASKS:
        raise UsageError(f"task file {path} holds {len(raws)} tasks, over {MAX_TASKS}: split it")
    return raws


def unique(entries: list[tuple[str, Any]], tasks: list[EvalTask]) -> tuple[EvalTask, ...]:
    """``tasks`` (one per entry); ``UsageError`` naming the entry when two share an id."""
    seen: dict[str, str] = {}
    for (where, _), task in zip(entries, tasks, strict=True):
        if task.id in seen:
            raise UsageError(
                f"{where}: task id {task.id!r} is also {seen[task.id]}'s: make it unique"
            )
        seen[task.id] = where
    return tuple(tasks)


def _jsonl_entries(text: str, path: Path) -> list[tuple[str, Any]]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append((f"{path} line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {n}: not JSON ({exc.msg}): one object a line") from exc
    return entries


def _json_list_entries(text: str, path: Path) -> list[tuple[str, Any]]:
    """A JSON list of tasks (as SWE-bench publishes its instances)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    return [(f"{path} item {n}", entry) for n, entry in enumerate(data, 1)]


def _toml_entries(text: str, path: Path) -> list[tuple[str, Any]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    extra = sorted(set(data) - {"task"})
    if extra or not isinstance(data.get("task", []), list):
        raise UsageError(f"{path}: expected only [[task]] tables (found {', '.join(extra)})")
    return [(f"{path} [[task]] {n}", entry) for n, entry in enumerate(data.get("task", []), 1)]


def _task(raw: Any, where: str, root: Path) -> EvalTask:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a task is an object with keys id, repo, bug")
    try:
        entry = TaskEntry.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(task)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{loc}: {msg}")
        raise UsageError(f"{where}: " + "; ".join(problems)) from exc

    def path(value: str | None) -> Path | None:
        return None if value is None else (root / value).resolve()

    bug_file = None
    if "\n" not in entry.bug and len(entry.bug) < 4096 and (root / entry.bug).is_file():
        bug_file = path(entry.bug)
    elif not entry.bug.strip():
        raise UsageError(f"{where}: bug is empty: give the report's text or its file")
    policy = entry.policy
    if policy is not None and ("/" in policy or policy.endswith(".toml")):
        policy = str(path(policy))
    for name, value in (("hidden_tests", entry.hidden_tests), ("gold", entry.gold)):
        if value is not None and not (root / value).is_file():
            raise UsageError(f"{where}: {name} {value} is not a file (relative to {root})")
    return EvalTask(
        id=entry.id, repo=path(entry.repo) or root, base=entry.base, bug=entry.bug,
        bug_file=bug_file, policy=policy, must_pass=entry.must_pass,
        hidden_tests=path(entry.hidden_tests), gold=path(entry.gold),
    )  # fmt: skip
