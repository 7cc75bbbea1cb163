"""Packaging metadata is always protected: what Python reads to load code into a test runner.

A ``*.dist-info`` or ``*.egg-info`` directory on ``sys.path`` declares entry points (a
``[pytest11]`` one is a pytest plugin every session loads), and a ``.pth`` file runs code
at start-up. No policy makes them writable, whatever the case of their names (Python's
``importlib.metadata`` finds ``EVIL.DIST-INFO`` too). The end-to-end attack is
tests/runner/loop/test_fake_green.py.
"""

from __future__ import annotations

import pytest

from policies.load import load_policy
from policies.scope import PACKAGING_METADATA, Scope, check_patch


@pytest.fixture
def scope() -> Scope:
    """A policy that makes everything writable, tests included, and says nothing of packaging."""
    overrides = {"scope.writable": ["**"], "scope.allow_tests": True, "scope.ignored_artifacts": []}
    return Scope(load_policy(overrides=overrides).policy)


@pytest.mark.parametrize(
    "path",
    [
        "src/evil.dist-info/entry_points.txt",
        "src/evil.dist-info/METADATA",
        "evil-1.0.dist-info/RECORD",
        "src/Evil.Dist-Info/entry_points.txt",
        "lib/pkg.egg-info/entry_points.txt",
        "src/pkg.EGG-INFO/PKG-INFO",
        "entry_points.txt",
        "src/pkg/ENTRY_POINTS.TXT",
        "src/evil.pth",
        "deep/er/evil.PTH",
    ],
)
def test_packaging_metadata_is_protected_in_any_case(scope: Scope, path: str) -> None:
    assert scope.classify(path) == "protected"
    assert not scope.may_write(path)
    (violation,) = check_patch(scope, [(path, None, "100644")], "")
    assert violation.kind == "protected_path" and violation.path == path


@pytest.mark.parametrize(
    "path",
    ["src/dist_info.py", "src/entry_points.py", "docs/egg-info.md", "src/pth.py", "src/a.pthx"],
)
def test_names_that_only_look_alike_stay_writable(scope: Scope, path: str) -> None:
    assert scope.classify(path) == "writable"


def test_a_metadata_directory_is_mounted_read_only_whole(scope: Scope) -> None:
    base = ["src/calc.py", "src/calc.dist-info/METADATA", "src/calc.dist-info/entry_points.txt"]
    assert scope.readonly_paths(base) == ["src/calc.dist-info"]


def test_the_summary_names_packaging_metadata(scope: Scope) -> None:
    assert "packaging metadata" in scope.summary()
    assert all(p.rstrip("/") in scope.summary() for p in PACKAGING_METADATA)
