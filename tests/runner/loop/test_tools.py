"""The tool contract: what the model is told when a call fails, is denied or is malformed.

Fast: ``Tools`` on a ``FakeSandbox`` over a real workspace, and ``CorralAgent`` driven by the
scripted model server over loopback, so each message is checked as the model receives it (the
``tool`` messages of the next request). Every failure message says what to do instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policies.budget import Budget
from policies.commands import CommandValidator
from policies.load import load_policy
from policies.policy import ModelPolicy
from policies.scope import Scope
from runner.agents.builtin import CorralAgent
from runner.llm.client import ModelClient, ModelConfig
from runner.llm.scripted_server import ScriptedReply, StartServer, ToolCall
from runner.loop.agent import Task, WindowContext
from runner.loop.tools import (
    AGENT_OUTPUT_CHARS,
    EVENT_ARG_CHARS,
    READ_FILE_MAX_BYTES,
    Tools,
    trim,
)
from runner.store.chain import Event
from runner.store.trajectory import read_trajectory, summarize
from sandbox.docker_backend import MAX_READ_BYTES as DOCKER_MAX_READ_BYTES
from sandbox.docker_backend import DockerBackend
from sandbox.fake import FakeSandbox
from sandbox.interfaces import Sandbox
from sandbox.spec import SandboxSpec
from sandbox.workspace import Workspace
from tests.support.demo import FIXED, demo_files
from tests.support.gitfixtures import make_repo

# The demo project, with a file whose line repeats, notes, and a protected config of one line.
FILES = demo_files(
    {"src/twice.py": "x = 1\nx = 1\n", "notes.txt": "one\ntwo\nthree\n", "setup.cfg": "[tool]\n"}
)


@dataclass
class Rig:
    tools: Tools
    events: list[tuple[str, dict[str, Any]]]
    ws: Workspace
    sandbox: Sandbox

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


def make_tools(ws: Workspace, sandbox: Sandbox, events: list[tuple[str, dict[str, Any]]]) -> Tools:
    policy = load_policy("default").policy
    budget = Budget(steps=200, output_bytes=10**8, tokens=10**9, cost_usd=100.0,
                    deadline=time.monotonic() + 600, idle_steps=200)  # fmt: skip
    return Tools(
        sandbox=sandbox,
        workspace=ws,
        scope=Scope(policy),
        validator=CommandValidator(policy.commands),
        budget=budget,
        emit=lambda kind, data: events.append((kind, dict(data))),
        command_timeout=30,
    )


@pytest.fixture
def rig(tmp_path: Path, corral_home: Path) -> Iterator[Rig]:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "tools", corral_home)
    sandbox = FakeSandbox(SandboxSpec(image="fake", workspace=str(ws.path)))
    events: list[tuple[str, dict[str, Any]]] = []
    yield Rig(make_tools(ws, sandbox, events), events, ws, sandbox)
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
    assert (rig.ws.path / "src/calc.py").read_text() == FIXED


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


# ------------------------------------------------------------------ files read_file must not copy out


def test_an_oversize_file_or_a_fifo_is_refused_with_the_way_to_look_at_it(
    rig: Rig, scripted_model_server: StartServer
) -> None:
    with (rig.ws.path / "big.log").open("wb") as f:
        f.truncate(READ_FILE_MAX_BYTES + 1)  # sparse: no disk used
    os.mkfifo(rig.ws.path / "pipe")
    seen = model_sees(
        rig,
        scripted_model_server,
        ToolCall("read_file", {"path": "big.log", "start_line": 1, "end_line": 2}),
        ToolCall("edit_file", {"path": "big.log", "old_text": "a", "new_text": "b"}),
        ToolCall("read_file", {"path": "pipe"}),
    )
    size = READ_FILE_MAX_BYTES + 1
    parts = "look at parts of it with bash: head -c N, grep -n, sed -n 'A,Bp'."
    assert seen == [
        f"FAILED: Not read: big.log is {size} bytes, more than the {READ_FILE_MAX_BYTES} a read"
        f" returns; {parts}",
        f"FAILED: Not edited: big.log is {size} bytes, more than the {READ_FILE_MAX_BYTES} a read"
        f" returns; {parts}",
        "FAILED: Not read: pipe is a fifo, not a regular file.",
    ]
    failed = [d for k, d in rig.events if k == "tool_failed"]
    assert [(d["tool"], d["path"]) for d in failed] == [
        ("read_file", "big.log"), ("edit_file", "big.log"), ("read_file", "pipe")
    ]  # fmt: skip


# ------------------------------------------------------------------ one event per tool call


def test_every_tool_call_records_one_event_with_the_tool_and_its_arguments(rig: Rig) -> None:
    long = "x" * (EVENT_ARG_CHARS + 50)
    t = rig.tools
    calls: list[Callable[[], object]] = [
        lambda: t.run("true"),
        lambda: t.run("curl http://x.invalid"),
        lambda: t.read("notes.txt", 1, 2),
        lambda: t.read("../outside"),
        lambda: t.read("missing.txt"),
        lambda: t.write("src/new.py", long),
        lambda: t.write("setup.cfg", "[x]\n"),
        lambda: t.write("src", "a directory"),
        lambda: t.edit("src/calc.py", "a - b", "a + b"),
        lambda: t.edit("src/calc.py", "not there", "y"),
        lambda: t.progress("notes"),
        lambda: t.finish("done"),
    ]
    recorded = []
    for c in calls:
        before = len(rig.events)
        c()
        (event,) = [e for e in rig.events[before:] if e[0] != "scope_reverted"]
        recorded.append((event[0], event[1]["tool"], event[1]["args"]))
    assert recorded == [
        ("command", "bash", {"command": "true"}),
        ("command_denied", "bash", {"command": "curl http://x.invalid"}),
        ("read", "read_file", {"path": "notes.txt", "start_line": 1, "end_line": 2}),
        ("read_denied", "read_file", {"path": "../outside"}),
        ("tool_failed", "read_file", {"path": "missing.txt"}),
        ("write", "write_file", {"path": "src/new.py", "content": "x" * EVENT_ARG_CHARS + "[... 50 more]"}),
        ("write_denied", "write_file", {"path": "setup.cfg", "content": "[x]\n"}),
        ("tool_failed", "write_file", {"path": "src", "content": "a directory"}),
        ("write", "edit_file", {"path": "src/calc.py", "old_text": "a - b", "new_text": "a + b"}),
        ("tool_failed", "edit_file", {"path": "src/calc.py", "old_text": "not there", "new_text": "y"}),
        ("progress", "update_progress", {"content": "notes"}),
        ("finish", "finish", {"summary": "done"}),
    ]  # fmt: skip
    # what review.py reads stays: the kinds, and their own fields
    kinds = dict(rig.events)
    assert kinds["read_denied"]["reason"] == "outside the repository"
    assert kinds["write_denied"]["reason"] == "protected by policy"
    assert "src: is a directory" in rig.events[7][1]["error"]
    assert (rig.ws.path / "src/calc.py").read_text() == FIXED


def test_the_trajectory_counts_edits_as_edit_file_and_lists_denied_reads(rig: Rig) -> None:
    rig.tools.edit("src/calc.py", "a - b", "a + b")
    rig.tools.read("/etc/passwd")
    rig.tools.read("missing.txt")
    events = [Event(i, "", "", kind, data, "", "") for i, (kind, data) in enumerate(rig.events)]
    trajectory, _, blocked = read_trajectory(events)
    assert trajectory.tools == {"edit_file": 1, "read_file": 2}
    assert [(b.kind, b.what) for b in blocked] == [("read denied", "/etc/passwd")]
    assert [summarize(e) for e in events] == [
        "edit_file src/calc.py (32 bytes)",
        "read denied: /etc/passwd (outside the repository)",
        "read_file missing.txt failed: missing.txt: no such file in the sandbox",
    ]


@pytest.mark.docker
def test_in_docker_a_file_past_the_backends_limit_a_fifo_and_a_device_are_messages(
    tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str
) -> None:
    repo = make_repo(tmp_path / "repo", FILES)
    ws = Workspace.create(repo, "HEAD", "tools-docker", corral_home)
    spec = SandboxSpec(image=sandbox_image, workspace=str(ws.path), run_id="tools-docker",
                       owner_home=str(corral_home))  # fmt: skip
    try:
        with DockerBackend(docker_client).start(spec) as sandbox:
            events: list[tuple[str, dict[str, Any]]] = []
            tools = make_tools(ws, sandbox, events)
            size = DOCKER_MAX_READ_BYTES + 1  # DockerSandbox.read_file raises SandboxError past it
            made = sandbox.exec(
                f"truncate -s {size} big.bin && mkfifo pipe && ln -s /dev/zero zero"
            )
            assert made.ok, made.stderr
            big, pipe, zero = (tools.read(p).output for p in ("big.bin", "pipe", "zero"))
            assert big.startswith(f"Not read: big.bin is {size} bytes, more than the")
            assert pipe == "Not read: pipe is a fifo, not a regular file."
            assert zero == "Not read: zero is a character special file, not a regular file."
            assert tools.read("notes.txt").output == FILES["notes.txt"]  # the sandbox still answers
            assert [k for k, _ in events] == ["tool_failed"] * 3 + ["read"]
    finally:
        ws.remove()


# ------------------------------------------------------------------ apply_patch (the scripted `patch` action)

FIX_DIFF = """--- a/src/calc.py
+++ b/src/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""


