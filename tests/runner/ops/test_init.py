"""``corral init``: the proposal for each kind of repository, read from its committed revision.

Every fixture is a real git repository built in ``tmp_path``; every proposal must load
as the repository layer of a policy (``load_policy``), as ``corral run`` would read it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from policies.load import load_policy
from policies.policy import DEFAULT_TEST_GLOBS
from runner.errors import UsageError
from runner.ops.detect import NODE_TESTS
from runner.ops.init import NOTHING_FOUND, Proposal, propose, write_proposal
from sandbox.errors import GitError
from tests.support.cli import corral
from tests.support.gitfixtures import build_tree, git, make_repo

PKG = {"calc/__init__.py": "", "calc/core.py": "def add(a, b):\n    return a + b\n"}
SRC = {"src/calc/__init__.py": "", "src/calc/core.py": "def add(a, b):\n    return a + b\n"}
TESTS = {
    "tests/test_core.py": "from calc.core import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
}
PYTEST_INI = "\n[tool.pytest.ini_options]\ntestpaths = ['tests']\n"

#: name -> (files, setup commands, gate (name, command, required) triples, writable globs)
LAYOUTS: dict[str, tuple[dict[str, str], list[str], list[tuple[str, str, bool]], list[str]]] = {
    "setuptools with a test extra": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['setuptools>=68']\n"
            "build-backend = 'setuptools.build_meta'\n\n[project]\nname = 'calc'\nversion = '1.0'\n"
            "[project.optional-dependencies]\ntest = ['pytest>=7', 'pytest-cov']\n" + PYTEST_INI,
            **PKG,
            **TESTS,
        },
        ["python -m pip install -e '.[test]'"],
        [("tests", "python -m pytest -q", True)],
        ["calc/**"],
    ),
    "setuptools-scm": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['setuptools>=68', 'setuptools-scm>=8']\n"
            "build-backend = 'setuptools.build_meta'\n\n[project]\nname = 'calc'\n"
            "dynamic = ['version']\n[project.optional-dependencies]\n"
            "tests = ['calc[speed]']\nspeed = ['pytest']\n[tool.setuptools_scm]\n",
            **SRC,
            **TESTS,
        },
        ["python -m pip install -e '.[tests]'"],
        [("tests", "python -m pytest -q", True)],
        ["src/calc/**"],
    ),
    "hatch with mypy": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['hatchling']\n"
            "build-backend = 'hatchling.build'\n\n[project]\nname = 'calc'\nversion = '1'\n"
            "[project.optional-dependencies]\ndev = ['pytest', 'mypy>=1']\n"
            "[tool.mypy]\npackages = ['calc']\nstrict = true\n",
            **SRC,
            **TESTS,
        },
        ["python -m pip install -e '.[dev]'"],
        [("tests", "python -m pytest -q", True), ("typecheck", "python -m mypy", False)],
        ["src/calc/**"],
    ),
    "flit single module with mypy.ini": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['flit_core>=3.4']\n"
            "build-backend = 'flit_core.buildapi'\n\n[project]\nname = 'calcmod'\n"
            "dynamic = ['version', 'description']\n",
            "calcmod.py": '"""Calc."""\n__version__ = "1"\n',
            "mypy.ini": "[mypy]\nwarn_unused_ignores = True\n",
            "test_calcmod.py": "def test_it():\n    pass\n",
        },
        ["python -m pip install -e .", "python -m pip install pytest mypy"],
        [("tests", "python -m pytest -q", True), ("typecheck", "python -m mypy calcmod.py", False)],
        ["calcmod.py"],
    ),
    "poetry with a dev group": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['poetry-core>=1.0.8']\n"
            "build-backend = 'poetry.core.masonry.api'\n\n[tool.poetry]\nname = 'calc'\n"
            "version = '1.0'\n[tool.poetry.dependencies]\npython = '^3.9'\n"
            "[tool.poetry.group.dev.dependencies]\npytest = '^8.0'\nblack = '*'\n"
            "local = { path = '../local' }\n",
            **PKG,
            **TESTS,
        },
        ["python -m pip install -e .", "python -m pip install pytest black"],
        [("tests", "python -m pytest -q", True)],
        ["calc/**"],
    ),
    "pdm with dependency groups": (
        {
            "pyproject.toml": "[build-system]\nrequires = ['pdm-backend']\n"
            "build-backend = 'pdm.backend'\n\n[project]\nname = 'calc'\nversion = '1'\n"
            "[dependency-groups]\ntest = ['pytest>=8', 'pytest-cov']\n",
            **SRC,
            **TESTS,
        },
        ["python -m pip install -e .", "python -m pip install 'pytest>=8' pytest-cov"],
        [("tests", "python -m pytest -q", True)],
        ["src/calc/**"],
    ),
    "setup.py only with requirements-dev.txt": (
        {
            "setup.py": "from setuptools import setup\nsetup(name='calc', packages=['calc'])\n",
            "requirements.txt": "attrs\n",
            "requirements-dev.txt": "-r requirements.txt\npytest==8.3.0  # tests\n",
            "setup.cfg": "[tool:pytest]\naddopts = -q\n",
            **PKG,
            **TESTS,
        },
        ["python -m pip install -e .", "python -m pip install -r requirements-dev.txt"],
        [("tests", "python -m pytest -q", True)],
        ["calc/**"],
    ),
    "requirements files without a package, src layout": (
        {
            "requirements.txt": "attrs\n",
            "requirements/test.txt": "pytest\n",
            "src/app.py": "print('app')\n",
            "src/calc/core.py": "X = 1\n",
            **TESTS,
        },
        [
            "python -m pip install -r requirements.txt",
            "python -m pip install -r requirements/test.txt",
        ],
        [("tests", "python -m pytest -q", True)],
        ["src/app.py", "src/calc/**"],
    ),
    "node with package-lock": (
        {
            "package.json": '{"name": "calc", "scripts": {"test": "node --test"}}\n',
            "package-lock.json": "{}\n",
            "src/index.js": "module.exports = 1;\n",
            "src/index.test.js": "require('node:test');\n",
        },
        ["npm ci"],
        [("tests", "npm test", True)],
        ["src/**"],
    ),
    "Makefile with a test target": (
        {
            "Makefile": "CC := cc\nall:\n\tcc -o calc calc.c\ntest: all\n\t./calc --self-test\n",
            "src/calc.c": "int main(void) { return 0; }\n",
        },
        [],
        [("tests", "make test", True)],
        ["src/**"],
    ),
    "python and node": (
        {
            "setup.py": "from setuptools import setup\nsetup(extras_require={'test': ['pytest']})\n",
            "package.json": '{"scripts": {"test": "jest"}}\n',
            "Makefile": "test:\n\tpytest\n",
            **PKG,
            **TESTS,
        },
        ["python -m pip install -e '.[test]'", "npm install"],
        [("tests", "python -m pytest -q", True), ("node-tests", "npm test", True)],
        ["calc/**"],
    ),
}


def _loads(proposal: Proposal) -> None:
    """The proposal is valid TOML and loads as a repository's policy layer."""
    text = proposal.toml()
    tomllib.loads(text)
    loaded = load_policy(repo_files={".corral.toml": text.encode()})
    assert [(g.name, g.command, g.required) for g in loaded.policy.gates] == [
        (g.name, g.command, g.required) for g in proposal.gates
    ]
    assert list(loaded.policy.setup.commands) == [s.value for s in proposal.setup]
    if proposal.writable:
        assert list(loaded.policy.scope.writable) == [c.value for c in proposal.writable]
    else:
        assert loaded.policy.scope.writable == ("**",)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_layout_gets_its_setup_gates_and_scope(tmp_path: Path, layout: str) -> None:
    files, setup, gates, writable = LAYOUTS[layout]
    proposal = propose(make_repo(tmp_path / "repo", files))
    assert [s.value for s in proposal.setup] == setup
    assert [(g.name, g.command, g.required) for g in proposal.gates] == gates
    assert [c.value for c in proposal.writable] == writable
    _loads(proposal)


