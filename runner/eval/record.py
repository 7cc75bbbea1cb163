"""An eval's record: what it was asked (``eval.json``) and its trials, read from the run store.

An eval lives in ``$CORRAL_HOME/evals/<id>/``: ``eval.json`` (the inputs: tasks,
agent, policy, trials; written once, atomically, then only to raise ``trials``),
``bugs/`` (the reports given as text in the task file, as files a run records),
``agents/`` (the scripts of the ``gold`` and ``empty`` pseudo-agents) and
``logs/`` (each trial process's stderr). A JSON file rather than a new table of
``runs.db`` because it holds nothing the run store does not: each trial *is* a
normal run, found by its idempotency key (``trial_key``: eval x task x trial x
agent x policy), so its outcome, cost, tokens, wall time and steps are read from
its run record and event log, never copied. The eval adds no schema migration
to the store, two evals never write the same file, and a trial's result cannot
disagree with its run's. ``corral rm`` of a trial's run shows it as not run.

``eval_id`` defaults to a name derived from the inputs (task file's name and a
hash of the tasks, agent, model and policy), so the same command finds the same
eval again: the resumption. An explicit ``--eval-id`` used for other inputs is
a ``UsageError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UnknownRun, UsageError
from runner.eval.tasks import TASK_ID, EvalTask
from runner.ops.request import RunRequest
from runner.store.runs import RunRecord, RunStore
from runner.store.trajectory import read_trajectory

FORMAT = 1
#: The pseudo-agents that check an eval set itself.
PSEUDO_AGENTS = ("gold", "empty")
EMPTY_SCRIPT = '[[attempt]]\n[[attempt.window]]\nactions = [{ finish = "changed nothing" }]\n'
#: A run in one of these is over for the eval: it is not started again.
ENDED = ("ready_for_review", "unverified", "failed", "budget_exhausted", "waiting",
         "approved", "rejected", "merged")  # fmt: skip
RESOLVED = ("ready_for_review", "approved", "merged")


@dataclass(frozen=True, slots=True)
class EvalInputs:
    """What ``corral eval`` was asked: the part that names an eval (``eval_id``)."""

    tasks: tuple[EvalTask, ...]
    tasks_file: str
    agent: str
    """``gold``, ``empty`` or an agent of ``corral run`` (``scripted``, ``corral``, ``cli:NAME``)."""
    script: str | None = None
    """The scripted agent's script; ``{task}`` and ``{trial}`` in it are filled in per trial."""
    model: str | None = None
    base_url: str | None = None
    api_key_file: str | None = None
    agent_cmd: str | None = None
    policy: str | None = None
    """For tasks without a policy of their own."""
    overrides: dict[str, Any] = field(default_factory=dict)
    runtime: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": [t.to_json() for t in self.tasks], "tasks_file": self.tasks_file,
            "agent": self.agent, "script": self.script, "model": self.model,
            "base_url": self.base_url, "api_key_file": self.api_key_file,
            "agent_cmd": self.agent_cmd, "policy": self.policy, "overrides": self.overrides,
            "runtime": self.runtime,
        }  # fmt: skip

    @property
    def fingerprint(self) -> str:
        """A hash of everything but where the task file was (its tasks are in it)."""
        data = {k: v for k, v in self.to_json().items() if k != "tasks_file"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Trial:
    """One trial: a task, its number, and whether it is the agent's or the task's gold check."""

    task: EvalTask
    number: int
    role: str = "agent"
    """``agent``, or ``gold-check`` (the gold patch, run once per task, to find broken tasks)."""


def default_eval_id(inputs: EvalInputs) -> str:
    """``<task file's stem>-<agent>-<10 hex of the inputs>``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(inputs.tasks_file).stem)[:40].strip("-") or "eval"
    agent = re.sub(r"[^A-Za-z0-9_-]+", "-", inputs.agent.split(":")[0])[:20]
    return f"{stem}-{agent}-{inputs.fingerprint[:10]}"


def trial_key(eval_id: str, trial: Trial, inputs: EvalInputs) -> str:
    """The idempotency key of a trial's run: eval x task x trial x agent x policy."""
    agent = "gold" if trial.role == "gold-check" else inputs.agent
    policy = trial.task.policy or inputs.policy or "-"
    tags = json.dumps(
        [agent, inputs.script, inputs.model, policy, inputs.overrides], sort_keys=True
    )
    digest = hashlib.sha256(tags.encode()).hexdigest()[:12]
    return f"eval:{eval_id}:{trial.task.id}:{trial.role}:{trial.number}:{digest}"


class EvalDir:
    """An eval's folder under ``$CORRAL_HOME/evals/``."""

    def __init__(self, home: Path, eval_id: str) -> None:
        if not TASK_ID.fullmatch(eval_id):
            raise UsageError(f"eval id {eval_id!r}: use letters, digits, `.`, `_` and `-` only")
        self.eval_id = eval_id
        self.path = Path(home) / "evals" / eval_id

    @property
    def file(self) -> Path:
        return self.path / "eval.json"

    def load(self) -> dict[str, Any]:
        """``eval.json``. ``UnknownRun``-like ``UsageError`` when there is none."""
        try:
            data: dict[str, Any] = json.loads(self.file.read_text())
        except FileNotFoundError:
            evals = self.path.parent
            known = sorted(p.name for p in evals.iterdir()) if evals.is_dir() else []
            hint = f" (known: {', '.join(known[-5:])})" if known else ""
            raise UsageError(
                f"no eval {self.eval_id}{hint}: `corral eval --tasks FILE` starts one"
            ) from None
        if data.get("format") != FORMAT:
            raise UsageError(
                f"eval {self.eval_id} was recorded by another corral (format {data.get('format')})"
            )
        return data

    def save(self, inputs: EvalInputs, trials: int, check_gold: bool) -> dict[str, Any]:
        """Record the eval (or find it, for the same inputs); raise ``trials`` when asked for more.

        Raises ``UsageError`` when the id names an eval of other inputs.
        """
        if self.file.is_file():
            data = self.load()
            if data["fingerprint"] != inputs.fingerprint:
                raise UsageError(
                    f"eval {self.eval_id} was made for other tasks, agent or policy: give"
                    " another --eval-id (or leave it out: one is derived from the inputs)"
                )
            if trials <= data["trials"] and check_gold == data["check_gold"]:
                return data
            data["trials"] = max(trials, data["trials"])
            data["check_gold"] = check_gold or data["check_gold"]
        else:
            data = {"format": FORMAT, "eval_id": self.eval_id, "created": time.time(),
                    "fingerprint": inputs.fingerprint, "inputs": inputs.to_json(),
                    "trials": trials, "check_gold": check_gold}  # fmt: skip
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.file)
        return data

    def bug_file(self, task: EvalTask) -> Path:
        """The task's bug report as a file: its own, or the text written under ``bugs/``."""
        if task.bug_file is not None:
            return task.bug_file
        path = self.path / "bugs" / f"{task.id}.md"
        if not path.is_file() or path.read_text() != task.bug:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(task.bug)
        return path

    def script(self, inputs: EvalInputs, trial: Trial) -> Path | None:
        """The script a scripted trial replays (None for an agent that is not scripted).

        ``UsageError`` when the task has no gold patch for ``gold``, or a ``{task}``/
        ``{trial}`` script is missing.
        """
        agent = "gold" if trial.role == "gold-check" else inputs.agent
        task = trial.task
        if agent == "gold":
            if task.gold is None:
                raise UsageError(f"task {task.id} has no `gold` patch: the gold agent needs one")
            text = (f'[[attempt]]\n[[attempt.window]]\nactions = [{{ patch = {json.dumps(str(task.gold))} }},'
                    ' { finish = "applied the gold patch" }]\n')  # fmt: skip
            return self._write(f"gold-{task.id}.toml", text)
        if agent == "empty":
            return self._write("empty.toml", EMPTY_SCRIPT)
        if inputs.script is None:
            return None
        path = Path(inputs.script.replace("{task}", task.id).replace("{trial}", str(trial.number)))
        if not path.is_file():
            raise UsageError(f"script {path} for task {task.id} trial {trial.number} is not a file")
        return path

    def _write(self, name: str, text: str) -> Path:
        path = self.path / "agents" / name
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return path

    def log_file(self, trial: Trial) -> Path:
        return self.path / "logs" / f"{trial.task.id}-{trial.role}-{trial.number}.log"