def test_a_patch_applies_without_a_repository_and_is_recorded(rig: Rig) -> None:
    result = rig.tools.apply_patch(FIX_DIFF)
    assert result.ok, result.output
    assert (rig.ws.path / "src/calc.py").read_text() == FIXED
    ((kind, data),) = [e for e in rig.events if e[0] != "scope_reverted"]
    assert (kind, data["paths"], data["exit_code"], data["tool"]) == (
        "patch", ["src/calc.py"], 0, "apply_patch"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("diff", "touched"),
    [
        (FIX_DIFF.replace("src/calc.py", "setup.cfg").replace("def add(a, b):", "[tool]"), "setup.cfg"),
        # git strips one leading component (-p1): this is setup.cfg to git, whatever the text says
        ("--- src/setup.cfg\n+++ src/setup.cfg\n@@ -1 +1 @@\n-[tool]\n+[evil]\n", "setup.cfg"),
        # a rename's source is a change too
        ("diff --git a/setup.cfg b/src/cfg.txt\nsimilarity index 100%\nrename from setup.cfg\n"
         "rename to src/cfg.txt\n", "setup.cfg"),
    ],
)  # fmt: skip
def test_a_patch_touching_a_protected_file_as_git_reads_it_is_denied(
    rig: Rig, diff: str, touched: str
) -> None:
    result = rig.tools.apply_patch(diff)
    assert result.denied and result.output.startswith(
        f"Patch not applied: it touches files you may not write: {touched} (protected by policy);"
        " none of it was applied. Send the change to the other files as a patch of its own."
        " Change only files the policy lets you write;"
    )
    assert (rig.ws.path / "setup.cfg").read_text() == FILES["setup.cfg"]
    assert [(k, d["refused"]) for k, d in rig.events] == [("patch_denied", [touched])]
    assert rig.tools.denied == [f"patch touching {touched}"]
    assert rig.tools.refusals() == [f"{touched} (protected by policy; patch refused whole)"]


