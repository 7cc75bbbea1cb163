"""`corral review`, `corral logs` and `corral list` on runs made through the real pipeline.

Four runs are built once (real Docker, the scripted agent, a real repository):
one that passes at once, one whose first attempt writes protected files
(denied and reverted) before a second attempt passes, one that is denied a
command on its way to a fix, and one that never passes its gates (its second
attempt also hides a bidi character in the patch). Each test reads what the
review shows about one of them.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policies.policy import Policy
from policies.scope import Scope
from runner.llm.scripted_server import ScriptedModelServer
from runner.ops.service import start_run
from runner.review.diffview import parse_diff
from runner.review.evidence import gather
from runner.review.text import plain, visible
from runner.store.runs import RunStore
from tests.support.cli import corral as corral_cli
from tests.support.demo import FIXED_MUL, PYTEST, WITH_MUL, build_demo, policy, run_request

# The project of the runs: the demo with mul(), which a wrong fix breaks.
FIXED = FIXED_MUL
WRONG = "def add(a, b):\n    return a * b\n\n\ndef mul(a, b):\n    return a + b\n"
BIDI = (
    FIXED + "\n\ndef is_admin(user):\n    return user == 'admin\u202e \u2066// check later\u2069'\n"
)
POLICY = policy('[scope]\nwritable = ["src/**"]', attempts=2, timeout=300)

SCRIPTS = {
    "pass": f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "{PYTEST}" }},
          {{ read = "src/calc.py" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ run = "{PYTEST}" }},
          {{ finish = "add() adds" }},
        ]
        """,
    "protected": f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "conftest.py", content = "collect_ignore = ['tests']\\n" }},
          {{ run = "echo hacked >> setup.cfg; echo rc=$?" }},
          {{ run = "echo 'import os' > tools.py" }},
          {{ finish = "tests pass now" }},
        ]
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed add" }},
        ]
        """,
    "denied": f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "curl http://127.0.0.1:9/fix.py" }},
          {{ run = "false" }},
          {{ run = "false" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed without the download" }},
        ]
        """,
    "failing": f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(WRONG)} }},
          {{ finish = "maybe" }},
        ]
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(BIDI)} }},
          {{ finish = "fixed, and a helper" }},
        ]
        """,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[Path]:
    """The corral home holding the four runs, named by their run ids."""
    tmp = build_demo(tmp_path_factory.mktemp("review"), files=WITH_MUL, policy=POLICY)
    home = tmp / "home"
    for name, script in SCRIPTS.items():
        (tmp / f"{name}.toml").write_text(textwrap.dedent(script))
        req = run_request(tmp, script=tmp / f"{name}.toml", image=sandbox_image, run_id=name)
        start_run(home, req)
    yield home


def corral(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on ``home``, its output wide and without colour."""
    return corral_cli(*args, home=home, env={"COLUMNS": "250", "NO_COLOR": "1"})


