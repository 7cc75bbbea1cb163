"""Codex CLI in the box: its preset, Responses API usage metering, and real runs on Docker.

The docker tests run the real Codex CLI (npm, pinned in ``runner/agents/codex.toml``)
in the sandbox against ``tests.support.responses_server`` (a scripted OpenAI Responses
API on loopback), reached only through the gateway's socket and the forwarder.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.policy import Policy
from runner.agents import load_preset
from runner.agents.external import CliAgent
from runner.gateway.routes import Upstream
from runner.gateway.usage import UsageMeter
from runner.store.runs import RunStore
from tests.runner.agents.test_builtin import KEY, project, run_corral
from tests.runner.agents.test_external import (
    FIX,
    GATES,
    KEY_PATTERN,
    _artifact,
    _gateway_requests,
    agent_image,
)
from tests.runner.gateway.test_gateway import Rig, rig
from tests.support.responses_server import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Call,
    ScriptedResponses,
    _events,
)

__all__ = ["agent_image", "project", "rig"]  # fixtures

PER_CALL = INPUT_TOKENS + OUTPUT_TOKENS


# ------------------------------------------------------------------ the preset (no Docker)


def _codex_agent() -> CliAgent:
    return CliAgent(load_preset("codex"), Policy(), model="m1", base_url=None, api_key=None)


def test_the_codex_config_overrides_are_toml_and_name_the_gateway_and_the_hook() -> None:
    """Every ``-c`` value must parse as TOML (else Codex takes it as a plain string, silently)."""
    preset = load_preset("codex")
    agent = _codex_agent()
    argv = [agent._fill(a) for a in preset.argv]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    config: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        config[key] = tomllib.loads(f"v = {value}")["v"]
    provider = config["model_providers.corral"]
    assert config["model_provider"] == "corral"
    assert provider["wire_api"] == "responses" and provider["env_key"] in preset.key_vars
    assert provider["base_url"] == ""  # filled with the gateway's URL once the agent is bound
    hook = config["hooks.PreToolUse"][0]
    assert hook["matcher"] == "Bash"
    assert hook["hooks"][0]["command"] == "python3 /run/corral/agent/codex_hook.py"
    assert "codex_hook.py" in preset.files and preset.command_validation == "hook"
    assert "--dangerously-bypass-approvals-and-sandbox" in argv and preset.argv[-1] == "{prompt}"
    assert any(v.startswith("@openai/codex@0.") for v in preset.npm)  # pinned


# ------------------------------------------------------------------ Responses API usage


def _sse(commands: list[str], tools: list[str]) -> bytes:
    server = ScriptedResponses(commands)
    body = {"model": "gpt-5", "stream": True, "tools": [{"name": t} for t in tools]}
    return b"".join(_events(server._respond(body)))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_usage_is_read_from_a_streamed_responses_completed_event(chunk: int) -> None:
    stream = _sse(["ls"], ["exec_command"])
    meter = UsageMeter(sse=True)
    out = b"".join(meter.feed(stream[i : i + chunk]) for i in range(0, len(stream), chunk))
    out += meter.finish()
    assert out == stream  # nothing held back or dropped
    assert meter.usage() == (INPUT_TOKENS, OUTPUT_TOKENS) and meter.model == "gpt-5"
    assert b'"usage": null' in stream  # response.created carries none: counted once, at the end


def test_usage_is_read_from_a_responses_json_body() -> None:
    response = ScriptedResponses([])._respond({"model": "gpt-5"})
    body = json.dumps(response).encode()
    meter = UsageMeter(sse=False)
    assert meter.feed(body[:10]) + meter.feed(body[10:]) + meter.finish() == body
    assert meter.usage() == (INPUT_TOKENS, OUTPUT_TOKENS)


def test_a_responses_stream_without_usage_reports_none() -> None:
    stream = _sse([], []).replace(b'"usage": {', b'"nousage": {')
    meter = UsageMeter(sse=True)
    meter.feed(stream)
    meter.finish()
    assert meter.usage() is None  # the gateway then estimates (tests/test_gateway.py)


@pytest.fixture
def responses() -> Iterator[ScriptedResponses]:
    with ScriptedResponses(["ls", "ls"]) as server:
        yield server


@pytest.mark.parametrize("stream", [True, False])
def test_the_gateway_counts_a_responses_call_before_its_end(
    rig: Callable[..., Rig], responses: ScriptedResponses, stream: bool
) -> None:
    r = rig([Upstream(responses.base_url, KEY)])
    body = {"model": "gpt-5", "stream": stream, "tools": [{"name": "shell_command"}]}
    status, data = r.request("POST", "/v1/responses", body)
    assert status == 200
    if stream:
        kinds = [ln for ln in data.decode().splitlines() if ln.startswith("event: ")]
        assert kinds[0] == "event: response.created" and kinds[-1] == "event: response.completed"
    call = json.loads(data) if not stream else None
    assert call is None or call["output"][0]["arguments"] == '{"command": "ls"}'
    (event,) = r.events.wait("gateway_request")
    assert (event["path"], event["streamed"], event["usage"]) == (
        "/v1/responses",
        stream,
        "reported",
    )
    assert (event["prompt_tokens"], event["completion_tokens"]) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert r.gateway.used_tokens == PER_CALL
    assert responses.requests[0][1]["authorization"] == f"Bearer {KEY}"


# ------------------------------------------------------------------ real Docker


def run_codex(project: Path, home: Path, server: ScriptedResponses, policy: str) -> dict[str, Any]:
    args = ("--agent", "cli:codex", "--model", "gpt-5")
    return run_corral(project, home, server, policy, *args)  # type: ignore[arg-type]


def _outputs(server: ScriptedResponses) -> list[str]:
    """What Codex sent back as the output of each function call, in order."""
    seen: dict[str, str] = {}
    for _, _, body in server.requests:
        for item in (body or {}).get("input", []):
            if item.get("type") == "function_call_output":
                seen.setdefault(item["call_id"], json.dumps(item.get("output")))
    return list(seen.values())


@pytest.mark.docker
def test_codex_fixes_the_bug_through_the_gateway_with_its_commands_checked(
    project: Path, corral_home: Path, agent_image: Callable[[str], str]
) -> None:
    """Real Codex (npm) over the Responses API: the hook denies ``git push``, the fix runs."""
    agent_image("codex")
    probe = (
        f"echo ENV_HITS=$(env | grep -c {KEY_PATTERN}) FILE_HITS=$(grep -rIl {KEY_PATTERN} "
        "/workspace /run /home /tmp /etc /opt 2>/dev/null | wc -l) KEY_VAR=$OPENAI_API_KEY"
    )
    policy = GATES + '\n[commands]\ndeny = ["git push"]\n'
    with ScriptedResponses(["git push origin main", probe, FIX]) as server:
        result = run_codex(project, corral_home, server, policy)
    assert result["status"] == "ready_for_review", result
    attempt = result["attempts"][0]
    assert attempt["changed_files"] == ["src/calc.py"] and attempt["gates"] == {"tests": True}
    assert "+    return a + b" in Path(result["patch_path"]).read_text()
    store, run_id = RunStore(corral_home), result["run_id"]
    hooks = [e.data for e in store.events(run_id) if e.type == "command_hook"]
    assert [(h["command"], h["decision"]) for h in hooks] == [
        ("git push origin main", "deny"), (probe, "allow"), (FIX, "allow"),
    ]  # fmt: skip
    denied, probed, _ = _outputs(server)
    assert "corral policy" in denied and "git push" in denied  # the reason reached the model
    from runner.gateway.core import DUMMY_KEY

    assert "ENV_HITS=0 FILE_HITS=0" in probed and f"KEY_VAR={DUMMY_KEY}" in probed, probed
    sent = [h for path, h, _ in server.requests if path.endswith("/responses")]
    assert len(sent) == server.served == 4  # three commands, then "Done."
    assert all(h["authorization"] == f"Bearer {KEY}" for h in sent)  # added on the host
    assert "add() subtracts" in json.dumps(server.requests[0][2])  # the prompt reached Codex
    calls = _gateway_requests(store, run_id)
    assert [(c["path"], c["status"], c["streamed"], c["tokens"], c["usage"]) for c in calls] == [
        ("/v1/responses", 200, True, PER_CALL, "reported")
    ] * 4
    record = store.get(run_id)  # the run record holds what the gateway counted
    assert (record.tokens, record.agent) == (4 * PER_CALL, "cli:codex"), record
    assert store.verify(run_id).ok and KEY not in store.log_path(run_id).read_text()
    assert "exit 0" in _artifact(corral_home, run_id, "attempt-1/window-1/agent.log")


def _typed(text: str) -> Call:
    """A ``write_stdin`` call typing ``text`` into the session the last tool output named."""

    def call(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        last = json.dumps(body["input"][-1])
        found = re.search(r"session ID (\d+)", last)
        assert found, last  # the interactive process is still running
        return "write_stdin", {"session_id": int(found[1]), "chars": text, "yield_time_ms": 2000}

    return call


def _interactive(cmd: str) -> Call:
    return lambda body: ("exec_command", {"cmd": cmd, "tty": True, "yield_time_ms": 2000})


@pytest.mark.docker
def test_codex_input_typed_into_a_running_process_is_not_seen_by_the_hook(
    project: Path, corral_home: Path, agent_image: Callable[[str], str]
) -> None:
    """The documented limit of Codex's hook: it sees each command Codex starts, not what the
    model then types into it (``write_stdin``). A shell reading stdin is denied by the
    validator; an interpreter is not, and what is typed into it runs unchecked."""
    agent_image("codex")
    policy = GATES + '\n[commands]\ndeny = ["touch"]\n'
    script: list[str | Call] = [
        "touch denied.txt",
        _interactive("bash"),
        _interactive("python3 -i"),
        _typed("import os; os.system('touch typed.txt')\nexit()\n"),
        FIX,
    ]
    with ScriptedResponses(script) as server:
        result = run_codex(project, corral_home, server, policy)
    assert result["status"] == "ready_for_review", result
    hooks = [
        e.data for e in RunStore(corral_home).events(result["run_id"]) if e.type == "command_hook"
    ]
    assert [(h["command"], h["decision"]) for h in hooks] == [
        ("touch denied.txt", "deny"), ("bash", "deny"), ("python3 -i", "allow"), (FIX, "allow"),
    ]  # fmt: skip
    assert "shell reading its script from a pipe or stdin" in hooks[1]["reason"]
    # what was typed ran, unchecked; the scope check, the patch review and the gates still hold
    assert result["attempts"][0]["changed_files"] == ["src/calc.py", "typed.txt"], result
