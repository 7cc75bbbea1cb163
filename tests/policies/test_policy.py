"""Policies: presets, layering, error lines, and the file scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.load import PRESETS, PolicyError, load_policy
from policies.policy import Policy
from policies.scope import Scope, check_patch, hidden_characters
from runner.ops.request import repo_policy_files
from tests.support.gitfixtures import commit, git, make_repo


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads(name: str) -> None:
    loaded = load_policy(name)
    assert isinstance(loaded.policy, Policy)
    assert loaded.sources[-1] == f"preset:{name}"
    assert "curl" in loaded.policy.commands.deny  # presets build on default's denials


def test_layers_merge_preset_file_repo_flags(tmp_path: Path) -> None:
    file = tmp_path / "team.toml"
    file.write_text(
        'preset = "python"\n[budgets]\nattempts = 5\nsteps = 20\n'
        '[commands]\ndeny = ["make deploy"]\n'
        '[[gates]]\nname = "tests"\ncommand = "pytest -x"\n'
    )
    repo = b'[budgets]\nsteps = 30\n[commands]\ndeny = ["npm publish"]\n[scope]\nprotected = ["docs/conf.py"]\n'
    loaded = load_policy(file, repo_files={".corral.toml": repo}, overrides={"budgets.attempts": 2})
    p = loaded.policy
    assert loaded.sources == (
        "preset:default",
        "preset:python",
        str(file),
        "repo:.corral.toml",
        "flags",
    )
    assert (p.budgets.attempts, p.budgets.steps) == (2, 30)  # flags > repo > file
    assert {"curl", "make deploy", "npm publish"} <= set(p.commands.deny)  # deny accumulates
    assert [g.name for g in p.gates] == ["typecheck", "tests"]  # merged by name
    assert p.gates[1].command == "pytest -x"
    assert p.scope.protected == ("docs/conf.py",)


def test_pyproject_tool_corral_is_the_repo_layer() -> None:
    pyproject = b'[project]\nname = "x"\n[tool.corral.budgets]\nattempts = 4\n'
    loaded = load_policy(repo_files={"pyproject.toml": pyproject})
    assert loaded.policy.budgets.attempts == 4
    assert loaded.sources[-1] == "repo:pyproject.toml[tool.corral]"


def test_malformed_policy_gives_loc_msg_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[budgets]\nattempts = 0\nsteps = "many"\n[scope]\nwriteable = ["src"]\n'
        '[[gates]]\nname = "t"\ncommand = "x"\n[[gates]]\nname = "t"\ncommand = "y"\n'
    )
    with pytest.raises(PolicyError) as info:
        load_policy(bad)
    lines = info.value.lines
    assert any(line.startswith("budgets.attempts: ") for line in lines)
    assert any(line.startswith("budgets.steps: ") for line in lines)
    assert any(line.startswith("scope.writeable: unknown key") for line in lines)
    assert any(line.startswith("gates: ") and "unique" in line for line in lines)
    assert all(str(bad) in line for line in lines)


def test_unreadable_or_invalid_toml_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[budgets\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(broken)
    nope = tmp_path / "nope.toml"
    nope.write_text('preset = "yolo"\n')
    with pytest.raises(PolicyError, match="unknown preset 'yolo'"):
        load_policy(nope)


@pytest.fixture
def scope() -> Scope:
    return Scope(load_policy("default").policy)


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("src/calc.py", "writable"),
        ("README.md", "writable"),
        ("setup.cfg", "protected"),
        ("pyproject.toml", "protected"),
        ("conftest.py", "protected"),
        ("src/pkg/conftest.py", "protected"),
        ("tests/test_calc.py", "protected"),
        ("src/test_thing.py", "protected"),
        (".github/workflows/ci.yml", "protected"),
        (".vscode/settings.json", "protected"),
        (".claude/settings.json", "protected"),
        ("lib/site-packages/evil.pth", "protected"),
        ("sitecustomize.py", "protected"),
        (".gitattributes", "protected"),
        ("src/__pycache__/calc.cpython-311.pyc", "artifact"),
        (".pytest_cache/v/cache", "artifact"),
        (".corral/progress.md", "progress"),
    ],
)
def test_default_scope_classes(scope: Scope, path: str, cls: str) -> None:
    assert scope.classify(path) == cls


def test_strict_scope_is_narrow_and_tests_can_be_allowed() -> None:
    strict = Scope(load_policy("strict").policy)
    assert strict.classify("src/a.py") == "writable"
    assert strict.classify("README.md") == "read_only"
    lenient = Scope(load_policy(overrides={"scope.allow_tests": True}).policy)
    assert lenient.classify("tests/test_calc.py") == "writable"
    assert lenient.classify("tests/conftest.py") == "protected"  # conftest stays protected


def test_readonly_paths_mount_whole_protected_dirs_and_single_files(scope: Scope) -> None:
    base = [
        "src/calc.py",
        "src/conftest.py",
        "tests/test_calc.py",
        "tests/data/x.json",
        ".github/workflows/ci.yml",
        "setup.cfg",
        "pyproject.toml",
    ]
    assert scope.readonly_paths(base) == [
        ".github",
        "tests",
        "pyproject.toml",
        "setup.cfg",
        "src/conftest.py",
    ]


def test_patch_checks_scope_links_modes_and_hidden_characters(scope: Scope) -> None:
    changes = [
        ("src/calc.py", "100644", "100644"),
        ("setup.cfg", "100644", "100644"),
        ("src/link", None, "120000"),
        ("src/run.sh", "100644", "100755"),
        ("vendor/lib", "160000", "160000"),
    ]
    patch = "+++ b/src/calc.py\n+ok = 1\n+if admin\u202e:\n"
    kinds = {(v.kind, v.path) for v in check_patch(scope, changes, patch)}
    assert kinds == {
        ("protected_path", "setup.cfg"),
        ("symlink", "src/link"),
        ("mode_change", "src/run.sh"),
        ("gitlink", "vendor/lib"),
        ("hidden_character", "src/calc.py"),
    }
    assert hidden_characters("+++ b/a.py\n+\tindented = 1\n") == []


def test_the_repo_layer_is_read_from_the_base_commit_not_the_checkout(tmp_path: Path) -> None:
    corral_toml = b"[budgets]\nattempts = 2\n\n\n"  # trailing blank lines are content too
    pyproject = b'[project]\nname = "x"\n\xe2\x80\x94\n'
    repo = make_repo(tmp_path / "r", {".corral.toml": corral_toml, "pyproject.toml": pyproject})
    base = git(repo, "rev-parse", "HEAD")
    (repo / ".corral.toml").write_text("[budgets]\nattempts = 9\n")  # uncommitted: not the base
    assert repo_policy_files(repo, base) == {
        ".corral.toml": corral_toml,
        "pyproject.toml": pyproject,
    }
    commit(repo, {"src/a.py": "a"}, "more")
    git(repo, "rm", "-q", ".corral.toml")
    git(repo, "commit", "-q", "-m", "drop it")
    later = git(repo, "rev-parse", "HEAD")
    assert repo_policy_files(repo, later) == {".corral.toml": None, "pyproject.toml": pyproject}
    assert repo_policy_files(repo, base)[".corral.toml"] == corral_toml  # the base decides


def test_a_directory_where_the_repo_policy_would_be_is_no_policy(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {".corral.toml/x": "not a file", "pyproject.toml": "[x]\n"})
    files = repo_policy_files(repo, git(repo, "rev-parse", "HEAD"))
    assert files == {".corral.toml": None, "pyproject.toml": b"[x]\n"}
