"""Agent CLIs in the box: presets, agent images, and real runs through the gateway on real Docker.

The docker tests run a real third-party agent CLI from PyPI (mini-swe-agent)
inside the sandbox against the scripted OpenAI-compatible server on loopback,
reached only through the gateway's socket and the in-container forwarder.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.agents import CUSTOM, PresetError, load_preset, preset_names
from runner.agents.image import agent_hash
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from runner.store.runs import RunStore
from tests.support.agentruns import (
    GATES,
    KEY,
    KEY_PATTERN,
    artifact,
    gateway_requests,
    run_corral,
)
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.demo import FIX_COMMAND, build_demo, run_args
from tests.support.loopback import upstream_of


def bash(command: str) -> ScriptedReply:
    return ScriptedReply(content="Next step.", tool_calls=[ToolCall("bash", {"command": command})])


SUBMIT = bash("echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT")


# ------------------------------------------------------------------ presets (no Docker)


def test_every_shipped_preset_loads_and_names_its_model_variables() -> None:
    assert set(preset_names()) == {"aider", "mini-swe-agent", "claude-code", "codex"}
    for name in preset_names():
        preset = load_preset(name)
        assert preset.installs and preset.bins and preset.key_vars and preset.base_url_vars
        assert any("{model}" in a for a in preset.argv)
    assert load_preset("claude-code").command_validation == "hook"
    assert load_preset("claude-code").base_url_suffix == ""
    assert {"nodejs", "npm"} <= set(load_preset("codex").apt)


def test_custom_needs_a_command_and_parses_it_like_a_shell() -> None:
    preset = load_preset(CUSTOM, "sh -c 'echo hi; exit 3'")
    assert preset.argv == ("sh", "-c", "echo hi; exit 3") and not preset.installs
    with pytest.raises(PresetError, match="--agent-cmd"):
        load_preset(CUSTOM)
    with pytest.raises(PresetError, match="does not parse"):
        load_preset(CUSTOM, "sh -c 'unclosed")
    with pytest.raises(PresetError, match="cli:custom only"):
        load_preset("aider", "echo")
    with pytest.raises(PresetError, match=r"unknown agent CLI preset 'nope'.*cli:mini-swe-agent"):
        load_preset("nope")


def test_only_known_placeholders_are_filled_in_a_command() -> None:
    from policies.policy import Policy
    from runner.agents.external import CliAgent

    preset = load_preset(CUSTOM, "awk '{print $1}' {prompt_file} --model {model} {unknown}")
    agent = CliAgent(preset, Policy(), model="m1", base_url=None, api_key=None)
    line = agent.command_line()
    assert "awk '{print $1}' /run/corral/agent/prompt.md --model m1 '{unknown}'" in line
    assert line.index("forwarder.py") < line.index("awk") < line.index("kill $fwd")
    assert "corral_prompt" not in line  # no {prompt}: the prompt file is not even read


def test_a_prompt_argument_is_read_from_the_prompt_file_when_the_line_runs() -> None:
    """Never inside the ``bash -c`` script: Linux takes at most 128 KiB in one argument."""
    from policies.policy import Policy
    from runner.agents.external import CliAgent

    preset = load_preset(CUSTOM, "mini -t {prompt} --task=[{prompt}] {model}")
    agent = CliAgent(preset, Policy(), model="m1", base_url=None, api_key=None)
    line, tricky = agent.command_line(), 'it\'s $HOME `x` "q"'
    assert "corral_prompt=$(cat /run/corral/agent/prompt.md); " in line
    assert """mini -t ''"$corral_prompt"'' '--task=['"$corral_prompt"']' m1""" in line
    argv = subprocess.run(
        ["bash", "-c", "corral_prompt=" + shlex.quote(tricky) + "; " + line.split("cd /workspace && ")[1]
         .replace("mini", "printf '<%s>'", 1).split(" </dev/null")[0]],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert argv == f"<-t><{tricky}><--task=[{tricky}]><m1>"  # one word each, unexpanded


def test_a_bug_report_over_the_limit_is_one_line_and_exit_2(
    tmp_path: Path, corral_home: Path
) -> None:
    build_demo(tmp_path, bug="# huge\n" + "a log line of the failure\n" * 8000)  # ~200 KiB
    proc = corral("run", "--repo", str(tmp_path / "repo"), "--bug", str(tmp_path / "bug.md"),
                  "--agent", "cli:custom", "--agent-cmd", "true", home=corral_home)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "bug.md is 203 KiB, over corral's 64 KiB" in proc.stderr and "shorten" in proc.stderr
    assert not (corral_home / "runs.db").exists() or not RunStore(corral_home).list_runs()


def test_agent_image_hash_follows_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    mini = load_preset("mini-swe-agent")
    first = agent_hash(mini, "sha256:a", tmp_path)
    assert first == agent_hash(mini, "sha256:a", tmp_path)
    assert first != agent_hash(mini, "sha256:b", tmp_path)
    assert first != agent_hash(mini.model_copy(update={"pip": ("other",)}), "sha256:a", tmp_path)
    (tmp_path / "Dockerfile").write_text("FROM y\n")
    assert first != agent_hash(mini, "sha256:a", tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "cli:nope"], "unknown agent CLI preset 'nope'"),
        (["--agent", "cli:custom"], "--agent cli:custom needs --agent-cmd"),
        (["--agent", "corral", "--model", "m", "--agent-cmd", "x"], "cli:custom only"),
        (["--agent", "cli:mini-swe-agent"], "needs an API key: set CORRAL_API_KEY"),
    ],
)
def test_bad_agent_arguments_are_one_line_and_exit_2(
    tmp_path: Path, corral_home: Path, args: list[str], message: str
) -> None:
    build_demo(tmp_path)
    proc = corral("run", "--repo", str(tmp_path / "repo"), "--bug", str(tmp_path / "bug.md"),
                  *args, env={"CORRAL_API_KEY": None, "OPENAI_API_KEY": None})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_image_build_of_an_unknown_preset_is_one_line_and_exit_2() -> None:
    proc = corral("image", "build", "--agent", "nope")
    assert proc.returncode == 2 and "unknown agent CLI preset 'nope'" in proc.stderr


def test_the_policys_allow_hosts_reach_the_gateway_and_the_clis_proxy_variables(
    tmp_path: Path,
) -> None:
    """``[gateway] allow_hosts`` in a policy file -> the run's gateway allowlist and the CLI's env."""
    from policies.load import load_policy
    from runner.agents.external import PORT, CliAgent

    (tmp_path / "policy.toml").write_text(
        '[gateway]\nallow_hosts = ["Mirror.Example.org", "127.0.0.2:8080"]\n'
    )
    policy = load_policy(str(tmp_path / "policy.toml")).policy
    proxies = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"}
    envs, allowlists = [], []
    for p in (policy, policy.model_copy(update={"gateway": type(policy.gateway)()})):
        agent = CliAgent(load_preset(CUSTOM, "true"), p, model="m",
                         base_url="http://127.0.0.1:9/v1", api_key=KEY)  # fmt: skip
        agent.bind(tmp_path / "home", "allow", lambda k, d: None, lambda n, d: None)
        try:
            gw = agent._gateway
            allowlists.append(gw.allow_hosts)
            routes = [gw.resolve("GET", f"http://127.0.0.2:{port}/simple/").kind
                      for port in (8080, 8081)]  # fmt: skip
            envs.append((agent.environment(), routes))
        finally:
            agent.close()
    assert allowlists == [("mirror.example.org", "127.0.0.2:8080"), ()]
    (env, routes), (plain, plain_routes) = envs
    assert routes == ["host", "refused"] and plain_routes == ["refused", "refused"]
    assert {env[name] for name in proxies - {"NO_PROXY", "no_proxy"}} == {
        f"http://127.0.0.1:{PORT}"
    }
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost"  # the model URL: direct
    assert not proxies & set(plain)  # no allow_hosts: the CLI gets no proxy at all


# ------------------------------------------------------------------ real Docker


@pytest.fixture
def mini_image(agent_image: Callable[[str], str]) -> str:
    return agent_image("mini-swe-agent")


def run_cli(
    project: Path, home: Path, server: ScriptedModelServer, policy: str, *agent: str
) -> dict:
    """``corral run`` as the built-in agent's tests run it, with the agent CLI named last (it wins)."""
    return run_corral(project, home, server, policy, *agent, "--model", "scripted-model")


