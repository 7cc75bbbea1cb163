"""The control loop end to end: a real repository, real Docker, the ScriptedAgent, the run store.

One scenario per test, each checking what the run recorded, what the tree and
the user's repository look like afterwards, and that the event chain verifies.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.loop import RunResult
from runner.service import RunRequest, start_run
from runner.store import RunStore
from sandbox.paths import worktrees_dir
from sandbox.storage import mount_scratch_fs
from tests.gitfixtures import git, make_repo, tree_digest

pytestmark = pytest.mark.docker

CALC = "def add(a: int, b: int) -> int:\n    return a - b\n\n\ndef mul(a: int, b: int) -> int:\n    return a * b\n"
FIXED = CALC.replace("a - b", "a + b")
TESTS = textwrap.dedent(
    """\
    from src.calc import add, mul


    def test_add():
        assert add(1, 2) == 3


    def test_mul():
        assert mul(2, 3) == 6
    """
)
POLICY = textwrap.dedent(
    """\
    [budgets]
    attempts = 3
    steps = 20
    wall_seconds = 900

    [[gates]]
    name = "tests"
    command = "python3 -m pytest -q -p no:cacheprovider"
    timeout = 300
    """
)


@dataclass
class Env:
    repo: Path
    home: Path
    tmp: Path
    image: str
    before: dict[str, Any] | None = None

    def settle(self) -> None:
        """Take the user's repository state as it is now (after a test's own git set-up)."""
        self.before = _user_state(self.repo)

    def run(self, script: str, *, policy: str = POLICY, **kw: Any) -> RunResult:
        (self.tmp / "script.toml").write_text(textwrap.dedent(script))
        (self.tmp / "policy.toml").write_text(policy)
        req = RunRequest(
            repo=self.repo,
            bug=self.tmp / "bug.md",
            policy=str(self.tmp / "policy.toml"),
            script=self.tmp / "script.toml",
            image=self.image,
            **kw,
        )
        return start_run(self.home, req)

    def events(self, run_id: str) -> list[str]:
        return [e.type for e in RunStore(self.home).events(run_id)]


@pytest.fixture
def env(tmp_path: Path, corral_home: Path, docker_client: Any, run_image: str) -> Iterator[Env]:
    repo = make_repo(
        tmp_path / "repo",
        {"src/__init__.py": "", "src/calc.py": CALC, "tests/test_calc.py": TESTS,
         "setup.cfg": "[metadata]\nname = calc\n", ".gitignore": "__pycache__/\n"},
    )  # fmt: skip
    (tmp_path / "bug.md").write_text("# add() subtracts\n\nadd(1, 2) returns -1.\n")
    e = Env(repo, corral_home, tmp_path, run_image)
    e.settle()
    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=1024):
        yield e
    assert _user_state(repo) == e.before, "a run changed the user's checkout, branch or index"


@pytest.fixture(scope="session")
def run_image(sandbox_image: str) -> str:
    return sandbox_image


def _user_state(repo: Path) -> dict[str, Any]:
    return {
        "tree": {k: v for k, v in tree_digest(repo).items() if not k.startswith(".git/")},
        "index": (repo / ".git/index").read_bytes(),
        "HEAD": (repo / ".git/HEAD").read_bytes(),
        "config": (repo / ".git/config").read_bytes(),
        "branches": git(repo, "for-each-ref", "refs/heads", "refs/tags"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
    }


def _verified(env: Env, result: RunResult) -> None:
    check = RunStore(env.home).verify(result.run_id)
    assert check.ok, check.problem


def test_correct_fix_is_ready_for_review_with_gates_green(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "python3 -m pytest -q -p no:cacheprovider" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "add() now adds" }},
        ]
        """
    )
    assert result.status == "ready_for_review", result
    assert result.exit_code == 0
    assert [a.gates for a in result.attempts] == [{"tests": True}]
    assert result.attempts[0].changed_files == ["src/calc.py"]
    assert result.patch_path and "+    return a + b" in Path(result.patch_path).read_text()
    junit = RunStore(env.home).artifact_path(result.run_id, "attempt-1/junit-tests.xml")
    assert "test_add" in junit.read_text()  # copied in after the gate's container was gone
    assert not list(worktrees_dir(env.home).glob("*.out"))  # the gate's scratch output is removed
    _verified(env, result)


