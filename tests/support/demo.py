"""The demo project corral's tests run on, built from data.

A package whose ``add()`` subtracts, the test that catches it, a bug report and a policy with one
pytest gate. ``build_demo(root)`` lays it out as a user would have it::

    root/repo/        a git repository, one commit of ``FILES`` (``gitfixtures.make_repo``)
    root/bug.md       the bug report
    root/policy.toml  the policy

A test that needs a variant passes overrides (``files={"src/calc.py": ..., "setup.cfg": None}``,
``bug=``, ``policy=``) instead of keeping a copy. ``WITH_MUL`` is the variant with a second
function whose test passes at base, so that a candidate can break it. Tests of the sandbox that
need only the repository take ``demo_files(...)`` to ``make_repo``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.gitfixtures import make_repo

if TYPE_CHECKING:
    from runner.ops.service import RunRequest

PYTEST = "python3 -m pytest -q -p no:cacheprovider"
CALC = "def add(a, b):\n    return a - b\n"
FIXED = CALC.replace("a - b", "a + b")
TESTS = "from src.calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
BUG = "# add() subtracts\n\nadd(1, 2) returns -1.\n"
#: The demo's fix as one shell command (what an agent CLI runs in the sandbox).
FIX_COMMAND = "sed -i 's/a - b/a + b/' src/calc.py"

FILES: Mapping[str, str] = {
    "src/__init__.py": "",
    "src/calc.py": CALC,
    "tests/test_calc.py": TESTS,
    "setup.cfg": "[metadata]\nname = calc\n",
    ".gitignore": "__pycache__/\n",
}

CALC_MUL = CALC + "\n\ndef mul(a, b):\n    return a * b\n"
FIXED_MUL = CALC_MUL.replace("a - b", "a + b")
TESTS_MUL = (
    "from src.calc import add, mul\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    "\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"
)
#: Overrides for the variant with ``mul()``, which passes at base.
WITH_MUL: Mapping[str, str] = {"src/calc.py": CALC_MUL, "tests/test_calc.py": TESTS_MUL}


def policy(*tables: str, timeout: int | None = None, **budgets: int | float) -> str:
    """The demo policy's TOML: ``[budgets]`` as given (none: no table), the gate ``tests``
    running pytest (with ``timeout`` if given), then ``tables`` (more TOML, each a table)."""
    parts = []
    if budgets:
        parts.append("\n".join(["[budgets]", *(f"{k} = {v}" for k, v in budgets.items())]))
    gate = ["[[gates]]", 'name = "tests"', f"command = {json.dumps(PYTEST)}"]
    if timeout is not None:
        gate.append(f"timeout = {timeout}")
    parts.append("\n".join(gate))
    parts.extend(t.strip() for t in tables)
    return "\n\n".join(parts) + "\n"


POLICY = policy(attempts=2)


def demo_files(overrides: Mapping[str, str | bytes | None] | None = None) -> dict[str, str | bytes]:
    """``FILES`` with ``overrides`` applied: a path mapped to ``None`` is left out."""
    merged: dict[str, str | bytes | None] = {**FILES, **(overrides or {})}
    return {path: text for path, text in merged.items() if text is not None}


def build_demo(
    root: Path,
    *,
    files: Mapping[str, str | bytes | None] | None = None,
    bug: str = BUG,
    policy: str = POLICY,
) -> Path:
    """The demo project under ``root`` (see the module's docstring); returns ``root``."""
    make_repo(root / "repo", demo_files(files))
    (root / "bug.md").write_text(bug)
    (root / "policy.toml").write_text(policy)
    return root


def run_args(root: Path, *extra: str) -> list[str]:
    """``corral run`` arguments for the demo project at ``root``, then ``extra``."""
    return [
        "run", "--repo", str(root / "repo"), "--bug", str(root / "bug.md"),
        "--policy", str(root / "policy.toml"), *extra,
    ]  # fmt: skip


def run_request(root: Path, **kw: Any) -> RunRequest:
    """A ``RunRequest`` for the demo project at ``root`` (``kw``: its other fields)."""
    from runner.ops.service import RunRequest

    return RunRequest(
        repo=root / "repo", bug=root / "bug.md", policy=str(root / "policy.toml"), **kw
    )


def fix_script(fixed: str = FIXED, summary: str = "fixed", *, first: str | None = None) -> str:
    """A ``ScriptedAgent`` script of one attempt that runs the command ``first`` (if given),
    writes ``fixed`` to ``src/calc.py`` and finishes with ``summary``."""
    run = f"{{ run = {json.dumps(first)} }}, " if first is not None else ""
    write = f'{{ write = "src/calc.py", content = {json.dumps(fixed)} }}'
    return (
        "[[attempt]]\n[[attempt.window]]\n"
        f"actions = [{run}{write}, {{ finish = {json.dumps(summary)} }}]\n"
    )