@pytest.mark.docker
def test_mini_swe_agent_from_pypi_fixes_the_bug_through_the_gateway(
    project: Path, corral_home: Path, mini_image: str
) -> None:
    with ScriptedModelServer([bash("cat src/calc.py"), bash(FIX_COMMAND), SUBMIT]) as server:
        result = run_cli(project, corral_home, server, GATES, "--agent", "cli:mini-swe-agent")
    assert result["status"] == "ready_for_review", result
    assert result["attempts"][0]["changed_files"] == ["src/calc.py"]
    assert result["attempts"][0]["gates"] == {"tests": True}
    assert "+    return a + b" in Path(result["patch_path"]).read_text()
    assert server.served == 3
    sent = server.requests[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"  # injected by the gateway on the host
    assert "add() subtracts" in json.dumps(sent.body)  # the prompt file reached the CLI
    store = RunStore(corral_home)
    assert store.verify(result["run_id"]).ok
    assert KEY not in store.log_path(result["run_id"]).read_text()
    assert "exit 0" in artifact(corral_home, result["run_id"], "attempt-1/window-1/agent.log")
    calls = gateway_requests(store, result["run_id"])
    assert [(c["method"], c["path"], c["upstream"], c["status"]) for c in calls] == [
        ("POST", "/v1/chat/completions", "model", 200)
    ] * 3
    assert [(c["model"], c["tokens"], c["usage"]) for c in calls] == [
        ("scripted-model", 120, "reported")
    ] * 3
    kinds = [e.type for e in store.events(result["run_id"])]
    assert "gateway_budget_exhausted" not in kinds and "gateway_refused" not in kinds


CALL_MODEL = (
    "import json, os, urllib.request as u; "
    "r = u.Request(os.environ['OPENAI_BASE_URL'] + '/chat/completions', "
    "data=json.dumps({'model': 'm', 'messages': [{'role': 'user', 'content': 'hi'}]}).encode(), "
    "headers={'Authorization': 'Bearer ' + os.environ['OPENAI_API_KEY'], "
    "'Content-Type': 'application/json'}); "
    "print('MODEL_STATUS=%d' % u.urlopen(r, timeout=60).status)"
)


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_the_container_holds_only_the_dummy_key(
    project: Path, corral_home: Path, sandbox_image: str, runtime: str
) -> None:
    probe = (
        "sh -c 'echo ENV_HITS=$(env | grep -c " + KEY_PATTERN + "); "
        "echo FILE_HITS=$(grep -rIl " + KEY_PATTERN + " /workspace /run /home /tmp /etc /opt "
        "/proc/self/environ 2>/dev/null | wc -l); echo KEY_VAR=$OPENAI_API_KEY; "
        "echo BASE=$OPENAI_BASE_URL; cat > /tmp/call.py <<EOF\n"
        + CALL_MODEL.replace("'", '"')
        + "\nEOF\npython3 /tmp/call.py; "
        + FIX_COMMAND.replace("'", '"')
        + "'"
    )
    with ScriptedModelServer([ScriptedReply(content="hello")]) as server:
        result = run_cli(project, corral_home, server, GATES, "--agent", "cli:custom",
                         "--agent-cmd", probe, "--runtime", runtime)  # fmt: skip
    assert result["status"] == "ready_for_review", result
    log = artifact(corral_home, result["run_id"], "attempt-1/window-1/agent.log")
    from runner.gateway.core import DUMMY_KEY

    assert "ENV_HITS=0" in log and "FILE_HITS=0" in log, log
    assert f"KEY_VAR={DUMMY_KEY}" in log and "BASE=http://127.0.0.1:" in log, log
    assert "MODEL_STATUS=200" in log, log  # the dummy key reached the model as the real one
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.docker
def test_a_token_budget_stops_the_cli_after_the_call_that_crossed_it(
    project: Path, corral_home: Path, mini_image: str
) -> None:
    policy = GATES.replace("windows = 1", "windows = 1\ntokens = 150")  # 120 tokens a call
    with ScriptedModelServer([bash(f"echo {i}") for i in range(6)]) as server:
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:mini-swe-agent")
    assert result["status"] == "budget_exhausted" and "tokens" in result["reason"], result
    assert server.served == 2  # the second call crossed 150; nothing reached the model after it
    store = RunStore(corral_home)
    calls = gateway_requests(store, result["run_id"])
    assert [(c["status"], c["tokens"]) for c in calls] == [(200, 120), (200, 120)]
    events = list(store.events(result["run_id"]))
    spent = [e.data for e in events if e.type == "gateway_budget_exhausted"]
    assert spent == [{"resource": "tokens", "used": 240, "limit": 150}]
    refused = [e.data for e in events if e.type == "gateway_refused"]
    assert all(
        r["status"] == 403 and "token budget spent (240/150)" in r["reason"] for r in refused
    )
    end = next(e.data for e in events if e.type == "run_end")
    assert end["status"] == "budget_exhausted", end
    assert store.verify(result["run_id"]).ok


@pytest.mark.docker
def test_an_agent_cli_that_writes_outside_its_scope_is_reverted(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    attack = (
        "sh -c '"
        + FIX_COMMAND.replace("'", '"')
        + '; echo "def test_add(): pass" > tests/test_calc.py; '
        "mkdir -p .github && echo owned > .github/ci.yml'"
    )
    with ScriptedModelServer([]) as server:
        result = run_cli(project, corral_home, server, GATES, "--agent", "cli:custom",
                         "--agent-cmd", attack)  # fmt: skip
    attempt = result["attempts"][0]
    assert result["status"] == "ready_for_review", result
    assert attempt["changed_files"] == ["src/calc.py"]
    assert attempt["violations"] == [".github/ci.yml"]  # created, then reverted by the runner
    log = artifact(corral_home, result["run_id"], "attempt-1/window-1/agent.log")
    assert "Read-only file system" in log  # the existing test file is mounted read-only
    kinds = [e.type for e in RunStore(corral_home).events(result["run_id"])]
    assert "scope_reverted" in kinds and "agent_exit" in kinds


@pytest.mark.docker
def test_a_window_that_runs_out_is_followed_by_one_that_reads_the_progress_file(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    """Each invocation is a window: the first times out after saving progress, the second uses it."""
    policy = GATES.replace("windows = 1", "windows = 2\nwall_seconds = 24")  # 12 s a window
    agent = (
        "sh -c 'if grep -q tried-sed .corral/progress.md 2>/dev/null; then "
        + FIX_COMMAND.replace("'", '"')
        + "; else mkdir -p .corral && echo tried-sed > .corral/progress.md && sleep 60; fi'"
    )
    with ScriptedModelServer([]) as server:
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:custom",
                         "--agent-cmd", agent)  # fmt: skip
    assert result["status"] == "ready_for_review", result
    assert result["attempts"][0]["windows"] == 2
    events = list(RunStore(corral_home).events(result["run_id"]))
    exits = [e.data for e in events if e.type == "agent_exit"]
    assert [x["timed_out"] for x in exits] == [True, False]
    ends = [e.data["end"] for e in events if e.type == "window_end"]
    assert ends == ["window_exhausted", "finished"]
    second = artifact(corral_home, result["run_id"], "attempt-1/window-1/progress.md")
    assert "tried-sed" in second


@pytest.mark.docker
def test_the_claude_code_hook_asks_the_validator_on_the_host(
    tmp_path: Path, docker_client: object, sandbox_image: str
) -> None:
    """The preset's PreToolUse hook, run in a real sandbox the way Claude Code runs it."""
    from policies.policy import Policy
    from runner.agents.external import CliAgent
    from sandbox.docker_backend import DockerBackend
    from sandbox.spec import SandboxSpec

    policy = Policy.model_validate({"commands": {"deny": ["git push"], "ask": ["pip install"]}})
    hook = "python3 {agent_dir}/corral_hook.py"
    probe = " ; ".join(
        f"echo '{json.dumps({'tool_name': 'Bash', 'tool_input': {'command': c}})}' | {hook}"
        for c in ("ls -la", "git push origin main", "pip install requests")
    )
    preset = load_preset("claude-code").model_copy(update={"argv": ("sh", "-c", probe)})
    events: list[tuple[str, dict]] = []
    agent = CliAgent(preset, policy, model="m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    agent.bind(tmp_path, "hook", lambda k, d: events.append((k, dict(d))), lambda n, d: None)
    backend = DockerBackend(docker_client)
    try:
        files = Path(agent.sandbox_mounts()[0].source)
        settings = json.loads((files / "claude-settings.json").read_text())
        spec = SandboxSpec(image=sandbox_image, mounts=agent.sandbox_mounts(), run_id="hook-test")
        box = backend.start(spec)
        try:
            result = box.exec_once(agent.command_line(), timeout=120, env=agent.environment())
        finally:
            box.close()
    finally:
        agent.close()
    answers = [json.loads(line)["hookSpecificOutput"] for line in result.stdout.splitlines()]
    assert [a["permissionDecision"] for a in answers] == ["allow", "deny", "deny"], result
    assert "git push" in answers[1]["permissionDecisionReason"]
    assert "human" in answers[2]["permissionDecisionReason"]
    hooked = [d["command"] for k, d in events if k == "command_hook"]
    assert hooked == ["ls -la", "git push origin main", "pip install requests"]
    hooks = settings["hooks"]["PreToolUse"][0]
    assert hooks["matcher"] == "Bash" and "corral_hook.py" in hooks["hooks"][0]["command"]


def test_the_hook_fails_closed_when_the_validator_does_not_answer() -> None:
    from importlib import resources

    script = resources.files("runner.agents").joinpath("corral_hook.py")
    event = json.dumps({"tool_name": "Bash", "tool_input": {"command": "ls"}})
    for url in ("http://127.0.0.1:9/corral/validate", ""):
        proc = subprocess.run(
            [sys.executable, str(script)], input=event, capture_output=True, text=True,
            env={"CORRAL_VALIDATE_URL": url}, timeout=60, check=True,
        )  # fmt: skip
        answer = json.loads(proc.stdout)["hookSpecificOutput"]
        assert (
            answer["permissionDecision"] == "deny"
            and "corral" in answer["permissionDecisionReason"]
        )


@pytest.mark.docker
def test_a_preset_that_cannot_be_installed_here_fails_in_one_line(docker_client: object) -> None:
    from runner.agents import Preset
    from runner.agents.image import build_agent_image
    from sandbox.errors import ImageError
    from sandbox.images import find_ca_bundle

    broken = Preset(name="broken", argv=("true",), apt=("corral-no-such-package",))
    with pytest.raises(ImageError) as info:
        build_agent_image(docker_client, broken, ca_bundle=find_ca_bundle(os.environ))
    message = str(info.value)
    assert message.startswith("cannot build the broken agent image here: ")
    assert "corral-no-such-package" in message and "\n" not in message


@pytest.mark.docker
def test_aider_from_pypi_applies_a_search_replace_edit_through_the_gateway(
    project: Path, corral_home: Path, agent_image: Callable[[str], str]
) -> None:
    agent_image("aider")
    edit = (
        "src/calc.py\n```python\n<<<<<<< SEARCH\n    return a - b\n=======\n"
        "    return a + b\n>>>>>>> REPLACE\n```\n"
    )
    with ScriptedModelServer([ScriptedReply(content=edit)]) as server:
        result = run_cli(project, corral_home, server, GATES, "--agent", "cli:aider")
    assert result["status"] == "ready_for_review", result
    assert result["attempts"][0]["changed_files"] == ["src/calc.py"]
    assert server.served == 1 and server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.docker
def test_an_agent_cli_that_fails_is_an_agent_error_with_its_output(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    with ScriptedModelServer([]) as server:
        result = run_cli(project, corral_home, server, GATES, "--agent", "cli:custom",
                         "--agent-cmd", "sh -c 'echo no model configured >&2; exit 7'")  # fmt: skip
    assert result["status"] == "failed" and result["exit"] == 1, result
    assert "cli:custom exited 7: no model configured" in result["attempts"][0]["reason"], result


@pytest.mark.docker
def test_claude_code_runs_with_its_bash_commands_checked_by_corral(
    project: Path, corral_home: Path, agent_image: Callable[[str], str]
) -> None:
    """Real Claude Code (npm) against a scripted Anthropic API: the hook denies, then the fix runs."""
    from tests.support.anthropic_server import ScriptedAnthropic

    agent_image("claude-code")
    policy = GATES + '\n[commands]\ndeny = ["git push"]\n'
    with ScriptedAnthropic(["git push origin main", FIX_COMMAND]) as server:
        args = ("--agent", "cli:claude-code", "--model", "claude-sonnet-4-5")
        result = run_corral(project, corral_home, server, policy, *args)
    assert result["status"] == "ready_for_review", result
    assert result["attempts"][0]["changed_files"] == ["src/calc.py"]
    hooks = [
        e.data for e in RunStore(corral_home).events(result["run_id"]) if e.type == "command_hook"
    ]
    assert [(h["command"], h["decision"]) for h in hooks] == [
        ("git push origin main", "deny"),
        (FIX_COMMAND, "allow"),
    ]
    sent = [h for path, h, _ in server.requests if path.startswith("/v1/messages")]
    assert sent and all(h.get("x-api-key") == KEY for h in sent)  # the real key, added on the host


@pytest.mark.docker
def test_a_killed_agent_cli_run_resumes_from_what_was_recorded(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    (project / "policy.toml").write_text(GATES)
    agent = "sh -c '" + FIX_COMMAND.replace("'", '"') + "; sleep 6'"
    env = {"CORRAL_API_KEY": KEY}
    with ScriptedModelServer([]) as server:
        args = run_args(project, "--agent", "cli:custom", "--agent-cmd", agent,
                        "--base-url", server.base_url, "--run-id", "killed", "--json")  # fmt: skip
        first = subprocess.Popen(
            corral_argv(*args), env=corral_env(corral_home, env),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        log = RunStore(corral_home).log_path("killed")
        for _ in range(600):  # until the CLI is running (bounded: 60 s)
            if log.is_file() and '"agent_invocation"' in log.read_text():
                break
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        proc = corral("resume", "killed", "--json", home=corral_home, env=env)
    result = json.loads(proc.stdout)
    assert result["status"] == "ready_for_review", (result, proc.stderr)
    assert result["attempts"][0]["changed_files"] == ["src/calc.py"]
    kinds = [e.type for e in RunStore(corral_home).events("killed")]
    assert kinds.count("agent_invocation") == 2 and "run_resume" in kinds
    assert RunStore(corral_home).verify("killed").ok


@pytest.mark.docker
def test_a_cost_budget_stops_the_cli_the_same_way(
    project: Path, corral_home: Path, mini_image: str
) -> None:
    policy = GATES.replace("windows = 1", "windows = 1\ncost_usd = 0.15") + (
        '\n[model]\nprices = { "scripted-model" = [1000.0, 0.0] }\n'  # 0.10 USD a call
    )
    with ScriptedModelServer([bash(f"echo {i}") for i in range(6)]) as server:
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:mini-swe-agent")
    assert result["status"] == "budget_exhausted" and "cost_usd" in result["reason"], result
    assert server.served == 2


FETCH = """import urllib.error as e, urllib.request as u
for url in ("http://127.0.0.2:{ok}/allowed", "http://127.0.0.2:{no}/denied"):
    try:
        print("FETCH", url, u.urlopen(url, timeout=60).read().decode())
    except e.HTTPError as x:
        print("FETCH", url, x.code, x.read().decode())
src = open("src/calc.py").read()
open("src/calc.py", "w").write(src.replace("a - b", "a + b"))
"""


@pytest.mark.docker
def test_a_tool_fetches_from_an_allowed_host_through_the_gateway_and_not_from_another(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    """Policy -> gateway -> the CLI's proxy variables -> a fetch inside the sandbox, end to end.

    The two "hosts" are loopback servers on 127.0.0.2 (any of 127/8 is this machine): the allowed
    one is listed as a literal address, which ``allow_hosts`` takes as meant; the other is a
    port nobody listed. 127.0.0.2 is not in the CLI's NO_PROXY, so urllib uses the proxy.
    """
    hits: dict[str, list[str]] = {"ok": [], "no": []}

    def answer(which: str) -> Callable[[Any], None]:
        def handle(h: Any) -> None:
            hits[which].append(h.path)
            data = f"from the {which} mirror".encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        return handle

    with (
        upstream_of(answer("ok"), host="127.0.0.2") as ok_url,
        upstream_of(answer("no"), host="127.0.0.2") as no_url,
        ScriptedModelServer([]) as server,
    ):
        ok, no = (url.rsplit(":", 1)[1].removesuffix("/v1") for url in (ok_url, no_url))
        policy = GATES + f'\n[gateway]\nallow_hosts = ["127.0.0.2:{ok}"]\n'
        command = "python3 -c " + shlex.quote(FETCH.format(ok=ok, no=no))
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:custom",
                         "--agent-cmd", command)  # fmt: skip
    assert result["status"] == "ready_for_review", result
    log = artifact(corral_home, result["run_id"], "attempt-1/window-1/agent.log")
    assert f"FETCH http://127.0.0.2:{ok}/allowed from the ok mirror" in log, log
    assert f"FETCH http://127.0.0.2:{no}/denied 403" in log and "allowed host" in log, log
    assert hits == {"ok": ["/allowed"], "no": []}  # the other server was never reached
    events = list(RunStore(corral_home).events(result["run_id"]))
    fetched = [e.data for e in events if e.type == "gateway_request"]
    refused = [e.data for e in events if e.type == "gateway_refused"]
    assert [(f["host"], f["path"], f["upstream"], f["status"]) for f in fetched] == [
        ("127.0.0.2", "/allowed", "host", 200)
    ]
    assert [(r["host"], r["path"], r["status"]) for r in refused] == [("127.0.0.2", "/denied", 403)]
    assert RunStore(corral_home).verify(result["run_id"]).ok


CALL_FOREVER = """import json, os, time, urllib.error as e, urllib.request as u
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
for i in range(2000):  # ~200 s at least: far past the point where the budget is spent
    r = u.Request(os.environ["OPENAI_BASE_URL"] + "/chat/completions", data=body,
                  headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
                           "Content-Type": "application/json"})
    try:
        print("CALL", i, u.urlopen(r, timeout=60).status, flush=True)
    except e.HTTPError as x:
        print("CALL", i, x.code, flush=True)
    time.sleep(0.1)
print("LOOP_DONE", flush=True)
"""


@pytest.mark.docker
def test_a_cli_that_ignores_the_spent_budget_is_killed_not_left_to_its_window(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    """The gateway refuses every call once the budget is spent; this CLI just keeps calling.
    The runner kills it at once instead of waiting out its 900 s window."""
    policy = GATES.replace("windows = 1", "windows = 1\ntokens = 150\nwall_seconds = 900")
    with ScriptedModelServer([ScriptedReply(content="x")] * 3) as server:
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:custom",
                         "--agent-cmd", "python3 -c " + shlex.quote(CALL_FOREVER))  # fmt: skip
    assert result["status"] == "budget_exhausted" and "tokens" in result["reason"], result
    assert server.served == 2  # 120 tokens a call: the second crossed 150
    events = list(RunStore(corral_home).events(result["run_id"]))
    kinds = [e.type for e in events]
    of = {k: [e.data for e in events if e.type == k] for k in set(kinds)}
    assert of["gateway_budget_exhausted"] == [{"resource": "tokens", "used": 240, "limit": 150}]
    (kill,) = of["agent_killed"]
    assert kill["reason"] == "budget_exhausted" and kill["resource"] == "tokens", kill
    assert kill["processes"] >= 2 and "error" not in kill  # the CLI and the forwarder
    (exit_,) = of["agent_exit"]
    assert exit_["killed"] and not exit_["timed_out"] and exit_["exit_code"] == 137, exit_
    assert kinds.index("agent_killed") < kinds.index("agent_exit")  # both the runner's thread's
    spent = [r for r in of.get("gateway_refused", []) if "budget spent" in r["reason"]]
    log = artifact(corral_home, result["run_id"], "attempt-1/window-1/agent.log")
    calls = [line for line in log.splitlines() if line.startswith("CALL ")]
    assert calls[:2] == ["CALL 0 200", "CALL 1 200"], log
    assert all(c.endswith(" 403") for c in calls[2:])
    assert len(calls) - 2 <= len(spent) <= len(calls) - 1  # a refusal may land, unprinted
    assert len(calls) < 2000 and "LOOP_DONE" not in log  # it did not get to end on its own
    assert RunStore(corral_home).verify(result["run_id"]).ok


@pytest.mark.docker
def test_a_prompt_past_the_argument_limit_reaches_a_cli_that_takes_it_as_an_argument(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    """Window 1 leaves a 200 KiB progress file (the policy lets the prompt hold that much);
    window 2's prompt, passed as an argument (``{prompt}``), is cut to fit (oldest progress
    first) and the CLI starts with it."""
    from runner.agents.external import PROMPT_ARG_MAX

    policy = GATES.replace("windows = 1", "windows = 2\nwall_seconds = 24")  # 12 s a window
    policy += "\n[progress]\nmax_bytes = 262144\n"  # the window's prompt gets all of it
    agent = (
        "sh -c 'if [ -s .corral/progress.md ]; then "
        'echo ARG_BYTES=$(printf %s "$1" | wc -c); echo CUT=$(printf %s "$1" | grep -c "bytes cut"); '
        'echo TAIL=$(printf %s "$1" | tail -c 60 | tr -d "\\n"); '
        + FIX_COMMAND.replace("'", '"')
        + "; "
        'else mkdir -p .corral && python3 -c "print(\\"note \\" * 40960)" > .corral/progress.md'
        " && sleep 60; fi' _ {prompt}"
    )
    with ScriptedModelServer([]) as server:
        result = run_cli(project, corral_home, server, policy, "--agent", "cli:custom",
                         "--agent-cmd", agent)  # fmt: skip
    assert result["status"] == "ready_for_review", result
    assert result["attempts"][0]["windows"] == 2
    log = artifact(corral_home, result["run_id"], "attempt-1/window-2/agent.log")
    size = int(log.split("ARG_BYTES=")[1].split()[0])
    assert PROMPT_ARG_MAX - 1024 < size <= PROMPT_ARG_MAX, log  # cut to fit, not dropped
    assert "CUT=1" in log and "runs the gates on your change." in log, log  # the end survived
    progress = artifact(corral_home, result["run_id"], "attempt-1/window-1/progress.md")
    assert len(progress) > 200 * 1024  # the file itself is whole; only the argument was cut
