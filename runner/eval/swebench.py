"""SWE-bench in and out: instance files as tasks, and the results as SWE-bench's exports.

**In.** ``load_task_file`` reads ``--tasks``: here when its entries are SWE-bench
instances (they have ``instance_id`` and ``problem_statement``), as published:
a JSON list or JSONL, with ``instance_id``, ``repo`` (``owner/name``),
``base_commit``, ``problem_statement``, ``test_patch``, ``patch``,
``FAIL_TO_PASS`` and ``PASS_TO_PASS`` (JSON-encoded lists of test ids, or
lists), ``environment_setup_commit`` and ``version`` (recorded by SWE-bench
for its images; corral's environment comes from the policy, so they are
read and not used). Other keys of the published datasets (``hints_text``,
``created_at``, ...) are ignored. An instance becomes a task judged the
SWE-bench way:

- the agent gets ``problem_statement`` as the bug report, on a worktree of
  ``base_commit``;
- ``test_patch`` is the task's hidden tests (``targets.hidden_tests``):
  applied to every gate input, at base and for each candidate, never to the
  agent's tree;
- ``FAIL_TO_PASS`` and ``PASS_TO_PASS`` are both target tests
  (``must_pass``): each must run and pass in a required pytest gate's report.
  For ``PASS_TO_PASS`` that is "must not regress" (they pass at base) made
  sure of: a test the gate's command does not select fails the gate as not
  run, so a policy whose gate misses them shows up as a broken task (its gold
  check fails), not as a silent pass;
- ``patch`` is the gold patch.

Test ids: a pytest node id (``tests/test_x.py::TestC::test_y[1]``) is kept; a
unittest id as SWE-bench writes Django's (``test_y (pkg.tests.TestC)``)
becomes ``pkg/tests.py::TestC::test_y``; any other id is a ``UsageError``
(corral judges pytest node ids). The clone: ``--repos DIR`` holds one clone
per repository, found as ``DIR/<owner>__<name>`` (SWE-bench's own naming),
else ``DIR/<name>``; nothing is fetched. The patches are written once,
content-addressed, under ``$CORRAL_HOME/swebench/patches/`` (``<sha256>.diff``),
so the same file gives the same tasks, and the same eval id, every time.

**Out.** ``predictions`` is SWE-bench's predictions JSONL, one line per task
with an ended trial: ``instance_id`` (the task id), ``model_name_or_path``
(``--model`` when given, else the agent's name) and ``model_patch``. With K
trials it takes **the first finished trial**: the lowest-numbered agent trial
whose run ended (trial 1 unless it had not ended), so that the export does not
change as later trials end. Its patch is the run's candidate
(``candidate.diff``), else its last attempt's patch (what the agent left before
the rollback), else empty. ``swebench_report`` classifies the same trial the
way SWE-bench's ``make_run_report`` does (``schema_version`` 2): no ended
trial is *incomplete*, an empty patch is *empty_patch*, a run that failed for
the harness or the runtime is an *error*, else *resolved* or *unresolved*
(both *completed*).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from runner.errors import UsageError
from runner.eval.record import TrialOutcome
from runner.eval.tasks import TASK_ID, EvalTask, load_tasks, read_entries, unique
from runner.store.runs import RunStore

#: ``test_name (dotted.module.Class)``: a unittest id as SWE-bench's Django instances hold them.
_UNITTEST_ID = re.compile(r"(?P<name>\w+) \((?P<where>[\w.]+)\.(?P<cls>\w+)\)")
#: The failure domains SWE-bench would call an evaluation error, not an unresolved instance.
ERROR_DOMAINS = ("harness", "runtime")
REPORT_SCHEMA_VERSION = 2


class Instance(BaseModel):
    """One SWE-bench instance as published (the keys corral reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    instance_id: str
    """The task's id (``owner__name-NUMBER``)."""
    repo: str
    """``owner/name`` on GitHub: the clone is looked up under ``--repos``."""
    base_commit: str
    """The commit the agent starts from."""
    problem_statement: str
    """The issue's text: the bug report."""
    test_patch: str
    """The tests the gates run and the agent never sees."""
    patch: str
    """The gold patch."""
    FAIL_TO_PASS: str | list[str]
    """Tests that fail at base and must pass (JSON-encoded list, or a list)."""
    PASS_TO_PASS: str | list[str]
    """Tests that pass at base and must still pass (JSON-encoded list, or a list)."""
    environment_setup_commit: str | None = None
    """SWE-bench's environment commit: not used (the policy's set-up makes the environment)."""
    version: str | None = None
    """SWE-bench's version of the repository: not used."""


def load_task_file(path: Path, repos: Path | None, patches: Path) -> tuple[EvalTask, ...]:
    """The tasks of ``--tasks``: SWE-bench instances (their clones under ``repos``, their
    patches written under ``patches``), else corral's own task list (``load_tasks``).

    Raises ``UsageError`` as ``load_tasks`` and ``instance_tasks`` do.
    """
    entries = read_entries(path)
    if not is_instance(entries[0][1]):
        return load_tasks(path)
    return unique(entries, instance_tasks(entries, repos, patches))


def is_instance(raw: Any) -> bool:
    """Whether a task file's entry is a SWE-bench instance rather than a corral task."""
    return isinstance(raw, dict) and "instance_id" in raw and "problem_statement" in raw


def instance_tasks(
    entries: Sequence[tuple[str, Any]], repos: Path | None, patches: Path
) -> list[EvalTask]:
    """The tasks of SWE-bench instances (``entries``: where each is, and its JSON), their
    patches written under ``patches``.

    Raises ``UsageError`` (naming the entry) for a malformed instance, a test id
    that is not a pytest or unittest id, no ``--repos`` or no clone under it.
    """
    if repos is None:
        raise UsageError(
            "a SWE-bench instance file needs --repos DIR: the clones, as DIR/<owner>__<name>"
        )
    tasks = []
    for where, raw in entries:
        if not is_instance(raw):
            raise UsageError(f"{where}: not a SWE-bench instance: keep one kind of task a file")
        try:
            inst = Instance.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(instance)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise UsageError(f"{where}: {problems}") from exc
        if not TASK_ID.fullmatch(inst.instance_id):
            raise UsageError(f"{where}: instance_id {inst.instance_id!r}: letters, digits, ._-")
        if not inst.problem_statement.strip():
            raise UsageError(f"{where}: problem_statement is empty: it is the bug report")
        must_pass = tuple(
            pytest_id(t, where)
            for key in ("FAIL_TO_PASS", "PASS_TO_PASS")
            for t in _test_list(getattr(inst, key), key, where)
        )
        tasks.append(
            EvalTask(
                id=inst.instance_id, repo=find_clone(repos, inst.repo, where),
                base=inst.base_commit, bug=inst.problem_statement, bug_file=None, policy=None,
                must_pass=tuple(dict.fromkeys(must_pass)),
                hidden_tests=_store(patches, inst.test_patch) if inst.test_patch.strip() else None,
                gold=_store(patches, inst.patch) if inst.patch.strip() else None,
            )
        )  # fmt: skip
    return tasks


def find_clone(repos: Path, repo: str, where: str) -> Path:
    """``repos/<owner>__<name>``, else ``repos/<name>``: the first that is a directory."""
    owner, _, name = repo.partition("/")
    if not name or "/" in name or not owner or ".." in (owner, name):
        raise UsageError(f"{where}: repo {repo!r} is not owner/name")
    candidates = [repos / f"{owner}__{name}", repos / name]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    raise UsageError(
        f"{where}: no clone of {repo} under {repos}: clone it to {candidates[0]} (or {candidates[1]})"
    )


def pytest_id(test: str, where: str) -> str:
    """A SWE-bench test id as a pytest node id (see the module docstring)."""
    from policies.targets import check_test_id

    match = _UNITTEST_ID.fullmatch(test)
    if match:
        test = f"{match['where'].replace('.', '/')}.py::{match['cls']}::{match['name']}"
    try:
        return check_test_id(test)
    except ValueError as exc:
        raise UsageError(
            f"{where}: {exc}; corral judges pytest node ids (or unittest `name (module.Class)`)"
        ) from None


def _test_list(value: str | list[str], key: str, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: {key} is not a JSON-encoded list ({exc.msg})") from exc
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise UsageError(f"{where}: {key} must be a list of test ids")
    return value


def _store(patches: Path, text: str) -> Path:
    """``text`` as ``patches/<sha256>.diff``, written once (atomically)."""
    data = text.encode()
    path = patches / f"{hashlib.sha256(data).hexdigest()}.diff"
    if not path.is_file():
        patches.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def chosen_trials(outcomes: Sequence[TrialOutcome]) -> dict[str, TrialOutcome]:
    """Per task, the trial the exports use: the lowest-numbered agent trial that ended."""
    chosen: dict[str, TrialOutcome] = {}
    for o in sorted(outcomes, key=lambda o: o.trial):
        if o.role == "agent" and o.ended and o.task not in chosen:
            chosen[o.task] = o
    return chosen


def model_patch(store: RunStore, run_id: str) -> str:
    """The run's candidate patch, else its last attempt's, else ``""``."""
    candidate = store.artifact_path(run_id, "candidate.diff")
    if candidate.is_file():
        return candidate.read_text(errors="replace")
    attempts = sorted(
        store.run_dir(run_id).glob("attempt-*/patch.diff"),
        key=lambda p: int(p.parent.name.removeprefix("attempt-")),
    )
    return attempts[-1].read_text(errors="replace") if attempts else ""


def predictions(
    record: dict[str, Any], outcomes: Sequence[TrialOutcome], store: RunStore
) -> list[dict[str, str]]:
    """SWE-bench predictions, one per task with an ended trial, in task order."""
    inputs = record["inputs"]
    model = inputs.get("model") or inputs["agent"]
    chosen = chosen_trials(outcomes)
    return [
        {"instance_id": t["id"], "model_name_or_path": model,
         "model_patch": model_patch(store, chosen[t["id"]].run_id or "")}
        for t in inputs["tasks"]
        if t["id"] in chosen
    ]  # fmt: skip


def swebench_report(
    record: dict[str, Any], outcomes: Sequence[TrialOutcome], preds: Sequence[dict[str, str]]
) -> dict[str, Any]:
    """SWE-bench's run report (``make_run_report``'s keys) for the trials ``predictions`` chose."""
    chosen = chosen_trials(outcomes)
    patches = {p["instance_id"]: p["model_patch"] for p in preds}
    ids: dict[str, list[str]] = {k: [] for k in
                                 ("completed", "incomplete", "empty_patch", "resolved", "unresolved", "error")}  # fmt: skip
    for task in (t["id"] for t in record["inputs"]["tasks"]):
        trial = chosen.get(task)
        if trial is None:
            ids["incomplete"].append(task)
        elif not patches.get(task, "").strip():
            ids["empty_patch"].append(task)
        elif trial.failure_domain in ERROR_DOMAINS:
            ids["error"].append(task)
        else:
            ids["completed"].append(task)
            ids["resolved" if trial.resolved else "unresolved"].append(task)
    report: dict[str, Any] = {
        "total_instances": len(record["inputs"]["tasks"]),
        "submitted_instances": len(preds),
        **{f"{k}_instances": len(v) for k, v in ids.items() if k != "incomplete"},
    }
    for key, values in ids.items():
        report[f"{key}_ids"] = sorted(values)
    report["submitted_ids"] = sorted(patches)
    report["schema_version"] = REPORT_SCHEMA_VERSION
    return report


def write_exports(
    store: RunStore,
    record: dict[str, Any],
    outcomes: Sequence[TrialOutcome],
    predictions_file: Path | None,
    report_file: Path | None,
) -> dict[str, Any]:
    """Write the predictions JSONL and/or the SWE-bench report; return the report.

    Raises ``UsageError`` naming the file when one cannot be written.
    """
    preds = predictions(record, outcomes, store)
    report = swebench_report(record, outcomes, preds)
    writes = (
        (predictions_file, "--predictions", "".join(json.dumps(p) + "\n" for p in preds)),
        (report_file, "--swebench-report", json.dumps(report, indent=4) + "\n"),
    )
    for path, option, text in writes:
        if path is None:
            continue
        try:
            path.write_text(text)
        except OSError as exc:
            raise UsageError(
                f"{option} {path}: {exc.strerror or exc}: give a writable file"
            ) from None
    return report