def trials_of(tasks: tuple[EvalTask, ...], k: int, check_gold: bool, agent: str) -> list[Trial]:
    """The eval's trials: each task's gold check first (when asked), then trials 1..k by round,
    so that every task has a trial done early."""
    checks = [Trial(t, 1, "gold-check") for t in tasks if check_gold and t.gold and agent != "gold"]
    return checks + [Trial(t, n) for n in range(1, k + 1) for t in tasks]


def request_for(evaldir: EvalDir, inputs: EvalInputs, trial: Trial) -> RunRequest:
    """The ``corral run`` request of a trial: a normal run, keyed by ``trial_key``."""
    task = trial.task
    script = evaldir.script(inputs, trial)
    pseudo = trial.role == "gold-check" or inputs.agent in PSEUDO_AGENTS
    agent = "scripted" if pseudo else inputs.agent
    return RunRequest(
        repo=task.repo, bug=evaldir.bug_file(task), policy=task.policy or inputs.policy,
        overrides=dict(inputs.overrides), agent=agent, script=script, base_ref=task.base,
        runtime=inputs.runtime, idempotency_key=trial_key(evaldir.eval_id, trial, inputs),
        model=None if pseudo else inputs.model, base_url=None if pseudo else inputs.base_url,
        api_key_file=None if pseudo or not inputs.api_key_file else Path(inputs.api_key_file),
        agent_cmd=None if pseudo else inputs.agent_cmd, must_pass=task.must_pass,
        hidden_tests=task.hidden_tests,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    """A trial as its run records it (``run_id`` None: not started, or its run was removed)."""

    task: str
    trial: int
    role: str
    key: str
    run_id: str | None = None
    status: str = "not run"
    """The run's status as shown (``interrupted`` for one no process holds)."""
    failure_domain: str | None = None
    reason: str = ""
    cost_usd: float = 0.0
    tokens: int = 0
    wall_seconds: float = 0.0
    steps: int | None = None
    patch: bool = False

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def resolved(self) -> bool:
        return self.status in RESOLVED

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "trial": self.trial, "role": self.role, "key": self.key,
                "run_id": self.run_id, "status": self.status, "resolved": self.resolved,
                "failure_domain": self.failure_domain, "reason": self.reason,
                "cost_usd": self.cost_usd, "tokens": self.tokens,
                "wall_seconds": round(self.wall_seconds, 3), "steps": self.steps,
                "patch": self.patch}  # fmt: skip


