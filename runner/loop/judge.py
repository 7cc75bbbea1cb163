"""Judging revisions with the policy's gates: the baseline at base, then each candidate against it.

A ``GateJudge`` belongs to one run (one ``Runner``) and owns:

- the baseline: the gates at the run's base commit, once per run, from the
  journal when a step ``baseline base`` is done (``baseline.json``), else run
  on a thread of their own (``runner.loop.baseline``) while attempt 1 works;
- the run's one gate tree (``sandbox.gatetree``), kept across gate runs and
  moved to each revision (``Workspace.compose``: protected paths from base)
  while a gate's container starts; the baseline and the attempts share it,
  so ``run`` first waits for the baseline to be done with it;
- running each gate (``runner.loop.gates.run_gate``) in a container of its own,
  recorded as ``sandbox_spec``, between a ``gate_start`` and a ``gate_end``
  event, its log and accepted junit report written to the run store
  (``<label>/gate-<name>.log``, ``<label>/junit-<name>.xml``); junit XML lands
  in a scratch directory beside the worktrees first, never in the store.

At base, a gate with ``baseline_runs`` > 1 runs that many times; tests whose
outcome flips are its ``flaky`` ones (a ``flaky_tests`` event), never blamed.
On a candidate, the target tests (``policies.targets.Tally``) must each have run
and passed in a required pytest gate's report, or that gate fails with the
target named. Hidden tests (``runner.loop.hidden``) are applied to every gate
input, base included, with the paths they touch taken from base first.

Tamper findings in the candidate's source (``source_findings``) and an exit 0 its
own report contradicts go into each gate's result (``with_findings``).

A gate that cannot run at base (``policies.gates.cannot_run``) is reported
once per run (``gate_cannot_run``); a required one makes ``run`` raise
``GateCannotRun`` before it runs anything on the candidate: no verdict on a
candidate rests on a gate that could not run at base.

Failure: what the baseline raised (``SandboxError``, ``BudgetExceeded``) is
raised by ``run`` and returned by ``stop_baseline``; a gate tree found
changed after a gate is a ``WorkspaceError`` (no verdict is trusted); the
wall clock running out before a gate is ``BudgetExceeded``. None of them is
caught here: the runner decides what they end. Only removing the tree at the
run's end never raises (an ``OSError`` is logged; ``corral gc`` removes it).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from policies.budget import Budget, BudgetExceeded
from policies.gates import GateResult, cannot_run, gate_map, with_findings
from policies.junit import MAX_JUNIT_BYTES, Comparison, TestOutcomes
from policies.policy import GatePolicy, Policy
from policies.targets import HiddenTests, Tally, flaky, problems
from runner.errors import GateCannotRun
from runner.loop import hidden
from runner.loop.baseline import BackgroundBaseline, BaselineStopped, Emit
from runner.loop.gates import clean_dir, run_gate, source_findings
from runner.store.runs import RunStore
from sandbox.errors import GitError, WorkspaceError
from sandbox.gatetree import GateTree, remove_gate_tree
from sandbox.git import HostGit
from sandbox.gitdir import scratch_path
from sandbox.interfaces import SandboxBackend
from sandbox.spec import SandboxSpec
from sandbox.workspace import Workspace

log = logging.getLogger(__name__)


class Recorded(Protocol):
    """The run's backend, recording each sandbox it starts as a ``sandbox_spec`` event (``role``)."""

    def __call__(self, emit: Emit, **role: Any) -> SandboxBackend: ...


