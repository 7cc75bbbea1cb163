"""SWE-bench instance files as tasks, and the SWE-bench exports, without Docker.

The exports are checked, strictly (pydantic, no coercion), against SWE-bench's published
predictions format (``swebench.harness.run_evaluation``: objects with ``instance_id``,
``model_name_or_path`` and ``model_patch``, the patch a string, empty or null for none,
one per instance) and the keys and types of its ``make_run_report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from runner.errors import UsageError
from runner.eval.record import TrialOutcome
from runner.eval.swebench import (
    chosen_trials,
    load_task_file,
    predictions,
    swebench_report,
    write_exports,
)
from runner.store.records import NewRun
from runner.store.runs import RunStore
from tests.support.cli import corral


class Prediction(TypedDict):
    """SWE-bench's prediction, one JSONL line each (its published format)."""

    instance_id: str
    model_name_or_path: str
    model_patch: str | None


class RunReport(TypedDict):
    """SWE-bench's run report (``make_run_report``, schema_version 2)."""

    total_instances: int
    submitted_instances: int
    completed_instances: int
    resolved_instances: int
    unresolved_instances: int
    empty_patch_instances: int
    error_instances: int
    completed_ids: list[str]
    incomplete_ids: list[str]
    empty_patch_ids: list[str]
    submitted_ids: list[str]
    resolved_ids: list[str]
    unresolved_ids: list[str]
    error_ids: list[str]
    schema_version: Literal[2]


def validate_report(report: Any) -> None:
    """``report`` has every key of SWE-bench's, of its type (strict: no coercion)."""
    TypeAdapter(RunReport).validate_python(report, strict=True)


def validate_predictions(text: str) -> list[dict[str, Any]]:
    """Each line against the schema, and one prediction per instance (SWE-bench keys them by id)."""
    preds = [json.loads(line) for line in text.splitlines()]
    for pred in preds:
        TypeAdapter(Prediction).validate_python(pred, strict=True)
    assert len({p["instance_id"] for p in preds}) == len(preds)
    return preds


def _instance(n: int, **kw: Any) -> dict[str, Any]:
    inst = {
        "instance_id": f"acme__widgets-{n}", "repo": "acme/widgets", "base_commit": "HEAD",
        "problem_statement": f"Bug {n}: widgets break.", "hints_text": "", "version": "1.0",
        "test_patch": f"--- a/tests/test_w.py\n+++ b/tests/test_w.py\n@@ -1 +1 @@\n-x\n+y{n}\n",
        "patch": "--- a/w.py\n+++ b/w.py\n@@ -1 +1 @@\n-a\n+b\n",
        "FAIL_TO_PASS": json.dumps(["tests/test_w.py::test_new"]),
        "PASS_TO_PASS": json.dumps(["tests/test_w.py::TestOld::test_a[1]",
                                    "test_b (widgets.tests.TestOld)"]),
        "environment_setup_commit": "HEAD",
    }  # fmt: skip
    inst.update(kw)
    return inst


@pytest.mark.parametrize("form", ["json", "jsonl"])
def test_an_instance_file_becomes_tasks_judged_the_swebench_way(tmp_path: Path, form: str) -> None:
    (tmp_path / "repos" / "acme__widgets").mkdir(parents=True)
    instances = [_instance(1), _instance(2, PASS_TO_PASS=[])]
    path = tmp_path / f"instances.{form}"
    path.write_text(
        json.dumps(instances, indent=1)
        if form == "json"
        else "".join(json.dumps(i) + "\n" for i in instances)
    )
    patches = tmp_path / "home" / "swebench" / "patches"
    tasks = load_task_file(path, tmp_path / "repos", patches)
    assert [t.id for t in tasks] == ["acme__widgets-1", "acme__widgets-2"]
    first = tasks[0]
    assert first.repo == (tmp_path / "repos" / "acme__widgets").resolve()
    assert (first.base, first.bug, first.bug_file) == ("HEAD", "Bug 1: widgets break.", None)
    assert first.must_pass == (
        "tests/test_w.py::test_new",
        "tests/test_w.py::TestOld::test_a[1]",
        "widgets/tests.py::TestOld::test_b",
    )
    assert first.hidden_tests is not None and first.gold is not None
    assert first.hidden_tests.read_text() == instances[0]["test_patch"]
    assert first.gold.read_text() == instances[0]["patch"]
    assert first.hidden_tests.parent == patches
    assert tasks[1].gold == first.gold  # the same patch is one file
    assert tasks[1].must_pass == ("tests/test_w.py::test_new",)
    assert load_task_file(path, tmp_path / "repos", patches) == tasks  # same eval id


def test_a_clone_is_found_by_its_name_alone(tmp_path: Path) -> None:
    (tmp_path / "widgets").mkdir()
    path = tmp_path / "i.jsonl"
    path.write_text(json.dumps(_instance(1)) + "\n")
    (task,) = load_task_file(path, tmp_path, tmp_path / "p")
    assert task.repo == (tmp_path / "widgets").resolve()


