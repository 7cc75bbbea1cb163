"""The pure parts of ``corral eval``: the estimators, the report's aggregation, the task file."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.eval.pool import default_workers
from runner.eval.record import EvalInputs, Trial, TrialOutcome, default_eval_id, trials_of
from runner.eval.report import build_report
from runner.eval.stats import distribution, pass_at_k, pass_hat_k
from runner.eval.tasks import load_tasks

# ----------------------------------------------------------------- estimators


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pass_at_k_and_pass_hat_k_equal_the_mean_over_every_k_subset(n: int) -> None:
    """By hand: over every way to pick k of the n trials, the share with one (all) success."""
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(outcomes, k))
            assert math.isclose(pass_at_k(n, c, k), sum(map(any, subsets)) / len(subsets))
            assert math.isclose(pass_hat_k(n, c, k), sum(map(all, subsets)) / len(subsets))


def test_the_estimators_refuse_impossible_counts() -> None:
    for n, c, k in ((3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)):
        with pytest.raises(ValueError, match="need 0 <= c <= n"):
            pass_at_k(n, c, k)
        with pytest.raises(ValueError, match="need 0 <= c <= n"):
            pass_hat_k(n, c, k)


def test_distribution_summarises_and_says_nothing_for_no_values() -> None:
    assert distribution([]) == {"n": 0, "mean": None, "min": None, "median": None, "p90": None,
                                "max": None}  # fmt: skip
    d = distribution([float(v) for v in range(1, 11)])
    assert (d["n"], d["mean"], d["min"], d["median"], d["p90"], d["max"]) == (
        10,
        5.5,
        1,
        5.5,
        9,
        10,
    )


def test_default_workers_is_bounded_by_cores_and_memory() -> None:
    assert default_workers(cores=2, memory=64 << 30) == 2
    assert default_workers(cores=64, memory=8 << 30) == 2
    assert default_workers(cores=64, memory=1 << 40) == 16
    assert default_workers(cores=4, memory=1 << 30) == 1
    assert default_workers() >= 1


# ----------------------------------------------------------------- report


def _record(tasks: list[str], trials: int, agent: str = "scripted") -> dict[str, object]:
    return {"eval_id": "e1", "trials": trials, "check_gold": True,
            "inputs": {"tasks": [{"id": t} for t in tasks], "agent": agent, "model": None,
                       "policy": None}}  # fmt: skip


def _o(task: str, trial: int, status: str, role: str = "agent", **kw: object) -> TrialOutcome:
    domain = {"failed": "model"}.get(status)
    return TrialOutcome(task, trial, role, f"k-{task}-{role}-{trial}", run_id=f"r-{task}-{trial}",
                        status=status, failure_domain=domain, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_the_report_counts_pass_at_k_per_task_leaves_broken_tasks_out_and_names_flaky_ones() -> (
    None
):
    ok, bad = "ready_for_review", "failed"
    outcomes = [
        _o("a", 1, ok, cost_usd=0.5, tokens=10, wall_seconds=3.0, steps=2),
        _o("a", 2, bad), _o("a", 3, ok),
        _o("b", 1, bad), _o("b", 2, bad), _o("b", 3, bad),
        _o("c", 1, ok), _o("c", 2, ok), _o("c", 3, ok),
        _o("d", 1, ok), _o("d", 2, ok), _o("d", 3, ok),  # broken: its gold check failed
        _o("a", 1, ok, role="gold-check"), _o("d", 1, bad, role="gold-check"),
    ]  # fmt: skip
    rep = build_report(_record(["a", "b", "c", "d"], 3), outcomes)
    s = rep["summary"]
    assert rep["broken_tasks"] == ["d"] and rep["flaky_tasks"] == ["a"]
    assert (s["tasks_counted"], s["resolved"], s["tasks_resolved"]) == (3, 5, 2)
    # by hand: a has 2 of 3, b 0 of 3, c 3 of 3
    expected = {1: (2 / 3 + 0 + 1) / 3, 2: (1 + 0 + 1) / 3, 3: (1 + 0 + 1) / 3}
    hat = {1: (2 / 3 + 0 + 1) / 3, 2: (1 / 3 + 0 + 1) / 3, 3: (0 + 0 + 1) / 3}
    for k in (1, 2, 3):
        assert math.isclose(s["pass_at_k"][str(k)]["value"], expected[k], abs_tol=1e-6)
        assert math.isclose(s["pass_hat_k"][str(k)]["value"], hat[k], abs_tol=1e-6)
    assert s["pass_at_1"] == s["pass_at_k"]["1"]["value"]
    assert rep["failure_domains"] == {"model": 4}
    assert (s["cost_usd"], s["tokens"]) == (0.5, 10)
    row = next(r for r in rep["tasks"] if r["task"] == "a")
    assert row["outcomes"] == ["pass", "model", "pass"] and row["gold"] == "ready_for_review"
    json.dumps(rep)  # all of it is JSON


def test_a_task_with_fewer_ended_trials_counts_only_for_the_k_it_has() -> None:
    outcomes = [_o("a", 1, "ready_for_review"), _o("a", 2, "running"),
                _o("b", 1, "failed"), _o("b", 2, "failed")]  # fmt: skip
    s = build_report(_record(["a", "b"], 2), outcomes)["summary"]
    assert s["pass_at_k"] == {"1": {"value": 0.5, "tasks": 2}, "2": {"value": 0.0, "tasks": 1}}
    assert (s["trials_ended"], s["trials_running"], s["trials_unfinished"]) == (3, 1, 1)


def test_with_the_gold_agent_a_task_it_fails_is_broken() -> None:
    rep = build_report(_record(["a", "b"], 1, agent="gold"),
                       [_o("a", 1, "ready_for_review"), _o("b", 1, "failed")])  # fmt: skip
    assert rep["broken_tasks"] == ["b"]
    assert rep["summary"]["pass_at_1"] == 1.0


# ----------------------------------------------------------------- task files


def test_a_jsonl_task_file_reads_text_and_file_bugs_and_resolves_paths(tmp_path: Path) -> None:
    (tmp_path / "bug.md").write_text("# it breaks\n")
    (tmp_path / "fix.diff").write_text("--- a/x\n")
    lines = [
        {"id": "one", "repo": "repo", "bug": "bug.md", "gold": "fix.diff",
         "must_pass": ["tests/test_x.py::test_y"], "policy": "pol/p.toml"},
        {"id": "two", "repo": "/abs/repo", "base": "v1", "bug": "# Title\n\ntext"},
    ]  # fmt: skip
    f = tmp_path / "tasks.jsonl"
    f.write_text("# a comment\n\n" + "\n".join(json.dumps(x) for x in lines) + "\n")
    one, two = load_tasks(f)
    assert one.repo == tmp_path / "repo" and one.bug_file == tmp_path / "bug.md"
    assert one.gold == tmp_path / "fix.diff" and one.policy == str(tmp_path / "pol/p.toml")
    assert one.must_pass == ("tests/test_x.py::test_y",) and one.base == "HEAD"
    assert two.bug_file is None and two.bug.startswith("# Title") and two.base == "v1"


def test_a_toml_task_file_reads_task_tables(tmp_path: Path) -> None:
    f = tmp_path / "tasks.toml"
    f.write_text('[[task]]\nid = "a"\nrepo = "r"\nbug = "broken"\npolicy = "python"\n')
    (task,) = load_tasks(f)
    assert (task.id, task.policy, task.bug) == ("a", "python", "broken")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.jsonl", '{"id": "a", "repo": "r"}\n', r"t\.jsonl line 1: bug: Field required"),
        ("t.jsonl", '{"id": "a", "repo": "r", "bug": "x", "colour": 1}\n', "colour: unknown key"),
        ("t.jsonl", "{not json\n", r"line 1: not JSON"),
        ("t.jsonl", '{"id": "a b", "repo": "r", "bug": "x"}\n', "id: String should match"),
        ("t.jsonl", '{"id": "a", "repo": "r", "bug": "x"}\n' * 2, "task id 'a' is also"),
        ("t.jsonl", '{"id": "a", "repo": "r", "bug": "x", "gold": "nope.diff"}\n', "gold nope.diff is not a file"),
        ("t.jsonl", '{"id": "a", "repo": "r", "bug": "  "}\n', "bug is empty"),
        ("t.jsonl", "\n# only a comment\n", "holds no task"),
        ("t.jsonl", "[1]\n", "a task is an object"),
        ("t.toml", "[[task]]\nid = 1\n", r"\[\[task\]\] 1: "),
        ("t.toml", "tasks = 1\n", r"expected only \[\[task\]\] tables"),
        ("t.toml", "[[task]\n", "not valid TOML"),
        ("t.yaml", "", r"name it \.jsonl"),
    ],
)  # fmt: skip
def test_a_bad_task_file_is_one_line_naming_where_and_the_fix(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_tasks(f)


def test_a_missing_task_file_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read task file .*check --tasks"):
        load_tasks(tmp_path / "none.jsonl")


def test_the_eval_id_follows_the_inputs_and_trials_run_gold_checks_first(tmp_path: Path) -> None:
    f = tmp_path / "set.jsonl"
    (tmp_path / "fix.diff").write_text("x")
    f.write_text(
        '{"id": "a", "repo": "r", "bug": "x", "gold": "fix.diff"}\n{"id": "b", "repo": "r", "bug": "y"}\n'
    )
    tasks = load_tasks(f)
    inputs = EvalInputs(tasks=tasks, tasks_file=str(f), agent="scripted", script="/s.toml")
    same = EvalInputs(
        tasks=tasks, tasks_file="/elsewhere/set.jsonl", agent="scripted", script="/s.toml"
    )
    other = EvalInputs(tasks=tasks, tasks_file=str(f), agent="empty")
    assert default_eval_id(inputs) == default_eval_id(same)
    assert default_eval_id(inputs).startswith("set-scripted-") and default_eval_id(
        other
    ).startswith("set-empty-")
    plan = trials_of(tasks, 2, True, "scripted")
    assert [(t.task.id, t.role, t.number) for t in plan] == [
        ("a", "gold-check", 1), ("a", "agent", 1), ("b", "agent", 1), ("a", "agent", 2), ("b", "agent", 2),
    ]  # fmt: skip
    assert all(t.role == "agent" for t in trials_of(tasks, 1, True, "gold"))
    assert Trial(tasks[0], 1) in plan
