"""Bad input caught before anything starts, through the real CLI: one ``error:`` line naming the
fix, exit 2, and no run recorded (nothing a user would then have to clean up); a policy whose
writable scope cannot reach a file says so up front instead of failing every attempt as
``model``. (``corral rm``, for a run that is over: test_rm.py.)

No Docker: every check here runs before corral reaches the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.support.cli import corral
from tests.support.demo import build_demo, fix_script, policy
from tests.support.fastloop import ADDS, Project, finish, script, write
from tests.support.fastloop import policy as fast_policy
from tests.support.gitfixtures import git, make_repo


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def _runs(home: Path) -> list[str]:
    """The ids of the runs recorded in ``home``."""
    if not (home / "runs.db").exists():
        return []
    with RunStore(home) as store:
        return [rec.run_id for rec in store.list_runs()]


def _demo(root: Path, **kw: Any) -> Path:
    """The demo project under ``root`` and a scripted agent that fixes it (``root/script.toml``)."""
    build_demo(root, policy=policy(attempts=1), **kw)
    (root / "script.toml").write_text(fix_script())
    return root


def _run(root: Path, home: Path, *extra: str, env: dict[str, str | None] | None = None) -> Any:
    """``corral run`` on the demo under ``root`` with ``extra`` options (the later one wins)."""
    options = {"--repo": "repo", "--bug": "bug.md", "--policy": "policy.toml",
               "--agent": "scripted:script.toml"}  # fmt: skip
    args = [word for key, value in options.items() for word in (key, value)]
    return corral("run", *args, *extra, home=home, cwd=root, env=env, timeout=120)


# --------------------------------------------------------------------------- run options


def test_an_unknown_runtime_records_no_run(tmp_path: Path, corral_home: Path) -> None:
    root = _demo(tmp_path)
    proc = _run(root, corral_home, "--runtime", "kata")
    assert proc.returncode == 2, proc.stderr
    assert "unknown runtime 'kata': use runc or runsc" in _one_error_line(proc.stderr)
    assert _runs(corral_home) == []  # nothing left `created` forever


@pytest.mark.parametrize("key_file", [None, ""], ids=["no key at all", "an empty key file"])
def test_a_model_without_a_key_is_exit_2_before_anything_starts(
    tmp_path: Path, corral_home: Path, key_file: str | None
) -> None:
    root = _demo(tmp_path)
    extra = ["--agent", "corral", "--model", "gpt-4o-mini"]
    if key_file is not None:
        (root / "key").write_text(key_file)
        extra += ["--api-key-file", "key"]
    proc = _run(root, corral_home, *extra, env={"CORRAL_API_KEY": None, "OPENAI_API_KEY": None})
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "--api-key-file" in line and "CORRAL_API_KEY" in line, line
    assert _runs(corral_home) == []


# --------------------------------------------------------------------------- the bug report

BAD_BUGS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "is empty: write what goes wrong"),
    "only blank lines": (b"  \n\n\t\n", "is empty: write what goes wrong"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text file"),
    "text with NUL bytes": (b"# add\x00\x00 is wrong\n", "is not a text file"),
}


@pytest.mark.parametrize("case", list(BAD_BUGS))
def test_a_bug_report_with_nothing_to_read_is_one_line(
    tmp_path: Path, corral_home: Path, case: str
) -> None:
    root = _demo(tmp_path)
    content, fix = BAD_BUGS[case]
    (root / "bad.md").write_bytes(content)
    proc = _run(root, corral_home, "--bug", "bad.md")
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert f"bug report bad.md {fix}" in line, line
    assert "codec" not in line
    assert _runs(corral_home) == []


# --------------------------------------------------------------------------- the repository


def _no_commits(root: Path) -> tuple[str, str]:
    (root / "repo").mkdir()
    git(root / "repo", "init", "-q")
    return "repo", "has no commits yet: commit the code to fix"


def _bare(root: Path) -> tuple[str, str]:
    make_repo(root / "work", {"a.py": "x = 1\n"})
    git(root, "clone", "-q", "--bare", "work", "bare.git")
    return "bare.git", "is a bare repository: corral needs a checkout; clone it"


BAD_REPOS = {"no commits": _no_commits, "bare": _bare}


@pytest.mark.parametrize("case", list(BAD_REPOS))
def test_a_repository_corral_cannot_work_on_is_one_line_without_git_plumbing(
    tmp_path: Path, corral_home: Path, case: str
) -> None:
    root = _demo(tmp_path / "demo")
    repo, fix = BAD_REPOS[case](tmp_path)
    for args in (("--repo", f"../{repo}"),):
        proc = _run(root, corral_home, *args)
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc.stderr)
        assert f"--repo ../{repo} {fix}" in line and "rev-parse" not in line, line
    proc = corral("policy", "show", "--repo", repo, home=corral_home, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"--repo {repo} {fix}" in _one_error_line(proc.stderr)
    assert _runs(corral_home) == []


def test_an_unknown_base_names_the_ref_and_how_to_list_them(
    tmp_path: Path, corral_home: Path
) -> None:
    root = _demo(tmp_path)
    proc = _run(root, corral_home, "--base", "no-such-branch")
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "--base no-such-branch is not a commit of repo:" in line, line
    assert "git -C repo log --oneline" in line and "rev-parse" not in line, line


def test_policy_show_on_a_missing_repo_names_the_path_not_a_repr(
    tmp_path: Path, corral_home: Path
) -> None:
    proc = corral("policy", "show", "--repo", "gone", home=corral_home, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "--repo gone is not a directory" in line and "PosixPath" not in line, line


# --------------------------------------------------------------------------- the writable scope


def _scope(*writable: str) -> str:
    return policy(f"[scope]\nwritable = {json.dumps(list(writable))}", attempts=1)


def test_policy_check_with_a_repo_warns_of_writable_globs_that_reach_no_file(
    tmp_path: Path, corral_home: Path
) -> None:
    root = _demo(tmp_path)
    (root / "scoped.toml").write_text(_scope("src/**", "source/**", "tests/**"))
    proc = corral("policy", "check", "scoped.toml", "--repo", "repo", home=corral_home, cwd=root)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, proc.stderr
    assert 'scope.writable "source/**" matches no file of repo at HEAD' in warnings[0]
    assert 'scope.writable "tests/**" matches only files the policy keeps' in warnings[1]
    assert "protected: 1" in warnings[1]
    assert "src/**" not in proc.stderr


def test_a_presets_globs_for_file_types_the_project_has_not_are_no_warning(
    tmp_path: Path, corral_home: Path
) -> None:
    root = _demo(tmp_path)  # no *.pyi, *.json or *.toml; its one *.cfg is protected
    (root / "on-python.toml").write_text('preset = "python"\n')
    proc = corral("policy", "check", "on-python.toml", "--repo", "repo", home=corral_home, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "scope.writable" not in proc.stderr


def test_a_run_whose_scope_reaches_no_file_is_exit_2_before_anything_starts(
    tmp_path: Path, corral_home: Path
) -> None:
    root = _demo(tmp_path)
    (root / "policy.toml").write_text(_scope("source/**", "tests/**"))
    proc = _run(root, corral_home)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "no file of repo at HEAD is writable" in line, line
    assert '"source/**" matches no file' in line and '"tests/**" matches only' in line, line
    assert "corral policy check" in line, line
    assert _runs(corral_home) == []


def test_a_dead_writable_glob_is_a_warning_when_another_one_reaches_files(
    tmp_path: Path, corral_home: Path
) -> None:
    from tests.support.demo import FIXED

    project = Project(tmp_path, corral_home)
    seen: list[tuple[str, dict[str, Any]]] = []
    result = project.start(
        script([[write("src/calc.py", FIXED), finish()]]),
        fast_policy('[scope]\nwritable = ["src/**", "source/**"]', gates=(ADDS,)),
        on_event=lambda kind, data: seen.append((kind, dict(data))),
    )
    assert result.status == "ready_for_review", result.reason
    warned = [data["message"] for kind, data in seen if kind == "policy_warning"]
    assert len(warned) == 1 and '"source/**" matches no file' in warned[0], seen
    recorded = project.events(result.run_id, "policy_warning")
    assert [e.data["message"] for e in recorded] == warned  # the review sees it too


def test_a_wrong_type_in_a_policy_file_fails_even_when_a_later_layer_sets_the_key(
    tmp_path: Path, corral_home: Path
) -> None:
    root = _demo(tmp_path)
    (root / "typo.toml").write_text(policy('[budgets]\nattempts = "two"'))
    proc = _run(root, corral_home, "--policy", "typo.toml", "--set", "budgets.attempts=2")
    assert proc.returncode == 2, proc.stderr
    assert "budgets.attempts: Input should be a valid integer" in proc.stderr
    assert "typo.toml" in proc.stderr
    assert _runs(corral_home) == []
