"""The live run display: real events from scripted runs through the pipeline, shown every way.

The recorded run fails its first attempt at the gate and passes the second, so
the panel has an attempt counter to move, a gate that fails then passes
against a failing baseline, budgets and a command carrying an escape sequence.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.ops.service import RunRequest, start_run
from runner.review.display import StreamDisplay, as_json_line, pick_mode, run_display
from runner.review.live import LiveDisplay
from runner.review.text import escape_controls
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.demo import FIXED, build_demo, fix_script, policy, run_args, run_request

Event = tuple[str, dict[str, Any]]

WRONG = "def add(a, b):\n    return a * b\n"
POLICY = policy(attempts=2, steps=20)
ESC_COMMAND = 'echo "red\x1b[31m text\u202e"'
SCRIPT = f"""\
[[attempt]]
[[attempt.window]]
actions = [
  {{ run = {json.dumps(ESC_COMMAND)} }},
  {{ write = "src/calc.py", content = {json.dumps(WRONG)} }},
  {{ finish = "tried multiplying" }},
]
[[attempt]]
[[attempt.window]]
actions = [
  {{ run = "python3 -m pytest -q -p no:cacheprovider" }},
  {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
  {{ finish = "fixed the sign" }},
]
"""
ONE_ATTEMPT = fix_script()


def _project(root: Path, script: str) -> RunRequest:
    """The demo project at ``root``, to be fixed by the scripted agent's ``script``."""
    build_demo(root, policy=POLICY)
    (root / "script.toml").write_text(script)
    return run_request(root, agent=f"scripted:{root / 'script.toml'}")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> list[Event]:
    """Every event ``on_event`` got during a real two-attempt scripted run."""
    root = tmp_path_factory.mktemp("display-run")
    events: list[Event] = []

    def record(kind: str, data: Mapping[str, Any]) -> None:
        events.append((kind, json.loads(json.dumps(dict(data)))))

    result = start_run(root / "home", _project(root, SCRIPT), on_event=record)
    assert result.status == "ready_for_review", result.reason
    return events


def _upto(events: list[Event], kind: str, n: int = 1) -> list[Event]:
    """The events up to and including the ``n``-th of ``kind``."""
    seen = 0
    for i, (k, _) in enumerate(events):
        seen += k == kind
        if seen == n:
            return events[: i + 1]
    raise AssertionError(f"no {n}th {kind} in {[k for k, _ in events]}")


def _panel(events: list[Event]) -> str:
    """The live panel's text after ``events``, drawn by a real Live on a recording terminal."""
    console = Console(record=True, force_terminal=True, width=140, file=io.StringIO())
    display = LiveDisplay(console, refresh_per_second=1)
    for kind, data in events:
        display.on_event(kind, data)
    snapshot = Console(record=True, force_terminal=True, width=140, file=io.StringIO())
    with display._lock:
        snapshot.print(display.render())
    display.close()
    assert not display._live.is_started
    return snapshot.export_text()


# ----------------------------------------------------------------------------- the live panel


@pytest.mark.docker
def test_the_recorded_run_carries_what_the_panel_needs(recorded: list[Event]) -> None:
    kinds = [k for k, _ in recorded]
    assert kinds[0] == "run_limits" and kinds[-1] == "run_end"
    assert {"command_start", "budget", "gate_start", "gate_end", "attempt_start"} <= set(kinds)
    ends = [d for k, d in recorded if k == "gate_end"]
    assert [(d["label"], d["passed"], d["baseline_passed"]) for d in ends] == [
        ("baseline", False, None),
        ("attempt-1", False, False),
        ("attempt-2", True, False),
    ]
    assert ends[2]["comparison"]["fixed"] == 1 and ends[1]["comparison"]["still_failing"] == 1


@pytest.mark.docker
def test_panel_mid_attempt_shows_counters_the_escaped_command_and_steps(
    recorded: list[Event],
) -> None:
    text = _panel(_upto(recorded, "command_start"))
    assert "attempt 1/2" in text and "window 1/" in text
    assert "step 1/20" in text
    assert '$ echo "red<U+001B>[31m text<U+202E>"  running' in text
    assert "\x1b" not in text and "\u202e" not in text
    # the baseline runs alongside attempt 1: shown running, or failed once it has ended
    (row,) = [line.split() for line in text.splitlines() if line.strip().startswith("tests ")]
    assert row[1] in ("running", "failed"), text
    assert "tokens 0/2,000,000" in text and "wall 0:" in text and "elapsed 0:" in text


@pytest.mark.docker
def test_panel_shows_a_failed_gate_then_the_next_attempt_passing_it(
    recorded: list[Event],
) -> None:
    after_first = _panel(_upto(recorded, "attempt_end"))
    row = next(line for line in after_first.splitlines() if line.strip().startswith("tests"))
    assert row.split()[:4] == ["tests", "failed", "failed", "(attempt-1)"]
    assert "1 still failing" in row
    final = _panel(recorded)
    assert "attempt 2/2" in final and "ready_for_review" in final
    row = next(line for line in final.splitlines() if line.strip().startswith("tests"))
    assert row.split()[:4] == ["tests", "failed", "passed", "(attempt-2)"]
    assert "1 fixed" in row
    assert "step 2/20" in final  # attempt 2: the command and the write (finish is no step)
    assert "finish: fixed the sign" in final


@pytest.mark.docker
def test_non_tty_gives_plain_lines_without_escapes(recorded: list[Event]) -> None:
    stream = io.StringIO()
    console = Console(file=stream)  # not a terminal
    assert pick_mode(console, as_json=False, quiet=False) == "lines"
    with run_display(console) as on_event:
        for kind, data in recorded:
            on_event(kind, data)
    lines = stream.getvalue().splitlines()
    assert all(line.startswith("[corral] ") for line in lines)
    assert "[corral] attempt 2" in lines
    assert "[corral] gate tests [attempt-2] passed: 1 passed (baseline: failed)" in lines
    assert '[corral] $ echo "red<U+001B>[31m text<U+202E>"' in lines
    assert "\x1b" not in stream.getvalue()
    assert lines[-1].startswith("[corral] run ready_for_review")


@pytest.mark.docker
def test_json_mode_writes_one_parsable_object_per_event(recorded: list[Event]) -> None:
    stream = io.StringIO()
    with run_display(Console(file=stream), as_json=True) as on_event:
        for kind, data in recorded:
            on_event(kind, data)
    objs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(o["type"], o["data"]) for o in objs] == [(k, d) for k, d in recorded]
    live = {"run_limits", "command_start", "budget", "baseline_started"}
    assert {o["type"] for o in objs if o["live"]} == live


