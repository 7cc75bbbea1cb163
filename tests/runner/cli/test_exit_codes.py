"""Exit codes through the real CLI: bad input is one ``error:`` line naming the fix and exit 2.

``handles_errors`` maps a ``UserError`` to 2 and any other ``CorralError`` to 1;
a bug (a bare ``ValueError``) never passes for the user's mistake: its traceback
shows, then a line asking to report it, and exit 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from runner.cli.app import BUG_LINE, handles_errors
from runner.errors import RunnerError, UsageError
from sandbox.errors import CorralError, SandboxError, UserError
from tests.support.cli import corral
from tests.support.demo import build_demo, policy


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


#: ``corral run`` on the demo project with one thing wrong, and what its error line must say.
BAD_RUNS = {
    "malformed policy": (
        {"policy": "bad.toml"},
        "budgets.attemps: unknown key (check the spelling; `corral policy show` lists the keys)",
    ),
    "missing repo": ({"repo": "gone"}, "--repo gone is not a directory"),
    "not a repository": ({"repo": "."}, "is not a git repository"),
    "bad --set": ({"set": "budgets.attempts"}, "use KEY=VALUE, e.g. --set budgets.attempts=2"),
    "unknown agent": (
        {"agent": "nope"},
        "unknown agent 'nope': use --agent corral, --agent scripted:FILE or --agent cli:NAME",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_input_to_run_is_one_line_naming_the_fix_and_exit_2(
    tmp_path: Path, corral_home: Path, case: str
) -> None:
    build_demo(tmp_path / "demo", policy=policy(attempts=1))
    (tmp_path / "bad.toml").write_text(policy("[budgets]\nattemps = 2"))
    given, fix = BAD_RUNS[case]
    options = {"repo": "demo/repo", "bug": "demo/bug.md", "policy": "demo/policy.toml",
               "agent": "scripted:demo/script.toml", **given}  # fmt: skip
    args = [word for key, value in options.items() for word in (f"--{key}", value)]
    proc = corral("run", *args, home=corral_home, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert fix in _one_error_line(proc.stderr)


def test_an_unknown_run_is_one_line_naming_corral_list_and_exit_2(corral_home: Path) -> None:
    for args in (("review", "nope"), ("resume", "nope"), ("approve", "nope")):
        proc = corral(*args, home=corral_home, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "`corral list` shows runs" in _one_error_line(proc.stderr)


def _raising(exc: BaseException) -> typer.Exit | BaseException:
    @handles_errors
    def command() -> None:
        raise exc

    try:
        command()
    except (typer.Exit, Exception) as raised:
        return raised
    raise AssertionError("the command returned")


def test_only_a_user_error_is_exit_2_and_other_corral_errors_are_exit_1() -> None:
    for exc in (UserError("bad"), UsageError("bad option")):
        raised = _raising(exc)
        assert isinstance(raised, typer.Exit) and raised.exit_code == 2
    for exc in (CorralError("x"), RunnerError("x"), SandboxError("x")):
        raised = _raising(exc)
        assert isinstance(raised, typer.Exit) and raised.exit_code == 1


@pytest.mark.parametrize("exc", [ValueError("a bug"), LookupError("a bug"), KeyError("a bug")])
def test_an_exception_that_is_not_corrals_is_a_bug_with_its_traceback_and_a_report_line(
    exc: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    raised = _raising(exc)
    assert isinstance(raised, typer.Exit) and raised.exit_code == 1  # never 2: not bad input
    stderr = capsys.readouterr().err
    assert "Traceback" in stderr and type(exc).__name__ in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"error: {BUG_LINE}"
    assert "please report it" in BUG_LINE


def test_typers_own_exits_pass_through() -> None:
    for exc in (typer.Exit(3), typer.Abort()):
        assert _raising(exc) is exc