def review_json(home: Path, run_id: str) -> dict[str, Any]:
    proc = corral(home, "review", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# ---------------------------------------------------------------- no Docker


def test_hidden_characters_become_visible_escapes() -> None:
    assert visible("a\u202eb") == [("a", False), ("<U+202E>", True), ("b", False)]
    assert plain("x\u2066y\x1b[31mz\r") == "x<U+2066>y<U+001B>[31mz<U+000D>"
    assert visible("tab\tis fine") == [("tab\tis fine", False)]


def test_parse_diff_numbers_lines_and_keeps_dash_lines_inside_a_hunk() -> None:
    patch = textwrap.dedent(
        """\
        diff --git a/src/a.py b/src/a.py
        --- a/src/a.py
        +++ b/src/a.py
        @@ -3,3 +3,3 @@ def f():
         keep
        --- this removed line starts with two dashes
        ++++ and this added one with plus signs
         end\u000c
        diff --git a/tests/test_a.py b/tests/test_a.py
        new file mode 100644
        --- /dev/null
        +++ b/tests/test_a.py
        @@ -0,0 +1 @@
        +x\u202e
        """
    )
    scope = Scope(Policy())
    src, test = parse_diff(patch, scope)
    assert (src.path, src.scope, src.status, src.added, src.removed) == (
        "src/a.py", "writable", "modified", 1, 1,
    )  # fmt: skip
    body = [(x.kind, x.text, x.old, x.new) for x in src.lines if x.kind not in ("meta", "hunk")]
    assert body == [
        ("context", "keep", 3, 3),
        ("del", "-- this removed line starts with two dashes", 4, None),
        ("add", "+++ and this added one with plus signs", None, 4),
        ("context", "end\u000c", 5, 5),  # the form feed stays inside the line
    ]
    assert (test.scope, test.status, test.hidden) == ("protected", "added", 1)


def test_parse_diff_reads_paths_git_had_to_quote() -> None:
    patch = (
        'diff --git "a/src/tab\\there \\"q\\" \\342\\200\\256.py" '
        '"b/src/tab\\there \\"q\\" \\342\\200\\256.py"\n'
        "new file mode 100644\n@@ -0,0 +1 @@\n+x\n"
    )
    (f,) = parse_diff(patch, Scope(Policy()))
    assert f.path == 'src/tab\there "q" \u202e.py' and f.status == "added" and f.added == 1
    assert plain(f.path) == 'src/tab\there "q" <U+202E>.py'


def test_a_run_that_ended_before_any_attempt_reviews_and_reports(tmp_path: Path) -> None:
    from runner.review.report_html import render_html
    from runner.store.runs import NewRun

    store = RunStore(tmp_path)
    run_id = store.create(
        NewRun(
            repo="/r",
            base="0" * 40,
            bug_title="t",
            bug_path="/b",
            agent="scripted",
            model=None,
            policy_json=json.dumps({"sources": ["preset:default"], "policy": {}}),
            spec_json="{}",
            run_id="early",
        )
    )
    store.append(run_id, "run_start", {"title": "t", "agent": "scripted"})
    store.append(run_id, "setup_failed", {"exit_code": 7})
    store.update(run_id, status="failed", failure_domain="runtime", reason="setup failed")
    rv = gather(store, run_id)
    assert (rv.files, rv.gates, rv.attempts, rv.trajectory.steps) == ([], [], [], 0)
    page = render_html(rv)
    assert "No attempt changed anything." in page and "No gate ran." in page
    text = corral(tmp_path, "review", run_id).stdout
    assert "failed (runtime)" in text and "no diff" in text and "gates: none ran" in text
    assert "set-up FAILED (exit 7)" in corral(tmp_path, "logs", run_id).stdout


CSI = "\x9b"  # U+009B, a terminal's Control Sequence Introducer in one (C1) character
C1_PATCH = (
    'diff --git "a/src/csi\\302\\233.py" "b/src/csi\\302\\233.py"\n'
    "new file mode 100644\n"
    "index 0000000..1111111\n"
    "--- /dev/null\n"
    '+++ "b/src/csi\\302\\233.py"\n'
    "@@ -0,0 +1,2 @@\n"
    f"+ok = 1  # {CSI}2J{CSI}31m looks harmless\n"
    "+\x85next = 2\n"
)


def test_c1_controls_are_one_table_for_the_patch_checker_and_every_display() -> None:
    from policies.scope import hidden_characters

    found = [v.detail for v in hidden_characters(C1_PATCH)]
    assert found == ["U+009B in an added line", "U+0085 in an added line"]
    for ch in ("\x0b", "\x0c", "\x1c", "\x85", "\u2029"):  # splitlines would have split these
        assert plain(ch) == f"<U+{ord(ch):04X}>"
    assert hidden_characters("+++ b/a.py\n+a\x0bb\n")[0].detail == "U+000B in an added line"
    assert plain(f"a{CSI}b\x80\x9fc") == "a<U+009B>b<U+0080><U+009F>c"
    (f,) = parse_diff(C1_PATCH, Scope(Policy()))
    assert f.path == f"src/csi{CSI}.py" and f.hidden == 3 and f.added == 2


def test_a_c1_control_in_a_diff_line_is_escaped_in_review_html_and_pr_body(
    tmp_path: Path,
) -> None:
    from runner.loop.outcome import AttemptReport
    from runner.review.report_html import render_html
    from runner.review.writeup import pr_body
    from tests.support.storefixtures import stored_run

    report = AttemptReport(attempt=1, status="passed", changed_files=[f"src/csi{CSI}.py"])
    store = stored_run(
        tmp_path, "c1", status="ready_for_review", bug_title=f"title {CSI}31m",
        attempts=(report,), candidate=C1_PATCH.encode(), summary=f"summary {CSI}2J",
    )  # fmt: skip
    text = corral(tmp_path, "review", "c1")
    assert text.returncode == 0, text.stderr
    assert CSI not in text.stdout and "\x85" not in text.stdout
    assert "<U+009B>2J<U+009B>31m looks harmless" in text.stdout
    assert "src/csi<U+009B>.py" in text.stdout and "3 hidden character(s)" in text.stdout
    assert "title <U+009B>31m" in text.stdout
    page = render_html(gather(store, "c1"))
    assert CSI not in page and "\x85" not in page
    assert '<span class="esc">&lt;U+009B&gt;</span>2J' in page
    body = pr_body(store, "c1")
    assert CSI not in body
    assert "# title &lt;U+009B>31m" in body and "summary &lt;U+009B>2J" in body  # markdown
    assert "| `src/csi&lt;U+009B>.py` | 2 | 0 |" in body


# ---------------------------------------------------------------- real runs


@pytest.mark.docker
def test_review_of_a_passing_run_shows_diff_scope_gates_and_trajectory(runs: Path) -> None:
    data = review_json(runs, "pass")
    assert data["status"] == "ready_for_review" and data["diff_source"] == "candidate.diff"
    assert data["policy_sources"][0] == "preset:default" and data["agent"].startswith("scripted:")
    (f,) = data["files"]
    assert (f["path"], f["scope"], f["added"], f["removed"]) == ("src/calc.py", "writable", 1, 1)
    assert ["add", "    return a + b"] in [[x["kind"], x["text"]] for x in f["lines"]]
    gates = {g["label"]: g for g in data["gates"]}
    assert gates["baseline"]["passed"] is False
    cand = gates["attempt-1"]
    assert cand["passed"] is True and cand["baseline_passed"] is False
    assert cand["fixed"] == ["tests.test_calc::test_add"] and cand["newly_failing"] == []
    assert "2 passed" in cand["log"] and "1 failed" in cand["baseline_log"]
    seconds = data["attempts"][0]["gate_seconds"]["tests"]  # each run of the gate, timed
    assert seconds["baseline"] > 0 and seconds["candidate"] > 0
    tr = data["trajectory"]
    assert tr["steps"] == 5
    assert tr["tools"] == {"bash": 2, "read_file": 1, "write_file": 1, "finish": 1}
    (failed,) = tr["failed_commands"]  # the first pytest run: test_add fails at base
    assert failed["command"] == PYTEST and failed["exit_code"] == 1
    assert failed["acted"] is True and failed["followed_by"] == "changed a file (src/calc.py)"
    assert data["budgets"]["tokens"]["limit"] > 0 and data["budgets"]["attempts"]["used"] == 1
    assert data["blocked"] == [] and data["chain_ok"] is True and data["format"] == 1

    text = corral(runs, "review", "pass").stdout
    assert "ready_for_review" in text and "src/calc.py  [writable]  modified +1 -1" in text
    assert "+    return a + b" in text and "-    return a - b" in text
    assert "tests.test_calc::test_add" in text  # in the gates table's "fixed" column
    assert "acted on it: changed a file (src/calc.py)" in text
    assert "blocked and reverted: nothing" in text


@pytest.mark.docker
def test_review_shows_the_rolled_back_protected_attempt_and_why_it_failed(runs: Path) -> None:
    data = review_json(runs, "protected")
    assert data["status"] == "ready_for_review"
    first, second = data["attempts"]
    assert (first["status"], first["failure_domain"]) == ("failed", "governance")
    assert first["reason"] == (
        "the attempt only tried to change files it may not write: conftest.py (protected by"
        " policy; write refused); tools.py (not in the policy's writable scope; reverted)"
    )
    assert second["status"] == "passed" and second["changed_files"] == ["src/calc.py"]
    blocked = {(b["attempt"], b["kind"], b["what"]) for b in data["blocked"]}
    assert (1, "write denied", "conftest.py") in blocked
    assert (1, "scope violation", "tools.py") in blocked  # outside the writable scope
    assert [g["label"] for g in data["gates"]] == ["baseline", "attempt-2"]
    text = corral(runs, "review", "protected").stdout
    assert "write denied" in text and "protected by policy" in text
    assert "reverted after the step" in text
    assert "the attempt only tried to change files it may not write" in text


@pytest.mark.docker
def test_review_shows_a_denied_command_and_repeated_failing_commands(runs: Path) -> None:
    data = review_json(runs, "denied")
    assert data["status"] == "ready_for_review"
    (denied,) = data["blocked"]
    assert denied["kind"] == "command denied"
    assert denied["what"] == "curl http://127.0.0.1:9/fix.py" and "curl" in denied["reason"]
    tr = data["trajectory"]
    assert {"attempt": 1, "tool": "bash", "action": "false", "times": 2} in tr["repeated"]
    first, second = tr["failed_commands"]
    assert (first["acted"], first["followed_by"]) == (False, "ran the same command again")
    assert second["acted"] is True and "changed a file" in second["followed_by"]
    text = corral(runs, "review", "denied").stdout
    assert "command denied" in text and "curl http://127.0.0.1:9/fix.py" in text
    assert "did not act on it: ran the same command again" in text


@pytest.mark.docker
def test_review_of_a_failed_run_shows_gates_per_test_and_escaped_bidi(runs: Path) -> None:
    data = review_json(runs, "failing")
    assert data["status"] == "failed" and data["failure_domain"] == "governance"
    first, second = data["attempts"]
    assert first["failure_domain"] == "model" and "gate tests failed" in first["reason"]
    assert second["failure_domain"] == "governance" and "U+202E" in second["reason"]
    (row,) = [g for g in data["gates"] if g["label"] == "attempt-1"]
    assert row["passed"] is False
    assert row["newly_failing"] == ["tests.test_calc::test_mul"]
    assert row["still_failing"] == ["tests.test_calc::test_add"] and row["fixed"] == []
    assert data["diff_source"] == "attempt-2/patch.diff"  # no candidate: the last attempt's
    (f,) = data["files"]
    assert f["hidden"] == 3
    text = corral(runs, "review", "failing").stdout
    assert "\u202e" not in text and "\u2066" not in text  # never written raw to the terminal
    assert "'admin<U+202E> <U+2066>// check later<U+2069>'" in text
    assert "3 hidden character(s) shown escaped" in text
    assert "not a candidate" in text
    assert "tests.test_calc::test_mul" in text


@pytest.mark.docker
def test_logs_renders_events_per_attempt_and_gate_logs(runs: Path) -> None:
    whole = corral(runs, "logs", "protected")
    assert whole.returncode == 0, whole.stderr
    assert "run started: add() subtracts" in whole.stdout
    assert "write denied: conftest.py (protected by policy)" in whole.stdout
    second = corral(runs, "logs", "protected", "--attempt", "2").stdout
    assert "write_file src/calc.py" in second and "conftest.py" not in second  # the tool's name
    assert all(" a2" in line for line in second.strip().splitlines())
    gate = corral(runs, "logs", "pass", "--gate", "tests").stdout
    assert (
        "== gate tests on baseline: FAILED" in gate and "== gate tests on attempt-1: passed" in gate
    )
    assert "1 failed" in gate and "2 passed" in gate
    store = RunStore(runs)
    assert gather(store, "pass").trajectory.timeline[-1].type == "run_end"


@pytest.mark.docker
def test_list_has_the_review_columns(runs: Path) -> None:
    proc = corral(runs, "list")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.strip().splitlines()
    for col in ("id", "repo", "bug", "status", "domain", "attempts", "cost", "age"):
        assert col in header
    (failing,) = [r for r in rows if r.startswith("failing ")]
    assert "repo" in failing and "add() subtracts" in failing and "governance" in failing
    assert " 2 " in failing and "$0.0000" in failing


def test_unknown_run_and_bad_options_are_one_clear_line_exit_2(tmp_path: Path) -> None:
    for args in (("review", "nope"), ("logs", "nope"), ("report", "nope", "--html", "x.html")):
        proc = corral(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "`corral list` shows runs" in proc.stderr


@pytest.mark.docker
def test_bad_options_on_a_real_run_are_one_clear_line_exit_2(runs: Path, tmp_path: Path) -> None:
    cases = {
        ("logs", "pass", "--gate", "lint"): "has no log of gate 'lint': one of tests",
        ("logs", "pass", "--attempt", "7"): "has no attempt 7",
        ("report", "pass", "--html", str(tmp_path / "no" / "r.html")): "does not exist",
        ("report", "pass", "--html", str(tmp_path)): "is a directory",
    }
    for args, message in cases.items():
        proc = corral(runs, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    raw = corral(runs, "review", "failing", "--json").stdout
    assert "\u202e" not in raw and "\\u202e" in raw  # JSON carries the character, escaped


@pytest.mark.docker
def test_review_of_a_built_in_agent_run_shows_model_tokens_and_cost(
    tmp_path: Path, corral_home: Path, sandbox_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.agentruns import FIX_CALLS, KEY

    monkeypatch.setenv("CORRAL_API_KEY", KEY)
    project = build_demo(tmp_path, policy=POLICY)
    with ScriptedModelServer(FIX_CALLS) as server:
        req = run_request(
            project, agent="corral", model="gpt-4o-mini", base_url=server.base_url,
            image=sandbox_image, run_id="model",
        )  # fmt: skip
        assert start_run(corral_home, req).status == "ready_for_review"
    data = review_json(corral_home, "model")
    assert data["agent"] == "corral" and data["model"] == "gpt-4o-mini"
    assert data["tokens"] > 0 and data["cost_usd"] > 0
    assert data["budgets"]["tokens"]["used"] == data["tokens"]
    tools = data["trajectory"]["tools"]
    assert tools == {"bash": 2, "read_file": 1, "edit_file": 1, "finish": 1}  # by the tool's name
    assert "model_call" in [e["type"] for e in data["trajectory"]["timeline"]]
    text = corral(corral_home, "review", "model").stdout
    assert "model gpt-4o-mini" in text and f"{data['tokens']} / $" in text
    assert KEY not in text + json.dumps(data)
    log = RunStore(corral_home).log_path("model")
    log.write_text(log.read_text().replace('"path":"src/calc.py"', '"path":"src/other.py"', 1))
    tampered = corral(corral_home, "review", "model").stdout
    assert "BROKEN: content does not match its hash (the line was edited)" in tampered