def test_quiet_shows_nothing_and_modes_are_picked_by_flags_and_terminal() -> None:
    stream = io.StringIO()
    tty = Console(file=stream, force_terminal=True)
    assert pick_mode(tty, as_json=False, quiet=False) == "live"
    assert pick_mode(tty, as_json=True, quiet=False) == "json"
    assert pick_mode(tty, as_json=True, quiet=True) == "quiet"
    with run_display(tty, quiet=True) as on_event:
        on_event("attempt_start", {"attempt": 1})
    assert stream.getvalue() == ""


def test_escape_controls_covers_c0_c1_and_bidi() -> None:
    assert escape_controls("a\nb\tc\x1b\x9b\u200b\u2066d") == (
        "a\\nb\\tc<U+001B><U+009B><U+200B><U+2066>d"
    )
    assert escape_controls("plain ünïcode") == "plain ünïcode"


# ----------------------------------------------------------------------------- failure and Ctrl-C


class _BrokenRender(LiveDisplay):
    def render(self) -> Any:
        raise RuntimeError("renderer exploded")


class _BrokenEvent:
    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        raise ValueError("cannot show this")

    def close(self) -> None:
        pass


def test_an_event_the_display_cannot_take_falls_back_to_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    console = Console(file=stream)
    with (
        caplog.at_level(logging.WARNING, logger="runner.review.display"),
        run_display(console, display=_BrokenEvent()) as on_event,
    ):
        on_event("attempt_start", {"attempt": 1})
        on_event("window_start", {"attempt": 1, "window": 1})
    assert stream.getvalue().splitlines() == [
        "[corral] attempt 1",
        "[corral] attempt 1 window 1",
    ]
    assert "run display failed (ValueError: cannot show this)" in caplog.text


