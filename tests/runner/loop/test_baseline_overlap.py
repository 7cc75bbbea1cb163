"""The baseline gates run while attempt 1 works, and its judge waits for them (Docker).

Concurrency is shown from the run's own event log, not from a clock. Each
gate waits (at most 60 s) for a file in its private output directory, which
the test's live display hook puts there: the baseline's once attempt 1's
sandbox is up and the log shows the baseline's container. A baseline run
before attempt 1 (the old order) goes on only after its hold and fails the
order asserted. What the hook does before the release (change the gate tree
on the host) lands while the baseline's gate runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from runner.loop.outcome import RunResult
from runner.loop.resume import resumable
from runner.ops.service import OnEvent, resume_run
from runner.store.chain import Event
from runner.store.runs import RunStore
from sandbox.gatetree import gate_tree_path
from sandbox.gitdir import scratch_path
from tests.support.demo import FIXED_MUL, fix_script
from tests.support.runenv import POLICY, Env

pytestmark = pytest.mark.docker

FIX = fix_script(FIXED_MUL)  # the project: the ``env`` fixture's (tests/runner/conftest.py)
# waits (at most 60 s) for `go` in its output directory, which only the host can put there
HELD_GATE = (
    "sh -c 'i=0; until [ -e /corral/out/go ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done;"
    " python3 -m pytest -q -p no:cacheprovider'"
)
HELD_POLICY = POLICY.replace('"python3 -m pytest -q -p no:cacheprovider"', json.dumps(HELD_GATE))


def _run(
    env: Env, run_id: str, on_event: OnEvent, policy: str = POLICY, script: str = FIX
) -> RunResult:
    return env.run(script, policy=policy, on_event=on_event, run_id=run_id)


def _wait_for(home: Path, run_id: str, what: Callable[[Event], bool]) -> None:
    """Until the run's log has an event ``what`` accepts (at most 120 s: a bound, not a check)."""
    for _ in range(1200):
        if any(what(e) for e in RunStore(home).events(run_id)):
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_id}: the awaited event never came")


def _gate_box(label: str) -> Callable[[Event], bool]:
    return lambda e: e.type == "sandbox_spec" and e.data.get("label") == label


def _release(home: Path, run_id: str, label: str) -> None:
    """Let the held gate of ``label`` go on: ``go`` in its private output directory."""
    for private in scratch_path(home, run_id, f"out-{label}").glob(".run-*"):
        (private / "go").write_text("")


def _position(events: list[Event], what: Callable[[Event], bool]) -> int:
    return next(i for i, e in enumerate(events) if what(e))


def _no_baseline_thread() -> bool:
    return not any(t.name.startswith("corral-baseline-") for t in threading.enumerate())


def _run_containers(docker_client: Any, run_id: str) -> list[str]:
    found = docker_client.containers.list(all=True, filters={"label": f"corral.run={run_id}"})
    return [c.short_id for c in found]


def _releaser(home: Path, run_id: str) -> OnEvent:
    """An ``on_event`` that lets held gates go: the baseline's once attempt 1's sandbox is up."""

    def on_event(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "window_start" and data["attempt"] == 1:
            _wait_for(home, run_id, _gate_box("baseline"))
            _release(home, run_id, "baseline")
        if kind == "sandbox_spec" and data.get("label") == "attempt-1":
            _release(home, run_id, "attempt-1")

    return on_event


def test_the_baseline_runs_while_attempt_1_works_and_its_judge_waits(env: Env) -> None:
    result = _run(env, "overlap", _releaser(env.home, "overlap"), HELD_POLICY)
    assert result.status == "ready_for_review", result
    events = RunStore(env.home).events("overlap")
    attempt_box = _position(
        events, lambda e: e.type == "sandbox_spec" and e.data["role"] == "attempt"
    )
    baseline_box = _position(events, _gate_box("baseline"))
    baseline_end = _position(
        events, lambda e: e.type == "gate_end" and e.data["label"] == "baseline"
    )
    window_end = _position(events, lambda e: e.type == "window_end")
    attempt_gate = _position(
        events, lambda e: e.type == "gate_start" and e.data["label"] == "attempt-1"
    )
    # the baseline's container ran while attempt 1's sandbox was up (window_end comes before
    # the sandbox is closed), and attempt 1's gates started only after the baseline's ended
    assert baseline_box < window_end and attempt_box < baseline_end < attempt_gate
    baseline = [s for s in RunStore(env.home).journal("overlap") if s.kind == "baseline"]
    assert [s.state for s in baseline] == ["done"] and baseline[0].data["gates"] == {"tests": False}
    judged = next(e for e in events if e.type == "gate_end" and e.data["label"] == "attempt-1")
    assert judged.data["passed"] and judged.data["baseline_passed"] is False
    assert _no_baseline_thread()


def test_a_baseline_failure_ends_the_run_as_runtime_at_the_judge_and_resume_reruns_it(
    env: Env, docker_client: Any
) -> None:
    def tamper_during_baseline(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "window_start" and data["attempt"] == 1:
            _wait_for(env.home, "broken", _gate_box("baseline"))  # its container holds on `go`
            tree = gate_tree_path(env.home, "broken")
            assert tree is not None
            (tree / "planted.py").write_text("x = 1\n")
            _release(env.home, "broken", "baseline")

    broken = _run(env, "broken", tamper_during_baseline, HELD_POLICY)
    assert broken.status == "failed" and broken.failure_domain == "runtime", broken
    assert "baseline base: WorkspaceError" in broken.reason and "gate tree changed" in broken.reason
    store = RunStore(env.home)
    assert resumable(store, "broken")
    steps = {(s.kind, s.key): s.state for s in store.journal("broken")}
    assert steps[("baseline", "base")] == "started" and steps[("attempt", "1")] == "started"
    assert not any(e.type == "gate_start" and e.data["label"] == "attempt-1"
                   for e in store.events("broken"))  # fmt: skip
    assert _no_baseline_thread() and _run_containers(docker_client, "broken") == []
    assert gate_tree_path(env.home, "broken") is None

    done = resume_run(env.home, "broken", on_event=_releaser(env.home, "broken"))
    assert done.status == "ready_for_review", done
    ran = [e.data["label"] for e in store.events("broken") if e.type == "gate_start"]
    assert ran == ["baseline", "baseline", "attempt-1"]  # the interrupted baseline ran again
    assert [s.state for s in store.journal("broken") if s.kind == "baseline"][-1] == "done"
    assert _no_baseline_thread() and _run_containers(docker_client, "broken") == []


def test_a_run_that_ends_before_the_judge_stops_the_baseline(env: Env, docker_client: Any) -> None:
    """Attempt 1 waits on an `ask`: the run ends waiting, the baseline is joined, nothing is left."""
    ask = """
        [[attempt]]
        [[attempt.window]]
        actions = [{ run = "echo held" }]
        """
    policy = HELD_POLICY + '\n[commands]\nask = ["echo held"]\n'

    result = _run(env, "asks", _releaser(env.home, "asks"), policy, ask)
    assert result.status == "waiting", result
    assert _no_baseline_thread() and _run_containers(docker_client, "asks") == []
    assert gate_tree_path(env.home, "asks") is None
    gate_ends = [e for e in RunStore(env.home).events("asks") if e.type == "gate_end"]
    assert [e.data["label"] for e in gate_ends] == ["baseline"]