def test_each_choice_has_the_reason_above_it(tmp_path: Path) -> None:
    files = LAYOUTS["setuptools-scm"][0]
    text = propose(make_repo(tmp_path / "repo", files)).toml()
    lines = text.splitlines()
    command = lines.index("  \"python -m pip install -e '.[tests]'\",")
    assert "[project.optional-dependencies] names the extra 'tests'" in lines[command - 1]
    assert "version comes from git" in lines[command - 1]
    assert (
        lines[lines.index('  "src/calc/**",') - 1]
        == "  # src layout: the Python packages under src/"
    )
    gate = lines.index('name = "tests"')
    assert lines[gate - 1] == "# tests in tests/"


@pytest.mark.parametrize(
    "marker",
    [
        {"pyproject.toml": "[build-system]\nrequires = ['hatchling', 'hatch-vcs']\n"
         "build-backend = 'hatchling.build'\n[project]\nname = 'calc'\ndynamic = ['version']\n"
         "[tool.hatch.version]\nsource = 'vcs'\n"},
        {"setup.py": "from setuptools import setup\nsetup(name='calc', use_scm_version=True)\n"},
        {"pyproject.toml": "[project]\nname = 'calc'\ndynamic = ['version']\n"
         "[tool.setuptools_scm]\n"},
    ],
    ids=["hatch-vcs", "setup.py use_scm_version", "tool.setuptools_scm"],
)  # fmt: skip
def test_a_version_from_git_needs_no_pretended_version(
    tmp_path: Path, marker: dict[str, str]
) -> None:
    """Set-up reads the version from the checkout's ``.git``: the plain install is proposed."""
    proposal = propose(make_repo(tmp_path / "repo", {**PKG, **TESTS, **marker}))
    assert proposal.setup[0].value == "python -m pip install -e ."
    assert proposal.setup[0].why.endswith("the version comes from git, which set-up reads")
    assert "PRETEND" not in proposal.toml() and "PYTHONPATH" not in proposal.toml()