def outcome(store: RunStore, trial: Trial, key: str, *, steps: bool = False) -> TrialOutcome:
    """The trial's outcome from the run store (``steps``: count them in its event log too)."""
    none = TrialOutcome(trial.task.id, trial.number, trial.role, key)
    run_id = store.find_by_key(key)
    if run_id is None:
        return none
    try:
        rec: RunRecord = store.get(run_id)
    except UnknownRun:
        return none
    counted = read_trajectory(store.events(run_id))[0].steps if steps else None
    return TrialOutcome(
        trial.task.id, trial.number, trial.role, key, run_id=run_id, status=store.shown_status(rec), failure_domain=rec.failure_domain,
        reason=rec.reason or "", cost_usd=rec.cost_usd, tokens=rec.tokens,
        wall_seconds=rec.wall_seconds, steps=counted,
        patch=store.artifact_path(run_id, "candidate.diff").is_file(),
    )  # fmt: skip


def inputs_of(data: dict[str, Any]) -> EvalInputs:
    """``EvalInputs`` back from ``eval.json``."""
    raw = dict(data["inputs"])
    tasks = tuple(
        EvalTask(
            id=t["id"], repo=Path(t["repo"]), base=t["base"], bug=t["bug"],
            bug_file=Path(t["bug_file"]) if t["bug_file"] else None,
            policy=t["policy"], must_pass=tuple(t["must_pass"]),
            hidden_tests=Path(t["hidden_tests"]) if t["hidden_tests"] else None,
            gold=Path(t["gold"]) if t["gold"] else None,
        )
        for t in raw.pop("tasks")
    )  # fmt: skip
    return EvalInputs(tasks=tasks, **raw)