def test_protected_edit_is_reverted_and_the_second_attempt_fixes(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "conftest.py", content = "collect_ignore = ['tests']\\n" }},
          {{ write = "tests/test_calc.py", content = "def test_add():\\n    pass\\n" }},
          {{ run = "echo 'def test_add(): pass' > tests/test_calc.py; echo rc=$?" }},
          {{ run = "printf 'import pytest\\\\n' > conftest.py; echo planted" }},
          {{ run = "echo hacked >> setup.cfg; echo rc=$?" }},
          {{ finish = "tests pass now" }},
        ]
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed add" }},
        ]
        """
    )
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert first.status == "failed" and "conftest.py" in first.violations
    assert first.reason == "the attempt changed nothing"  # every protected edit was reverted
    assert second.changed_files == ["src/calc.py"]
    events = env.events(result.run_id)
    assert "write_denied" in events and "scope_reverted" in events
    store = RunStore(env.home)
    first_patch = store.artifact_path(result.run_id, "attempt-1/patch.diff").read_text()
    assert "conftest" not in first_patch and "setup.cfg" not in first_patch
    assert "tests/test_calc.py" not in first_patch  # tests are protected: read-only mount + scope
    _verified(env, result)


def test_patch_level_violation_fails_the_attempt_as_governance(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ run = "chmod +x src/calc.py && ln -s calc.py src/alias.py" }},
          {{ finish = "fixed" }},
        ]
        """,
        overrides={"budgets.attempts": 1},
    )
    assert result.status == "failed" and result.failure_domain == "governance"
    assert any("mode_change" in v or "symlink" in v for v in result.attempts[0].violations)


def test_denied_command_in_bash_c_pipe_to_sh_is_never_executed(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "bash -c \\"echo 'touch /workspace/PWNED' | sh\\"" }},
          {{ run = "bash -c 'curl http://127.0.0.1:9/x > /workspace/PWNED2'" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """
    )
    assert result.status == "ready_for_review"
    ws = worktrees_dir(env.home) / result.run_id
    assert not (ws / "PWNED").exists() and not (ws / "PWNED2").exists()
    assert len(result.attempts[0].denied) == 2
    assert env.events(result.run_id).count("command_denied") == 2


def test_repeated_failing_diff_stops_the_run(env: Env) -> None:
    result = env.run(
        """
        [[attempt]]
        [[attempt.window]]
        actions = [
          { write = "src/calc.py", content = "def add(a, b):\\n    return a * b\\n\\n\\ndef mul(a, b):\\n    return a * b\\n" },
          { finish = "maybe" },
        ]
        """
    )
    assert result.status == "failed" and result.failure_domain == "harness"
    assert "repeated strategy" in result.reason
    assert len(result.attempts) == 2
    assert "repeated_strategy" in env.events(result.run_id)


def test_preexisting_failure_is_not_blamed(env: Env) -> None:
    broken_mul = FIXED.replace("a * b", "a ** b")
    git(env.repo, "checkout", "-q", "-b", "prebroken")
    (env.repo / "src/calc.py").write_text(CALC.replace("a * b", "a ** b"))
    git(env.repo, "commit", "-qam", "mul broken too")
    env.settle()
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(broken_mul)} }},
          {{ finish = "fixed add only" }},
        ]
        """
    )
    assert result.status == "ready_for_review", result
    baseline = json.loads(
        RunStore(env.home).artifact_path(result.run_id, "baseline.json").read_text()
    )
    assert baseline["tests"]["passed"] is False


def test_ignoring_a_failing_type_check_fails_the_attempt(env: Env) -> None:
    policy = POLICY + textwrap.dedent(
        """
        [[gates]]
        name = "typecheck"
        command = "python3 -m mypy --ignore-missing-imports src"
        timeout = 300
        """
    )
    type_broken = FIXED.replace("return a + b", "return str(a) and a + b")
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ write = "src/calc.py", content = {json.dumps(type_broken)} }},
          {{ finish = "tests pass" }},
        ]
        """,
        policy=policy.replace("attempts = 3", "attempts = 1"),
    )
    assert result.status == "failed" and result.failure_domain == "model"
    assert result.attempts[0].gates["typecheck"] is False
    assert "typecheck" in result.attempts[0].reason


def test_leftover_artifacts_are_flagged_never_merged(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "mkdir -p build .pytest_cache && echo x > build/out.o && echo y > .pytest_cache/z && python3 -c 'import src.calc'" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """
    )
    assert result.status == "ready_for_review"
    patch = Path(result.patch_path or "").read_text()
    assert "build/out.o" not in patch and ".pytest_cache" not in patch
    assert any("build" in f for f in result.attempts[0].findings)


