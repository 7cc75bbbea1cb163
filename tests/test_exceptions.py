"""One exception tree: every exception corral defines hangs from ``CorralError``, and each
package's own live in its ``errors`` module under one base.

Modules are imported (not parsed) so that what is checked is the class as Python sees it,
its bases resolved; ``runner.__main__`` is left out (importing it runs the CLI).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from policies.errors import PoliciesError
from runner.errors import RunnerError
from sandbox.errors import CorralError, SandboxError, UserError

BASES = {"sandbox": SandboxError, "policies": PoliciesError, "runner": RunnerError}
ROOT = Path(__file__).resolve().parent.parent


def _modules() -> list[str]:
    """Every module of corral's three packages, by dotted name."""
    paths = [p for top in BASES for p in sorted((ROOT / top).rglob("*.py"))]
    return [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in paths
    ]


def _defined_exceptions() -> list[type[BaseException]]:
    found = []
    for name in _modules():
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                found.append(cls)
    return found


def test_every_exception_corral_defines_is_a_corral_error_in_its_packages_errors_module() -> None:
    found = _defined_exceptions()
    assert len(found) > 30
    for cls in found:
        package = cls.__module__.split(".")[0]
        assert cls.__module__ == f"{package}.errors", f"{cls.__qualname__} in {cls.__module__}"
        if cls in (CorralError, UserError):
            continue
        if issubclass(cls, KeyboardInterrupt):  # a Ctrl-C stays one: no `except Exception` eats it
            assert not issubclass(cls, Exception), cls
            continue
        assert issubclass(cls, BASES[package]), cls


@pytest.mark.parametrize(
    ("old_home", "name"),
    [
        ("runner.loop.tools", "Paused"),
        ("runner.loop.tools", "NeedsHuman"),
        ("runner.loop.tools", "BudgetExceeded"),
        ("runner.loop.tools", "StopAttempt"),
        ("runner.loop.baseline", "BaselineStopped"),
        ("runner.llm.client", "ModelError"),
        ("runner.llm.client", "ContextTooLong"),
        ("runner.llm.client", "ModelUnavailable"),
        ("runner.gateway.core", "GatewayError"),
        ("runner.store.eventlog", "StoreError"),
        ("runner.store.eventlog", "LogCorrupt"),
        ("runner.store.runs", "UnknownRun"),
        ("runner.store.runs", "DuplicateRun"),
        ("runner.review.merge", "MergeRefused"),
        ("runner.agents.presets", "PresetError"),
        ("policies.load", "PolicyError"),
        ("policies.commands", "Unverifiable"),
    ],
)
def test_each_moved_exception_is_still_importable_from_its_old_module(
    old_home: str, name: str
) -> None:
    moved = getattr(importlib.import_module(old_home), name)
    assert moved.__module__.endswith(".errors") and issubclass(moved, CorralError)


def test_user_errors_keep_the_builtin_parents_their_callers_catch() -> None:
    from policies.errors import PolicyError
    from runner.errors import DuplicateRun, MergeRefused, PresetError, UnknownRun, UsageError
    from sandbox.errors import EngineUnavailable, GitError, ImageError, InvalidRunId, SpecError

    for cls, builtin in [
        (PolicyError, ValueError), (UsageError, ValueError), (PresetError, ValueError),
        (MergeRefused, ValueError), (DuplicateRun, ValueError), (UnknownRun, LookupError),
        (SpecError, ValueError), (InvalidRunId, ValueError), (GitError, RuntimeError),
        (ImageError, RuntimeError), (EngineUnavailable, ConnectionError),
    ]:  # fmt: skip
        assert issubclass(cls, UserError) and issubclass(cls, builtin), cls
