"""`corral run` and friends as a user runs them: subprocesses, exit codes, --json, kill -9 and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.demo import FIXED, build_demo, fix_script, policy, run_args

POLICY = policy('[commands]\nask = ["make release"]', attempts=2)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The demo project, whose policy asks a human before ``make release``."""
    return build_demo(tmp_path, policy=POLICY)


def _script(project: Path, body: str) -> Path:
    path = project / "script.toml"
    path.write_text(textwrap.dedent(body))
    return path


def _run_args(project: Path, *extra: str) -> list[str]:
    return run_args(project, "--agent", f"scripted:{project / 'script.toml'}", "--json", *extra)


@pytest.mark.docker
def test_run_json_prints_one_object_and_exit_code_0(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    _script(project, fix_script())
    proc = corral(*_run_args(project, "--idempotency-key", "bug-1"), home=corral_home)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert result["status"] == "ready_for_review" and result["failure_domain"] is None
    assert result["attempts"][0]["gates"] == {"tests": True}
    assert result["attempts"][0]["changed_files"] == ["src/calc.py"]
    assert Path(result["patch_path"]).is_file()
    assert all(json.loads(line)["type"] for line in proc.stderr.splitlines())  # events: stderr
    again = corral(*_run_args(project, "--idempotency-key", "bug-1"), home=corral_home)
    assert json.loads(again.stdout)["run_id"] == result["run_id"]
    assert corral("verify", result["run_id"], home=corral_home).returncode == 0
    listed = corral("list", home=corral_home)
    assert result["run_id"] in listed.stdout and "ready_for_review" in listed.stdout


@pytest.mark.docker
def test_kill_9_mid_attempt_then_resume_finishes_and_the_chain_verifies(
    project: Path, corral_home: Path, sandbox_image: str, docker_client: Any
) -> None:
    _script(project, fix_script(first="sleep 6"))
    proc = subprocess.Popen(
        corral_argv(*_run_args(project, "--run-id", "killme")), env=corral_env(corral_home),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log = corral_home / "runs" / "killme" / "events.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and '"type":"window_start"' in log.read_text():
            break
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    store = RunStore(corral_home)
    assert store.get("killme").status == "running"  # as recorded; shown as what it is:
    assert store.last_incomplete("killme") is not None
    status = corral("status", "killme", home=corral_home)
    assert "killme  interrupted" in status.stdout and "corral resume killme" in status.stdout
    assert (
        json.loads(corral("status", "killme", "--json", home=corral_home).stdout)["status"]
        == "interrupted"
    )
    assert "interrupted" in corral("list", home=corral_home).stdout
    resumed = corral("resume", "killme", "--json", home=corral_home)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "ready_for_review"
    assert [a["attempt"] for a in result["attempts"]] == [1]
    assert corral("verify", "killme", home=corral_home).returncode == 0
    types = [e.type for e in store.events("killme")]
    assert "run_resume" in types and "orphan_removed" in types
    mine = ["corral.run=killme", f"corral.home={corral_home}"]  # not another test run's
    leftover = docker_client.containers.list(all=True, filters={"label": mine})
    assert leftover == []


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_records_the_interruption_and_names_the_resume(
    project: Path, corral_home: Path, sandbox_image: str, docker_client: Any, sig: int
) -> None:
    _script(project, fix_script(first="sleep 4"))
    proc = subprocess.Popen(
        corral_argv(*_run_args(project, "--run-id", "stopme")), env=corral_env(corral_home),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:  # JSON lines (--json): wait until the command runs
        if '"type": "command_start"' in line:
            break
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert "interrupted: run stopme stopped during attempt 1" in rest
    assert "`corral resume stopme`" in rest and "Traceback" not in rest
    store = RunStore(corral_home)
    (stopped,) = [e.data for e in store.events("stopme") if e.type == "run_interrupted"]
    assert stopped["where"] == "attempt 1"
    assert "stopme  interrupted" in corral("status", "stopme", home=corral_home).stdout
    mine = ["corral.run=stopme", f"corral.home={corral_home}"]  # the run cleaned up after itself
    assert docker_client.containers.list(all=True, filters={"label": mine}) == []
    resumed = corral("resume", "stopme", "--json", home=corral_home)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "ready_for_review"
    assert corral("verify", "stopme", home=corral_home).returncode == 0


@pytest.mark.docker
def test_ask_command_waits_exit_3_then_approve_and_resume(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    _script(
        project,
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "make release || true" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """,
    )
    first = corral(*_run_args(project, "--run-id", "asks"), home=corral_home)
    assert first.returncode == 3, first.stderr
    assert json.loads(first.stdout)["status"] == "waiting"
    status = corral("status", "asks", home=corral_home)
    assert "make release" in status.stdout and "corral approve asks" in status.stdout
    assert corral("approve", "asks", "--comment", "ok", home=corral_home).returncode == 0
    done = corral("resume", "asks", "--json", home=corral_home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ready_for_review"
    types = [e.type for e in RunStore(corral_home).events("asks")]
    assert types.count("command_ask") == 1 and "human_approved" in types
    assert "command" in types  # the approved command then ran


@pytest.mark.docker
def test_failed_setup_ends_the_run_before_any_agent(
    project: Path, corral_home: Path, sandbox_image: str
) -> None:
    (project / "policy.toml").write_text(
        POLICY + '\n[setup]\ncommands = ["echo preparing && exit 7"]\n'
    )
    _script(project, '[[attempt]]\n[[attempt.window]]\nactions = [{ finish = "x" }]\n')
    proc = corral(*_run_args(project, "--run-id", "nosetup"), home=corral_home)
    assert proc.returncode == 2  # the policy's to fix
    result = json.loads(proc.stdout)
    assert result["status"] == "failed" and result["failure_domain"] == "configuration"
    assert "set-up command failed (exit 7)" in result["reason"] and result["attempts"] == []
    log = RunStore(corral_home).artifact_path("nosetup", "setup.log")
    assert "preparing" in log.read_text()
    assert str(log) in result["reason"] and result["reason"].endswith("preparing")
    # set-up's output was shown as it ran (JSON lines on stderr with --json)
    shown = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    said = [e["data"]["line"] for e in shown if e["type"] == "setup_output"]
    assert "$ echo preparing && exit 7" in said and "preparing" in said
    assert "attempt_start" not in [e.type for e in RunStore(corral_home).events("nosetup")]


def test_bad_input_is_one_clear_line_and_exit_2(project: Path, corral_home: Path) -> None:
    (project / "bad.toml").write_text("[budgets]\nattempts = 0\n[scope]\nwriteable = []\n")
    bad = corral("policy", "check", str(project / "bad.toml"), home=corral_home)
    assert bad.returncode == 2
    assert "budgets.attempts:" in bad.stderr and "scope.writeable: unknown key" in bad.stderr
    unknown = corral("status", "no-such-run", home=corral_home)
    assert unknown.returncode == 2 and "`corral list` shows runs" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    coded = corral("status", "UPPER:x:", home=corral_home)  # run text is no emoji code either
    assert coded.returncode == 2 and "UPPER:x:" in coded.stderr and "\u274c" not in coded.stderr
    missing = corral(
        "run", "--repo", str(project), "--bug", str(project / "bug.md"), home=corral_home
    )
    assert missing.returncode == 2 and "not a git repository" in missing.stderr
    good = corral("policy", "check", str(project / "policy.toml"), home=corral_home)
    assert good.returncode == 0 and "ok:" in good.stdout
    shown = corral("policy", "show", "--policy", "strict", home=corral_home)
    assert json.loads(shown.stdout)["policy"]["scope"]["on_violation"] == "escalate"
    # --base-url without a script means the built-in agent, which then names what it lacks
    url = corral("run", "--repo", str(project / "repo"), "--bug",
                 str(project / "bug.md"), "--base-url", "http://127.0.0.1:9/v1", home=corral_home)  # fmt: skip
    assert url.returncode == 2 and "--agent corral needs --model NAME" in url.stderr, url.stderr
    assert len(url.stderr.strip().splitlines()) == 1


NASTY = "[/x] x[/y].py \u202e\x1b[31m\x9b2J"
"""Markup that rich would parse (and raise on), a bidi override, an ESC sequence and a C1 CSI."""


def _shows_nasty_escaped(text: str) -> None:
    assert "Traceback" not in text and "MarkupError" not in text
    assert "\u202e" not in text and "\x1b" not in text and "\x9b" not in text
    assert "[/x] x[/y].py <U+202E><U+001B>[31m<U+009B>2J" in " ".join(text.split())  # wrapped


def test_run_text_is_printed_as_text_with_hidden_characters_escaped(
    project: Path, corral_home: Path
) -> None:
    from runner.loop.outcome import AttemptReport
    from tests.support.storefixtures import stored_run

    report = AttemptReport(attempt=1, reason=f"out of scope: {NASTY}", failure_domain="governance")
    stored_run(
        corral_home, "nasty", reason=f"no attempt passed: {NASTY}", bug_title=NASTY,
        attempts=(report,), failure_domain="governance",
    ).update("nasty", repo=f"/repo/{NASTY}")  # fmt: skip
    resumed = corral("resume", "nasty", home=corral_home)
    assert resumed.returncode == 1, resumed.stderr
    _shows_nasty_escaped(resumed.stdout + resumed.stderr)
    assert resumed.stdout.count("<U+202E>") == 2  # the run's reason and the attempt's
    status = corral("status", "nasty", home=corral_home)
    assert status.returncode == 0, status.stderr
    _shows_nasty_escaped(status.stdout)
    assert "bug: [/x] x[/y].py <U+202E>" in " ".join(status.stdout.split())
    # A waiting run's pending command, and the answer to it.
    store = stored_run(corral_home, "asks", status="waiting", reason="asks a human")
    store.update("asks", waiting_json=json.dumps({"command": NASTY, "reason": NASTY}))
    waiting = corral("status", "asks", home=corral_home)
    assert waiting.returncode == 0, waiting.stderr
    _shows_nasty_escaped(waiting.stdout)
    assert waiting.stdout.count("<U+202E>") == 2  # the command and why it waits
    approved = corral("approve", "asks", home=corral_home)
    assert approved.returncode == 0, approved.stderr
    _shows_nasty_escaped(approved.stdout)
    # An error line that quotes run text (a bug file name) is escaped as well.
    missing = corral(
        "run", "--repo", str(project / "repo"), "--bug", f"/no/{NASTY}", home=corral_home
    )
    assert missing.returncode == 2
    _shows_nasty_escaped(missing.stderr)
    assert len(missing.stderr.strip().splitlines()) == 1
