"""The tool contract: what the model is told when a call fails, is denied or is malformed.

Fast: ``Tools`` on a ``FakeSandbox`` over a real workspace, and ``CorralAgent`` driven by the
scripted model server over loopback, so each message is checked as the model receives it (the
``tool`` messages of the next request). Every failure message says what to do instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policies.commands import CommandValidator
from policies.load import load_policy
from policies.model import ModelPolicy
from policies.scope import Scope
from runner.agent import Task, WindowContext
from runner.corral_agent import CorralAgent
from runner.model import ModelClient, ModelConfig
from runner.modelserver import ScriptedReply, StartServer, ToolCall
from runner.tools import AGENT_OUTPUT_CHARS, Budget, Tools, trim
from sandbox.fake import FakeSandbox
from sandbox.spec import SandboxSpec
from sandbox.workspace import Workspace
from tests.gitfixtures import make_repo

FILES = {
    "src/__init__.py": "",
    "src/calc.py": "def add(a, b):\n    return a - b\n",
    "src/twice.py": "x = 1\nx = 1\n",
    "notes.txt": "one\ntwo\nthree\n",
    "setup.cfg": "[tool]\n",
}


@dataclass
class Rig:
    tools: Tools
    events: list[tuple[str, dict[str, Any]]]
    ws: Workspace
    sandbox: FakeSandbox

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


@pytest.fixture
def rig(tmp_path: Path, corral_home: Path) -> Iterator[Rig]:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "tools", corral_home)
    policy = load_policy("default").policy
    sandbox = FakeSandbox(SandboxSpec(image="fake", workspace=str(ws.path)))
    events: list[tuple[str, dict[str, Any]]] = []
    budget = Budget(steps=200, output_bytes=10**8, tokens=10**9, cost_usd=100.0,
                    deadline=time.monotonic() + 600, idle_steps=200)  # fmt: skip
    tools = Tools(
        sandbox=sandbox,
        workspace=ws,
        scope=Scope(policy),
        validator=CommandValidator(policy.commands),
        budget=budget,
        emit=lambda kind, data: events.append((kind, dict(data))),
        command_timeout=30,
    )
    yield Rig(tools, events, ws, sandbox)
    sandbox.close()
    ws.remove()


def model_sees(rig: Rig, start: StartServer, *calls: ToolCall) -> list[str]:
    """Run one window whose model makes ``calls`` one per reply, then finishes: the tool results."""
    replies = [ScriptedReply(tool_calls=[c]) for c in calls]
    server = start([*replies, ScriptedReply(tool_calls=[ToolCall("finish", {"summary": "done"})])])
    client = ModelClient(ModelConfig(model="scripted", base_url=server.base_url, api_key="k"))
    agent = CorralAgent(client, ModelPolicy(), ".corral/progress.md")
    ctx = WindowContext(Task("bug", "body", "repo", "base"), 1, 1, 1, "", "", "", "", rig.tools)
    assert agent.run_window(ctx).end == "finished"
    last = server.requests[-1].body
    assert last is not None
    return [m["content"] for m in last["messages"] if m["role"] == "tool"]


# ------------------------------------------------------------------ edit_file


def test_edit_file_with_no_match_or_several_says_how_to_make_it_match_once(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("edit_file", {"path": "src/calc.py", "old_text": "a * b", "new_text": "a + b"}),
        ToolCall("edit_file", {"path": "src/twice.py", "old_text": "x = 1", "new_text": "x = 2"}),
        ToolCall("edit_file", {"path": "src/calc.py", "old_text": "", "new_text": "y"}),
        ToolCall("edit_file", {"path": "src/nope.py", "old_text": "a", "new_text": "b"}),
    )
    assert seen == [
        "FAILED: Not edited: old_text was not found; read the file and copy the exact text"
        " (whitespace included).",
        "FAILED: Not edited: old_text matches 2 places; include more surrounding lines so it"
        " matches once.",
        "FAILED: Not edited: old_text is empty; use write_file to create or replace a whole file.",
        "FAILED: Not edited: src/nope.py: no such file in the sandbox. Use write_file to create"
        " a file.",
    ]
    assert (rig.ws.path / "src/calc.py").read_text() == FILES["src/calc.py"]
    assert (rig.ws.path / "src/twice.py").read_text() == FILES["src/twice.py"]


def test_edit_file_with_one_match_edits_it(rig: Rig, scripted_model_server: StartServer) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("edit_file", {"path": "src/calc.py", "old_text": "a - b", "new_text": "a + b"}),
    )
    assert seen == ["wrote src/calc.py"]
    assert (rig.ws.path / "src/calc.py").read_text() == "def add(a, b):\n    return a + b\n"


# ------------------------------------------------------------------ bash


def test_long_output_keeps_head_and_tail_and_marks_the_cut(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    (seen,) = model_sees(rig, scripted_model_server, ToolCall("bash", {"command": "seq 1 20000"}))
    full = "".join(f"{i}\n" for i in range(1, 20001))
    head, rest = seen.removeprefix("[exit 0]\n").split("\n[... ", 1)
    marker, tail = rest.split(" ...]\n", 1)
    assert head == full[: AGENT_OUTPUT_CHARS // 2]
    assert tail == full[-AGENT_OUTPUT_CHARS // 2 :]
    cut = len(full) - AGENT_OUTPUT_CHARS
    assert marker == (
        f"{cut} characters cut; narrow the output (grep -n, head, tail, sed -n 'A,Bp') to see them"
    )
    assert trim("short") == "short"


def test_a_timed_out_command_says_it_was_killed_and_what_to_run_instead(rig: Rig) -> None:
    rig.tools.command_timeout = 1
    result = rig.tools.run("echo started; sleep 30")
    assert not result.ok and result.exit_code in (124, 137)
    assert result.output == (
        "started\n\n[timed out after 1s; the command's processes were killed. Run something that"
        " finishes sooner: a narrower selection of tests, a smaller input.]"
    )
    ((_, event),) = [e for e in rig.events if e[0] == "command"]
    assert event["timed_out"] is True


def test_a_denied_command_never_runs_and_the_model_is_told_to_do_it_another_way(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    canary = rig.ws.path / "ran"
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("bash", {"command": f"curl http://x.invalid; touch {canary}"}),
    )
    assert seen == [
        "DENIED: Command not run: denied: `curl` matches deny rule 'curl'. The policy never runs"
        " it; do this another way."
    ]
    assert not canary.exists()
    assert "command_denied" in rig.kinds() and "command" not in rig.kinds()


# ------------------------------------------------------------------ read_file


def test_read_file_outside_the_repository_is_denied_with_the_fix(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("read_file", {"path": "../../etc/passwd"}),
        ToolCall("read_file", {"path": "/etc/passwd"}),
    )
    assert seen == [
        "DENIED: Not read: ../../etc/passwd is outside the repository; use a path relative to"
        " its root.",
        "DENIED: Not read: /etc/passwd is outside the repository; use a path relative to its root.",
    ]


def test_read_file_line_ranges_are_numbered_and_an_empty_range_says_why(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("read_file", {"path": "notes.txt", "start_line": 2, "end_line": 3}),
        ToolCall("read_file", {"path": "notes.txt", "start_line": 3}),
        ToolCall("read_file", {"path": "notes.txt", "end_line": 1}),
        ToolCall("read_file", {"path": "notes.txt", "start_line": 9, "end_line": 12}),
        ToolCall("read_file", {"path": "notes.txt", "start_line": 4}),
        ToolCall("read_file", {"path": "notes.txt"}),
    )
    assert seen == [
        "2: two\n3: three\n",
        "3: three\n",
        "1: one\n",
        "(no lines 9..12: the file has 3; ask within 1..3)",
        "(no lines 4..: the file has 3; ask within 1..3)",
        "one\ntwo\nthree\n",
    ]


def test_read_file_of_a_missing_file_or_a_directory_says_how_to_look(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("read_file", {"path": "src/missing.py"}),
        ToolCall("read_file", {"path": "src"}),
    )
    look = "List what is there with bash: ls, or find . -name 'PATTERN'"
    assert seen == [
        f"FAILED: Not read: src/missing.py: no such file in the sandbox. {look}",
        f"FAILED: Not read: src: is a directory. {look}",
    ]


# ------------------------------------------------------------------ the interface itself


def test_unknown_tools_and_malformed_arguments_are_answered_with_the_schema(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("run_shell", {"command": "ls"}),
        ToolCall("bash", '{"command": "ls"'),
        ToolCall("bash", {"cmd": "ls"}),
        ToolCall("read_file", {"path": "notes.txt", "start_line": 0}),
    )
    tools = "bash, read_file, write_file, edit_file, update_progress, finish"
    schema = "Send a JSON object matching its schema."
    assert seen[0] == f"Unknown tool `run_shell`. Use one of: {tools}."
    assert seen[1].startswith("Malformed arguments for `bash`: Expecting ',' delimiter")
    assert seen[1].endswith(schema)
    assert seen[2] == (
        "Malformed arguments for `bash`: command: Field required; cmd: Extra inputs are not"
        f" permitted. {schema}"
    )
    assert seen[3] == (
        "Malformed arguments for `read_file`: start_line: Input should be greater than or equal"
        f" to 1. {schema}"
    )
    errors = [d for k, d in rig.events if k == "tool_error"]
    assert [d["error"] for d in errors] == ["unknown tool"] + ["malformed arguments"] * 3