class GateJudge:
    """The gates of one run: its baseline, its gate tree, each revision's verdict.

    ``protected`` says which paths come from base into the gates' input;
    ``recorded`` and ``spec`` give the backend and the spec of a gate's
    container; ``on_event`` is the live display, only ever called on the
    caller's (the runner's) thread.
    """

    def __init__(
        self,
        home: Path,
        store: RunStore,
        run_id: str,
        policy: Policy,
        budget: Budget,
        *,
        protected: Callable[[str], bool],
        recorded: Recorded,
        spec: Callable[[Workspace], SandboxSpec],
        on_event: Emit | None = None,
    ) -> None:
        self.home, self.store, self.run_id, self.policy = home, store, run_id, policy
        self.budget, self.protected, self.recorded, self.spec = budget, protected, recorded, spec
        self.on_event = on_event
        self.baseline: dict[str, GateResult] = {}
        self._started = False
        self._tree: GateTree | None = None  # the gates' input, kept across gate runs
        self._background: BackgroundBaseline | None = None  # the baseline gates, until joined
        self._reported: set[str] = set()  # gates that cannot run at base, reported once
        self._hidden = hidden.load(store, run_id)  # (patch, what it touches), or None

    @property
    def hidden(self) -> HiddenTests | None:
        """The run's hidden tests (never shown to the agent), or None."""
        return self._hidden[1] if self._hidden is not None else None

    def start_baseline(self, ws: Workspace) -> None:
        """The gates at base: from the journal if done, else started in the background.

        Once per judge (a second call does nothing). Attempt 1 works meanwhile;
        ``run`` waits for it, ``stop_baseline`` (the run's end) stops it. A new
        run starts it while its tree is checked out (it needs only the git dir).
        """
        if self._started:
            return
        self._started = True
        if any(s.kind == "baseline" and s.state == "done" for s in self.store.journal(self.run_id)):
            data = json.loads(self.store.artifact_path(self.run_id, "baseline.json").read_text())
            self.baseline = {k: _gate_from_json(v) for k, v in data.items()}
            return
        seq = self.store.journal_start(self.run_id, "baseline", "base", {})

        def work(store: RunStore, emit: Emit, cancel: threading.Event) -> dict[str, GateResult]:
            results = self._gates(ws, ws.base, "baseline", {}, store, emit, cancel)
            payload = {r.name: _gate_to_json(r) for r in results}
            store.write_artifact(self.run_id, "baseline.json", json.dumps(payload, indent=1))
            store.journal_done(self.run_id, seq, {"gates": dict(gate_map(results))})
            return {r.name: r for r in results}

        timeouts = [g.timeout for g in self.policy.gates]  # a gate may run twice (confirmation)
        wait = 2.0 * max(timeouts, default=0) + 60.0
        self._background = BackgroundBaseline(self.store, self.run_id, work, join_timeout=wait)
        self._background.start()
        self.deliver()
        if self.on_event is not None:  # live only: the log has the baseline's own events
            self.on_event("baseline_started", {"gates": [g.name for g in self.policy.gates]})

    def run(self, ws: Workspace, rev: str, label: str, emit: Emit) -> list[GateResult]:
        """Each gate on ``rev`` against the baseline, once the baseline is done with the tree.

        Raises ``GateCannotRun`` (before any gate runs on ``rev``) when a required
        gate cannot run at base, what the baseline raised, and what ``_gates`` raises.
        """
        self._await_baseline()
        self._check_baseline(emit)
        return self._gates(ws, rev, label, self.baseline, self.store, emit)

    def broken(self, emit: Emit, *, wait: bool) -> str | None:
        """Why a required gate cannot run at base, or None (it can, or it is not known yet).

        For a run whose attempts may never reach ``run``: ``wait=False`` looks only
        at a baseline that has ended, ``wait=True`` waits for it. Reports as
        ``run`` does (``gate_cannot_run``, once per gate). Raises what the baseline
        raised (``SandboxError``); a budget it ran out of leaves the answer unknown.
        """
        if self._background is not None and not wait and not self._background.done():
            return None
        try:
            self._await_baseline()
            self._check_baseline(emit)
        except GateCannotRun as exc:
            return str(exc)
        except BudgetExceeded:
            return None
        return None

    def deliver(self) -> None:
        """Hand what the background baseline recorded meanwhile to ``on_event`` (this thread)."""
        if self._background is not None:
            self._background.deliver(self.on_event)

    def stop_baseline(self) -> BaseException | None:
        """The run ends: stop a baseline still running (bounded); what it failed with, if it did.

        Idempotent: a second call returns None.
        """
        if self._background is None:
            return None
        background, self._background = self._background, None
        failed = background.stop(self.on_event)
        if failed is not None:
            log.warning("run %s: baseline gates failed: %s", self.run_id, failed)
        return failed

    def remove_tree(self) -> None:
        """The run's gate tree goes at its end; one left by a crash goes with ``corral gc``.

        Never raises ``OSError``: a tree not removed is logged.
        """
        try:
            remove_gate_tree(self.home, self.run_id)
        except OSError as exc:
            log.warning(
                "run %s: gate tree not removed (corral gc removes it): %s", self.run_id, exc
            )

    def _await_baseline(self) -> None:
        """Wait for the background baseline; raises what it raised (``SandboxError``, a budget)."""
        if self._background is not None:  # kept on failure: the run's end reports it (stop)
            self.baseline = self._background.result(self.on_event)
            self._background = None

    def _check_baseline(self, emit: Emit) -> None:
        """Gates that cannot run at base (``cannot_run``): each reported once, as a
        ``gate_cannot_run`` event; a required one raises ``GateCannotRun`` (every time)."""
        fatal = []
        for gate in self.policy.gates:
            result = self.baseline.get(gate.name)
            why = cannot_run(gate, result) if result is not None else None
            if result is None or why is None:
                continue
            log_path = self.store.artifact_path(self.run_id, f"baseline/gate-{gate.name}.log")
            if gate.name not in self._reported:
                self._reported.add(gate.name)
                emit("gate_cannot_run", {"gate": gate.name, "required": gate.required,
                                         "exit_code": result.exit_code, "why": why,
                                         "log": str(log_path)})  # fmt: skip
            if gate.required:
                fatal.append(f"gate {gate.name} cannot run at base: {why} (log: {log_path})")
        if fatal:
            raise GateCannotRun(
                "; ".join(fatal) + "; fix the gate's command or the environment's [setup]"
                " in the policy (`corral policy check`)"
            )

    def _gates(
        self,
        ws: Workspace,
        rev: str,
        label: str,
        baseline: Mapping[str, GateResult],
        store: RunStore,
        emit: Emit,
        cancel: threading.Event | None = None,
    ) -> list[GateResult]:
        """Each gate on ``rev`` against ``baseline``; ``store`` and ``emit`` of the calling thread.

        Raises ``BaselineStopped`` once ``cancel`` is set (before the next gate),
        ``BudgetExceeded`` when the wall clock ran out, ``WorkspaceError`` when
        the tree changed during a gate, and what ``run_gate`` raises.
        """
        if not self.policy.gates:
            return []
        if self._tree is None:
            self._tree = ws.gate_tree()
        tree = self._tree

        @functools.cache
        def gate_input() -> tuple[str, dict[str, tuple[str, str]]]:
            """``rev`` with protected paths (and the hidden tests' paths) from base, the hidden
            tests applied; and its listing (once per call of ``_gates``)."""
            gate_rev = ws.compose(rev, self._from_base, f"gate input {label}")
            if self._hidden is not None:
                gate_rev = self._with_hidden(ws, gate_rev, label)
            return gate_rev, ws.tree_listing(gate_rev)

        def prepare() -> None:
            """The gate tree at exactly the gate input, checked: updated in place, or rebuilt
            if anything changed it. Runs while the container starts."""
            tree.checkout(*gate_input())

        # junit XML lands in a scratch directory, never in the run store (nothing of the
        # store is mounted into a container); it is copied in once the container is gone.
        out = scratch_path(self.home, self.run_id, f"out-{label}")
        clean_dir(out)
        results = []
        checkers = [g.name for g in self.policy.gates if g.required and g.is_pytest]
        tally = Tally(checkers, self.policy.targets.must_pass)
        source = source_findings(ws, rev) if label != "baseline" else ()  # tamper findings
        try:
            for gate in self.policy.gates:
                if cancel is not None and cancel.is_set():
                    raise BaselineStopped(f"the run ended before gate {gate.name} ({label})")
                self.budget.check_wall()
                emit("gate_start", {"label": label, "gate": gate.name})
                prior = baseline.get(gate.name)
                backend = self.recorded(emit, role="gate", label=label, gate=gate.name)
                spec = self.spec(ws)
                r = run_gate(backend, spec, gate, tree.root(), out, prior, prepare=prepare)
                if not tree.unchanged():
                    raise WorkspaceError(
                        f"the gate tree changed while gate {gate.name} ran; its verdict is not"
                        f" trusted: `corral resume {self.run_id}` runs the gates again"
                    )
                store.write_artifact(self.run_id, f"{label}/gate-{gate.name}.log", r.log)
                junit = out / f"{gate.name}.xml"
                if junit.is_file() and not junit.is_symlink():
                    store.write_artifact(
                        self.run_id,
                        f"{label}/junit-{gate.name}.xml",
                        junit.read_bytes()[:MAX_JUNIT_BYTES],
                    )
                targets: dict[str, str] = {}
                if label == "baseline" and gate.baseline_runs > 1 and cannot_run(gate, r) is None:
                    again = functools.partial(run_gate, backend, spec, gate, tree.root(), out)
                    r = self._repeat(gate, r, again, tree.unchanged, store, emit, cancel)
                elif label != "baseline":
                    targets = tally.check(gate.name, gate.must_pass, r.outcomes)
                    if bad := problems(targets):
                        r = replace(r, passed=False, reason="; ".join([*bad, r.reason]))
                    r = with_findings(gate, r, source)
                emit("gate_end", {"label": label, "gate": gate.name, "passed": r.passed,
                                       "exit_code": r.exit_code, "reason": r.reason,
                                       "baseline_passed": prior.passed if prior else None,
                                       "comparison": _comparison_counts(r),
                                       **({"targets": targets} if targets else {})})  # fmt: skip
                results.append(r)
        finally:
            clean_dir(out)
        return results

    def _from_base(self, path: str) -> bool:
        """Whether a gate input takes ``path`` from base: protected, or touched by hidden tests."""
        return self.protected(path) or (self.hidden is not None and path in self.hidden.paths)

    def _with_hidden(self, ws: Workspace, rev: str, label: str) -> str:
        """``rev`` with the hidden tests applied; ``GateCannotRun`` when they do not apply."""
        assert self._hidden is not None
        patch, tests = self._hidden
        try:
            return hidden.apply(
                HostGit(ws.git_dir), rev, patch, f"gate input {label}: hidden tests"
            )
        except GitError as exc:
            raise GateCannotRun(
                f"hidden tests {tests.file} do not apply to the gate input of {label}:"
                f" {exc.stderr.strip()[:300]}; make the patch with `git diff` against the base"
            ) from exc

    def _repeat(
        self,
        gate: GatePolicy,
        first: GateResult,
        again: Callable[[], GateResult],
        unchanged: Callable[[], bool],
        store: RunStore,
        emit: Emit,
        cancel: threading.Event | None,
    ) -> GateResult:
        """``gate`` at base ``baseline_runs`` times in all (``first`` is run 1): the first
        result with the tests whose outcome flipped as ``flaky``; or the first run that cannot
        run (its log becomes the gate's base log). Raises what ``_gates`` raises."""
        runs = [first]
        for k in range(2, gate.baseline_runs + 1):
            if cancel is not None and cancel.is_set():
                raise BaselineStopped(f"the run ended before run {k} of gate {gate.name} at base")
            self.budget.check_wall()
            r = again()
            if not unchanged():
                raise WorkspaceError(f"the gate tree changed while gate {gate.name} ran at base")
            store.write_artifact(self.run_id, f"baseline/gate-{gate.name}.run{k}.log", r.log)
            if cannot_run(gate, r) is not None:
                store.write_artifact(self.run_id, f"baseline/gate-{gate.name}.log", r.log)
                return replace(r, reason=f"run {k} of {gate.baseline_runs}: {r.reason}")
            runs.append(r)
        found = flaky([r.outcomes for r in runs if r.outcomes is not None])
        if found:
            emit("flaky_tests", {"gate": gate.name, "runs": len(runs), "tests": sorted(found)})
        return replace(first, flaky=tuple(sorted(found)))