def test_node_test_files_are_protected_on_top_of_the_defaults(tmp_path: Path) -> None:
    proposal = propose(make_repo(tmp_path / "repo", LAYOUTS["node with package-lock"][0]))
    policy = load_policy(repo_files={".corral.toml": proposal.toml().encode()}).policy
    assert policy.scope.tests == (*DEFAULT_TEST_GLOBS, *NODE_TESTS)
    assert policy.sandbox.packages == ("nodejs", "npm")  # the image gets Node.js and npm
    assert "[sandbox]\npackages = [" in proposal.toml()


@pytest.mark.parametrize(
    ("layout", "packages"),
    [
        ("Makefile with a test target", ("make",)),
        ("python and node", ("nodejs", "npm")),  # the Makefile's gate is not taken: no make
        ("node with package-lock", ("nodejs", "npm")),
    ],
)
def test_the_image_gets_the_debian_packages_the_gates_need(
    tmp_path: Path, layout: str, packages: tuple[str, ...]
) -> None:
    proposal = propose(make_repo(tmp_path / "repo", LAYOUTS[layout][0]))
    policy = load_policy(repo_files={".corral.toml": proposal.toml().encode()}).policy
    assert policy.sandbox.packages == packages


def test_a_makefile_beside_python_is_a_note_not_a_second_gate(tmp_path: Path) -> None:
    proposal = propose(make_repo(tmp_path / "repo", LAYOUTS["python and node"][0]))
    assert proposal.kinds == ("python", "node")
    assert any("Makefile has a test target too" in n for n in proposal.notes)


