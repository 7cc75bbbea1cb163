"""Every event a person reads is words: no JSON, no dict or list repr, no Python ``None``.

The event types are collected by reading corral's own source (every call that records or shows
an event with a literal type), so a new type without a formatter in
``runner.store.eventlines.LINES`` fails here. Each type is then worded by the plain lines and the
live panel (``runview.describe``), ``corral logs`` and the HTML timeline (``summarize``), from a
recorded-shaped sample and from an empty one (every field missing). A whole run on the fake
backend then goes through the real ``corral logs`` and the plain display.
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.review.display import LIVE_ONLY, StreamDisplay
from runner.review.evidence import gather
from runner.review.live import LiveDisplay
from runner.review.report_html import render_html
from runner.review.runview import describe
from runner.store.chain import Event
from runner.store.eventlines import LINES, summarize
from runner.store.runs import RunStore
from tests.support.cli import corral
from tests.support.fastloop import Project, finish, run, script, write
from tests.support.fastloop import policy as fast_policy

ROOT = Path(__file__).resolve().parents[3]
#: Calls that record or show an event, and the positional index of the event type.
EMITTERS = {"emit": 0, "_emit": 0, "notify": 0, "record": 0, "on_event": 0, "event": 0,
            "show": 0, "_event": 0, "append": 1, "_write": 3}  # fmt: skip
#: Types built by an f-string: the literal prefix and what the variable part can be.
TEMPLATED = {"review_": ("approved", "rejected"), "human_": ("approved", "rejected")}
KIND = re.compile(r"[a-z]+(_[a-z]+)*")

#: One recorded-shaped data of each type (from real runs' event logs, long values cut).
SPEC = {
    "env": {"PYTEST_ADDOPTS": "-p no:cacheprovider"}, "image": "sha256:58aa44bdb22d",
    "limits": {"cpus": 2.0, "memory_mb": 4096, "pids": 512}, "network": "none",
    "mounts": [{"read_only": True, "source": "/w/.git", "target": "/workspace/.git"}],
    "runtime": "runc", "user": "65532:65532", "workspace_read_only": False,
}  # fmt: skip
SAMPLES: dict[str, dict[str, Any]] = {
    "agent_exit": {"agent": "cli:custom", "duration_s": 4.3, "exit_code": 137, "killed": True,
                   "timed_out": False},
    "agent_invocation": {"agent": "cli:custom", "attempt": 1, "timeout_s": 1799, "window": 1},
    "agent_killed": {"agent": "cli:custom", "processes": 2, "reason": "budget_exhausted",
                     "resource": "cost_usd"},
    "attempt_end": {"attempt": 1, "changed_files": ["src/calc.py"], "commit": "28fbc2c53f2a",
                    "denied": [], "failure_domain": "governance", "findings": [],
                    "gate_seconds": {"adds": {"baseline": 0.01, "candidate": 0.02}},
                    "gates": {"adds": False}, "reason": "gate adds failed", "status": "failed",
                    "strategy": None, "tamper": [], "violations": [], "windows": 1},
    "attempt_start": {"attempt": 2, "resumed_at": {"code_state": "3510b464d62c", "steps": 3,
                                                   "window": 2, "output_bytes": 0}},
    "command": {"args": {"command": "pytest -q"}, "command": "pytest -q", "duration_s": 0.4,
                "exit_code": 1, "stderr_bytes": 0, "stdout_bytes": 90, "timed_out": False,
                "tool": "bash", "truncated": False},
    "command_ask": {"args": {"command": "echo hi"}, "command": "echo hi", "tool": "bash",
                    "reason": "needs a human's approval: `echo` matches ask rule"},
    "command_denied": {"args": {"command": "curl x"}, "command": "curl x", "tool": "bash",
                       "reason": "`curl` is not allowed"},
    "command_hook": {"command": "git push", "decision": "deny", "reason": "matches deny rule"},
    "command_start": {"command": "pytest -q"},
    "baseline_started": {"gates": ["tests", "lint"]},
    "budget": {"steps": 3, "tokens": 120, "cost_usd": 0.0},
    "run_limits": {"attempts": 2, "windows": 1, "steps": 50, "tokens": 0, "cost_usd": 0.0,
                   "wall_seconds": None, "gates": ["tests"]},
    "setup_output": {"line": "Successfully installed calc"},
    "environment": {"built": True, "image": "sha256:05475a855386", "seconds": 10.7},
    "finish": {"args": {"summary": "fixed"}, "summary": "fixed", "tool": "finish"},
    "flaky_tests": {"gate": "tests", "runs": 2, "tests": ["tests.test_flaky::test_sometimes"]},
    "gate_cannot_run": {"exit_code": 127, "gate": "lint", "log": "/h/runs/r/gate-lint.log",
                        "required": False, "why": "exit 127: command not found"},
    "gate_end": {"baseline_passed": None, "comparison": None, "exit_code": 1, "gate": "tests",
                 "label": "baseline", "passed": False, "reason": "exit 1: 1 failed",
                 "targets": {"tests/test_calc.py::test_add": "fixed"}},
    "gate_start": {"gate": "tests", "label": "attempt-1"},
    "gateway_budget_exhausted": {"limit": 0.15, "resource": "cost_usd", "used": 0.2},
    "gateway_refused": {"host": "127.0.0.2", "method": "GET", "path": "/denied", "status": 403,
                        "reason": "not a configured model endpoint"},
    "gateway_request": {"bytes": 2039, "completion_tokens": 20, "cost_usd": 0.0, "status": 200,
                        "duration_s": 0.004, "host": "127.0.0.1", "method": "POST",
                        "model": "m", "path": "/v1/chat/completions", "prompt_tokens": 100,
                        "streamed": True, "tokens": 120, "upstream": "model",
                        "usage": "reported"},
    "hidden_tests": {"file": "/h/hidden.diff", "paths": ["tests/test_hidden.py"]},
    "human_approved": {"attempt": 1, "by": "rev", "comment": "",
                       "scope": ["mode_change: src/calc.py (100644 -> 100755)"]},
    "human_rejected": {"by": "ann", "command": "echo second", "comment": "no"},
    "log_repaired": {"bytes": 18, "moved_to": "events.jsonl.torn-20261206T060527Z",
                     "offset": 846, "sha256": "e7f03e503fcf"},
    "image_rebuilt": {"was": "sha256:58aa44bdb22db430", "now": "sha256:77aa44bdb22db430"},
    "merged": {"at": "2026-12-06T06:08:05Z", "branch": "main", "by": "root", "checked_out": "",
               "commit": "e0ec8189f47e3d1d4e", "files": ["README.md", "src/tax.py"],
               "old": "484b8db632af", "recovered": False},
    "model_call": {"completion_tokens": 0, "cost_usd": 0.0, "finish_reason": "tool_calls",
                   "prompt_tokens": 20, "tool_calls": ["bash", "write_file"]},
    "orphan_removed": {"container": "d177dac47fdc"},
    "patch": {"args": {"diff": "--- a/src/calc.py"}, "exit_code": 0, "paths": ["src/calc.py"],
              "tool": "apply_patch"},
    "patch_denied": {"args": {"diff": "--- a/tox.ini"}, "paths": ["src/calc.py", "tox.ini"],
                     "reason": "it touches tox.ini", "refused": ["tox.ini"],
                     "tool": "apply_patch"},
    "policy_warning": {"message": "scope.writable \"source/**\" matches no file"},
    "progress": {"args": {"content": "next: fix add()"}, "bytes": 32, "tool": "update_progress"},
    "progress_refused": {"path": ".corral/progress.md", "reason": "a symlink"},
    "progress_snapshot": {"attempt": 1, "code_state": "harvest", "sha256": "e3b0c44298fc",
                          "window": 1},
    "read": {"args": {"path": "src/calc.py"}, "bytes": 32, "path": "src/calc.py",
             "tool": "read_file"},
    "read_denied": {"path": "/etc/passwd", "reason": "outside the repository"},
    "repeated_strategy": {"attempt": 2, "strategy": "cmds-e2f1b7107b33", "times": 2},
    "review_approved": {"at": "2026-12-06T06:08:05Z", "by": "root", "comment": "",
                        "candidate_sha256": "3b6596f9bd68", "previous": "ready_for_review"},
    "review_rejected": {"at": "2026-12-06T06:08:05Z", "by": "root", "comment": "not this",
                        "candidate_sha256": "3b6596f9bd68", "previous": "approved"},
    "run_end": {"reason": "no attempt passed (1 attempts)", "status": "failed"},
    "run_interrupted": {"where": "attempt 1"},
    "run_resume": {"approved": ["echo hi"], "rejected": [], "scope": {}},
    "run_start": {"agent": "scripted:s.toml", "base": "20ebdf01dd71", "title": "add() subtracts",
                  "policy_sources": ["preset:default"], "repo": "/r"},
    "runtime_error": {"error": "OSError", "message": "No space left on device",
                      "where": "attempt 1"},
    "sandbox_spec": {"container": "9e63eb9a04cc5952a4", "gate": "tests", "role": "gate",
                     "image_id": "sha256:58aa44bdb22db430", "label": "baseline", "spec": SPEC},
    "scope_answer": {"answer": "approved", "attempt": 1, "commit": "a4cadb3bcf35"},
    "scope_reverted": {"paths": [".github/ci.yml"]},
    "setup_failed": {"exit_code": 7},
    "setup_start": {"commands": ["pip install -e ."]},
    "tool_error": {"arguments": "not json", "error": "malformed arguments", "tool": "bash"},
    "tool_failed": {"path": "src", "error": "Is a directory", "tool": "read_file"},
    "window_end": {"attempt": 1, "end": "window_exhausted", "window": 1},
    "window_start": {"attempt": 1, "window": 1},
    "workspace": {"base": "f46f76558987", "path": "/h/worktrees/r", "setup_files": 0},
    "write": {"args": {"content": "x", "path": "src/calc.py"}, "bytes": 2428,
              "path": "src/calc.py", "tool": "write_file"},
    "write_denied": {"args": {"content": "x", "path": "tests/t.py"}, "path": "tests/t.py",
                     "reason": "protected by policy", "tool": "write_file"},
}  # fmt: skip


#: What the display says of its live-only notices (``budget`` and ``run_limits`` only count).
LIVE_LINES = (
    "$ pytest -q",
    "baseline gates running alongside attempt 1: tests, lint",
    "set-up | Successfully installed calc",
)


def emitted_kinds() -> set[str]:
    """Every event type corral's source records or shows with a literal (or templated) type."""
    kinds: set[str] = set()
    for folder in ("runner", "sandbox", "policies"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                at = EMITTERS.get(str(name))
                if at is None or len(node.args) + len(node.keywords) < 2 or len(node.args) <= at:
                    continue
                arg = node.args[at]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if KIND.fullmatch(arg.value):
                        kinds.add(arg.value)
                elif isinstance(arg, ast.JoinedStr):
                    head = arg.values[0]
                    prefix = head.value if isinstance(head, ast.Constant) else ""
                    assert prefix in TEMPLATED, (
                        f"{path}:{node.lineno}: an event type built as f{prefix!r}...: say in"
                        " TEMPLATED what it can be"
                    )
                    kinds.update(prefix + rest for rest in TEMPLATED[prefix])
    return kinds


def raw(line: str) -> list[str]:
    """What in ``line`` is a machine's, not a person's: braces, ``None``, a list or dict repr."""
    return [bad for bad in ("{", "}", "None", "['", '["', "': ", "True", "False") if bad in line]


def test_every_event_type_the_code_emits_has_a_formatter_and_a_sample() -> None:
    kinds = emitted_kinds()
    # the scan sees the kinds of every emitting path: the loop, tools, gateway, agent CLIs, stores
    assert {"sandbox_spec", "progress", "command", "gateway_request", "agent_exit",
            "log_repaired", "review_approved", "human_rejected", "merged",
            "setup_output", "baseline_started", "run_interrupted"} <= kinds  # fmt: skip
    no_formatter = sorted(k for k in kinds if k not in LINES and k not in LIVE_ONLY)
    assert no_formatter == [], f"add a formatter to runner.store.eventlines.LINES: {no_formatter}"
    for kind in LIVE_ONLY:  # worded by the display itself, not by the generic fallback
        generic = summarize(Event(1, "", "r", kind, SAMPLES[kind], "", ""))
        assert describe(kind, SAMPLES[kind]) in (None, *LIVE_LINES), (kind, generic)
    no_sample = sorted(kinds - SAMPLES.keys())
    assert no_sample == [], f"add a recorded-shaped sample to SAMPLES: {no_sample}"


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_event_reads_as_words_in_every_view(kind: str) -> None:
    for data in (SAMPLES[kind], {}):
        lines = [describe(kind, data)]
        if kind not in LIVE_ONLY:
            lines.append(
                summarize(Event(1, "2026-12-06T06:08:05.000000Z", "r", kind, data, "", ""))
            )
        for line in lines:
            if line is None:  # a counter only the panel shows
                continue
            assert line.strip() and raw(line) == [], (kind, data, line)


def test_a_type_without_a_formatter_still_reads_as_words() -> None:
    line = summarize(
        Event(1, "", "r", "from_the_future", {"a": None, "b": [1, 2], "c": {"d": 1}}, "", "")
    )
    assert line == "from the future: a ?; b 1, 2; c d 1"


def test_the_live_panel_shows_words_for_every_event() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    panel = LiveDisplay(console, refresh_per_second=1000)
    try:
        for kind, data in SAMPLES.items():
            panel.on_event(kind, data)
            console.print(panel.render())
    finally:
        panel.close()
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "sandbox for gate tests" in shown and "progress file rewritten" in shown
    assert raw(shown) == []


def test_a_whole_run_reads_as_words_in_logs_lines_and_the_html_timeline(tmp_path: Path) -> None:
    project = Project(tmp_path, tmp_path / "home")
    lines = io.StringIO()
    result = project.start(
        script(
            [
                [
                    run("python3 -c 'import sys; sys.exit(3)'"),
                    write("tests/test_calc.py", "x = 1\n"),
                    '{ progress = "add() subtracts; next: make it add" }',
                    write("src/calc.py", "def add(a, b):\n    return a + b\n"),
                    finish("fixed add"),
                ]
            ]
        ),
        fast_policy(attempts=1),
        on_event=StreamDisplay(lines).on_event,
    )
    assert result.status == "ready_for_review", result.reason
    kinds = {e.type for e in project.events(result.run_id)}
    assert {"sandbox_spec", "progress", "write_denied", "attempt_start", "gate_end"} <= kinds
    proc = corral("logs", result.run_id, home=project.home)
    assert proc.returncode == 0, proc.stderr
    with RunStore(project.home) as store:
        page = render_html(gather(store, result.run_id))
    html = page[page.index('id="timeline"') :]
    timeline = re.sub(r"<[^>]+>", " ", html[: html.index("</ol>")])
    for text in (proc.stdout, lines.getvalue(), timeline):
        assert "sandbox for attempt 1" in text and "progress file rewritten" in text, text
        assert raw(text) == [], [line for line in text.splitlines() if raw(line)][:5]
