"""The control loop: bounded attempts, each judged by the runner, rolled back when it fails.

    run:      create record -> workspace -> environment -> baseline gates (background) -> attempts
    attempt:  clean tree (+ progress) -> sandbox -> windows -> kill sandbox -> harvest -> judge
    judge:    findings -> patch scope -> empty? -> repeated strategy? -> wait for the baseline
              -> gates vs baseline
    outcome:  ready_for_review | failed(domain) | budget_exhausted | waiting(for a human)

Expected exits are the ``StopAttempt`` tree from ``runner.loop.tools`` and
``RunStopped`` here, caught in ``_attempt`` and ``execute`` only. Every step is
journaled before and after it runs (``RunStore``), so ``resume`` continues
after the last completed attempt; an interrupted attempt is rolled back to
base (its progress file kept) and run again, never replayed half-way. An
attempt paused by the model's circuit breaker is the exception: it continues
from the code state and progress file of the window it paused in.

What ends the run rather than the attempt is still recorded as the attempt's
outcome first: a run-wide budget (``harness``), an agent error that says
``stops_run`` (a permanent model refusal), a repeated strategy. An
infrastructure failure (``SandboxError``: engine, image, host git) outside an
attempt's windows ends the run as ``failed`` (``runtime``), resumable
(``runner.loop.resume``); so does one in the baseline gates, which run on a thread
of their own while attempt 1 works (``runner.loop.baseline``) and are waited for by
the first judge that runs gates. Run-wide budget usage is saved to the record as it is
spent and seeds the next process's ``Budget`` (``RunMeter``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from policies.commands import CommandValidator
from policies.load import LoadedPolicy
from policies.policy import Policy
from policies.scope import Scope, check_patch
from runner.loop.agent import Agent, Task, WindowContext
from runner.loop.baseline import Emit
from runner.loop.gates import GateResult, feedback, gate_map
from runner.loop.judge import GateJudge
from runner.loop.outcome import AttemptReport, RunResult, RunStopped
from runner.loop.resume import RunMeter, record_runtime_error, wait_for
from runner.loop.tools import ATTEMPT_BUDGETS, Budget, BudgetExceeded, NeedsHuman, Paused, Tools
from runner.store.runs import RunStore, Step
from sandbox.errors import EngineUnavailable, SandboxError, SandboxNotRemoved
from sandbox.gc import remove_run_containers
from sandbox.harvest import Harvest, harvest
from sandbox.interfaces import SandboxBackend
from sandbox.lease import RunLease
from sandbox.recording import SpecRecorder, spec_record
from sandbox.spec import Limits, Mount, SandboxSpec
from sandbox.watch import TreeWatch
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)

_HUNK = re.compile(r"^(index |@@ ).*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs besides the store: decided by the CLI, recorded with the run."""

    task: Task
    loaded: LoadedPolicy
    image: str
    runtime: Literal["runc", "runsc"] | None = None
    approved: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()
    scope_answers: Mapping[int, str] = field(default_factory=dict)
    """A human's answer (``approved``/``rejected``) to attempt N's escalated scope violation."""


