"""``corral run`` of an agent that talks to a model, on the demo project, as the agent tests run it.

The model is a scripted server on loopback (``ScriptedModelServer``, ``ScriptedResponses``,
``ScriptedAnthropic``: anything with a ``base_url``); the API key is ``KEY``, which must show up
in no output. ``run_corral`` and ``resume_corral`` return the run's ``--json`` result with the
exit code under ``"exit"``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Protocol

from runner.llm.scripted_server import ScriptedReply, ToolCall
from runner.store.runs import RunStore
from tests.support.cli import corral
from tests.support.demo import PYTEST, policy, run_args

KEY = "sk-supersecret-0123456789"
#: Matches the key in a shell command without being it (a process's argv is searchable).
KEY_PATTERN = KEY.replace("-0", "-[0]")
#: One attempt of one window: an agent CLI is invoked once.
GATES = policy(attempts=1, windows=1)


class ModelServer(Protocol):
    @property
    def base_url(self) -> str: ...


def call(name: str, **args: object) -> ScriptedReply:
    """A model reply that calls the built-in agent's tool ``name``."""
    return ScriptedReply(tool_calls=[ToolCall(name, dict(args))])


#: The built-in agent fixing the demo: look, test, edit, test, finish.
FIX_CALLS = [
    call("read_file", path="src/calc.py"),
    call("bash", command=PYTEST),
    call("edit_file", path="src/calc.py", old_text="a - b", new_text="a + b"),
    call("bash", command=PYTEST),
    call("finish", summary="add() subtracted; it adds now"),
]


def _result(proc: Any) -> dict[str, Any]:
    assert proc.stdout.strip(), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    result["exit"] = proc.returncode
    return result


def run_corral(
    project: Path, home: Path, server: ModelServer, policy: str, *extra: str
) -> dict[str, Any]:
    """``corral run --agent corral`` (``extra`` may name another agent: the last one wins) on the
    demo project at ``project``, with ``policy`` written to its policy file."""
    (project / "policy.toml").write_text(textwrap.dedent(policy))
    args = run_args(project, "--agent", "corral", "--model", "gpt-4o-mini",
                    "--base-url", server.base_url, "--json", *extra)  # fmt: skip
    proc = corral(*args, home=home, env={"CORRAL_API_KEY": KEY})
    result = _result(proc)
    assert KEY not in proc.stdout + proc.stderr
    return result


def resume_corral(home: Path, run_id: str) -> dict[str, Any]:
    """``corral resume RUN --json`` with the key in the environment."""
    return _result(corral("resume", run_id, "--json", home=home, env={"CORRAL_API_KEY": KEY}))


def artifact(home: Path, run_id: str, name: str) -> str:
    """The text of the run's artifact ``name``."""
    return RunStore(home).artifact_path(run_id, name).read_text()


def gateway_requests(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The run's ``gateway_request`` events, as the event log on disk holds them."""
    return [dict(e.data) for e in store.events(run_id) if e.type == "gateway_request"]
