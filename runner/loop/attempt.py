"""One attempt: a clean tree, a sandbox, context windows, the harvest, the verdict.

    prepare:  roll back to base (a paused attempt: to its window's code state), carry progress
    work:     sandbox -> windows (``Agent.run_window`` through ``Tools``) -> sandbox killed FIRST
    harvest:  lstat scan, the patch through a temporary index (``sandbox.harvest``)
    judge:    findings -> patch scope -> empty? -> gates vs the baseline (``GateJudge``):
              passed, failed, or unverified (no required gate, no opt-out); an empty patch
              is ``governance`` when all the attempt did was refused or reverted (named),
              else ``model`` (it changed nothing)

``Attempts.run`` returns what the attempt came to (``runner.loop.outcome``) and
journals none of it: the run's attempt loop does. The expected exits of the
windows (``NeedsHuman``, ``Paused``, ``BudgetExceeded``, a ``SandboxError`` of
the sandbox) are caught in ``_sandboxed`` only, and become outcomes; an
agent's own exception fails the attempt in its domain (``Classified``), and
the run when it says so (``MayStopRun``). What else fails (the sandbox not
starting, host git, a harvest that cannot tell the sandbox is gone) is raised
or stops the run: the runner ends the run as ``runtime``, resumable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from policies.budget import ATTEMPT_BUDGETS, Budget, BudgetExceeded
from policies.commands import CommandValidator
from policies.errors import StopAttempt
from policies.gates import GateResult, gate_map, tamper_findings
from policies.scope import Scope, check_patch
from runner.errors import GateCannotRun, NeedsHuman, Paused
from runner.loop.agent import Agent, WindowContext
from runner.loop.capabilities import Classified, MayStopRun
from runner.loop.config import RunConfig
from runner.loop.judge import GateJudge
from runner.loop.lessons import Lessons, strategy_key
from runner.loop.outcome import (
    AttemptOutcome,
    AttemptReport,
    CommandQuestion,
    GateSeconds,
    Judged,
    PauseQuestion,
    ResumePoint,
    RunStopped,
    ScopeQuestion,
    Stopped,
    Waiting,
    is_domain,
)
from runner.loop.progress import Progress
from runner.loop.specs import Sandboxes
from runner.loop.tools import Tools
from runner.store.runs import FailureDomain, RunStore
from sandbox.errors import EngineUnavailable, SandboxError, SandboxNotRemoved
from sandbox.harvest import Harvest, harvest
from sandbox.watch import TreeWatch
from sandbox.workspace import Workspace

Emit = Callable[[str, Mapping[str, Any]], None]


class Attempts:
    """The attempts of one run (see the module docstring); ``save`` writes the run's budget usage."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        config: RunConfig,
        agent: Agent,
        *,
        scope: Scope,
        budget: Budget,
        sandboxes: Sandboxes,
        judge: GateJudge,
        progress: Progress,
        lessons: Lessons,
        emit: Emit,
        notify: Emit | None,
        save: Callable[[], None],
    ) -> None:
        self.store, self.run_id, self.config, self.agent = store, run_id, config, agent
        self.policy = config.loaded.policy
        self.scope, self.budget, self.sandboxes, self.judge = scope, budget, sandboxes, judge
        self.progress, self.lessons = progress, lessons
        self.emit, self.notify, self.save = emit, notify, save
        self.validator = CommandValidator(self.policy.commands)

    def run(
        self, ws: Workspace, n: int, resume: ResumePoint | None, *, fresh: bool
    ) -> AttemptOutcome:
        """Attempt ``n``, or the paused attempt ``n`` from ``resume``.

        ``fresh``: this process checked the tree out at base (attempt 1 needs no
        rollback; a resume point of the workspace that was gone is void).
        """
        if resume is not None and fresh:
            resume = None  # the workspace is gone, and its window states with it
        report = AttemptReport(attempt=n)
        resumed_at = resume.to_json() if resume is not None else None
        self.emit("attempt_start", {"attempt": n, "resumed_at": resumed_at})
        if resume is not None:
            ws.rollback(resume.code_state)
        elif not (fresh and n == 1):
            ws.rollback(ws.start)
        self.progress.carry(ws)
        self.budget.new_attempt()
        if resume is not None:  # the attempt's own budgets continue too
            self.budget.used_steps, self.budget.used_output = resume.steps, resume.output_bytes
        tools, ended = self._sandboxed(ws, report, resume)
        if isinstance(ended, Waiting):
            return ended
        try:
            h = harvest(ws, sandbox=tools.sandbox, label=f"attempt-{n}",
                        allow_symlinks=self.policy.scope.allow_symlinks)  # fmt: skip
        except (SandboxNotRemoved, EngineUnavailable) as exc:  # it may still write: not read
            report.failure_domain, report.reason = "runtime", f"tree not harvested: {exc}"
            # no rollback and no next attempt while a container may still write into the tree;
            # `corral gc` or `corral resume` removes it once the engine lets go of it
            return Stopped(report, RunStopped("failed", "runtime", report.reason))
        report.commit = h.commit
        report.changed_files = [c.path for c in h.changes]
        report.findings = [f"{f.kind}: {f.path} ({f.detail})" for f in h.findings]
        self.store.write_artifact(self.run_id, f"attempt-{n}/patch.diff", h.patch_bytes)
        outcome: AttemptOutcome = Judged(report) if ended is None else Stopped(report, ended)
        if report.failure_domain is None:
            outcome = self._judge(ws, h, report, tools.refusals())
        if report.status != "passed":
            report.strategy = _strategy(h, tools.commands)
        return outcome

    def answered(self, ws: Workspace, report: AttemptReport, answer: str) -> AttemptOutcome:
        """Attempt ``report.attempt`` waited on its escalated scope violation: ``answer`` it.

        Approved: its candidate (the harvest commit, as it was) goes on to the
        gates. Rejected: the attempt fails as ``governance``.
        """
        n = report.attempt
        report.status, report.failure_domain = "failed", "governance"
        self.emit("scope_answer", {"attempt": n, "answer": answer, "commit": report.commit})
        if answer != "approved" or report.commit is None:
            report.reason = f"a human rejected the scope violation: {report.reason}"
            return Judged(report)
        try:
            judged = self._gates(ws, report.commit, report)
        except BudgetExceeded as exc:
            report.reason = str(exc)
            return Stopped(report, RunStopped("budget_exhausted", "harness", str(exc)))
        if judged.report.status == "passed":
            report.failure_domain = None
            report.reason += " (scope violation approved by a human)"
        return judged

    # ----------------------------------------------------------------- the sandbox and its windows

    def _sandboxed(
        self, ws: Workspace, report: AttemptReport, resume: ResumePoint | None
    ) -> tuple[Tools, Waiting | RunStopped | None]:
        """The windows in a sandbox of their own, gone (with the tree watch) when this returns.

        Returns the attempt's tools and how the windows ended the attempt: waiting,
        stopping the run, or neither (``report`` says whether they failed it).
        """
        n = report.attempt
        # before anything in the sandbox can write. A rolled-back or fresh tree holds nothing
        # untracked but the progress file (which every scan leaves out): no ignored directory
        # to leave unwatched, no ignored path for the scope check to list yet
        watch = TreeWatch.open(ws.path, settled=True)
        try:
            backend = self.sandboxes.recorded(self.emit, role="attempt", attempt=n)
            sandbox = backend.start(self.sandboxes.attempt_spec(ws))
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        tools = Tools(
            sandbox=sandbox, workspace=ws, scope=self.scope, validator=self.validator,
            budget=self.budget, emit=self.emit, command_timeout=self.policy.commands.timeout,
            approved=self.config.approved, rejected=self.config.rejected, watch=watch,
            notify=self.notify, ignored=frozenset(),
        )  # fmt: skip
        try:
            return tools, self._windows(ws, tools, report, resume)
        except NeedsHuman as ask:
            report.status, report.reason = "waiting", str(ask)
            return tools, Waiting(report, CommandQuestion(ask.command, ask.reason))
        except Paused as pause:  # e.g. the model endpoint's circuit opened: wait for `resume`
            domain = pause.domain if isinstance(pause, Classified) else "runtime"
            report.status, report.failure_domain = "waiting", _domain(domain, "runtime")
            report.reason = f"{report.failure_domain}: {pause}"
            # the window's progress and code state, while the sandbox is still up (nothing runs
            # in it now: the agent waited on the model), so that `resume` continues from them
            state = self.progress.snapshot(ws, n, report.windows)
            at = ResumePoint(report.windows, state, self.budget.used_steps, self.budget.used_output)
            return tools, Waiting(report, PauseQuestion(report.reason), at)
        except BudgetExceeded as exc:
            report.failure_domain, report.reason = "harness", str(exc)
            if exc.resource in ATTEMPT_BUDGETS:
                return tools, None
            return tools, RunStopped("budget_exhausted", "harness", str(exc))  # run-wide
        except SandboxError as exc:
            report.failure_domain, report.reason = "runtime", f"sandbox failed: {exc}"
            return tools, None
        finally:
            with contextlib.suppress(SandboxError):  # harvest refuses a sandbox not confirmed gone
                sandbox.close()  # kill and remove FIRST: nothing may change the tree while it is read
            if watch is not None:
                watch.close()
            report.violations, report.denied = list(tools.violations), list(tools.denied)

    def _windows(
        self, ws: Workspace, tools: Tools, report: AttemptReport, resume: ResumePoint | None
    ) -> RunStopped | None:
        """Context windows until the agent finishes or fails, or the windows run out."""
        n, max_windows = report.attempt, self.policy.budgets.windows
        for w in range(resume.window if resume is not None else 1, max_windows + 1):
            report.windows = w
            self.emit("window_start", {"attempt": n, "window": w})
            ctx = self._context(ws, n, w, tools, at_base=w == 1 and resume is None)
            try:
                outcome = self.agent.run_window(ctx)
            except (StopAttempt, SandboxError):
                raise
            except Exception as exc:  # the agent's own failure: classified, never a crash
                domain = exc.domain if isinstance(exc, Classified) else "model"
                report.failure_domain = _domain(domain, "model")
                report.reason = f"agent error: {exc}"
                self.progress.snapshot_last(ws, n, w)
                if isinstance(exc, MayStopRun) and exc.stops_run:  # the endpoint refuses the key
                    return RunStopped("failed", report.failure_domain, report.reason)
                return None
            self.budget.model(outcome.tokens, outcome.cost_usd)
            finished = outcome.end == "finished" or tools.finished is not None
            if finished or outcome.end == "agent_error" or w == max_windows:
                self.progress.snapshot_last(ws, n, w)
            else:
                self.progress.snapshot(ws, n, w)
            self.save()
            self.emit("window_end", {"attempt": n, "window": w, "end": outcome.end})
            if finished:
                return None
            if outcome.end == "agent_error":
                report.failure_domain = outcome.domain
                report.reason = outcome.detail or "agent error"
                return None
        report.failure_domain = "context"
        report.reason = f"no finish within {max_windows} context windows"
        return None

    def _context(
        self, ws: Workspace, n: int, w: int, tools: Tools, *, at_base: bool
    ) -> WindowContext:
        """What the agent knows at the start of window ``w``: never the transcript of earlier ones."""
        b = self.policy.budgets
        gates = ", ".join(f"`{g.name}` ({g.command})" for g in self.policy.gates) or "none"
        summary = (
            f"{self.scope.summary()} Gates the runner runs on your change: {gates}. "
            f"Budgets: {b.steps} actions per attempt, {b.attempts} attempts, {b.windows} windows per attempt."
        )
        if at_base:
            diff_stat = "(no changes yet: the tree is at base)"
        else:
            changes = ws.changes()
            diff_stat = "\n".join(f"{c.status:>12} {c.path}" for c in changes) or "(no changes yet)"
        return WindowContext(
            task=self.config.task, attempt=n, window=w, max_windows=b.windows,
            progress=self.progress.read(ws), feedback=self.lessons.feedback,
            policy_summary=summary, diff_stat=diff_stat, tools=tools,
        )  # fmt: skip

    # ----------------------------------------------------------------- the verdict

    def _judge(
        self, ws: Workspace, h: Harvest, report: AttemptReport, refused: list[str]
    ) -> AttemptOutcome:
        """Findings, then the patch's scope, then an empty patch, then the gates.

        An empty patch is ``governance`` when the attempt tried to change files it
        may not write (``refused``: ``Tools.refusals``), naming them; else
        ``model``: the attempt changed nothing.
        """
        if h.blocked:
            bad = [f for f in h.findings if not h.complete or f.kind in ("git_pointer_changed",)]
            report.failure_domain = "governance"
            report.reason = "unsafe tree: " + "; ".join(f"{f.kind} {f.path}" for f in bad[:5])
            return Judged(report)
        changes = [(c.path, c.old_mode, c.new_mode) for c in h.changes]
        blocking = [v for v in check_patch(self.scope, changes, h.patch) if v.severity == "block"]
        if blocking:
            report.violations += [str(v) for v in blocking]
            first = blocking[0]
            if self.policy.scope.on_violation == "escalate":
                report.status = "waiting"
                report.reason = f"scope violation needs a human: {first}"
                question = ScopeQuestion(
                    report.attempt, h.commit, report.reason, tuple(report.violations[:20])
                )
                return Waiting(report, question)
            report.failure_domain = "governance"
            report.reason = (
                f"{first.detail}: {first.path}"
                if first.kind != "protected_path"
                else f"wrote protected path {first.path}"
            )
            return Judged(report)
        if not h.changes and refused:  # all it did was kept out: not an attempt that did nothing
            more = f"; and {len(refused) - 10} more" if len(refused) > 10 else ""
            report.failure_domain = "governance"
            report.reason = (
                "the attempt only tried to change files it may not write: "
                f"{'; '.join(refused[:10])}{more}"
            )
            return Judged(report)
        if not h.changes:
            report.failure_domain, report.reason = "model", "the attempt changed nothing"
            return Judged(report)
        try:
            return self._gates(ws, h.commit, report)
        except BudgetExceeded as exc:  # the wall clock ran out during the gates
            report.failure_domain, report.reason = "harness", str(exc)
            return Stopped(report, RunStopped("budget_exhausted", "harness", str(exc)))

    def _gates(self, ws: Workspace, commit: str, report: AttemptReport) -> AttemptOutcome:
        """The gates on ``commit``, against the baseline (waited for); ``BudgetExceeded`` passes.

        No verification, no green: with no required gate the candidate is
        ``unverified`` unless the policy opted out (``gates = []``). A required gate
        that cannot run at base stops the run (``configuration``), nothing judged.
        """
        try:
            results = self.judge.run(ws, commit, f"attempt-{report.attempt}", self.emit)
        except GateCannotRun as exc:
            report.failure_domain, report.reason = "configuration", f"not judged: {exc}"
            return Stopped(report, RunStopped("failed", "configuration", str(exc)))
        report.gates = dict(gate_map(results))
        report.gate_seconds = {
            r.name: _seconds(self.judge.baseline.get(r.name), r) for r in results
        }
        report.tamper = tamper_findings(results)
        failed = [r for r in results if r.required and not r.passed]
        if failed:
            report.failure_domain = (
                "governance" if any(r.failed_on_finding for r in failed) else "model"
            )
            report.reason = "; ".join(f"gate {r.name} failed: {r.reason}" for r in failed)
        elif self.policy.required_gates:
            report.status, report.reason = "passed", "all required gates passed"
        elif self.policy.gates_opted_out:
            report.status = "passed"
            report.reason = "no gates: the policy opted out of verification (gates = [])"
        else:
            report.status = "unverified"
            report.reason = (
                "no required gate checked the candidate: add a required [[gates]] table to the"
                " policy, or say `gates = []` to opt out of verification"
            )
        return Judged(report, tuple(results))


def _strategy(h: Harvest, commands: list[str]) -> str | None:
    """What a failed attempt tried: its change, or (none) the commands it ran."""
    if h.changes:
        return strategy_key(h.patch)
    return "cmds-" + strategy_key("\n".join(commands)) if commands else None


def _seconds(base: GateResult | None, candidate: GateResult) -> GateSeconds:
    """A gate's seconds at base and on the candidate, for the attempt's report."""
    at_base = round(base.duration_s, 3) if base is not None else None
    return {"baseline": at_base, "candidate": round(candidate.duration_s, 3)}


def _domain(value: str, default: FailureDomain) -> FailureDomain:
    """``value`` when it names a failure domain (an exception's ``domain``), else ``default``."""
    return value if is_domain(value) else default