class Runner:
    """Drives one run of ``agent`` under ``config`` (see the module docstring)."""

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
        self.home, self.store, self.backend, self.agent = home, store, backend, agent
        self.config, self.run_id = config, run_id
        self.policy: Policy = config.loaded.policy
        self.scope = Scope(self.policy)
        self.validator = CommandValidator(self.policy.commands)
        self.on_event = on_event
        b = self.policy.budgets
        self.budget = Budget(
            steps=b.steps,
            output_bytes=b.output_bytes,
            tokens=b.tokens,
            cost_usd=b.cost_usd,
            deadline=time.monotonic() + b.wall_seconds,
            repeated_command=b.repeated_command,
            idle_steps=b.idle_steps,
        )
        self.budget.on_change = self._budget_changed
        self.meter: RunMeter | None = None
        self.gates = GateJudge(
            home, store, run_id, self.policy, self.budget,
            protected=lambda p: self.scope.classify(p) == "protected",
            recorded=self._recorded, spec=lambda ws: self._spec(ws, gate=True), on_event=on_event,
        )  # fmt: skip
        self.failed_strategies: dict[str, int] = {}
        self.feedback = ""
        self.reports: list[AttemptReport] = []
        self._gate_results: list[GateResult] = []
        self._fresh = False
        self._pending: dict[str, Any] | None = None  # the question an attempt ended waiting on
        self._resume_at: dict[str, Any] | None = None  # where a paused attempt continues
        self._stop: BaseException | None = None  # what ends the run once the attempt is recorded

    # ----------------------------------------------------------------- the run

    def execute(self) -> RunResult:
        """Run (or resume) to an outcome; the outcome is recorded before it is returned."""
        with RunLease(self.home, self.run_id):
            self.notify("run_limits", self._limits())
            client = getattr(self.backend, "client", None)
            resumed = bool(self.store.journal(self.run_id))  # else no process ran it before
            if client is not None and resumed:  # leftovers of a crashed earlier process
                for cid in remove_run_containers(client, self.home, self.run_id):
                    self.emit("orphan_removed", {"container": cid})
            self.meter = RunMeter.open(self.store, self.run_id)
            self.meter.seed(self.budget, self.policy.budgets.wall_seconds)
            self.store.update(self.run_id, status="running")
            try:
                ws = self._workspace()
                self.gates.start_baseline(ws)  # a resumed run's workspace was opened, else no-op
                result = self._attempts(ws)
            except RunStopped as stop:
                result = self._result(stop.status, stop.domain, stop.reason, None)
            except BudgetExceeded as exc:
                result = self._result("budget_exhausted", "harness", str(exc), None)
            except SandboxError as exc:  # the engine, an image or host git failed, not the agent
                result = self._runtime_failure(exc)
            finally:
                self.gates.stop_baseline()  # before the gate tree goes: the baseline may use it
                self.meter.save(self.budget)
                self.gates.remove_tree()
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
            self.store.sync(self.run_id)  # the outcome a reviewer or merge relies on: on disk
            return result

    def _runtime_failure(self, exc: SandboxError) -> RunResult:
        """Record an infrastructure failure; a failed baseline's comes first (the earlier step)."""
        step = self.store.last_incomplete(self.run_id)
        where = f"{step.kind} {step.key}" if step is not None else "workspace"
        failed = self.gates.stop_baseline()
        if isinstance(failed, SandboxError):
            exc, where = failed, "baseline base"
        reason = record_runtime_error(self.store, self.run_id, exc, where)
        return self._result("failed", "runtime", reason, None)

    def _budget_changed(self) -> None:
        """After each counted step and model charge: save a charge, show the counters."""
        if self.meter is not None:
            self.meter.charged(self.budget)
        if self.on_event is not None:
            self.notify("budget", self.budget.counters())

    def _workspace(self) -> Workspace:
        exclude = self._exclude
        self._fresh = False
        try:
            return Workspace.open(self.home, self.run_id).with_exclude(exclude)
        except SandboxError:
            self._fresh = True  # a tree just checked out at base: attempt 1 needs no rollback
            ws = Workspace.create(
                Path(self.config.task.repo), self.config.task.base, self.run_id, self.home,
                before_checkout=self.gates.start_baseline,  # it needs the git dir, not the tree
            )  # fmt: skip
            self.emit("workspace", {"path": str(ws.path), "base": ws.base})
            return ws.with_exclude(exclude)

    def _exclude(self, path: str) -> str | None:
        """Keep the progress file (silently) and policy artifacts (reported) out of candidates."""
        cls = self.scope.classify(path.rstrip("/"))
        if cls == "progress" or path.rstrip("/") == self.scope.progress_file.rpartition("/")[0]:
            return ""
        return "policy: build artifact" if cls == "artifact" else None

    def _attempts(self, ws: Workspace) -> RunResult:
        done = {s.key: s for s in self.store.journal(self.run_id) if s.kind == "attempt"}
        for n in range(1, self.policy.budgets.attempts + 1):
            step = done.get(str(n))
            if step is not None and step.state == "done":
                self._replay(AttemptReport(**step.data["report"]))
                continue
            if step is not None and step.data.get("pending", {}).get("kind") == "scope":
                answered = self._scope_answered(ws, n, step)
                if answered is None:  # resumed without an answer: still waiting for one
                    reason = step.data["report"]["reason"]
                    return self._result("waiting", "governance", reason, None)
                report = answered
            else:
                resume_at = step.data.get("resume") if step is not None else None
                report = self._journaled_attempt(ws, n, resume_at)
            if report.status == "passed":
                return self._result("ready_for_review", None, report.reason, report)
            if report.status == "waiting":
                return self._result("waiting", report.failure_domain, report.reason, None)
        last = self.reports[-1] if self.reports else None
        reason = f"no attempt passed ({self.policy.budgets.attempts} attempts)"
        if last is not None:
            reason += f"; last: {last.failure_domain}: {last.reason}"
        return self._result("failed", last.failure_domain if last else "harness", reason, None)

    def _replay(self, report: AttemptReport) -> None:
        """Take a finished attempt from the journal (resume) into this run's state."""
        self.reports.append(report)
        self._count_strategy(report.strategy)
        self.feedback = self._feedback_for(report, [])

    def _count_strategy(self, strategy: str | None) -> None:
        if strategy:
            self.failed_strategies[strategy] = self.failed_strategies.get(strategy, 0) + 1

    def _journaled_attempt(
        self, ws: Workspace, n: int, resume_at: Mapping[str, Any] | None = None
    ) -> AttemptReport:
        seq = self.store.journal_start(self.run_id, "attempt", str(n), {})
        self._pending = self._resume_at = self._stop = None
        report = self._attempt(ws, n, resume_at)
        return self._record_attempt(seq, report)

    def _record_attempt(self, seq: int, report: AttemptReport) -> AttemptReport:
        """Journal an attempt's outcome (and its open question), then stop the run if it must."""
        n = report.attempt
        self.reports.append(report)
        data: dict[str, Any] = {"report": asdict(report)}
        if self._pending is not None:
            data["pending"] = self._pending
            wait_for(self.store, self.run_id, self._pending)
        if self._resume_at is not None:
            data["resume"] = self._resume_at
        if report.status == "waiting":
            self.store.journal_failed(self.run_id, seq, data)
        else:
            self.store.journal_done(self.run_id, seq, data)
        if self.meter is not None:
            self.meter.save(self.budget)
        self.emit("attempt_end", asdict(report))
        if self._stop is not None:
            raise self._stop
        if report.status != "failed":
            return report
        self.feedback = self._feedback_for(report, self._gate_results)
        repeats = self.failed_strategies.get(report.strategy or "", 0)
        if repeats > 1:
            self.emit(
                "repeated_strategy", {"attempt": n, "strategy": report.strategy, "times": repeats}
            )
            self.feedback += (
                f"\nThis attempt repeated a change that already failed ({repeats} times). "
                "Try a different approach."
            )
        if repeats >= self.policy.budgets.repeated_strategy:
            raise RunStopped(
                "failed", "harness", f"repeated strategy: the same failing change {repeats} times"
            )
        return report

    # ----------------------------------------------------------------- one attempt

    def _attempt(
        self, ws: Workspace, n: int, resume_at: Mapping[str, Any] | None = None
    ) -> AttemptReport:
        """One attempt; ``resume_at`` (window, code state, steps) continues a paused one."""
        report = AttemptReport(attempt=n)
        self._gate_results = []
        progress = self._latest_progress()
        if resume_at is not None and self._fresh:
            resume_at = None  # the workspace is gone, and its window states with it
        self.emit("attempt_start", {"attempt": n, "resumed_at": resume_at})
        if resume_at is not None:
            ws.rollback(str(resume_at["code_state"]))
        elif not (self._fresh and n == 1):
            ws.rollback(ws.base)
        if progress:
            self._put_progress(ws, progress)
        self.budget.new_attempt()
        if resume_at is not None:  # the attempt's own budgets continue too
            self.budget.used_steps = int(resume_at.get("steps", 0))
            self.budget.used_output = int(resume_at.get("output_bytes", 0))
        # before anything in the sandbox can write. A rolled-back or fresh tree holds nothing
        # untracked but the progress file (which every scan leaves out): no ignored directory
        # to leave unwatched, no ignored path for the scope check to list yet
        watch = TreeWatch.open(ws.path, settled=True)
        try:
            sandbox = self._recorded(self.emit, role="attempt", attempt=n).start(self._spec(ws))
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        tools = Tools(
            sandbox=sandbox,
            workspace=ws,
            scope=self.scope,
            validator=self.validator,
            budget=self.budget,
            emit=self.emit,
            command_timeout=self.policy.commands.timeout,
            approved=self.config.approved,
            rejected=self.config.rejected,
            watch=watch,
            notify=self.notify if self.on_event is not None else None,
            ignored=frozenset(),
        )
        try:
            self._windows(ws, n, tools, report, resume_at)
        except NeedsHuman as ask:
            report.status, report.reason = "waiting", str(ask)
            self._pending = {"kind": "command", "command": ask.command, "reason": ask.reason}
            return report
        except Paused as pause:  # e.g. the model endpoint's circuit opened: wait for `resume`
            report.status, report.failure_domain = "waiting", getattr(pause, "domain", "runtime")
            report.reason = f"{report.failure_domain}: {pause}"
            self._pending = {"kind": "paused", "reason": report.reason}
            # the window's progress and code state, while the sandbox is still up (nothing runs
            # in it now: the agent waited on the model), so that `resume` continues from them
            state = self._snapshot_window(ws, n, report.windows)
            self._resume_at = {"window": report.windows, "code_state": state,
                               "steps": self.budget.used_steps,
                               "output_bytes": self.budget.used_output}  # fmt: skip
            return report
        except BudgetExceeded as exc:
            report.failure_domain, report.reason = "harness", str(exc)
            if exc.resource not in ATTEMPT_BUDGETS:
                self._stop = exc  # a run-wide budget ends the run, once this attempt is recorded
        except SandboxError as exc:
            report.failure_domain, report.reason = "runtime", f"sandbox failed: {exc}"
        finally:
            with contextlib.suppress(SandboxError):  # harvest refuses a sandbox not confirmed gone
                sandbox.close()  # kill and remove FIRST: nothing may change the tree while it is read
            if watch is not None:
                watch.close()
            report.violations, report.denied = list(tools.violations), list(tools.denied)
        try:
            h = harvest(ws, sandbox=sandbox, label=f"attempt-{n}",
                        allow_symlinks=self.policy.scope.allow_symlinks)  # fmt: skip
        except (SandboxNotRemoved, EngineUnavailable) as exc:  # it may still write: not read
            report.failure_domain, report.reason = "runtime", f"tree not harvested: {exc}"
            # no rollback and no next attempt while a container may still write into the tree;
            # `corral gc` or `corral resume` removes it once the engine lets go of it
            self._stop = RunStopped("failed", "runtime", report.reason)
            return report
        report.commit = h.commit
        report.changed_files = [c.path for c in h.changes]
        report.findings = [f"{f.kind}: {f.path} ({f.detail})" for f in h.findings]
        self.store.write_artifact(self.run_id, f"attempt-{n}/patch.diff", h.patch_bytes)
        if report.failure_domain is None:
            try:
                self._judge(ws, n, h, report)
            except BudgetExceeded as exc:  # the wall clock ran out during the gates
                report.failure_domain, report.reason = "harness", str(exc)
                self._stop = exc
        if report.status != "passed":
            if h.changes:
                report.strategy = strategy_key(h.patch)
            elif tools.commands:
                report.strategy = "cmds-" + strategy_key("\n".join(tools.commands))
            self._count_strategy(report.strategy)
        return report

    def _windows(
        self,
        ws: Workspace,
        n: int,
        tools: Tools,
        report: AttemptReport,
        resume_at: Mapping[str, Any] | None = None,
    ) -> None:
        max_windows = self.policy.budgets.windows
        first = int(resume_at["window"]) if resume_at is not None else 1
        for w in range(first, max_windows + 1):
            report.windows = w
            self.emit("window_start", {"attempt": n, "window": w})
            ctx = WindowContext(
                task=self.config.task,
                attempt=n,
                window=w,
                max_windows=max_windows,
                progress=self._read_progress(ws),
                feedback=self.feedback,
                policy_summary=self._policy_summary(),
                diff_stat=_diff_stat(ws)
                if w > 1 or resume_at is not None
                else "(no changes yet: the tree is at base)",
                tools=tools,
            )
            try:
                outcome = self.agent.run_window(ctx)
            except (BudgetExceeded, NeedsHuman, Paused, SandboxError):
                raise
            except Exception as exc:  # the agent's own failure: classified, never a crash
                report.failure_domain = getattr(exc, "domain", "model")
                report.reason = f"agent error: {exc}"
                if getattr(exc, "stops_run", False):  # e.g. the endpoint refuses the key
                    self._stop = RunStopped("failed", report.failure_domain, report.reason)
                self._snapshot_window(ws, n, w, last=True)
                return
            self.budget.model(outcome.tokens, outcome.cost_usd)
            finished = outcome.end in ("finished", "agent_error") or tools.finished is not None
            self._snapshot_window(ws, n, w, last=finished or w == max_windows)
            if self.meter is not None:
                self.meter.save(self.budget)
            self.emit("window_end", {"attempt": n, "window": w, "end": outcome.end})
            if outcome.end == "finished" or tools.finished is not None:
                return
            if outcome.end == "agent_error":
                report.failure_domain = outcome.domain
                report.reason = outcome.detail or "agent error"
                return
        report.failure_domain = "context"
        report.reason = f"no finish within {max_windows} context windows"

    def _judge(self, ws: Workspace, n: int, h: Harvest, report: AttemptReport) -> None:
        if h.blocked:
            bad = [f for f in h.findings if not h.complete or f.kind in ("git_pointer_changed",)]
            report.failure_domain = "governance"
            report.reason = "unsafe tree: " + "; ".join(f"{f.kind} {f.path}" for f in bad[:5])
            return
        changes = [(c.path, c.old_mode, c.new_mode) for c in h.changes]
        blocking = [v for v in check_patch(self.scope, changes, h.patch) if v.severity == "block"]
        if blocking:
            report.violations += [str(v) for v in blocking]
            first = blocking[0]
            if self.policy.scope.on_violation == "escalate":
                report.status = "waiting"
                report.reason = f"scope violation needs a human: {first}"
                self._pending = {"kind": "scope", "attempt": n, "commit": h.commit,
                                 "reason": report.reason, "violations": report.violations[:20]}  # fmt: skip
                return
            report.failure_domain = "governance"
            report.reason = (
                f"{first.detail}: {first.path}"
                if first.kind != "protected_path"
                else (f"wrote protected path {first.path}")
            )
            return
        if not h.changes:
            report.failure_domain, report.reason = "model", "the attempt changed nothing"
            return
        self._judge_gates(ws, n, h.commit, report)

    def _judge_gates(self, ws: Workspace, n: int, commit: str, report: AttemptReport) -> None:
        results = self.gates.run(ws, commit, f"attempt-{n}", self.emit)  # after the baseline
        self._gate_results = results
        report.gates = dict(gate_map(results))
        failed = [r for r in results if r.required and not r.passed]
        if failed:
            report.failure_domain = "model"
            report.reason = "; ".join(f"gate {r.name} failed: {r.reason}" for r in failed)
            return
        report.status = "passed"
        report.reason = "all required gates passed" if results else "no gates configured"

    def _scope_answered(self, ws: Workspace, n: int, step: Step) -> AttemptReport | None:
        """Attempt ``n`` ended on an escalated scope violation: honour the human's answer.

        Approved: its candidate (the harvest commit, as it was) goes on to the
        gates. Rejected: the attempt fails as ``governance`` and the next one
        starts. No answer yet: None (the run keeps waiting).
        """
        answer = self.config.scope_answers.get(n)
        if answer is None:
            return None
        report = AttemptReport(**step.data["report"])
        report.status, report.failure_domain = "failed", "governance"
        self._pending = self._resume_at = self._stop = None
        self._gate_results = []
        seq = self.store.journal_start(self.run_id, "attempt", str(n), {"scope_answer": answer})
        self.emit("scope_answer", {"attempt": n, "answer": answer, "commit": report.commit})
        if answer == "approved" and report.commit is not None:
            try:
                self._judge_gates(ws, n, report.commit, report)
            except BudgetExceeded as exc:
                report.reason, self._stop = str(exc), exc
            if report.status == "passed":
                report.failure_domain = None
                report.reason += " (scope violation approved by a human)"
        else:
            report.reason = f"a human rejected the scope violation: {report.reason}"
        if report.status != "passed":
            self._count_strategy(report.strategy)
        return self._record_attempt(seq, report)

    # ----------------------------------------------------------------- sandbox, progress

    def _spec(self, ws: Workspace, *, gate: bool = False) -> SandboxSpec:
        sp = self.policy.sandbox
        mounts: list[Mount] = []
        if not gate:
            mounts.append(Mount(source=str(ws.path / ".git"), target="/workspace/.git"))
            base_files = [p for p in ws.tree_listing(ws.base) if p != ".git"]
            for rel in self.scope.readonly_paths(base_files):
                if (ws.path / rel).exists() and not (ws.path / rel).is_symlink():
                    mounts.append(Mount(source=str(ws.path / rel), target=f"/workspace/{rel}"))
            extra = getattr(self.agent, "sandbox_mounts", None)
            if extra is not None:  # an agent CLI's files, gateway socket and forwarder (read-only)
                mounts.extend(extra())
        return SandboxSpec(
            image=self.config.image,
            runtime=self.config.runtime or sp.runtime,
            workspace=str(ws.path),
            mounts=tuple(mounts),
            limits=Limits(memory_mb=sp.memory_mb, cpus=sp.cpus, pids=sp.pids),
            run_id=self.run_id,
            owner_home=str(self.home),
        )

    def _recorded(self, emit: Emit, **role: Any) -> SandboxBackend:
        """``self.backend``, recording each sandbox's effective spec as a ``sandbox_spec`` event."""
        return SpecRecorder(
            self.backend, lambda spec, sb: emit("sandbox_spec", {**role, **spec_record(spec, sb)})
        )

    def _policy_summary(self) -> str:
        gates = ", ".join(f"`{g.name}` ({g.command})" for g in self.policy.gates) or "none"
        b = self.policy.budgets
        return (
            f"{self.scope.summary()} Gates the runner runs on your change: {gates}. "
            f"Budgets: {b.steps} actions per attempt, {b.attempts} attempts, {b.windows} windows per attempt."
        )

    def _read_progress(self, ws: Workspace) -> str:
        path = ws.path / self.scope.progress_file
        if path.is_symlink() or not path.is_file():
            return ""
        return path.read_bytes()[: self.policy.progress.max_bytes].decode(errors="replace")

    def _snapshot_window(self, ws: Workspace, n: int, w: int, *, last: bool = False) -> str | None:
        """Progress file + code state, durably, at the end of a window (host side).

        The code state of an attempt's last window is the harvest commit (taken
        right after, with the container gone); other windows get a commit of
        their own on ``refs/corral/windows/a<n>-w<w>``.
        """
        text = self._read_progress(ws)
        state = None
        if not last:
            state = ws.commit_snapshot(ws.snapshot(), f"window state a{n}w{w}")
            ws.checkpoint_ref(f"windows/a{n}-w{w}", state)
        self.store.write_artifact(self.run_id, f"attempt-{n}/window-{w}/progress.md", text)
        self.store.write_artifact(self.run_id, "progress/latest.md", text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        self.emit(
            "progress_snapshot",
            {"attempt": n, "window": w, "sha256": digest, "code_state": state or "harvest"},
        )
        return state

    def _latest_progress(self) -> str:
        path = self.store.artifact_path(self.run_id, "progress/latest.md")
        return path.read_text() if path.is_file() else ""

    def _put_progress(self, ws: Workspace, text: str) -> None:
        ws.write_file(self.scope.progress_file, text.encode())

    # ----------------------------------------------------------------- records

    def emit(self, kind: str, data: Mapping[str, Any]) -> None:
        self.store.append(self.run_id, kind, dict(data))
        self._show(kind, data)

    def _show(self, kind: str, data: Mapping[str, Any]) -> None:
        """``on_event``, after what the background baseline recorded meanwhile (same thread)."""
        self.gates.deliver()
        if self.on_event is not None:
            self.on_event(kind, data)

    def notify(self, kind: str, data: Mapping[str, Any]) -> None:
        """A live-only notice for ``on_event`` (the display), not recorded in the event log.

        ``run_limits``, ``command_start``, ``budget`` and ``baseline_started`` are
        this kind: the log keeps what happened, the display also wants what is
        happening now.
        """
        self._show(kind, data)

    def _limits(self) -> dict[str, Any]:
        b = self.policy.budgets
        return {
            "attempts": b.attempts, "windows": b.windows, "steps": b.steps, "tokens": b.tokens,
            "cost_usd": b.cost_usd, "wall_seconds": b.wall_seconds,
            "gates": [g.name for g in self.policy.gates],
        }  # fmt: skip

    def _feedback_for(self, report: AttemptReport, results: list[GateResult]) -> str:
        lines = [f"Attempt {report.attempt} failed ({report.failure_domain}): {report.reason}."]
        if report.violations:
            lines.append("Scope violations (reverted): " + "; ".join(report.violations[:10]))
        if report.denied:
            lines.append("Commands denied by policy: " + "; ".join(report.denied[:10]))
        gate_text = feedback(results, self.policy.budgets.feedback_chars) if results else ""
        return "\n".join(lines) + ("\n" + gate_text if gate_text else "")

    def _result(
        self, status: str, domain: str | None, reason: str, passed: AttemptReport | None
    ) -> RunResult:
        patch_path = None
        if passed is not None:
            path = self.store.artifact_path(self.run_id, f"attempt-{passed.attempt}/patch.diff")
            patch_path = str(
                self.store.write_artifact(self.run_id, "candidate.diff", path.read_bytes())
            )
        return RunResult(self.run_id, status, domain, reason, patch_path, list(self.reports))


def strategy_key(patch: str) -> str:
    """A hash of a patch with index lines, hunk positions and whitespace normalized away."""
    body = _HUNK.sub("", patch)
    norm = "\n".join(" ".join(line.split()) for line in body.splitlines() if line.strip())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def _diff_stat(ws: Workspace) -> str:
    changes = ws.changes()
    return "\n".join(f"{c.status:>12} {c.path}" for c in changes) or "(no changes yet)"