def test_a_broken_line_stream_goes_quiet() -> None:
    class Closed(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError("stderr is gone")

    with run_display(Console(file=io.StringIO()), display=StreamDisplay(Closed())) as on_event:
        on_event("attempt_start", {"attempt": 1})
        on_event("attempt_start", {"attempt": 2})  # no error reaches the run


def test_ctrl_c_stops_the_live_panel_and_restores_the_cursor() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    display = LiveDisplay(console)
    with pytest.raises(KeyboardInterrupt), run_display(console, display=display) as on_event:
        on_event("attempt_start", {"attempt": 1})
        raise KeyboardInterrupt
    assert not display._live.is_started
    out = stream.getvalue()
    assert "\x1b[?25l" in out and out.rstrip("\n").endswith("\x1b[?25h")  # hidden, then shown


def test_a_run_that_never_starts_leaves_no_empty_panel() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    with pytest.raises(ValueError), run_display(console) as _:
        raise ValueError("--repo x is not a directory")  # bad input, before any event
    out = stream.getvalue()
    tail = out[out.rindex("\x1b[?25h") :]  # after the cursor is shown again
    assert tail == "\x1b[?25h\r" + "\x1b[1A\x1b[2K" * 3  # the 3 panel lines erased


@pytest.mark.docker
def test_a_failing_renderer_falls_back_to_lines_and_the_run_still_succeeds(
    tmp_path: Path, sandbox_image: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100)
    broken = _BrokenRender(console, refresh_per_second=20)
    broken._safe_render()  # the redraw thread's first frame fails, as it would within 50 ms
    req = _project(tmp_path, ONE_ATTEMPT)
    with (
        caplog.at_level(logging.WARNING, logger="runner.review.display"),
        run_display(console, display=broken) as on_event,
    ):
        result = start_run(tmp_path / "home", req, on_event=on_event)
    assert result.status == "ready_for_review"
    assert "run display failed (RuntimeError: renderer exploded)" in caplog.text
    assert not broken._live.is_started
    lines = stream.getvalue().splitlines()
    assert "[corral] attempt 1" in lines and "[corral] gate tests [attempt-1] running" in lines
    assert lines[-1].startswith("[corral] run ready_for_review")


# ----------------------------------------------------------------------------- the CLI, end to end


def _cli_args(root: Path, script: str, *extra: str) -> list[str]:
    """``corral run`` of the demo project at ``root`` by the scripted agent's ``script``."""
    return run_args(root, "--agent", _project(root, script).agent, *extra)


@pytest.mark.docker
def test_cli_json_streams_events_on_stderr_and_one_object_on_stdout(
    tmp_path: Path, sandbox_image: str
) -> None:
    proc = corral(*_cli_args(tmp_path, SCRIPT, "--json"), home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # raises unless stdout is exactly one JSON document
    assert proc.stdout.count("\n") == 1 and result["status"] == "ready_for_review"
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_limits" and kinds[-1] == "run_end"
    assert kinds.count("attempt_start") == 2 and "command_start" in kinds
    assert events[-1]["data"]["status"] == "ready_for_review"


@pytest.mark.docker
def test_cli_quiet_prints_only_the_outcome(tmp_path: Path, sandbox_image: str) -> None:
    proc = corral(*_cli_args(tmp_path, ONE_ATTEMPT, "--quiet"), home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("run ") and "ready_for_review" in proc.stdout
    assert "attempt 1: passed" in proc.stdout


@pytest.mark.docker
def test_ctrl_c_in_a_terminal_leaves_the_cursor_shown_and_the_run_resumable(
    tmp_path: Path, sandbox_image: str
) -> None:
    slow = ONE_ATTEMPT.replace("actions = [", 'actions = [{ run = "sleep 6" }, ')
    args = _cli_args(tmp_path, slow, "--run-id", "ctrlc")
    home = tmp_path / "home"
    env = corral_env(home, {"TERM": "xterm-256color", "COLUMNS": "100"})
    argv = corral_argv(*args)
    pid, fd = pty.fork()
    if pid == 0:  # the child: corral on a real terminal
        os.execve(argv[0], argv, env)
    out, interrupted = b"", False
    try:
        for _ in range(3000):  # bounded: 0.1 s each
            if not interrupted and b"sleep 6" in out and b"running" in out:
                os.kill(pid, signal.SIGINT)
                interrupted = True
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        if not interrupted:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert interrupted, out.decode(errors="replace")[-2000:]
    assert os.waitstatus_to_exitcode(status) == 130
    assert b"\x1b[?25l" in out
    shown, _, after = out.rpartition(b"\x1b[?25h")  # the cursor is back, and then one line:
    assert shown and "`corral resume ctrlc`" in " ".join(after.decode(errors="replace").split())
    text = out.decode(errors="replace")
    assert "attempt 1/2" in text and "$ sleep 6" in text and "tokens 0/2,000,000" in text
    status_line = corral("status", "ctrlc", home=home).stdout
    assert status_line.startswith("ctrlc  interrupted")
    resumed = corral("resume", "ctrlc", "--json", home=home)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "ready_for_review"


def test_line_and_json_displays_share_the_event_vocabulary() -> None:
    stream = io.StringIO()
    StreamDisplay(stream, as_json_line).on_event("command_start", {"command": "ls\n-la"})
    StreamDisplay(stream).on_event("command_start", {"command": "ls\n-la"})
    first, second = stream.getvalue().splitlines()
    assert json.loads(first)["data"] == {"command": "ls\n-la"} and second == "[corral] $ ls\\n-la"
