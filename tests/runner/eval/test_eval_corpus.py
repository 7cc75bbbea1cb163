"""``corral eval`` on the six real PyPI projects of ``tests/corpus``, K = 3, through the CLI.

A scripted agent that applies the upstream fix on some trials and does nothing on the
others (one script per task and trial: ``--script DIR/{task}-{trial}.toml``), with each
task's gold check (its ``fix.diff``), on the local pool of two workers. The eval is
killed with ``kill -9`` (the pool and its trial processes) once some trials ended; the
same command again runs only the trials that had not ended, resuming the interrupted
ones. Then: every trial's run ended as its script says, gold resolved every task, and
the report's pass@k and pass^k equal the figures computed here, by enumeration, from
the outcomes the runs recorded. The ``empty`` pseudo-agent resolves none.

Fast policies: each task's own set-up and one gate (the test file), one attempt; the
environment image of a task is built by its first trial and shared by the others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.support import pypi_corpus
from tests.support.cli import corral, corral_argv, corral_env

K = 3
#: Per task (in name order), the trials whose script applies the fix; the others change nothing.
FIXED_ON = ({1}, {1, 2, 3}, set(), {2, 3}, {3}, {1, 3})
EMPTY = '[[attempt]]\n[[attempt.window]]\nactions = [{ finish = "nothing to do" }]\n'


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six projects as a JSONL task list (repo, bug file, policy, target tests, gold)."""
    return write_tasks(tmp_path_factory.mktemp("eval-corpus"), pypi_corpus.names())


def write_tasks(root: Path, names: list[str]) -> Path:
    """Corpus projects ``names`` as ``root/tasks.jsonl``: each task's own set-up, its test file
    as the one gate, one attempt, its target tests and its upstream fix as gold."""
    lines = []
    for name in names:
        project = pypi_corpus.load(name)
        repo = pypi_corpus.build_repo(project, root / "repos" / name)
        policy = root / f"{name}.toml"
        gate = f"python -m pytest -q {project.test}"
        policy.write_text(
            f'[setup]\ncommands = [{json.dumps(project.setup)}]\n\n[[gates]]\nname = "tests"\n'
            f"command = {json.dumps(gate)}\n\n[budgets]\nattempts = 1\n"
        )
        lines.append({"id": name, "repo": str(repo), "bug": str(project.bug),
                      "policy": str(policy), "must_pass": list(project.targets),
                      "gold": str(project.dir / "fix.diff")})  # fmt: skip
    path = root / "tasks.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def write_scripts(root: Path, fixed_on: dict[str, set[int]], k: int) -> Path:
    """``root/TASK-TRIAL.toml`` for trials 1..k: the upstream fix on ``fixed_on[TASK]``, else
    nothing."""
    root.mkdir()
    for name, fixed in fixed_on.items():
        project = pypi_corpus.load(name)
        writes = ", ".join(
            f"{{ write = {json.dumps(path)}, content = {json.dumps(text)} }}"
            for path, text in pypi_corpus.fixed_contents(project).items()
        )
        fix = f'[[attempt]]\n[[attempt.window]]\nactions = [{writes}, {{ finish = "fixed" }}]\n'
        for trial in range(1, k + 1):
            (root / f"{name}-{trial}.toml").write_text(fix if trial in fixed else EMPTY)
    return root