def test_nothing_recognisable_is_a_clear_message_and_a_minimal_policy(tmp_path: Path) -> None:
    proposal = propose(make_repo(tmp_path / "repo", {"README.md": "hello\n", "a.c": "int x;\n"}))
    assert proposal.kinds == () and proposal.gates == () and proposal.setup == ()
    assert NOTHING_FOUND in proposal.notes
    assert f"# note: {NOTHING_FOUND}" in proposal.toml()
    assert load_policy(repo_files={".corral.toml": proposal.toml().encode()}).policy.gates == ()
    _loads(proposal)


def test_python_without_tests_says_the_gate_cannot_pass_yet(tmp_path: Path) -> None:
    proposal = propose(make_repo(tmp_path / "repo", {"setup.py": "", **PKG}))
    assert [s.value for s in proposal.setup] == [
        "python -m pip install -e .",
        "python -m pip install pytest",
    ]
    assert any("no Python tests found" in n for n in proposal.notes)
    _loads(proposal)


def test_the_checkout_is_not_read_only_the_commit(tmp_path: Path) -> None:
    files = LAYOUTS["setuptools with a test extra"][0]
    repo = make_repo(tmp_path / "repo", files)
    before = propose(repo).toml()
    build_tree(repo, {
        "pyproject.toml": "[project]\nname = 'x'\n[project.optional-dependencies]\ndev = ['mypy']\n"
        "[tool.mypy]\n",
        ".corral.toml": "[scope]\nwritable = ['**']\n",
        "package.json": '{"scripts": {"test": "jest"}}',
        "Makefile": "test:\n\ttrue\n",
    })  # fmt: skip
    git(repo, "add", "pyproject.toml")  # staged, not committed: still not the revision
    assert propose(repo).toml() == before


def test_a_committed_policy_is_named_in_the_notes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".corral.toml": "[budgets]\nattempts = 1\n", **PKG})
    assert any("has a .corral.toml already" in n for n in propose(repo).notes)


def test_bad_repositories_raise_what_the_docstring_says(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        propose(tmp_path / "gone")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        propose(tmp_path / "plain")
    git(tmp_path, "init", "-q", "empty")
    with pytest.raises(UsageError, match="has no commit HEAD: commit the project first"):
        propose(tmp_path / "empty")


def test_write_refuses_an_existing_file_and_force_replaces_a_link_without_following_it(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", PKG)
    proposal = propose(repo)
    assert write_proposal(repo, proposal) == repo / ".corral.toml"
    assert (repo / ".corral.toml").read_text() == proposal.toml()
    with pytest.raises(UsageError, match=r"exists: .* pass --force to overwrite it"):
        write_proposal(repo, proposal)
    outside = tmp_path / "outside.toml"
    outside.write_text("mine\n")
    (repo / ".corral.toml").unlink()
    (repo / ".corral.toml").symlink_to(outside)
    with pytest.raises(UsageError):
        write_proposal(repo, proposal)
    write_proposal(repo, proposal, force=True)
    assert not (repo / ".corral.toml").is_symlink()
    assert outside.read_text() == "mine\n"


def test_corral_init_prints_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", LAYOUTS["setuptools with a test extra"][0])
    shown = corral("init", "--repo", str(repo), home=tmp_path / "home", timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "python -m pip install -e '.[test]'" in shown.stdout
    assert "corral run --repo" in shown.stderr and "commit" in shown.stderr
    assert not (repo / ".corral.toml").exists()

    wrote = corral("init", "--repo", str(repo), "--write", home=tmp_path / "home", timeout=120)
    assert wrote.returncode == 0, wrote.stderr
    assert (repo / ".corral.toml").read_text() == shown.stdout
    checked = corral("policy", "check", str(repo / ".corral.toml"), home=tmp_path / "home")
    assert checked.returncode == 0, checked.stderr

    again = corral("init", "--repo", str(repo), "--write", home=tmp_path / "home", timeout=120)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--force" in lines[0], (
        again.stderr
    )
    forced = corral(
        "init", "--repo", str(repo), "--write", "--force", home=tmp_path / "home", timeout=120
    )
    assert forced.returncode == 0, forced.stderr