def test_a_patch_git_cannot_read_says_what_to_send(rig: Rig) -> None:
    result = rig.tools.apply_patch("this is not a diff\n")
    assert not result.ok and not result.denied
    assert result.output.startswith("Patch not applied: git cannot read it: ")
    assert result.output.endswith(
        "Send a unified diff (--- a/PATH, +++ b/PATH, @@ hunks) of files in the repository."
    )
    assert [k for k, _ in rig.events] == ["tool_failed"]


def test_the_scope_check_lists_ignored_paths_again_whenever_a_path_appears(
    tmp_path: Path, corral_home: Path
) -> None:
    """With a tree watch, a step that only edits files keeps the ignored set; one that
    creates a path lists it again, so new build output is never taken for a change."""
    from policies.policy import Policy
    from sandbox.watch import TreeWatch

    repo = make_repo(tmp_path / "repo", {**FILES, ".gitignore": "build/\n"})
    ws = Workspace.create(repo, "HEAD", "ignored", corral_home)
    sandbox = FakeSandbox(SandboxSpec(image="fake", workspace=str(ws.path)))
    events: list[tuple[str, dict[str, Any]]] = []
    policy = Policy.model_validate({"scope": {"writable": ["src/**"]}})
    tools = make_tools(ws, sandbox, events)
    tools.scope = Scope(policy)
    listed: list[frozenset[str]] = []
    real_ignored = ws.ignored

    class Counting(Workspace):  # the same workspace; it notes each listing of ignored paths
        def ignored(self) -> frozenset[str]:
            listed.append(real_ignored())
            return listed[-1]

    tools.workspace = Counting(**{f: getattr(ws, f) for f in ws.__dataclass_fields__})
    tools.watch = TreeWatch.open(ws.path)
    try:
        tools.write("src/calc.py", FIXED)
        tools.write("src/calc.py", "def add(a, b):\n    return b + a\n")
        assert len(listed) == 1, "an edit of a file that exists changes no ignored path"
        assert tools.run("mkdir -p build && echo obj > build/out.o").ok
        assert len(listed) == 2 and "build/" in listed[-1]
        assert (ws.path / "build/out.o").is_file(), "build output is ignored, not reverted"
        tools.run("echo x > notes.txt")  # outside the writable scope: reverted
        assert (ws.path / "notes.txt").read_text() == FILES["notes.txt"]
        assert [d["paths"] for k, d in events if k == "scope_reverted"] == [["notes.txt"]]
    finally:
        tools.watch.close()
        sandbox.close()
        ws.remove()
