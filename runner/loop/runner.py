"""The control loop: bounded attempts, each judged by the runner, rolled back when it fails.

    run:      create record -> workspace -> baseline gates (background) -> attempts
    attempt:  clean tree (+ progress) -> sandbox -> windows -> kill sandbox -> harvest -> judge
              (``runner.loop.attempt``)
    judge:    findings -> patch scope -> empty? -> wait for the baseline -> gates vs baseline
    outcome:  ready_for_review | unverified | failed(domain) | budget_exhausted | waiting

An attempt comes to a ``Judged``, ``Waiting`` or ``Stopped`` outcome
(``runner.loop.outcome``); ``_attempts`` journals it and is the one place that
decides what it means for the run: the next attempt (with what the failed one
taught, ``runner.loop.lessons``), or the run's end. Every attempt is journaled
before and after it runs (``RunStore``), so ``resume`` continues after the
last completed attempt; an interrupted attempt is rolled back to base (its
progress file kept) and run again, never replayed half-way. An attempt paused
by the model's circuit breaker is the exception: it continues from the code
state and progress file of the window it paused in (``ResumePoint``).

An infrastructure failure (``SandboxError``: engine, image, host git) outside
an attempt's windows ends the run as ``failed`` (``runtime``), resumable
(``runner.loop.resume``); so does one in the baseline gates, which run on a
thread of their own while attempt 1 works (``runner.loop.baseline``) and are
waited for by the first judge that runs gates. A required gate that cannot
run at base ends the run there as ``failed`` (``configuration``, exit 2),
before any candidate is judged; a candidate that no required gate checked
ends it ``unverified`` (exit 1), unless the policy opted out (``gates = []``).
Neither is worth another attempt. Run-wide budget usage is saved
to the record as it is spent and seeds the next process's ``Budget`` (``RunMeter``).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from policies.budget import Budget
from policies.policy import BudgetPolicy
from policies.scope import Scope
from runner.errors import RunnerError
from runner.loop.agent import Agent
from runner.loop.attempt import Attempts
from runner.loop.capabilities import OnEngine
from runner.loop.config import RunConfig as RunConfig
from runner.loop.judge import GateJudge
from runner.loop.lessons import Lessons
from runner.loop.lessons import strategy_key as strategy_key
from runner.loop.outcome import (
    AttemptOutcome,
    AttemptReport,
    Judged,
    ResumePoint,
    RunResult,
    ScopeQuestion,
    Stopped,
    Waiting,
    question_of,
)
from runner.loop.progress import Progress
from runner.loop.resume import (
    RunMeter,
    record_interruption,
    record_runtime_error,
    resumable,
    wait_for,
)
from runner.loop.specs import Sandboxes
from runner.store.runs import FailureDomain, RunStatus, RunStore, Step
from sandbox.errors import SandboxError
from sandbox.gc import remove_run_containers
from sandbox.images.setup_files import read_setup_files
from sandbox.interfaces import SandboxBackend
from sandbox.lease import RunLease
from sandbox.workspace import Workspace, remove_workspace

log = logging.getLogger(__name__)

#: ``errno`` values of a disk without room: the run ends ``failed`` (``runtime``), resumable.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How git and SQLite say it.
_NO_ROOM_WORDS = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def _full_disk(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a disk without room (git says so in its words)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return True
        if any(words in str(exc) for words in _NO_ROOM_WORDS):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


class Runner:
    """Drives one run of ``agent`` under ``config`` on ``backend`` (see the module docstring)."""

    def __init__(
        self,
        home: Path,
        store: RunStore,
        backend: SandboxBackend,
        agent: Agent,
        config: RunConfig,
        run_id: str,
        *,
        on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.home, self.store, self.backend, self.config, self.run_id = (
            home, store, backend, config, run_id,
        )  # fmt: skip
        self.policy = config.loaded.policy
        self.scope = Scope(self.policy)
        self.on_event = on_event
        self.budget = _budget(self.policy.budgets)
        self.budget.on_change = self._budget_changed
        self.meter: RunMeter | None = None
        self.reports: list[AttemptReport] = []
        sandboxes = Sandboxes(backend, home, run_id, config.image, config.runtime,
                              self.policy.sandbox, self.scope, agent)  # fmt: skip
        self.gates = GateJudge(
            home, store, run_id, self.policy, self.budget,
            protected=lambda p: self.scope.classify(p) == "protected",
            recorded=sandboxes.recorded, spec=sandboxes.gate_spec, on_event=on_event,
        )  # fmt: skip
        b = self.policy.budgets
        self.lessons = Lessons(
            repeated_limit=b.repeated_strategy, feedback_chars=b.feedback_chars, emit=self.emit,
            hidden=self.gates.hidden,
        )  # fmt: skip
        progress = Progress(store, run_id, self.scope.progress_file,
                            self.policy.progress.max_bytes, self.emit)  # fmt: skip
        self.attempts = Attempts(
            store, run_id, config, agent, scope=self.scope, budget=self.budget,
            sandboxes=sandboxes, judge=self.gates, progress=progress, lessons=self.lessons,
            emit=self.emit, notify=self.notify if on_event is not None else None, save=self._save,
        )  # fmt: skip

    # ----------------------------------------------------------------- the run

    def execute(self) -> RunResult:
        """Run (or resume) to an outcome; the outcome is recorded before it is returned."""
        with RunLease(self.home, self.run_id):
            self._begin()
            try:
                ws, fresh = self._workspace()
                self.gates.start_baseline(ws)  # a resumed run's workspace was opened, else no-op
                result = self._attempts(ws, fresh)
            except SandboxError as exc:  # the engine, an image or host git failed, not the agent
                result = self._runtime_failure(exc)
            except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: recorded, resumable
                raise record_interruption(self.store, self.run_id) from exc
            except OSError as exc:
                if exc.errno not in _NO_ROOM:
                    raise
                result = self._runtime_failure(exc)  # resumable once there is room again
            finally:
                self.gates.stop_baseline()  # before the gate tree goes: the baseline may use it
                try:
                    self._save()
                except OSError as exc:  # a full disk: the journal's last step is still there
                    log.warning("run %s: budgets not saved: %s", self.run_id, exc)
                self.gates.remove_tree()
            try:
                self._end(result)
            except (OSError, sqlite3.Error) as exc:
                if not _full_disk(exc):
                    raise
                raise RunnerError(
                    f"run {self.run_id}: the disk is full ({exc}); its outcome could not"
                    f" be recorded: free space in {self.home}, then `corral resume {self.run_id}`"
                ) from exc
            self._keep_only_the_record(result)
            return result

    def _keep_only_the_record(self, result: RunResult) -> None:
        """A run that cannot go on keeps its record (events, artifacts, ``candidate.diff``: all
        that review and merge read) and no tree: its worktree and private git dir go now.
        A run waiting for a human, or failed on the infrastructure, keeps them for ``resume``."""
        if result.status == "waiting" or resumable(self.store, self.run_id):
            return
        try:
            remove_workspace(self.home, self.run_id)
        except OSError as exc:  # `corral gc` removes it later
            log.warning("run %s: workspace not removed: %s", self.run_id, exc)

    def _attempts(self, ws: Workspace, fresh: bool) -> RunResult:
        """Attempts until one passes, waits or stops the run, or none is left."""
        journal = {s.key: s for s in self.store.journal(self.run_id) if s.kind == "attempt"}
        for n in range(1, self.policy.budgets.attempts + 1):
            step = journal.get(str(n))
            if step is not None and step.state == "done":  # resumed: it ran to its end before
                self.reports.append(AttemptReport(**step.data["report"]))
                self.lessons.replay(self.reports[-1])
                continue
            question = question_of(step.data.get("pending")) if step is not None else None
            if isinstance(question, ScopeQuestion) and n not in self.config.scope_answers:
                return self._result("waiting", "governance", question.reason)  # still unanswered
            outcome = self._attempt(ws, n, step, fresh=fresh)
            match outcome:
                case Waiting(report=report):
                    return self._result("waiting", report.failure_domain, report.reason)
                case Stopped(end=end) if end.domain == "runtime":  # the infrastructure's: resumable
                    where = f"attempt {n}"
                    record_runtime_error(self.store, self.run_id, RuntimeError(end.reason), where)
                    hint = f"; `corral resume {self.run_id}` goes on once that is fixed"
                    return self._result(end.status, end.domain, end.reason + hint)
                case Stopped(end=end):
                    return self._result(end.status, end.domain, end.reason)
                case Judged(report=report) if report.status == "passed":
                    return self._result("ready_for_review", None, report.reason, report)
                case Judged(report=report) if report.status == "unverified":
                    return self._result("unverified", None, report.reason, report)
                case Judged(report=report, gates=gates):
                    stop = self.lessons.learn(report, gates)
                    if (broken := self.gates.broken(self.emit, wait=stop is not None)) is not None:
                        return self._result("failed", "configuration", broken)  # not the agent's
                    if stop is not None:
                        return self._result(stop.status, stop.domain, stop.reason)
        if (broken := self.gates.broken(self.emit, wait=True)) is not None:
            return self._result("failed", "configuration", broken)
        last = self.reports[-1] if self.reports else None
        reason = f"no attempt passed ({self.policy.budgets.attempts} attempts)"
        if last is None:
            return self._result("failed", "harness", reason)
        return self._result("failed", last.failure_domain, f"{reason}; last: "
                            f"{last.failure_domain}: {last.reason}")  # fmt: skip

    def _attempt(self, ws: Workspace, n: int, step: Step | None, *, fresh: bool) -> AttemptOutcome:
        """Attempt ``n``, journaled: new, continued from where it paused, or its escalated
        candidate judged on a human's answer."""
        data = step.data if step is not None else {}
        if isinstance(question_of(data.get("pending")), ScopeQuestion):
            answer = self.config.scope_answers[n]
            seq = self.store.journal_start(self.run_id, "attempt", str(n), {"scope_answer": answer})
            outcome = self.attempts.answered(ws, AttemptReport(**data["report"]), answer)
        else:
            seq = self.store.journal_start(self.run_id, "attempt", str(n), {})
            resume = ResumePoint.of(data.get("resume"))
            outcome = self.attempts.run(ws, n, resume, fresh=fresh)
        self.reports.append(outcome.report)
        record: dict[str, Any] = {"report": asdict(outcome.report)}
        if isinstance(outcome, Waiting):
            record["pending"] = outcome.question.to_json()
            wait_for(self.store, self.run_id, record["pending"])
            if outcome.resume is not None:
                record["resume"] = outcome.resume.to_json()
            self.store.journal_failed(self.run_id, seq, record)
        else:
            self.store.journal_done(self.run_id, seq, record)
        self._save()
        self.emit("attempt_end", asdict(outcome.report))
        return outcome

    # ----------------------------------------------------------------- its beginning and end

    def _begin(self) -> None:
        """Show the limits, remove what a crashed earlier process left, seed the budget."""
        self.notify("run_limits", self._limits())
        resumed = bool(self.store.journal(self.run_id))  # else no process ran it before
        if resumed and isinstance(self.backend, OnEngine):  # leftovers of a crashed process
            for cid in remove_run_containers(self.backend.client, self.home, self.run_id):
                self.emit("orphan_removed", {"container": cid})
        self.meter = RunMeter.open(self.store, self.run_id)
        self.meter.seed(self.budget, self.policy.budgets.wall_seconds)
        self.store.update(self.run_id, status="running")

    def _workspace(self) -> tuple[Workspace, bool]:
        """The run's worktree: opened (a resume), or checked out at base now (then ``True``)."""
        try:
            return Workspace.open(self.home, self.run_id).with_exclude(self._exclude), False
        except SandboxError:
            left = {}  # what set-up left in its tree: the environment image holds it
            if isinstance(self.backend, OnEngine):
                left = read_setup_files(
                    self.backend.client, self.config.image, run_id=self.run_id, home=self.home
                )
            ws = Workspace.create(
                Path(self.config.task.repo), self.config.task.base, self.run_id, self.home,
                before_checkout=self.gates.start_baseline,  # it needs the git dir, not the tree
                environment=left,
            )  # fmt: skip
            self.emit("workspace", {"path": str(ws.path), "base": ws.base,
                                    "setup_files": len(left)})  # fmt: skip
            return ws.with_exclude(self._exclude), True

    def _exclude(self, path: str) -> str | None:
        """Keep the progress file (silently) and policy artifacts (reported) out of candidates;
        a link or file where the progress file's directory goes is a finding (never followed)."""
        cls = self.scope.classify(path.rstrip("/"))
        folder = self.scope.progress_file.rpartition("/")[0]
        if cls == "progress" or (folder and path == folder + "/"):
            return ""
        if folder and path == folder:
            return "the progress file's directory is not a real directory: not followed, not read"
        return "policy: build artifact" if cls == "artifact" else None

    def _runtime_failure(self, exc: SandboxError | OSError) -> RunResult:
        """Record an infrastructure failure; a failed baseline's comes first (the earlier step).

        On a full disk the record may be cut short (``record_runtime_error`` keeps what fits);
        the reason says to free space and resume."""
        step = self.store.last_incomplete(self.run_id)
        where = f"{step.kind} {step.key}" if step is not None else "workspace"
        failed = self.gates.stop_baseline()
        if isinstance(failed, SandboxError):
            exc, where = failed, "baseline base"
        reason = record_runtime_error(self.store, self.run_id, exc, where)
        if _full_disk(exc):
            reason = f"the disk is full: free space in {self.home}, then resume; {reason}"
        return self._result("failed", "runtime", reason)

    def _result(
        self,
        status: RunStatus,
        domain: FailureDomain | None,
        reason: str,
        candidate: AttemptReport | None = None,
    ) -> RunResult:
        """The run's result; a ``candidate`` attempt's patch (passed, or unverified: for a human
        to look at) becomes the candidate (``candidate.diff``)."""
        patch_path = None
        if candidate is not None:
            path = self.store.artifact_path(self.run_id, f"attempt-{candidate.attempt}/patch.diff")
            patch_path = str(
                self.store.write_artifact(self.run_id, "candidate.diff", path.read_bytes())
            )
        return RunResult(self.run_id, status, domain, reason, patch_path, list(self.reports))

    def _end(self, result: RunResult) -> RunResult:
        """Record the outcome, durably: what a reviewer or merge relies on."""
        self.store.update(
            self.run_id,
            status=result.status,
            failure_domain=result.failure_domain,
            reason=result.reason,
            attempts_done=len(self.reports),
        )
        end: dict[str, Any] = {"status": result.status, "reason": result.reason}
        if result.patch_path is not None:  # what a reviewer approves is this exact patch
            patch = Path(result.patch_path).read_bytes()
            end["candidate_sha256"] = hashlib.sha256(patch).hexdigest()
        self.emit("run_end", end)
        self.store.sync(self.run_id)
        return result

    # ----------------------------------------------------------------- records

    def emit(self, kind: str, data: Mapping[str, Any]) -> None:
        self.store.append(self.run_id, kind, dict(data))
        self._show(kind, data)

    def notify(self, kind: str, data: Mapping[str, Any]) -> None:
        """A live-only notice for ``on_event`` (the display), not recorded in the event log.

        ``run_limits``, ``command_start``, ``budget`` and ``baseline_started`` are
        this kind: the log keeps what happened, the display also wants what is
        happening now.
        """
        self._show(kind, data)

    def _show(self, kind: str, data: Mapping[str, Any]) -> None:
        """``on_event``, after what the background baseline recorded meanwhile (same thread)."""
        self.gates.deliver()
        if self.on_event is not None:
            self.on_event(kind, data)

    def _save(self) -> None:
        """Write the run-wide budget usage to the record (once the meter is open)."""
        if self.meter is not None:
            self.meter.save(self.budget)

    def _budget_changed(self) -> None:
        """After each counted step and model charge: save a charge, show the counters."""
        if self.meter is not None:
            self.meter.charged(self.budget)
        if self.on_event is not None:
            self.notify("budget", self.budget.counters())

    def _limits(self) -> dict[str, Any]:
        b = self.policy.budgets
        return {
            "attempts": b.attempts, "windows": b.windows, "steps": b.steps, "tokens": b.tokens,
            "cost_usd": b.cost_usd, "wall_seconds": b.wall_seconds,
            "gates": [g.name for g in self.policy.gates],
        }  # fmt: skip


def _budget(b: BudgetPolicy) -> Budget:
    """The run's ``Budget`` from the policy's limits (the wall clock starts now)."""
    return Budget(
        steps=b.steps,
        output_bytes=b.output_bytes,
        tokens=b.tokens,
        cost_usd=b.cost_usd,
        deadline=time.monotonic() + b.wall_seconds,
        repeated_command=b.repeated_command,
        idle_steps=b.idle_steps,
    )