@pytest.mark.parametrize(
    ("change", "repos", "message"),
    [
        ({}, None, "needs --repos DIR"),
        ({"repo": "other/thing"}, "repos", "no clone of other/thing under .*other__thing"),
        ({"repo": "nothing"}, "repos", "repo 'nothing' is not owner/name"),
        ({"FAIL_TO_PASS": "[not json"}, "repos", "FAIL_TO_PASS is not a JSON-encoded list"),
        ({"FAIL_TO_PASS": '{"a": 1}'}, "repos", "FAIL_TO_PASS must be a list of test ids"),
        ({"PASS_TO_PASS": '["test_x"]'}, "repos", "'test_x'.*corral judges pytest node ids"),
        ({"problem_statement": " "}, "repos", "problem_statement is empty"),
        ({"instance_id": "a/b"}, "repos", "instance_id 'a/b'"),
        ({"patch": None}, "repos", r"item 1: patch: Input should be a valid string"),
    ],
)
def test_a_bad_instance_is_one_line_naming_it(
    tmp_path: Path, change: dict[str, Any], repos: str | None, message: str
) -> None:
    (tmp_path / "repos" / "acme__widgets").mkdir(parents=True)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps([_instance(1, **change)]))
    with pytest.raises(UsageError, match=message):
        load_task_file(path, tmp_path / repos if repos else None, tmp_path / "p")


def test_a_file_mixing_instances_and_tasks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "acme__widgets").mkdir()
    path = tmp_path / "mixed.jsonl"
    task = {"id": "t", "repo": ".", "bug": "text"}
    path.write_text(json.dumps(_instance(1)) + "\n" + json.dumps(task) + "\n")
    with pytest.raises(UsageError, match="line 2: not a SWE-bench instance"):
        load_task_file(path, tmp_path, tmp_path / "p")


def _o(task: str, trial: int, status: str, run_id: str | None = None, **kw: Any) -> TrialOutcome:
    return TrialOutcome(task, trial, "agent", f"k-{task}-{trial}", run_id=run_id, status=status,
                        **kw)  # fmt: skip


def test_the_exports_take_each_task_s_first_finished_trial_and_classify_it(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    runs = {}
    for name, patch in (("r1", "diff-1\n"), ("r2", "diff-2\n"), ("r3", None), ("r4", "d4\n")):
        runs[name] = store.create(
            NewRun(repo=str(tmp_path), base="0" * 40, bug_title="b", bug_path="b.md",
                   agent="scripted", model=None, policy_json="{}", spec_json="{}", run_id=name)
        )  # fmt: skip
        if patch:
            store.write_artifact(runs[name], "candidate.diff", patch)
    store.write_artifact(runs["r3"], "attempt-2/patch.diff", "")
    store.write_artifact(runs["r4"], "attempt-1/patch.diff", "old\n")
    store.write_artifact(runs["r4"], "attempt-2/patch.diff", "last\n")
    store.artifact_path(runs["r4"], "candidate.diff").unlink()
    record = {"inputs": {"agent": "scripted", "model": None,
                         "tasks": [{"id": t} for t in ("a", "b", "c", "d", "e")]}}  # fmt: skip
    outcomes = [
        _o("a", 1, "running"), _o("a", 2, "ready_for_review", runs["r1"]),
        _o("a", 3, "failed", runs["r2"]),
        _o("b", 1, "failed", runs["r2"], failure_domain="model"),
        _o("c", 1, "failed", runs["r3"], failure_domain="model"),
        _o("d", 1, "failed", runs["r4"], failure_domain="runtime"),
        _o("e", 1, "not run"),
    ]  # fmt: skip
    assert {t: o.trial for t, o in chosen_trials(outcomes).items()} == {"a": 2, "b": 1, "c": 1,
                                                                        "d": 1}  # fmt: skip
    preds = predictions(record, outcomes, store)
    text = "".join(json.dumps(p) + "\n" for p in preds)
    assert validate_predictions(text) == [
        {"instance_id": "a", "model_name_or_path": "scripted", "model_patch": "diff-1\n"},
        {"instance_id": "b", "model_name_or_path": "scripted", "model_patch": "diff-2\n"},
        {"instance_id": "c", "model_name_or_path": "scripted", "model_patch": ""},
        {"instance_id": "d", "model_name_or_path": "scripted", "model_patch": "last\n"},
    ]
    report = swebench_report(record, outcomes, preds)
    validate_report(report)
    assert report == {
        "total_instances": 5, "submitted_instances": 4, "completed_instances": 2,
        "empty_patch_instances": 1, "resolved_instances": 1, "unresolved_instances": 1,
        "error_instances": 1, "completed_ids": ["a", "b"], "incomplete_ids": ["e"],
        "empty_patch_ids": ["c"], "resolved_ids": ["a"], "unresolved_ids": ["b"],
        "error_ids": ["d"], "submitted_ids": ["a", "b", "c", "d"], "schema_version": 2,
    }  # fmt: skip
    store.close()


def test_a_prediction_without_a_key_fails_the_schema() -> None:
    with pytest.raises(ValidationError, match="model_patch\n  Field required"):
        validate_predictions(json.dumps({"instance_id": "a", "model_name_or_path": "m"}))


def test_the_cli_refuses_an_instance_file_without_repos_in_one_line(
    tmp_path: Path, corral_home: Path
) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps([_instance(1)]))
    proc = corral("eval", "--tasks", str(path), "--agent", "gold", home=corral_home)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: a SWE-bench instance file needs --repos DIR: the clones, as DIR/<owner>__<name>"
    ]
    assert not (corral_home / "evals").exists()  # nothing recorded


def test_an_export_that_cannot_be_written_names_its_option(tmp_path: Path) -> None:
    record = {"inputs": {"agent": "gold", "model": None, "tasks": [{"id": "a"}]}}
    with RunStore(tmp_path) as store, pytest.raises(UsageError, match=r"--predictions .*writable"):
        write_exports(store, record, [], tmp_path / "missing" / "p.jsonl", None)
