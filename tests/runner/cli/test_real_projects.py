"""Real Python projects through ``corral run`` with the policy a user writes first.

Each project of ``tests/corpus/`` (a released upstream fix reversed on the project's
PyPI sdist, ``tests.support.pypi_corpus``) is built once per session and run with
the plain policy: its set-up command (``pip install -e . pytest``, ``pip install -e
.[tests]``) or the shipped ``python`` preset, and one gate, ``python -m pytest -q
<the test file>``. No workaround: no ``PYTHONPATH``, no pretended version.

- the agent applies the upstream fix: ``ready_for_review``, the target tests passed;
- the agent does nothing: ``failed``, ``model``;
- the agent rewrites the failing test instead (two projects): ``failed``, ``governance``;
- ``corral init``'s proposal, used as it is printed, gets the fix ``ready_for_review``.

The set-up of a project is built once (the environment image is cached by repository,
base commit and commands), so the runs after the first cost an attempt and two gates.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import pypi_corpus
from tests.support.cli import corral

#: Projects that run with the ``python`` preset instead of set-up commands of their own.
PRESET = ("pathspec", "tomlkit", "humanize")
#: Projects whose agent also tries to rewrite the failing test.
REWRITE = ("parse", "pyflakes")
NAMES = pypi_corpus.names()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every corpus project's repository, built once for the session (lazily, by name)."""
    return _Repos(tmp_path_factory.mktemp("corpus"))


class _Repos(dict[str, Path]):
    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, name: str) -> Path:
        repo = pypi_corpus.build_repo(pypi_corpus.load(name), self.root / name)
        self[name] = repo
        return repo


def plain_policy(project: pypi_corpus.Project) -> str:
    """The policy a user writes first: install the project, run the test file."""
    setup = (
        'preset = "python"\n'
        if project.name in PRESET
        else f"[setup]\ncommands = [{json.dumps(project.setup)}]\n"
    )
    gate = f"python -m pytest -q {project.test}"
    return f'{setup}\n[[gates]]\nname = "tests"\ncommand = {json.dumps(gate)}\n\n[budgets]\nattempts = 1\n'


def fix_script(project: pypi_corpus.Project) -> str:
    writes = ", ".join(
        f"{{ write = {json.dumps(path)}, content = {json.dumps(text)} }}"
        for path, text in pypi_corpus.fixed_contents(project).items()
    )
    return _script(f"{writes}, {{ finish = {json.dumps('applied the upstream fix')} }}")


def rewrite_script(project: pypi_corpus.Project) -> str:
    """An agent that makes the failing tests go away by emptying the test file."""
    content = "def test_nothing():\n    pass\n"
    return _script(
        f"{{ write = {json.dumps(project.test)}, content = {json.dumps(content)} }}, "
        f"{{ finish = {json.dumps('the tests pass now')} }}"
    )


def _script(actions: str) -> str:
    return f"[[attempt]]\n[[attempt.window]]\nactions = [{actions}]\n"


def run(
    corpus: dict[str, Path], tmp_path: Path, home: Path, name: str, script: str,
    policy: str | None = None, *extra: str,
) -> dict[str, Any]:  # fmt: skip
    project = pypi_corpus.load(name)
    repo = corpus[name]
    (tmp_path / "policy.toml").write_text(policy or plain_policy(project))
    (tmp_path / "script.toml").write_text(script)
    proc = corral(
        "run", "--repo", str(repo), "--bug", str(project.bug),
        "--policy", str(tmp_path / "policy.toml"),
        "--agent", f"scripted:{tmp_path / 'script.toml'}", "--json", *extra,
        home=home, timeout=1500,
    )  # fmt: skip
    assert proc.stdout, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    result["exit"] = proc.returncode
    result["stderr"] = proc.stderr
    return result


def _why(result: dict[str, Any]) -> str:
    return textwrap.shorten(f"{result.get('reason')} | {result['stderr'][-3000:]}", 3500)


def test_the_corpus_pins_five_packaging_styles_each_with_a_fix_and_its_tests() -> None:
    projects = [pypi_corpus.load(name) for name in NAMES]
    assert len({p.style for p in projects}) >= 5, [p.style for p in projects]
    for p in projects:
        assert len(p.sha256) == 64 and p.sdist == f"{p.project}-{p.version}.tar.gz", p
        assert p.fixed_files and all(f.endswith(".py") for f in p.fixed_files), p.name
        assert p.test not in p.fixed_files  # the fix is source only; N's test stays
        assert p.targets and all(t.startswith(f"{p.test}::") for t in p.targets), p.name
        assert p.bug.read_text().startswith("# "), p.name
        assert "PYTHONPATH" not in p.setup and "PRETEND" not in p.setup, p.name
    with pytest.raises(pypi_corpus.CorpusError, match=r"corpus\.toml"):
        pypi_corpus.load("no-such-project")


@pytest.mark.docker
@pytest.mark.parametrize("name", NAMES)
def test_the_upstream_fix_is_ready_for_review(
    name: str, corpus: dict[str, Path], tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = pypi_corpus.load(name)
    must_pass = [arg for target in project.targets for arg in ("--must-pass", target)]
    result = run(corpus, tmp_path, corral_home, name, fix_script(project), None, *must_pass)
    assert (result["exit"], result["status"]) == (0, "ready_for_review"), _why(result)
    assert result["attempts"][0]["gates"]["tests"] is True
    assert sorted(result["attempts"][0]["changed_files"]) == sorted(project.fixed_files)


@pytest.mark.docker
@pytest.mark.parametrize("name", NAMES)
def test_an_empty_attempt_fails_as_the_models(
    name: str, corpus: dict[str, Path], tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    result = run(corpus, tmp_path, corral_home, name, _script('{ finish = "nothing to do" }'))
    assert (result["exit"], result["status"], result["failure_domain"]) == (
        1, "failed", "model",
    ), _why(result)  # fmt: skip
    assert result["attempts"][0]["reason"] == "the attempt changed nothing"


@pytest.mark.docker
@pytest.mark.parametrize("name", REWRITE)
def test_rewriting_the_failing_test_fails_as_governance(
    name: str, corpus: dict[str, Path], tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = pypi_corpus.load(name)
    result = run(corpus, tmp_path, corral_home, name, rewrite_script(project))
    assert (result["exit"], result["status"], result["failure_domain"]) == (
        1, "failed", "governance",
    ), _why(result)  # fmt: skip
    assert project.test in result["attempts"][0]["reason"]


@pytest.mark.docker
@pytest.mark.parametrize("name", NAMES)
def test_corral_inits_proposal_gets_the_fix_ready_for_review(
    name: str, corpus: dict[str, Path], tmp_path: Path, corral_home: Path, sandbox_image: str
) -> None:
    project = pypi_corpus.load(name)
    proposed = corral("init", "--repo", str(corpus[name]), home=corral_home)
    assert proposed.returncode == 0, proposed.stderr
    assert "PRETEND_VERSION" not in proposed.stdout and "PYTHONPATH" not in proposed.stdout
    policy = proposed.stdout + "\n[budgets]\nattempts = 1\n"
    result = run(corpus, tmp_path, corral_home, name, fix_script(project), policy)
    assert (result["exit"], result["status"]) == (0, "ready_for_review"), (
        proposed.stdout, _why(result),
    )  # fmt: skip