def _report(home: Path, eval_id: str) -> dict[str, Any]:
    proc = corral("eval", "report", eval_id, "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _ended(home: Path, eval_id: str) -> int:
    """The agent's trials that ended so far (0 while the eval is not recorded yet)."""
    proc = corral("eval", "report", eval_id, "--json", home=home)
    return int(json.loads(proc.stdout)["summary"]["trials_ended"]) if proc.returncode == 0 else 0


def _by_hand(outcomes: dict[str, list[bool]], k: int, every: bool) -> float:
    """The mean over tasks of the share of k-subsets of its trials with one (every) success."""
    shares = []
    for trials in outcomes.values():
        subsets = list(combinations(trials, k))
        shares.append(sum(map(all if every else any, subsets)) / len(subsets))
    return sum(shares) / len(shares)


@pytest.mark.docker
def test_an_eval_killed_mid_way_resumes_and_reports_pass_at_k_as_computed_by_hand(
    task_file: Path, tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    fixed_on = dict(zip(pypi_corpus.names(), FIXED_ON, strict=True))
    scripts = write_scripts(tmp_path / "scripts", fixed_on, K)
    args = ("eval", "--tasks", str(task_file), "--script", str(scripts / "{task}-{trial}.toml"),
            "--trials", str(K), "--workers", "2", "--eval-id", "mixed")  # fmt: skip
    proc = subprocess.Popen(
        corral_argv(*args), env=corral_env(corral_home), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and proc.poll() is None:
        if _ended(corral_home, "mixed") >= 3:
            break
        time.sleep(2)
    assert proc.poll() is None, "the eval ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the pool and every trial process, mid-run
    proc.wait(timeout=30)
    killed = _report(corral_home, "mixed")
    before = {
        t["key"]: t
        for t in killed["trials"]
        if t["status"] not in ("not run", "interrupted", "running")
    }
    assert len(before) >= 3
    with RunStore(corral_home) as store:
        events_before = {k: len(store.events(t["run_id"])) for k, t in before.items()}

    again = corral(*args, home=corral_home, timeout=3600)
    assert again.returncode == 0, again.stderr[-3000:]
    total = 6 + 6 * K  # the gold checks and the agent's trials
    assert f"ran {total - len(before)} trial(s), {len(before)} had ended before" in again.stdout

    report = _report(corral_home, "mixed")
    with RunStore(corral_home) as store:
        runs = store.list_runs(limit=1000)
        assert len(runs) == total  # one run per trial: nothing ran twice
        for key, t in before.items():  # a trial that had ended was left alone
            assert report_trial(report, key)["run_id"] == t["run_id"]
            assert len(store.events(t["run_id"])) == events_before[key]
    assert report["broken_tasks"] == []
    assert all(row["gold"] == "ready_for_review" for row in report["tasks"])
    recorded: dict[str, list[bool]] = {}
    with RunStore(corral_home) as store:
        for name, fixed in zip(pypi_corpus.names(), FIXED_ON, strict=True):
            trials = sorted((t for t in report["trials"] if t["task"] == name and t["role"] == "agent"),
                            key=lambda t: t["trial"])  # fmt: skip
            outcomes = [store.get(t["run_id"]).status for t in trials]
            assert outcomes == [
                "ready_for_review" if n in fixed else "failed" for n in range(1, K + 1)
            ]
            recorded[name] = [o == "ready_for_review" for o in outcomes]
    s = report["summary"]
    for k in range(1, K + 1):
        assert s["pass_at_k"][str(k)] == {
            "value": round(_by_hand(recorded, k, False), 6),
            "tasks": 6,
        }
        assert s["pass_hat_k"][str(k)] == {
            "value": round(_by_hand(recorded, k, True), 6),
            "tasks": 6,
        }
    assert s["resolved"] == sum(map(len, FIXED_ON))
    assert sorted(report["flaky_tasks"]) == sorted(
        n for n, f in zip(pypi_corpus.names(), FIXED_ON, strict=True) if 0 < len(f) < K
    )
    assert report["failure_domains"] == {"model": 6 * K - s["resolved"]}
    assert s["steps"]["n"] == 6 * K and s["wall_seconds"]["max"] > 0
    text = corral("eval", "report", "mixed", home=corral_home)
    assert "pass@k: k=1:" in text.stdout and "flaky (outcomes differ)" in text.stdout
    assert "parse: 3/3 resolved (1.00)  pass, pass, pass" in text.stdout


def report_trial(report: dict[str, Any], key: str) -> dict[str, Any]:
    return next(t for t in report["trials"] if t["key"] == key)


@pytest.mark.docker
def test_the_empty_agent_resolves_no_task(
    task_file: Path, corral_home: Path, sandbox_image: str
) -> None:
    proc = corral("eval", "--tasks", str(task_file), "--agent", "empty", "--no-gold-check",
                  "--workers", "2", "--eval-id", "empty", home=corral_home, timeout=3600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[corral] eval empty: 6/6 done, 0 running, 6 failed; pass 0%" in proc.stderr
    report = _report(corral_home, "empty")
    assert report["summary"]["pass_at_1"] == 0.0 and report["summary"]["resolved"] == 0
    assert report["failure_domains"] == {"model": 6}
