"""The command line's own words: ``--version``, shell completion, help, the closing hint of init.

Each as a user meets it: ``corral`` run as a process (``tests.support.cli``), in the directory
the user stands in; the help of every command and subcommand is read through Typer's runner.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from runner.cli import app
from tests.support.cli import corral, corral_argv, corral_env
from tests.support.demo import build_demo

#: Typer's annotation labels (`<bool>` next to every flag), which the help must not show.
NOISE = re.compile(r"<(bool|str|path|int|float|list\[[^\]]*\])>")


def test_version_prints_the_installed_version() -> None:
    proc = corral("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"corral {version('corral')}\n"


def test_shell_completion_is_offered_and_completes_commands_and_options(tmp_path: Path) -> None:
    script = corral("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _corral_completion corral" in script.stdout
    # what bash asks the completion function when a user types `corral rev<TAB>`, `--j<TAB>`
    for words, cword, want in (("corral rev", "1", "review"), ("corral review --j", "2", "--json")):
        env = {"_CORRAL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": cword}
        asked = corral(env=env, home=tmp_path / "home")
        assert asked.returncode == 0 and asked.stdout.split() == [want], asked


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


def test_help_of_every_command_shows_no_type_labels() -> None:
    paths = _commands(typer.main.get_command(app))
    assert ("run",) in paths and ("image", "bootstrap") in paths and ("policy", "check") in paths
    for path in paths:
        shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
        assert shown.exit_code == 0, (path, shown.output)
        assert NOISE.search(shown.output) is None, (path, shown.output)
        assert "--help" in shown.output
    run = CliRunner().invoke(app, ["run", "--help"], terminal_width=100).output
    assert re.search(r"--repo\s+PATH", run) and re.search(r"--attempts\s+INTEGER", run)
    assert re.search(r"--json\s+One JSON object", run)  # a flag: no label before its help
    review = CliRunner().invoke(app, ["review", "--help"], terminal_width=100).output
    assert "RUN_ID" in review and "{run_id}" not in review


def _hint(stderr: str) -> str:
    (line,) = [line for line in stderr.splitlines() if line.startswith("next:")]
    return line


def _sh(cmd: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """One command of a hint as the user pastes it (``corral`` is this checkout's)."""
    argv = shlex.split(cmd)
    if argv[0] == "corral":
        argv = corral_argv(*argv[1:])
    return subprocess.run(
        argv, cwd=cwd, env=corral_env(home), capture_output=True, text=True, check=False
    )


def test_inits_closing_hint_works_from_where_the_user_stands(tmp_path: Path) -> None:
    demo = build_demo(tmp_path / "elsewhere")
    repo = demo / "repo"
    home = tmp_path / "home"
    for cwd, where in ((tmp_path, "elsewhere/repo"), (repo, "."), (repo / "src", "..")):
        shown = corral("init", *(["--repo", where] if where != "." else []), cwd=cwd, home=home)
        assert shown.returncode == 0, shown.stderr
        hint = _hint(shown.stderr)
        commands = re.findall(r"`([^`]+)`", hint)
        write, git_add, run = commands[0], commands[1], commands[2]
        if where == ".":  # in the repository: nothing to point at
            assert "--repo" not in hint and "git -C" not in hint, hint
        else:
            assert f"--repo {where}" in write and f"--repo {where}" in run, hint
        # each command, pasted where the user stands, does what the hint says
        (repo / ".corral.toml").unlink(missing_ok=True)
        assert _sh(write, cwd, home).returncode == 0
        assert (repo / ".corral.toml").is_file()
        for part in git_add.split(" && "):
            done = _sh(part, cwd, home)
            assert done.returncode == 0, (part, done.stderr)
        assert "corral.toml" in _sh("git log -1 --name-only --format=", repo, home).stdout
        shown_policy = _sh(run.replace(" --bug BUG.md --agent ...", "").replace(
            "corral run", "corral policy show"), cwd, home)  # fmt: skip
        assert shown_policy.returncode == 0, shown_policy.stderr