def test_progress_file_survives_rollback_and_never_enters_the_patch(env: Env) -> None:
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [{{ progress = "tried: multiply; next: look at the operator" }}]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = "def add(a, b):\\n    return a * b\\n" }}, {{ finish = "maybe" }}]
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "grep -q 'next: look at the operator' .corral/progress.md && echo seen > src/seen.txt" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ progress = "fixed the operator" }},
          {{ finish = "fixed" }},
        ]
        """
    )
    assert result.status == "ready_for_review", result
    first, second = result.attempts
    assert first.windows == 2 and "src/seen.txt" in second.changed_files
    store = RunStore(env.home)
    assert (
        store.artifact_path(result.run_id, "attempt-1/window-1/progress.md")
        .read_text()
        .startswith("tried")
    )
    snaps = [e for e in store.events(result.run_id) if e.type == "progress_snapshot"]
    assert [(e.data["attempt"], e.data["window"]) for e in snaps] == [(1, 1), (1, 2), (2, 1)]
    assert "progress.md" not in Path(result.patch_path or "").read_text()


def test_loop_guards_end_the_attempt_with_the_budget_named(env: Env) -> None:
    policy = POLICY.replace("attempts = 3", "attempts = 1\nrepeated_command = 3\nidle_steps = 4")
    looping = env.run(
        """
        [[attempt]]
        [[attempt.window]]
        actions = [{ run = "ls src" }, { run = "ls src" }, { run = "ls src" }, { finish = "x" }]
        """,
        policy=policy,
    )
    assert looping.status == "failed" and looping.failure_domain == "harness"
    assert "repeated_command 3/3" in looping.attempts[0].reason
    idle = env.run(
        """
        [[attempt]]
        [[attempt.window]]
        actions = [
          { read = "src/calc.py" }, { run = "ls" }, { read = "tests/test_calc.py" },
          { run = "pwd" }, { run = "true" }, { finish = "x" },
        ]
        """,
        policy=policy,
    )
    assert idle.failure_domain == "harness" and "idle_steps" in idle.attempts[0].reason


def test_environment_setup_runs_once_and_is_cached(env: Env) -> None:
    policy = POLICY + "\n[setup]\ncommands = [\"python3 -c 'print(42)' > $VIRTUAL_ENV/marker\"]\n"
    script = f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "test -f /opt/env/marker && echo env-ok > src/env.txt" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """
    first = env.run(script, policy=policy)
    second = env.run(script, policy=policy)
    assert first.status == second.status == "ready_for_review"
    assert (
        "src/env.txt" in first.attempts[0].changed_files
    )  # the agent ran on the environment image
    store = RunStore(env.home)
    built = [
        e.data["built"]
        for r in (first, second)
        for e in store.events(r.run_id)
        if e.type == "environment"
    ]
    assert built == [True, False]
    import docker

    env_image = json.loads(store.get(first.run_id).spec_json)["env_image"]
    config = docker.from_env().images.get(env_image).attrs["Config"]
    assert not config.get("Volumes")  # no volume declarations carried over by commit
    assert not any(v.startswith(("SSL_CERT_FILE", "PIP_CERT")) for v in config["Env"])