def _gate_to_json(r: GateResult) -> dict[str, Any]:
    """A gate's result as ``baseline.json`` keeps it (``_gate_from_json`` reads it back)."""
    data = asdict(r)
    if r.outcomes is not None:
        data["outcomes"] = {k: sorted(v) for k, v in asdict(r.outcomes).items()}
    return data


#: ``GateResult`` fields ``baseline.json`` keeps in a shape of its own.
_JSON_FIELDS = ("outcomes", "comparison", "new_lines", "flaky", "findings")


def _gate_from_json(data: Mapping[str, Any]) -> GateResult:
    """The ``GateResult`` that ``_gate_to_json`` wrote."""
    outcomes = data.get("outcomes")
    comparison = data.get("comparison")
    return GateResult(
        **{k: v for k, v in data.items() if k not in _JSON_FIELDS},
        outcomes=TestOutcomes(**{k: frozenset(v) for k, v in outcomes.items()})
        if outcomes
        else None,
        comparison=Comparison(**{k: tuple(v) for k, v in comparison.items()})
        if comparison
        else None,
        new_lines=tuple(data.get("new_lines", ())),
        flaky=tuple(data.get("flaky", ())),
        findings=tuple(data.get("findings", ())),
    )


def _comparison_counts(r: GateResult) -> dict[str, int] | None:
    """Per-test counts of a gate vs its baseline (fixed, still failing, newly failing, missing)."""
    c = r.comparison
    if c is None:
        return None
    return {"fixed": len(c.fixed), "still_failing": len(c.still_failing),
            "newly_failing": len(c.newly_failing), "missing": len(c.missing)}  # fmt: skip
