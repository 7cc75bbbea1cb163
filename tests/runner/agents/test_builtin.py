"""The built-in agent: its tool contract, and `corral run --agent corral` end to end against the
scripted model server (the model client on its own: tests/runner/llm/test_client.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.agents.builtin import TOOL_ARGS, tool_schemas
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from runner.store.runs import RunStore
from tests.support.agentruns import FIX_CALLS, KEY, call, resume_corral, run_corral
from tests.support.cli import corral
from tests.support.demo import policy


def test_tool_contract_names_and_arguments_are_stable() -> None:
    schema = {t["function"]["name"]: t["function"]["parameters"] for t in tool_schemas()}
    assert list(schema) == [
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "update_progress",
        "finish",
    ]
    assert list(schema["bash"]["properties"]) == ["command"]
    assert list(schema["read_file"]["properties"]) == ["path", "start_line", "end_line"]
    assert schema["read_file"]["required"] == ["path"]
    assert list(schema["edit_file"]["properties"]) == ["path", "old_text", "new_text"]
    assert set(TOOL_ARGS) == set(schema)


# ----------------------------------------------------------------- end to end
# (the demo project, ``tests.support.demo``; the ``project`` fixture: tests/runner/agents/conftest.py)

ONE_ATTEMPT = policy(attempts=1)


@pytest.mark.docker
def test_model_explores_edits_tests_and_finishes(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    probe = call("bash", command="env; cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n'")
    with ScriptedModelServer([probe, *FIX_CALLS]) as server:
        result = run_corral(project, corral_home, server, ONE_ATTEMPT)
    assert result["status"] == "ready_for_review" and result["exit"] == 0, result
    assert result["attempts"][0]["gates"] == {"tests": True}
    log = RunStore(corral_home).log_path(result["run_id"]).read_text()
    assert KEY not in log  # the key is in no event
    tool_results = [m["content"] for r in server.requests for m in (r.body or {}).get("messages", [])
                    if m.get("role") == "tool"]  # fmt: skip
    assert tool_results and not any(KEY in t for t in tool_results)  # nor in the sandbox's env
    calls = [e for e in RunStore(corral_home).events(result["run_id"]) if e.type == "model_call"]
    assert len(calls) == 6 and sum(e.data["cost_usd"] for e in calls) > 0


@pytest.mark.docker
def test_three_context_windows_carry_the_progress_file(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    replies = []
    for w in (1, 2, 3):
        replies += [ScriptedReply(tool_calls=[ToolCall("bash", {"command": f"ls # w{w}"})], prompt_tokens=1500),
                    call("update_progress", content=f"notes from window {w}")]  # fmt: skip
    policy = ONE_ATTEMPT.replace("attempts = 1", "attempts = 1\nwindows = 3") + (
        "\n[model]\ncontext_tokens = 2000\nwindow_fraction = 0.5\n"
    )
    with ScriptedModelServer(replies) as server:
        result = run_corral(project, corral_home, server, policy)
    assert result["status"] == "failed" and result["failure_domain"] == "context", result
    snaps = [
        e for e in RunStore(corral_home).events(result["run_id"]) if e.type == "progress_snapshot"
    ]
    assert [e.data["window"] for e in snaps] == [1, 2, 3]
    third_first = server.requests[4].body["messages"][1]["content"]  # type: ignore[index]
    assert "notes from window 2" in third_first and "window 3 of 3" in third_first


@pytest.mark.docker
def test_faults_are_retried_then_the_run_succeeds(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    faults = [ScriptedReply(fault="429", retry_after=0.2), ScriptedReply(fault="500")]
    with ScriptedModelServer([*faults, *FIX_CALLS]) as server:
        result = run_corral(project, corral_home, server, ONE_ATTEMPT)
    assert result["status"] == "ready_for_review", result


@pytest.mark.docker
def test_circuit_opens_the_run_waits_and_resume_completes(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = ONE_ATTEMPT + "\n[model]\nmax_retries = 1\ncircuit_after = 1\n"
    with ScriptedModelServer([ScriptedReply(fault="500"), ScriptedReply(fault="500")]) as server:
        waiting = run_corral(project, corral_home, server, policy, "--run-id", "flaky")
        assert waiting["status"] == "waiting" and waiting["exit"] == 3, waiting
        assert waiting["failure_domain"] == "runtime" and "unavailable" in waiting["reason"]
        server.extend(FIX_CALLS)  # the endpoint recovers
        proc = corral("resume", "flaky", "--json", home=corral_home, env={"CORRAL_API_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ready_for_review"
    assert RunStore(corral_home).verify("flaky").ok


@pytest.mark.docker
def test_a_model_looping_on_one_command_is_stopped(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = ONE_ATTEMPT.replace("attempts = 1", "attempts = 1\nrepeated_command = 3")
    with ScriptedModelServer([call("bash", command="ls")] * 6) as server:
        result = run_corral(project, corral_home, server, policy)
    assert (
        result["failure_domain"] == "harness"
        and "repeated_command" in result["attempts"][0]["reason"]
    )


@pytest.mark.docker
def test_token_budget_ends_the_run_with_the_budget_named(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = ONE_ATTEMPT.replace("attempts = 1", "attempts = 1\ntokens = 250")
    with ScriptedModelServer([call("bash", command=f"echo {i}") for i in range(6)]) as server:
        result = run_corral(project, corral_home, server, policy)
    assert result["status"] == "budget_exhausted" and "tokens" in result["reason"], result
    assert server.served == 3  # 120 tokens a call: the third call crossed 250


@pytest.mark.docker
def test_malformed_tool_calls_are_fed_back_and_bounded(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = ONE_ATTEMPT + "\n[model]\nmax_tool_errors = 2\n"
    bad = [
        call("rm_rf", path="/"),
        call("bash", cmd="ls"),
        ScriptedReply(content="I think it is fixed"),
    ]
    with ScriptedModelServer(bad) as server:
        result = run_corral(project, corral_home, server, policy)
    assert result["failure_domain"] == "tool-interface", result
    fed_back = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]  # type: ignore[index]
    assert any("Unknown tool `rm_rf`" in t for t in fed_back)
    assert any("Malformed arguments for `bash`" in t for t in fed_back)


@pytest.mark.docker
def test_a_reply_too_long_is_survived_and_bounded_by_the_token_budget(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = ONE_ATTEMPT.replace("attempts = 1", "attempts = 1\ntokens = 100000")
    with ScriptedModelServer([ScriptedReply(fault="huge"), *FIX_CALLS]) as server:
        result = run_corral(project, corral_home, server, policy)
    assert result["status"] == "budget_exhausted" and "tokens" in result["reason"], result
    assert server.served == 1  # the runner stopped at the reply that crossed the budget


#: The default circuit_after (3) and attempts (3); one retry a call keeps the outage short.
OUTAGE_POLICY = policy("[model]\nmax_retries = 1")


@pytest.mark.docker
def test_an_outage_mid_attempt_pauses_the_run_and_resume_continues_the_window(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    before = [call("edit_file", path="src/calc.py", old_text="a - b", new_text="a + b"),
              call("update_progress", content="fixed the operator; next: finish")]  # fmt: skip
    with ScriptedModelServer(before) as server:  # then the script runs out: 500 on every call
        waiting = run_corral(project, corral_home, server, OUTAGE_POLICY, "--run-id", "outage")
        assert waiting["status"] == "waiting" and waiting["exit"] == 3, waiting
        assert waiting["failure_domain"] == "runtime" and "unavailable" in waiting["reason"]
        assert len(waiting["attempts"]) == 1  # the outage burned no attempt
        assert len(server.requests) == 2 + 3 * 2  # two replies, then 3 calls x (1 + 1 retry)
        server.extend([call("finish", summary="add() adds")])  # the endpoint recovers
        done = resume_corral(corral_home, "outage")
    assert done["status"] == "ready_for_review" and done["exit"] == 0, done
    (only,) = done["attempts"]  # the paused attempt went on, from its window's code state
    assert only["attempt"] == 1 and only["gates"] == {"tests": True}
    assert only["changed_files"] == ["src/calc.py"]
    resumed = server.requests[-1].body["messages"][1]["content"]  # type: ignore[index]
    assert "fixed the operator; next: finish" in resumed and "src/calc.py" in resumed
    store = RunStore(corral_home)
    starts = [e.data for e in store.events("outage") if e.type == "attempt_start"]
    assert starts[0]["resumed_at"] is None and starts[1]["resumed_at"]["window"] == 1
    assert store.verify("outage").ok


@pytest.mark.docker
def test_token_budget_counts_across_a_resume(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    policy = OUTAGE_POLICY + "\n[budgets]\ntokens = 300\n"
    with ScriptedModelServer(
        [call("bash", command="echo 1"), call("bash", command="echo 2")]
    ) as server:
        waiting = run_corral(project, corral_home, server, policy, "--run-id", "metered")
        assert waiting["status"] == "waiting", waiting
        assert RunStore(corral_home).get("metered").tokens == 240  # 2 calls x 120, recorded
        server.extend([call("bash", command=f"echo {i}") for i in range(3, 6)])
        ended = resume_corral(corral_home, "metered")
    assert ended["status"] == "budget_exhausted" and ended["exit"] == 1, ended
    assert "tokens 360/300" in ended["reason"]  # 240 before the resume + 120 after it
    (attempt,) = ended["attempts"]  # the attempt the budget ended is in the report
    assert attempt["failure_domain"] == "harness" and "tokens" in attempt["reason"]
    store = RunStore(corral_home)
    calls = [e.data for e in store.events("metered") if e.type == "model_call"]
    assert sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls) == 360
    assert store.get("metered").tokens == 360 and store.get("metered").wall_seconds > 0
    assert store.verify("metered").ok


@pytest.mark.docker
def test_a_refused_key_stops_the_run_without_burning_attempts(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    with ScriptedModelServer([ScriptedReply(fault="401")] * 3) as server:
        result = run_corral(project, corral_home, server, OUTAGE_POLICY)
    assert result["status"] == "failed" and result["exit"] == 1, result
    assert result["failure_domain"] == "runtime" and "refused the API key" in result["reason"]
    assert len(result["attempts"]) == 1 and server.served == 1
