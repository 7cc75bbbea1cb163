"""What runs code outside the gates is protected by default, and protected names match in any case.

A candidate that adds a ``Makefile``, ``.envrc`` or IPython start-up file runs nothing in the
gates, but runs on the next ``make``, ``cd`` or ``ipython`` of whoever merges it. The default
scope (everything writable) keeps them from the agent: the agent-config and git-hook ones always
(``BUILTIN_PROTECTED``), the project's own build, container, package-manager and environment
files unless a policy names them in ``scope.unprotect`` (``DEFAULT_PROTECTED``). Every protected
name is matched without regard to case. The end-to-end run is
tests/runner/loop/test_persistence_files.py.
"""

from __future__ import annotations

import pytest

from policies.load import PolicyError, load_policy
from policies.policy import DEFAULT_PROTECTED
from policies.scope import Scope

#: The files of issue 15 that passed the default scope, each where a candidate would put it.
PERSISTENCE = [
    ".envrc", "Makefile", "justfile", "setup.py", "package.json", ".npmrc", ".pypirc", ".env",
    ".mcp.json", ".husky/pre-commit", ".pdbrc", "Dockerfile", "docker-compose.yml",
    ".gemini/settings.json", ".continue/config.json",
    ".ipython/profile_default/startup/00-evil.py",
    "src/.ipython/profile_default/startup/00-evil.py", "src/Makefile", "src/setup.py",
    "src/.env", "src/.envrc", "src/package.json", "services/api/Dockerfile",
    "compose.yaml", "docker-compose.override.yml", "src/ipython_config.py", ".env.local",
]  # fmt: skip


def _scope(**overrides: object) -> Scope:
    return Scope(load_policy(overrides={f"scope.{k}": v for k, v in overrides.items()}).policy)


@pytest.mark.parametrize("path", PERSISTENCE)
def test_the_default_scope_protects_what_runs_outside_the_gates(path: str) -> None:
    scope = _scope()
    assert scope.classify(path) == "protected"
    assert scope.classify(path.upper()) == "protected"


@pytest.mark.parametrize(
    "path",
    [
        "src/ConfTest.py", "tests/CONFTEST.py", "src/SiteCustomize.py", "USERCUSTOMIZE.py",
        "x.PTH", "src/pkg/Evil.Pth", "PyProject.toml", "Tox.ini", "SETUP.CFG", ".GitHub/workflows/ci.yml",
        ".Claude/settings.json", "Agents.md", ".GIT/config", "MAKEFILE", "Setup.Py", "DockerFile",
    ],
)  # fmt: skip
def test_protected_names_match_in_any_case(path: str) -> None:
    assert _scope(allow_tests=True).classify(path) == "protected"


def test_the_tests_match_in_any_case_unless_allowed() -> None:
    assert _scope().classify("Tests/Test_Calc.py") == "protected"
    assert _scope(allow_tests=True).classify("Tests/Test_Calc.py") == "writable"


@pytest.mark.parametrize(
    "path", ["src/calc.py", "src/makefile_parser.py", "docs/env.md", "src/environment.py"]
)
def test_source_stays_writable(path: str) -> None:
    assert _scope().classify(path) == "writable"


def test_a_policy_unprotects_a_default_by_name_and_only_that() -> None:
    scope = _scope(unprotect=["**/Makefile", "**/setup.py"])
    assert scope.classify("Makefile") == "writable"
    assert scope.classify("src/SETUP.py") == "writable"
    assert scope.classify("package.json") == "protected"
    assert scope.classify("conftest.py") == "protected"  # built in: no policy relaxes it


def test_a_later_layer_protects_again_what_an_earlier_unprotected() -> None:
    loaded = load_policy(
        repo_files={".corral.toml": b'[scope]\nunprotect = ["**/Makefile"]\n'},
        overrides={"scope.protected": ["Makefile"]},
    )
    assert Scope(loaded.policy).classify("Makefile") == "protected"


@pytest.mark.parametrize("entry", ["Makefile", "conftest.py", "src/**"])
def test_unprotecting_what_is_not_a_default_is_an_error(entry: str) -> None:
    with pytest.raises(PolicyError, match="not on the default-protected list") as err:
        load_policy(overrides={"scope.unprotect": [entry]})
    assert "scope.unprotect" in str(err.value) and entry in str(err.value)


def test_every_default_is_protected_and_can_be_unprotected() -> None:
    scope = _scope(unprotect=list(DEFAULT_PROTECTED))
    for glob in DEFAULT_PROTECTED:
        sample = glob.replace("**/", "deep/").replace("*", "x")
        assert _scope().classify(sample) == "protected", glob
        assert scope.classify(sample) == "writable", glob
