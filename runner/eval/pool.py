"""The local pool: an eval's trials as ``corral run``s, N at a time, on this machine.

``run_eval`` records the eval (``runner.eval.record``), checks every input up front
(repositories, bases, bug reports, scripts, gold patches: one ``UsageError`` before
anything runs), then starts each trial that has not ended as a process of its own
(``python -m runner.eval.worker``: one normal run, with its own lease, sandbox and
record, keyed by the trial's idempotency key). At most ``workers`` run at once
(``default_workers``: from the cores and memory, between 1 and ``MAX_WORKERS``).

Resumable by construction: a trial whose run ended is never started again, and an
interrupted one is resumed by ``start_run`` (same key, same request). Ctrl-C or
SIGTERM stops the running trials the recorded way (each process gets SIGTERM and
records ``run_interrupted``) and raises ``EvalInterrupted``; ``kill -9`` of the pool
leaves its trial processes to finish their runs, and the next call waits for
those (``start_run`` waits for a live run with the key) and runs the rest.

Environment images are cached by hash (repository, base, set-up, image), so a
task's trials share one; to build it once, not once per parallel trial, a task
starts a second trial only after one of its trials ended (or it had one already).
The whole eval's ``max_cost``: once the trials' runs have spent it, no trial is
started (those running finish, within their own budgets). Every loop is bounded:
each trial by its run's budgets, the wait for a trial to stop by ``STOP_SECONDS``.
Where the trials run is an ``Executor`` (``runner.eval.executors``): processes on
this machine, or Ray tasks on a cluster (``--ray``); this bookkeeping is the same.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import EvalInterrupted, UsageError
from runner.eval.executors import Executor, LocalProcesses, RayTrials
from runner.eval.record import (
    EvalDir,
    EvalInputs,
    Trial,
    TrialOutcome,
    default_eval_id,
    outcome,
    request_for,
    trial_key,
    trials_of,
)
from runner.eval.worker import request_to_json
from runner.ops.request import base_commit, open_repo, read_bug
from runner.store.runs import RunStore

log = logging.getLogger(__name__)

MAX_WORKERS = 16
#: Memory a trial's containers may take (the policy's default limit is 2 GiB), and the host's share.
TRIAL_MEMORY = 3 << 30
POLL_SECONDS = 0.5


@dataclass(slots=True)
class Progress:
    """What the live line shows: trials ended / running / failed, pass rate, cost, ETA."""

    eval_id: str
    total: int
    ended: int = 0
    running: int = 0
    resolved: int = 0
    failed: int = 0
    """Ended without resolving (the gold checks included)."""
    cost_usd: float = 0.0
    eta_seconds: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    """Per task, the error line of a trial that could not start (bad input): its trials are skipped."""

    @property
    def pass_rate(self) -> float | None:
        return self.resolved / self.ended if self.ended else None


@dataclass(frozen=True, slots=True)
class EvalRun:
    """What one ``run_eval`` call did."""

    eval_id: str
    ran: int
    """Trials started by this call."""
    skipped: int
    """Trials that had ended before it."""
    stopped: str | None = None
    """Why trials were left unstarted (the cost budget, bad input), else None."""
    errors: dict[str, str] = field(default_factory=dict)


def default_workers(cores: int | None = None, memory: int | None = None) -> int:
    """One trial per core, as many as the memory holds (``TRIAL_MEMORY`` each), 1..``MAX_WORKERS``."""
    cores = cores or len(os.sched_getaffinity(0))
    if memory is None:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cores, memory // TRIAL_MEMORY, MAX_WORKERS))


def run_eval(
    home: Path,
    inputs: EvalInputs,
    *,
    trials: int,
    eval_id: str | None = None,
    workers: int | None = None,
    max_cost: float | None = None,
    check_gold: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
    ray: str | None = None,
) -> EvalRun:
    """Run (or go on with) the eval of ``inputs``: ``trials`` trials of each task, on this
    machine or (``ray``: ``auto`` or a cluster's address) as Ray tasks.

    Raises ``UsageError`` for bad input (before anything runs) and
    ``EvalInterrupted`` on Ctrl-C or SIGTERM (the running trials recorded as interrupted).
    """
    if not 1 <= trials <= 100:
        raise UsageError(f"--trials {trials}: give 1 to 100")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers {workers}: give 1 to {MAX_WORKERS}")
    evaldir = EvalDir(home, eval_id or default_eval_id(inputs))
    _check(inputs)
    record = evaldir.save(inputs, trials, check_gold)
    plan = trials_of(inputs.tasks, record["trials"], record["check_gold"], inputs.agent)
    jobs = {id(t): (t, request_for(evaldir, inputs, t)) for t in plan}  # scripts checked here
    executor: Executor = (
        RayTrials(ray, workers) if ray else LocalProcesses(workers or default_workers())
    )
    try:
        return _Pool(home, evaldir, inputs, plan, jobs, executor, max_cost, on_progress).run()
    finally:
        executor.close()


def _check(inputs: EvalInputs) -> None:
    """Every task's repository, base and bug report, before anything is recorded or run."""
    for task in inputs.tasks:
        try:
            repo, common = open_repo(task.repo)
            base = base_commit(task.repo, common, task.base)
            if task.bug_file is not None:
                read_bug(repo, task.bug_file, base)
        except UsageError as exc:
            raise UsageError(f"task {task.id}: {exc}") from None


class _Pool:
    def __init__(
        self, home: Path, evaldir: EvalDir, inputs: EvalInputs, plan: list[Trial],
        jobs: dict[int, tuple[Trial, Any]], executor: Executor, max_cost: float | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:  # fmt: skip
        self.home, self.evaldir, self.inputs, self.plan = home, evaldir, inputs, plan
        self.jobs, self.executor, self.max_cost = jobs, executor, max_cost
        self.workers = executor.slots
        self.on_progress = on_progress or (lambda p: None)
        self.store = RunStore(home)
        self.keys = {id(t): trial_key(evaldir.eval_id, t, inputs) for t in plan}
        self.running: dict[int, float] = {}  # trial -> when it started
        self.progress = Progress(evaldir.eval_id, len(plan))
        self.seconds: list[float] = []  # wall time of each trial this call ran

    def outcomes(self) -> dict[int, TrialOutcome]:
        return {id(t): outcome(self.store, t, self.keys[id(t)]) for t in self.plan}

    def run(self) -> EvalRun:
        seen = self.outcomes()
        pending = [t for t in self.plan if not seen[id(t)].ended]
        skipped = len(self.plan) - len(pending)
        ready = {t.task.id for t in self.plan if seen[id(t)].ended}  # their environment is built
        stopped: str | None = None
        ran = 0
        try:
            while pending or self.running:
                seen = self._update()
                ready |= {t.task.id for t in self.plan if seen[id(t)].ended}
                pending = [t for t in pending if t.task.id not in self.progress.errors]
                if (
                    pending
                    and self.max_cost is not None
                    and self.progress.cost_usd >= self.max_cost
                ):
                    stopped = f"the eval's cost budget (${self.max_cost:g}) is spent"
                    pending = []
                while pending and len(self.running) < self.workers:
                    busy = {self.jobs[i][0].task.id for i in self.running}
                    nxt = next(
                        (t for t in pending if t.task.id in ready or t.task.id not in busy), None
                    )
                    if nxt is None:  # each task's first trial is still building its environment
                        break
                    pending.remove(nxt)
                    self._start(nxt)
                    ran += 1
                ready |= {self.jobs[i][0].task.id for i in self._reap()}
            self._update()
        except KeyboardInterrupt:
            self.executor.stop_all()
            self.running.clear()
            self._update()
            raise EvalInterrupted(self.evaldir.eval_id, self.progress.ended) from None
        finally:
            self.store.close()
        if stopped is None and self.progress.errors:
            stopped = f"{len(self.progress.errors)} task(s) could not start: bad input"
        return EvalRun(self.evaldir.eval_id, ran, skipped, stopped, dict(self.progress.errors))

    def _start(self, trial: Trial) -> None:
        job = {"home": str(self.home), "request": request_to_json(self.jobs[id(trial)][1])}
        self.executor.start(id(trial), job, self.evaldir.log_file(trial))
        self.running[id(trial)] = time.monotonic()

    def _reap(self) -> list[int]:
        """The trials that ended (waiting a moment for one while any runs); a bad-input exit (2)
        marks its task as errored."""
        done = []
        for i, code in self.executor.wait(POLL_SECONDS if self.running else 0):
            self.seconds.append(time.monotonic() - self.running.pop(i))
            done.append(i)
            trial = self.jobs[i][0]
            if code == 2 and not outcome(self.store, trial, self.keys[i]).ended:
                self.progress.errors[trial.task.id] = _last_error(self.evaldir.log_file(trial))
        return done

    def _update(self) -> dict[int, TrialOutcome]:
        seen = self.outcomes()
        p = self.progress
        ended = [o for o in seen.values() if o.ended]
        p.ended, p.running = len(ended), len(self.running)
        p.resolved = sum(o.resolved for o in ended)
        p.failed = len(ended) - p.resolved
        p.cost_usd = round(sum(o.cost_usd for o in seen.values()), 6)
        left = p.total - p.ended
        if self.seconds and left:
            mean = sum(self.seconds) / len(self.seconds)
            p.eta_seconds = round(mean * left / self.workers, 1)
        else:
            p.eta_seconds = None if left else 0.0
        self.on_progress(p)
        return seen


def _last_error(logfile: Path) -> str:
    """The last ``error:`` line of a trial's log (what the run refused), else its last line."""
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return "the trial could not start"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["the trial could not start"])[-1].removeprefix("error: ")
