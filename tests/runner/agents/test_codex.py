"""Codex CLI in the box: its preset, and real runs on Docker (the gateway's metering of the
Responses API Codex speaks is tested with the gateway, tests/runner/gateway/test_gateway.py).

The docker tests run the real Codex CLI (npm, pinned in ``runner/agents/codex.toml``)
in the sandbox against ``tests.support.responses_server`` (a scripted OpenAI Responses
API on loopback), reached only through the gateway's socket and the forwarder.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policies.policy import Policy
from runner.agents import load_preset
from runner.agents.external import CliAgent
from runner.store.runs import RunStore
from tests.support.agentruns import (
    GATES,
    KEY,
    KEY_PATTERN,
    artifact,
    gateway_requests,
    run_corral,
)
from tests.support.demo import FIX_COMMAND
from tests.support.responses_server import INPUT_TOKENS, OUTPUT_TOKENS, Call, ScriptedResponses

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


# ------------------------------------------------------------------ real Docker


def run_codex(project: Path, home: Path, server: ScriptedResponses, policy: str) -> dict[str, Any]:
    args = ("--agent", "cli:codex", "--model", "gpt-5")
    return run_corral(project, home, server, policy, *args)


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
    with ScriptedResponses(["git push origin main", probe, FIX_COMMAND]) as server:
        result = run_codex(project, corral_home, server, policy)
    assert result["status"] == "ready_for_review", result
    attempt = result["attempts"][0]
    assert attempt["changed_files"] == ["src/calc.py"] and attempt["gates"] == {"tests": True}
    assert "+    return a + b" in Path(result["patch_path"]).read_text()
    store, run_id = RunStore(corral_home), result["run_id"]
    hooks = [e.data for e in store.events(run_id) if e.type == "command_hook"]
    assert [(h["command"], h["decision"]) for h in hooks] == [
        ("git push origin main", "deny"), (probe, "allow"), (FIX_COMMAND, "allow"),
    ]  # fmt: skip
    denied, probed, _ = _outputs(server)
    assert "corral policy" in denied and "git push" in denied  # the reason reached the model
    from runner.gateway.core import DUMMY_KEY

    assert "ENV_HITS=0 FILE_HITS=0" in probed and f"KEY_VAR={DUMMY_KEY}" in probed, probed
    sent = [h for path, h, _ in server.requests if path.endswith("/responses")]
    assert len(sent) == server.served == 4  # three commands, then "Done."
    assert all(h["authorization"] == f"Bearer {KEY}" for h in sent)  # added on the host
    assert "add() subtracts" in json.dumps(server.requests[0][2])  # the prompt reached Codex
    calls = gateway_requests(store, run_id)
    assert [(c["path"], c["status"], c["streamed"], c["tokens"], c["usage"]) for c in calls] == [
        ("/v1/responses", 200, True, PER_CALL, "reported")
    ] * 4
    record = store.get(run_id)  # the run record holds what the gateway counted
    assert (record.tokens, record.agent) == (4 * PER_CALL, "cli:codex"), record
    assert store.verify(run_id).ok and KEY not in store.log_path(run_id).read_text()
    assert "exit 0" in artifact(corral_home, run_id, "attempt-1/window-1/agent.log")


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
        FIX_COMMAND,
    ]
    with ScriptedResponses(script) as server:
        result = run_codex(project, corral_home, server, policy)
    assert result["status"] == "ready_for_review", result
    hooks = [
        e.data for e in RunStore(corral_home).events(result["run_id"]) if e.type == "command_hook"
    ]
    assert [(h["command"], h["decision"]) for h in hooks] == [
        ("touch denied.txt", "deny"), ("bash", "deny"), ("python3 -i", "allow"), (FIX_COMMAND, "allow"),
    ]  # fmt: skip
    assert "shell reading its script from a pipe or stdin" in hooks[1]["reason"]
    # what was typed ran, unchecked; the scope check, the patch review and the gates still hold
    assert result["attempts"][0]["changed_files"] == ["src/calc.py", "typed.txt"], result
