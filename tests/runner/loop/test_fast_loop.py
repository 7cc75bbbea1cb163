"""The control loop on ``FakeBackend``: retry, rollback, escalation, pause, resume, budgets.

Each run goes through ``runner.ops.service`` as the CLI's does, with a real git
repository in ``tmp_path``, a real run store, and ``ScriptedAgent`` (or the
built-in agent against the scripted model server); only the sandbox is the
in-process fake. Each test checks what the run recorded (events, journal, the
open question) and what the tree held, not only the final status. What needs
the kernel (mounts, the network, the hardened container) stays in the Docker
tests (test_run_loop.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from runner.errors import RunInterrupted
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from runner.loop.resume import answer_pending
from sandbox.errors import UserError
from tests.support.demo import FIXED
from tests.support.fastloop import (
    WRONG,
    Project,
    finish,
    policy,
    run,
    script,
    write,
)


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    """The scripted model endpoint, for runs of the built-in agent (``--agent corral``)."""
    with ScriptedModelServer([]) as server:
        yield server


def corral_agent(server: ScriptedModelServer) -> dict[str, Any]:
    """``RunRequest`` fields for the built-in agent on ``server``."""
    return {"agent": "corral", "model": "scripted-model", "base_url": server.base_url}


def calls(*tool_calls: tuple[str, dict[str, Any]], tokens: int = 20) -> ScriptedReply:
    """One model reply making ``tool_calls`` (``prompt_tokens`` ``tokens``, 0 completion tokens)."""
    return ScriptedReply(
        tool_calls=[ToolCall(name, args) for name, args in tool_calls],
        prompt_tokens=tokens,
        completion_tokens=0,
    )


#: One model call per window, no retry, and the circuit opens on the first failed call.
MODEL = """
    [model]
    steps_per_window = 1
    max_retries = 0
    circuit_after = 1
    """


# ----------------------------------------------------------------- retry, rollback, the candidate


def test_a_passing_candidate_is_ready_for_review_with_its_diff(project: Project) -> None:
    result = project.start(script([[write("src/calc.py", FIXED), finish("add() adds")]]), policy())
    assert result.status == "ready_for_review" and result.exit_code == 0, result
    (only,) = result.attempts
    assert only.status == "passed" and only.gates == {"adds": True}
    assert only.changed_files == ["src/calc.py"]
    patch = Path(result.patch_path or "").read_bytes()
    assert b"+    return a + b" in patch
    kinds = project.kinds(result.run_id)
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    order = ["attempt_start", "window_start", "write", "finish", "window_end", "attempt_end"]
    assert [k for k in kinds if k in order] == order
    end = project.events(result.run_id, "run_end")[0].data
    assert end["candidate_sha256"] == hashlib.sha256(patch).hexdigest()
    (step,) = project.attempt_steps(result.run_id)
    assert step.state == "done" and step.data["report"]["status"] == "passed"
    # a finished run keeps its record (the patch above, events, gate logs), not its tree
    assert not project.tree(result.run_id).exists()
    assert not (project.home / "gitdirs" / f"{result.run_id}.git").exists()
    project.verified(result.run_id)


def test_a_failed_gate_rolls_the_tree_back_to_base_for_the_next_attempt(project: Project) -> None:
    clean = "test ! -e src/helper.py && grep -q 'a - b' src/calc.py && echo base > src/seen.txt"
    result = project.start(
        script(
            [[write("src/calc.py", WRONG), write("src/helper.py", "X = 1\n"), finish()]],
            [[run(clean), write("src/calc.py", FIXED), finish()]],
        ),
        policy(),
    )
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert (first.status, first.failure_domain, first.gates) == ("failed", "model", {"adds": False})
    assert first.changed_files == ["src/calc.py", "src/helper.py"]
    assert "gate adds failed" in first.reason
    # the second attempt found base's calc.py and no helper.py: the agent's check wrote seen.txt
    assert second.changed_files == ["src/calc.py", "src/seen.txt"]
    patch = Path(result.patch_path or "").read_text()
    assert "helper.py" not in patch and "+    return a + b" in patch
    gates = [(e.data["label"], e.data["passed"]) for e in project.events(result.run_id, "gate_end")]
    assert gates == [("baseline", False), ("attempt-1", False), ("attempt-2", True)]
    assert [s.state for s in project.attempt_steps(result.run_id)] == ["done", "done"]
    project.verified(result.run_id)


def test_the_feedback_of_a_failed_attempt_reaches_the_next(
    project: Project, model: ScriptedModelServer
) -> None:
    model.extend([
        calls(("write_file", {"path": "src/calc.py", "content": text}), ("finish", {"summary": "x"}))
        for text in (WRONG, FIXED)
    ])  # fmt: skip
    result = project.start(None, policy(MODEL), **corral_agent(model))
    assert result.status == "ready_for_review", result
    assert [a.status for a in result.attempts] == ["failed", "passed"]
    first, second = (r.body["messages"][1]["content"] for r in model.requests if r.body)
    assert "Attempt 1 failed" not in first
    assert "Attempt 1 failed (model): gate adds failed" in second
    assert "2:    return a * b" in second  # the gate's own output, framed for the model
    kinds = [k for k in project.kinds(result.run_id) if k in ("attempt_start", "model_call")]
    assert kinds == ["attempt_start", "model_call"] * 2  # one call each: write and finish


def test_the_same_failing_change_twice_stops_the_run(project: Project) -> None:
    result = project.start(script([[write("src/calc.py", WRONG), finish()]]), policy())
    assert result.status == "failed" and result.failure_domain == "harness", result
    assert "repeated strategy: the same failing change 2 times" in result.reason
    assert len(result.attempts) == 2  # of 3: the run stopped
    assert result.attempts[0].strategy == result.attempts[1].strategy is not None
    (repeat,) = project.events(result.run_id, "repeated_strategy")
    assert repeat.data["attempt"] == 2 and repeat.data["times"] == 2
    assert len(project.events(result.run_id, "attempt_start")) == 2
    project.verified(result.run_id)


# ----------------------------------------------------------------- a human decides


ESCALATE = policy('[scope]\non_violation = "escalate"', attempts=2)
MODE_CHANGE = script(
    [[write("src/calc.py", FIXED), run("chmod +x src/calc.py"), finish()]],
    [[write("src/calc.py", FIXED), finish()]],
)


def test_an_escalated_scope_violation_waits_and_an_approval_makes_it_the_candidate(
    project: Project,
) -> None:
    waiting = project.start(MODE_CHANGE, ESCALATE)
    run_id = waiting.run_id
    assert waiting.status == "waiting" and waiting.exit_code == 3, waiting
    pending = project.pending(run_id)
    assert pending["kind"] == "scope" and pending["attempt"] == 1
    assert pending["commit"] == waiting.attempts[0].commit
    assert any("mode" in v for v in pending["violations"])
    (step,) = project.attempt_steps(run_id)
    assert step.state == "failed" and step.data["pending"] == pending
    assert not project.events(run_id, "gate_start")[1:]  # the baseline's only: nothing judged

    still = project.resume(run_id)  # nobody answered yet: still waiting, nothing ran
    assert still.status == "waiting" and still.failure_domain == "governance", still
    assert len(project.events(run_id, "attempt_start")) == 1

    assert answer_pending(project.store, run_id, "approve", "rev") is not None
    done = project.resume(run_id)
    assert done.status == "ready_for_review", done
    (first,) = done.attempts  # the escalated attempt itself, judged by the gates
    assert first.status == "passed" and first.gates == {"adds": True}
    assert first.reason.endswith("(scope violation approved by a human)")
    assert "new mode 100755" in Path(done.patch_path or "").read_text()
    (answer,) = project.events(run_id, "scope_answer")
    assert answer.data == {"attempt": 1, "answer": "approved", "commit": first.commit}
    assert "human_approved" in project.kinds(run_id)
    assert [s.state for s in project.attempt_steps(run_id)] == ["failed", "done"]
    project.verified(run_id)


def test_a_rejected_scope_violation_fails_its_attempt_and_the_next_one_runs(
    project: Project,
) -> None:
    waiting = project.start(MODE_CHANGE, ESCALATE)
    assert answer_pending(project.store, waiting.run_id, "reject", "rev") is not None
    done = project.resume(waiting.run_id)
    assert done.status == "ready_for_review", done
    first, second = done.attempts
    assert first.failure_domain == "governance" and "a human rejected" in first.reason
    assert second.status == "passed" and second.changed_files == ["src/calc.py"]
    assert "new mode" not in Path(done.patch_path or "").read_text()
    labels = [e.data["label"] for e in project.events(done.run_id, "gate_start")]
    assert labels == ["baseline", "attempt-2"]  # the rejected candidate never went to the gates
    project.verified(done.run_id)


def test_a_command_that_needs_approval_waits_and_runs_once_approved(project: Project) -> None:
    asks = policy('[commands]\nask = ["echo ask-first"]')
    waiting = project.start(
        script([[run("echo ask-first > src/asked.txt"), write("src/calc.py", FIXED), finish()]]),
        asks,
    )
    run_id = waiting.run_id
    assert waiting.status == "waiting" and "echo ask-first" in waiting.reason, waiting
    pending = project.pending(run_id)
    assert (pending["kind"], pending["command"]) == ("command", "echo ask-first > src/asked.txt")
    assert pending["reason"] and set(pending) == {"kind", "command", "reason"}
    assert not project.events(run_id, "command")  # never ran
    assert not (project.tree(run_id) / "src/asked.txt").exists()

    assert answer_pending(project.store, run_id, "approve", "rev") is not None
    done = project.resume(run_id)
    assert done.status == "ready_for_review", done
    assert done.attempts[-1].changed_files == ["src/asked.txt", "src/calc.py"]
    ran = [e.data["command"] for e in project.events(run_id, "command")]
    assert ran == ["echo ask-first > src/asked.txt"]
    starts = [e.data["resumed_at"] for e in project.events(run_id, "attempt_start")]
    assert starts == [None, None]  # the attempt ran again from base: no state carried
    assert json.loads(project.store.get(run_id).waiting_json or "{}")["approved"] == [
        "echo ask-first > src/asked.txt"
    ]
    project.verified(run_id)


# ----------------------------------------------------------------- pause and resume


def test_a_paused_attempt_resumes_in_its_window_from_the_snapshotted_state(
    project: Project, model: ScriptedModelServer
) -> None:
    model.extend([
        calls(("write_file", {"path": "src/notes.py", "content": "NOTE = 1\n"})),   # window 1
        calls(("update_progress", {"content": "notes written; next: fix add()"})),  # its wrap-up
        calls(("write_file", {"path": "src/more.py", "content": "MORE = 1\n"})),    # window 2
        ScriptedReply(fault="500"),  # its wrap-up: the endpoint fails, the circuit opens
    ])  # fmt: skip
    paused = project.start(None, policy(MODEL, attempts=1), **corral_agent(model))
    run_id = paused.run_id
    assert paused.status == "waiting" and paused.failure_domain == "runtime", paused
    assert paused.reason.startswith("runtime: model endpoint unavailable")
    assert project.pending(run_id) == {"kind": "paused", "reason": paused.reason}
    (step,) = project.attempt_steps(run_id)
    resume_at = step.data["resume"]
    assert step.state == "failed" and resume_at["window"] == 2 and resume_at["steps"] == 3
    snaps = [
        (e.data["window"], e.data["code_state"])
        for e in project.events(run_id, "progress_snapshot")
    ]
    assert snaps[-1] == (2, resume_at["code_state"])  # the paused window's own code state

    seen = "test -f src/notes.py && test -f src/more.py && echo resumed > src/resumed.txt"
    model.extend([
        calls(("bash", {"command": seen}),
              ("write_file", {"path": "src/calc.py", "content": FIXED}),
              ("finish", {"summary": "fixed add()"})),
    ])  # fmt: skip
    done = project.resume(run_id)
    assert done.status == "ready_for_review", done
    (attempt,) = done.attempts
    assert attempt.windows == 2
    assert attempt.changed_files == [
        "src/calc.py",
        "src/more.py",
        "src/notes.py",
        "src/resumed.txt",
    ]
    starts = [e.data["resumed_at"] for e in project.events(run_id, "attempt_start")]
    assert starts == [None, resume_at]
    windows = [e.data["window"] for e in project.events(run_id, "window_start")]
    assert windows == [1, 2, 2]  # the same window again, not a new attempt
    resumed = model.requests[-1].body or {}
    prompt = resumed["messages"][1]["content"]
    assert "next: fix add()" in prompt and "src/more.py" in prompt  # progress and diff carried
    project.verified(run_id)


def test_an_attempt_interrupted_midway_runs_again_from_base_on_resume(project: Project) -> None:
    class Interrupt(KeyboardInterrupt):
        """Ctrl-C, as it lands while the agent works."""

    def ctrl_c(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "write" and data["path"] == "src/partial.py":
            raise Interrupt

    check = "test -e src/partial.py && echo left > src/left.txt || echo clean > src/clean.txt"
    steps = script(
        [[run(check), write("src/partial.py", "P = 1\n"), write("src/calc.py", FIXED), finish()]]
    )
    with pytest.raises(RunInterrupted) as stopped:
        project.start(steps, policy(), on_event=ctrl_c, run_id="interrupted")
    assert isinstance(stopped.value.__cause__, Interrupt) and stopped.value.where == "attempt 1"
    (event,) = project.events("interrupted", "run_interrupted")
    assert event.data == {"where": "attempt 1"}
    rec = project.store.get("interrupted")
    assert rec.status == "running" and project.store.shown_status(rec) == "interrupted"
    (step,) = project.attempt_steps("interrupted")
    assert step.state == "started"  # the journal says attempt 1 never ended

    done = project.resume("interrupted")
    assert done.status == "ready_for_review", done
    (attempt,) = done.attempts
    # rolled back to base first: the check found no partial.py from the interrupted attempt
    assert attempt.changed_files == ["src/calc.py", "src/clean.txt", "src/partial.py"]
    assert len(project.events("interrupted", "attempt_start")) == 2
    assert len(project.events("interrupted", "attempt_end")) == 1
    assert [s.state for s in project.attempt_steps("interrupted")] == ["started", "done"]
    project.verified("interrupted")


# ----------------------------------------------------------------- budgets


def test_the_step_budget_fails_the_attempt_and_the_next_one_runs(project: Project) -> None:
    result = project.start(
        script(
            [[run("true"), run("ls"), write("src/calc.py", FIXED), finish()]],
            [[write("src/calc.py", FIXED), finish()]],
        ),
        policy(steps=2),
    )
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert (first.failure_domain, first.reason) == ("harness", "budget steps 2/2")
    assert first.changed_files == [] and first.strategy is not None  # its commands, remembered
    assert second.status == "passed"
    writes = [e.data["path"] for e in project.events(result.run_id, "write")]
    assert writes == ["src/calc.py"]  # attempt 1's third action never ran
    project.verified(result.run_id)


def test_the_same_command_in_a_row_fails_the_attempt(project: Project) -> None:
    result = project.start(
        script([[run("ls src"), run("ls src"), run("ls src"), finish()]]),
        policy(attempts=1, repeated_command=3),
    )
    assert result.status == "failed" and result.failure_domain == "harness", result
    (only,) = result.attempts
    assert only.reason == "budget repeated_command 3/3"
    assert [e.data["command"] for e in project.events(result.run_id, "command")] == ["ls src"] * 2
    assert not project.events(result.run_id, "finish")
    project.verified(result.run_id)


def test_the_run_wide_token_budget_ends_the_run(
    project: Project, model: ScriptedModelServer
) -> None:
    model.extend([
        calls(("write_file", {"path": "src/notes.py", "content": "A = 1\n"}), tokens=100),
        calls(("write_file", {"path": "src/calc.py", "content": FIXED}), tokens=100),
    ])  # fmt: skip
    result = project.start(None, policy(MODEL, tokens=150), **corral_agent(model))
    assert result.status == "budget_exhausted" and result.failure_domain == "harness", result
    (only,) = result.attempts  # of 3: a run-wide budget ends the run, not the attempt
    assert (only.failure_domain, only.reason) == ("harness", "budget tokens 200/150")
    assert only.changed_files == ["src/notes.py"]  # harvested and recorded all the same
    assert project.store.get(result.run_id).tokens == 200  # what the next process counts from
    assert project.events(result.run_id, "run_end")[0].data["status"] == "budget_exhausted"
    project.verified(result.run_id)


def test_a_permanent_model_error_ends_the_run_in_its_domain(
    project: Project, model: ScriptedModelServer
) -> None:
    model.extend([ScriptedReply(fault="401")])
    result = project.start(None, policy(MODEL), **corral_agent(model))
    assert result.status == "failed" and result.failure_domain == "runtime", result
    (only,) = result.attempts  # of 3: every later call would be refused the same way
    assert only.failure_domain == "runtime" and only.reason.startswith("agent error:")
    snaps = [
        (e.data["window"], e.data["code_state"])
        for e in project.events(result.run_id, "progress_snapshot")
    ]
    assert snaps == [(1, "harvest")]
    project.verified(result.run_id)


# ----------------------------------------------------------------- a backend without an engine


def test_a_setup_policy_is_refused_on_a_backend_without_an_engine(project: Project) -> None:
    with pytest.raises(UserError, match=r"\[setup\].*'fake' has none"):
        project.start(
            script([[finish()]]), policy('[setup]\ncommands = ["echo ok"]'), run_id="refused"
        )
    assert project.store.list_runs() == []  # refused before the run was created
