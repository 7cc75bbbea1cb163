"""The control loop end to end: a real repository, real Docker, the ScriptedAgent, the run store.

One scenario per test, each checking what the run recorded, what the tree and
the user's repository look like afterwards, and that the event chain verifies.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from runner.loop.outcome import RunResult
from runner.loop.resume import resumable
from runner.ops.service import resume_run
from runner.store.runs import RunStore
from sandbox.paths import worktrees_dir
from tests.support.cli import corral
from tests.support.demo import CALC_MUL, FIXED_MUL, fix_script
from tests.support.gitfixtures import git
from tests.support.runenv import POLICY, Env

pytestmark = pytest.mark.docker

# The project of these runs: the demo with mul() (the ``env`` fixture, tests/runner/conftest.py).
CALC, FIXED = CALC_MUL, FIXED_MUL


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
    assert not list(
        worktrees_dir(env.home).glob(".*.out-*")
    )  # the gate's scratch output is removed
    end = [e for e in RunStore(env.home).events(result.run_id) if e.type == "run_end"][-1]
    digest = hashlib.sha256(Path(result.patch_path).read_bytes()).hexdigest()
    assert end.data["candidate_sha256"] == digest  # what an approval is later checked against
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
    assert first.failure_domain == "governance"  # every protected edit was refused or reverted
    assert first.reason == (
        "the attempt only tried to change files it may not write: conftest.py (protected by"
        " policy; write refused, reverted); tests/test_calc.py (protected by policy; write refused)"
    )  # the edits of the read-only tests and setup.cfg failed in the sandbox: nothing to revert
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
    assert result.attempts[0].changed_files == ["src/calc.py"]  # no PWNED, no PWNED2
    assert len(result.attempts[0].denied) == 2
    assert env.events(result.run_id).count("command_denied") == 2


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
    # add() annotated, and returning a str or an int: only the type check sees it
    typed = "def add(a: int, b: int) -> int:\n    return str(a) and a + b\n"
    type_broken = FIXED.replace("def add(a, b):\n    return a + b\n", typed)
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


# ----------------------------------------------------------------- pending decisions, runtime
# errors and set-up across a resume (runner.loop.resume)

ESCALATE = POLICY.replace("attempts = 3", "attempts = 2") + '\n[scope]\non_violation = "escalate"\n'
MODE_CHANGE = textwrap.dedent(
    f"""
    [[attempt]]
    [[attempt.window]]
    actions = [
      {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
      {{ run = "chmod +x src/calc.py" }},
      {{ finish = "fixed, and made it executable" }},
    ]
    """
) + fix_script(FIXED)


def test_an_escalated_scope_violation_waits_and_an_approval_makes_it_the_candidate(
    env: Env,
) -> None:
    waiting = env.run(MODE_CHANGE, policy=ESCALATE, run_id="escalated")
    assert waiting.status == "waiting" and waiting.exit_code == 3, waiting
    pending = json.loads(RunStore(env.home).get("escalated").waiting_json or "{}")
    assert pending["kind"] == "scope" and pending["attempt"] == 1
    assert any("mode" in v for v in pending["violations"])
    shown = corral("status", "escalated", home=env.home)
    assert (
        "attempt 1 went out of scope" in shown.stdout and "corral approve escalated" in shown.stdout
    )
    assert any(v in shown.stdout for v in pending["violations"]), shown.stdout
    answer = corral("approve", "escalated", "--comment", "the bit is wanted", home=env.home)
    assert answer.returncode == 0 and "approved the scope violation of attempt 1" in answer.stdout
    assert "answered: approved" in corral("status", "escalated", home=env.home).stdout
    done = resume_run(env.home, "escalated")
    assert done.status == "ready_for_review", done
    (first,) = done.attempts  # the escalated attempt itself, judged by the gates
    assert first.status == "passed" and first.gates == {"tests": True}
    assert "new mode 100755" in Path(done.patch_path or "").read_text()
    events = env.events("escalated")
    assert "human_approved" in events and "scope_answer" in events
    _verified(env, done)


def test_a_second_ask_keeps_the_first_approval(env: Env) -> None:
    policy = POLICY + '\n[commands]\nask = ["echo first", "echo second"]\n'
    script = f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = "echo first" }},
          {{ run = "echo second" }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """
    first = env.run(script, policy=policy, run_id="asks")
    assert first.status == "waiting" and "echo first" in first.reason, first
    assert corral("approve", "asks", home=env.home).returncode == 0
    second = resume_run(env.home, "asks")
    assert second.status == "waiting" and "echo second" in second.reason, second
    pending = json.loads(RunStore(env.home).get("asks").waiting_json or "{}")
    assert pending["command"] == "echo second" and pending["approved"] == ["echo first"]
    assert corral("approve", "asks", home=env.home).returncode == 0
    done = resume_run(env.home, "asks")
    assert done.status == "ready_for_review", done
    ran = [e.data["command"] for e in RunStore(env.home).events("asks") if e.type == "command"]
    assert ran == ["echo first", "echo first", "echo second"]  # 2nd and 3rd process, in order
    _verified(env, done)


MISSING_IMAGE = "sha256:" + "0" * 64


def _repair_image(env: Env, run_id: str) -> None:
    """The engine is repaired: the run's recorded image exists again."""
    store = RunStore(env.home)
    spec = json.loads(store.get(run_id).spec_json)
    store.update(run_id, spec_json=json.dumps({**spec, "image": env.image}))


def test_an_engine_error_in_the_gates_fails_the_run_resumably(env: Env) -> None:
    env.image, good = MISSING_IMAGE, env.image
    broken = env.run(fix_script(FIXED, "x"), run_id="engine")
    env.image = good
    assert broken.status == "failed" and broken.failure_domain == "runtime", broken
    assert broken.exit_code == 1 and "baseline base: SandboxStartError" in broken.reason
    store = RunStore(env.home)
    assert resumable(store, "engine") and store.get("engine").status == "failed"
    assert "SandboxStartError" in store.artifact_path("engine", "runtime-error.log").read_text()
    assert json.loads(json.dumps(broken.to_json()))["failure_domain"] == "runtime"
    _repair_image(env, "engine")
    done = resume_run(env.home, "engine")
    assert done.status == "ready_for_review", done
    _verified(env, done)


ENV_SCRIPT = f"""
    [[attempt]]
    [[attempt.window]]
    actions = [
      {{ run = "test -f /opt/env/marker && echo env-ok > src/env.txt" }},
      {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
      {{ finish = "fixed" }},
    ]
    """
"""An attempt that proves it ran on the environment image (the setup's marker) and fixes add()."""


def test_resume_redoes_an_environment_set_up_that_did_not_finish(env: Env) -> None:
    policy = POLICY + '\n[setup]\ncommands = ["echo ok > $VIRTUAL_ENV/marker"]\n'
    env.image, good = MISSING_IMAGE, env.image
    broken = env.run(ENV_SCRIPT, policy=policy, run_id="setup")
    env.image = good
    assert broken.status == "failed" and broken.failure_domain == "runtime", broken
    assert "setup env: ImageError" in broken.reason
    store = RunStore(env.home)
    assert resumable(store, "setup") and store.last_incomplete("setup").kind == "setup"  # type: ignore[union-attr]
    _repair_image(env, "setup")
    done = resume_run(env.home, "setup")
    assert done.status == "ready_for_review", done
    assert "src/env.txt" in done.attempts[0].changed_files  # the agent ran on the environment
    _verified(env, done)


def test_environment_setup_runs_once_and_is_cached(env: Env) -> None:
    policy = POLICY + "\n[setup]\ncommands = [\"python3 -c 'print(42)' > $VIRTUAL_ENV/marker\"]\n"
    first = env.run(ENV_SCRIPT, policy=policy)
    second = env.run(ENV_SCRIPT, policy=policy)
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


_IN_VENV = "import sys; assert sys.prefix == '/opt/env', sys.prefix; print('venv-ok')"


def test_the_environments_venv_is_first_on_path_in_setup_attempts_and_gates(env: Env) -> None:
    """``python`` and ``pip`` are the set-up venv's everywhere (no login shell resets PATH), so a
    plain ``pip install`` never meets PEP 668 and a gate ``python -m ...`` finds what set-up put."""
    checks = f"command -v python && python -c {json.dumps(_IN_VENV)} && pip --version"
    policy = (
        '[budgets]\nattempts = 1\n\n[[gates]]\nname = "venv"\n'
        f"command = {json.dumps('python -c ' + json.dumps(_IN_VENV))}\n\n"
        f"[setup]\ncommands = [{json.dumps(checks)}]\n"
    )
    script = f"""
        [[attempt]]
        [[attempt.window]]
        actions = [
          {{ run = {json.dumps("python -c " + json.dumps(_IN_VENV))} }},
          {{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
          {{ finish = "fixed" }},
        ]
        """
    result = env.run(script, policy=policy)
    assert result.status == "ready_for_review", result
    store = RunStore(env.home)
    setup_log = store.artifact_path(result.run_id, "setup.log").read_text()
    assert "/opt/env/bin/python" in setup_log and "from /opt/env/" in setup_log, setup_log
    (ran,) = [e.data for e in store.events(result.run_id) if e.type == "command"]
    assert ran["command"].startswith("python -c") and ran["exit_code"] == 0, ran  # the venv's
    base = [e.data for e in store.events(result.run_id)
            if e.type == "gate_end" and e.data["label"] == "baseline"]  # fmt: skip
    assert [(g["gate"], g["passed"]) for g in base] == [("venv", True)]  # the gate's too


# ----------------------------------------------------------------- gate verdicts the candidate
# cannot forge (runner/gates.py): only exit codes of processes the runner started make a pass;
# a skip or xfail of a test that ran at base counts against the candidate.

_FORGE_ALL_PASS = textwrap.dedent(
    """\
    import os

    def add(a, b):
        return a - b

    def mul(a, b):
        return a ** b

    if os.environ.get("PYTEST_ADDOPTS"):  # only inside the gate; the agent's own runs are honest
        with open("/corral/out/tests.xml", "w") as f:  # where an unhardened runner would look
            f.write('<testsuites><testsuite name="pytest"><testcase classname="tests.test_calc"'
                    ' name="test_add"/><testcase classname="tests.test_calc" name="test_mul"/>'
                    '</testsuite></testsuites>')
        os._exit(1)
    """
)
_FORGE_WITH_NONCE = textwrap.dedent(
    """\
    import os
    import shlex

    def add(a, b):
        return a - b

    def mul(a, b):
        return a ** b

    _opts = shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    if _opts:  # read the runner's random report path and suite name, claim add() fixed
        _path = [o for o in _opts if o.startswith("--junitxml=")][0].split("=", 1)[1]
        _suite = [o for o in _opts if o.startswith("junit_suite_name=")][0].split("=", 1)[1]
        with open(_path, "w") as f:
            f.write(f'<testsuites><testsuite name="{_suite}"><testcase classname="tests.test_calc"'
                    ' name="test_add"/><testcase classname="tests.test_calc" name="test_mul">'
                    '<failure message="as at base"/></testcase></testsuite></testsuites>')
        os._exit(1)
    """
)


def _gate_reasons(env: Env, run_id: str) -> list[str]:
    return [
        str(e.data["reason"])
        for e in RunStore(env.home).events(run_id)
        if e.type == "gate_end" and e.data["label"] != "baseline"
    ]


def test_forged_junit_report_with_exit_1_fails_the_gate(env: Env) -> None:
    git(env.repo, "checkout", "-q", "-b", "prebroken")
    (env.repo / "src/calc.py").write_text(CALC.replace("a * b", "a ** b"))
    git(env.repo, "commit", "-qam", "mul broken too")
    env.settle()
    honest = FIXED.replace("a * b", "a ** b")  # add fixed; mul fails as it did at base
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(_FORGE_ALL_PASS)} }}, {{ finish = "fixed" }}]
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(_FORGE_WITH_NONCE)} }}, {{ finish = "fixed" }}]
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(honest)} }}, {{ finish = "fixed add" }}]
        """
    )
    naive, forged, fixed = result.attempts
    assert naive.gates == {"tests": False} and forged.gates == {"tests": False}
    reasons = _gate_reasons(env, result.run_id)
    assert "no junit report the runner accepts" in reasons[0]  # the planted file is not the report
    # the report carried the runner's suite name, so it was read: it claimed add() fixed and only
    # base's failure left; the rerun without test_mul exited 1 (the forger's own exit code)
    assert "not blamed" in reasons[1] and "not confirmed" in reasons[1] and "exited 1" in reasons[1]
    assert result.status == "ready_for_review", result  # the honest fix, confirmed by the rerun
    assert fixed.gates == {"tests": True}
    assert "confirmed: the rerun without the 1 test(s) failing at base too exited 0" in reasons[2]
    store = RunStore(env.home)
    assert not store.artifact_path(result.run_id, "attempt-1/junit-tests.xml").exists()
    log = store.artifact_path(result.run_id, "attempt-3/gate-tests.log").read_text()
    assert "[confirmation run, 1 test(s) failing at base left out]" in log and "1 deselected" in log
    assert not list(worktrees_dir(env.home).glob(".*.out-*"))  # no report dir left on the host
    _verified(env, result)


def test_skipping_or_xfailing_a_test_from_the_code_under_test_fails_the_gate(env: Env) -> None:
    skip_add = "import pytest\n\n\ndef add(a, b):\n    pytest.skip('later')\n\n\ndef mul(a, b):\n    return a * b\n"
    xfail_add = skip_add.replace("pytest.skip('later')", "pytest.xfail('known')")
    skip_mul = FIXED.replace("    return a * b", "    import pytest\n    pytest.skip('later')")
    result = env.run(
        f"""
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(skip_add)} }}, {{ finish = "done" }}]
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(xfail_add)} }}, {{ finish = "done" }}]
        [[attempt]]
        [[attempt.window]]
        actions = [{{ write = "src/calc.py", content = {json.dumps(skip_mul)} }}, {{ finish = "done" }}]
        """
    )
    assert result.status == "failed" and result.failure_domain == "model", result
    assert [a.gates for a in result.attempts] == [{"tests": False}] * 3
    for a in result.attempts:  # pytest exited 0 each time: the skipped test had run at base
        assert "tests that ran at base 1 are skipped or xfailed" in a.reason, a.reason
    store = RunStore(env.home)
    for n, test in ((1, "test_add"), (2, "test_add"), (3, "test_mul")):
        junit = store.artifact_path(result.run_id, f"attempt-{n}/junit-tests.xml").read_text()
        assert f'name="{test}"' in junit and "<skipped" in junit
    _verified(env, result)


def test_a_pytest_gate_that_cannot_run_at_base_ends_the_run_as_configuration(env: Env) -> None:
    policy = POLICY + textwrap.dedent(
        """
        [[gates]]
        name = "missing"
        command = "python3 -m pytest -q -p no:cacheprovider tests/missing_file.py"
        timeout = 300
        """
    )
    result = env.run(fix_script(), policy=policy)
    assert result.status == "failed" and result.failure_domain == "configuration", result
    assert result.exit_code == 2
    log = RunStore(env.home).artifact_path(result.run_id, "baseline/gate-missing.log")
    assert "gate missing cannot run at base: exit 4: pytest usage error" in result.reason
    assert str(log) in result.reason and "missing_file.py" in log.read_text()
    (only,) = result.attempts
    assert only.failure_domain == "configuration" and only.gates == {}  # never judged
    assert env.events(result.run_id).count("gate_start") == 2  # the two baseline gates only
    _verified(env, result)
