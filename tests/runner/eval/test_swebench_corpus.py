"""A SWE-bench instance file built from the real PyPI corpus, evaluated through the CLI.

Three projects of ``tests/corpus`` as SWE-bench instances: each clone (under ``--repos`` as
``corpus__<name>``) has a base commit without the fix *and* without the target tests (cut
out of the test file with ``ast``); ``test_patch`` puts those tests back (hidden from the
agent), ``patch`` is the upstream fix, ``FAIL_TO_PASS`` the target tests and
``PASS_TO_PASS`` two other tests of the file. The policy is the clone's ``.corral.toml`` (its
set-up and one pytest gate on the test file). The ``gold`` agent resolves all three, the
``empty`` agent none, and the exported predictions pass the schema of SWE-bench's published
format (``test_swebench_logic.validate_predictions``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.runner.eval.test_swebench_logic import validate_predictions, validate_report
from tests.support import pypi_corpus
from tests.support.cli import corral
from tests.support.gitfixtures import git

NAMES = ("parse", "sqlparse", "tomlkit")


def _cut(source: str, tests: list[str]) -> str:
    """``source`` without the functions ``tests`` name (``Class::name`` or ``name``)."""
    tree = ast.parse(source)
    spans = []
    owners: list[ast.Module | ast.ClassDef] = [tree]
    owners += [n for n in tree.body if isinstance(n, ast.ClassDef)]
    for node in owners:
        for child in node.body:
            if isinstance(child, ast.FunctionDef):
                where = (
                    f"{node.name}::{child.name}" if isinstance(node, ast.ClassDef) else child.name
                )
                if where in tests:
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    spans.append((first, child.end_lineno or child.lineno))
    assert len(spans) == len(set(tests)), (tests, spans)
    lines = source.splitlines(keepends=True)
    for first, last in sorted(spans, reverse=True):
        del lines[first - 1 : last]
    return "".join(lines)


def _others(source: str, path: str, skip: list[str], n: int) -> list[str]:
    """``n`` plain tests of the file (no decorator, not in ``skip``), as node ids."""
    found = []
    for node in ast.parse(source).body:
        owners = [(f"{node.name}::", node.body)] if isinstance(node, ast.ClassDef) else []
        for prefix, body in owners or [("", [node])]:
            for fn in body:
                name = f"{prefix}{getattr(fn, 'name', '')}"
                if (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test")
                        and not fn.decorator_list and name not in skip):  # fmt: skip
                    found.append(f"{path}::{name}")
    return found[:n]


def _instance(root: Path, name: str) -> dict[str, Any]:
    project = pypi_corpus.load(name)
    repo = pypi_corpus.build_repo(project, root / f"corpus__{name}")
    gate = f"python -m pytest -q {project.test}"
    (repo / ".corral.toml").write_text(
        f'[setup]\ncommands = [{json.dumps(project.setup)}]\n\n[[gates]]\nname = "tests"\n'
        f"command = {json.dumps(gate)}\n\n[budgets]\nattempts = 1\n"
    )
    targets = [t.partition("::")[2].partition("[")[0] for t in project.targets]
    source = (repo / project.test).read_text()
    (repo / project.test).write_text(_cut(source, targets))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the base: no fix, no regression test")
    test_patch = git(repo, "diff", "HEAD", "HEAD~1", "--", project.test) + "\n"
    return {
        "instance_id": f"corpus__{name}-1", "repo": f"corpus/{name}",
        "base_commit": git(repo, "rev-parse", "HEAD").strip(),
        "problem_statement": project.bug.read_text(), "test_patch": test_patch,
        "patch": project.fix, "FAIL_TO_PASS": json.dumps(list(project.targets)),
        "PASS_TO_PASS": json.dumps(_others(source, project.test, targets, 2)),
        "environment_setup_commit": "0" * 40, "version": project.version,
        "hints_text": "", "created_at": "2024-01-01T00:00:00Z",
    }  # fmt: skip


@pytest.fixture(scope="module")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("swebench")
    data = [_instance(root / "repos", name) for name in NAMES]
    for inst in data:
        assert "def test" in inst["test_patch"] and json.loads(inst["PASS_TO_PASS"])
    path = root / "instances.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def _eval(home: Path, instances: Path, agent: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    proc = corral("eval", "--tasks", str(instances), "--repos", str(instances.parent / "repos"),
                  "--agent", agent, "--no-gold-check", "--workers", "2", "--eval-id", agent,
                  home=home, timeout=3600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds, report = tmp_path / f"{agent}.jsonl", tmp_path / f"{agent}-report.json"
    proc = corral("eval", "report", agent, "--predictions", str(preds),
                  "--swebench-report", str(report), home=home)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"SWE-bench: {3 if agent == 'gold' else 0}/3 resolved" in proc.stderr
    return json.loads(report.read_text()), preds.read_text()


@pytest.mark.docker
def test_gold_resolves_every_instance_and_empty_none_and_the_predictions_validate(
    instances: Path, corral_home: Path, sandbox_image: str, tmp_path: Path
) -> None:
    data = {inst["instance_id"]: inst for inst in json.loads(instances.read_text())}
    ids = sorted(data)
    report, text = _eval(corral_home, instances, "gold", tmp_path)
    validate_report(report)
    assert (report["resolved_ids"], report["unresolved_ids"]) == (ids, [])
    assert (report["empty_patch_ids"], report["error_ids"], report["incomplete_ids"]) == (
        [],
        [],
        [],
    )
    preds = validate_predictions(text)
    assert [p["instance_id"] for p in preds] == [f"corpus__{n}-1" for n in NAMES]
    for pred in preds:
        assert pred["model_name_or_path"] == "gold"
        name = pred["instance_id"].removeprefix("corpus__").removesuffix("-1")
        project = pypi_corpus.load(name)
        touched = {
            line.removeprefix("+++ b/")
            for line in pred["model_patch"].splitlines()
            if line.startswith("+++ b/")
        }
        assert touched == set(project.fixed_files)  # the fix, never the hidden tests
    full = json.loads(corral("eval", "report", "gold", "--json", home=corral_home).stdout)
    with RunStore(corral_home) as store:  # each run hid test_patch and judged F2P and P2P
        for trial in full["trials"]:
            inst = data[trial["task"]]
            project = pypi_corpus.load(inst["repo"].partition("/")[2])
            hidden = [e.data for e in store.events(trial["run_id"]) if e.type == "hidden_tests"]
            assert [h["paths"] for h in hidden] == [[project.test]]
            policy = json.loads(store.get(trial["run_id"]).policy_json)["policy"]
            assert policy["targets"]["must_pass"] == json.loads(inst["FAIL_TO_PASS"]) + json.loads(
                inst["PASS_TO_PASS"]
            )

    report, text = _eval(corral_home, instances, "empty", tmp_path)
    validate_report(report)
    assert report["resolved_ids"] == [] and report["empty_patch_ids"] == ids
    assert report["total_instances"] == report["submitted_instances"] == 3
    assert [p["model_patch"] for p in validate_predictions(text)] == ["", "", ""]


@pytest.mark.docker
def test_a_fix_that_breaks_a_pass_to_pass_test_is_not_resolved(
    instances: Path, corral_home: Path, sandbox_image: str, tmp_path: Path
) -> None:
    """parse's fix, with ``{{`` no longer an escaped brace: FAIL_TO_PASS passes, but
    ``test_nothing`` (PASS_TO_PASS) regresses, so the instance is unresolved."""
    (inst,) = [
        i for i in json.loads(instances.read_text()) if i["instance_id"] == "corpus__parse-1"
    ]
    assert "tests/test_parse.py::test_nothing" in json.loads(inst["PASS_TO_PASS"])
    one = instances.parent / "parse-only.json"
    one.write_text(json.dumps([inst]))
    fixed = pypi_corpus.fixed_contents(pypi_corpus.load("parse"))["parse.py"]
    broken = fixed.replace('r"({{|}}|{[\\w-]*', 'r"({[\\w-]*')
    assert broken != fixed
    script = tmp_path / "regress.toml"
    script.write_text(
        '[[attempt]]\n[[attempt.window]]\nactions = [{ write = "parse.py", content = '
        f'{json.dumps(broken)} }}, {{ finish = "fixed" }}]\n'
    )
    proc = corral("eval", "--tasks", str(one), "--repos", str(instances.parent / "repos"),
                  "--script", str(script), "--no-gold-check", "--eval-id", "regress",
                  home=corral_home, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / "report.json"
    proc = corral("eval", "report", "regress", "--swebench-report", str(report), home=corral_home)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert (data["resolved_ids"], data["unresolved_ids"]) == ([], ["corpus__parse-1"])
    full = json.loads(corral("eval", "report", "regress", "--json", home=corral_home).stdout)
    (trial,) = full["trials"]
    with RunStore(corral_home) as store:
        gates = [e.data for e in store.events(trial["run_id"]) if e.type == "gate_end"]
    targets = gates[-1]["targets"]
    assert targets["tests/test_parse.py::test_nothing"] == "failed"
    assert all(targets[t] == "passed" for t in json.loads(inst["FAIL_TO_PASS"]))
