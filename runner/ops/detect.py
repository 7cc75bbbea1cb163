"""What kind of project a committed tree is, and what a policy for it would set up and check.

Each detector takes a ``Tree`` (the paths of one commit and the text of the few files it
looks into) and returns what it ``Found``: set-up commands, gates and writable paths, each
with the reason in the repository that led to it, or None when the tree is not its kind.
Nothing runs repository code or touches the checkout: files are parsed as data.

This module holds the shared types and the small detectors: Node (``package.json`` with
``json``) and make (a ``test`` target, by a regular expression). The Python detector is
``runner.ops.detect_python``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Files a detector reads, when the commit has them (requirements files are found by pattern).
READ: tuple[str, ...] = (
    "pyproject.toml", "setup.cfg", "setup.py", "pytest.ini", "tox.ini", "mypy.ini", ".mypy.ini",
    "package.json", "Makefile", "makefile", "GNUmakefile",
)  # fmt: skip
#: Test files of JavaScript projects, protected like the default test globs.
NODE_TESTS: tuple[str, ...] = ("**/__tests__/**", "**/*.test.*", "**/*.spec.*")
#: Requirements files: ``*requirements*.txt`` at the top, anything in ``requirements/``.
REQUIREMENTS = re.compile(r"(?:[^/]*requirements[^/]*|requirements/[^/]+)\.txt")


@dataclass(frozen=True, slots=True)
class Tree:
    """One commit as the detectors see it: every file's path, and the text of the files read."""

    paths: frozenset[str]
    texts: Mapping[str, str]

    def has_dir(self, name: str) -> bool:
        """Whether any file lies under ``name/``."""
        return any(p.startswith(f"{name}/") for p in self.paths)


@dataclass(frozen=True, slots=True)
class Choice:
    """One proposed value, and what in the repository led to it (the comment above it)."""

    value: str
    why: str


@dataclass(frozen=True, slots=True)
class ProposedGate:
    """A gate to propose; ``why`` becomes its comment."""

    name: str
    command: str
    required: bool
    why: str


@dataclass(frozen=True, slots=True)
class Found:
    """What one detector proposes for the tree."""

    kind: str
    setup: tuple[Choice, ...] = ()
    gates: tuple[ProposedGate, ...] = ()
    writable: tuple[Choice, ...] = ()
    tests: tuple[str, ...] = ()
    """Test globs to protect on top of the policy's defaults."""
    notes: tuple[str, ...] = ()
    packages: tuple[Choice, ...] = ()
    """Debian packages the image needs (``[sandbox] packages``)."""


def files_to_read(paths: Iterable[str]) -> list[str]:
    """The paths of a commit whose text the detectors need."""
    return [p for p in paths if p in READ or REQUIREMENTS.fullmatch(p)]


# -- Node and make ---------------------------------------------------------------------------


def detect_node(tree: Tree) -> Found | None:
    """A Node project: ``npm ci`` (or ``npm install`` without a lockfile), then ``npm test``."""
    if "package.json" not in tree.texts:
        return None
    notes: list[str] = []
    packages = (
        Choice("nodejs", "Node.js runs the project and its tests"),
        Choice("npm", "npm installs the dependencies and runs `npm test`"),
    )
    try:
        package = json.loads(tree.texts["package.json"])
    except json.JSONDecodeError as exc:
        why = f"package.json is not valid JSON ({exc}): not read"
        return Found("node", notes=(why,), packages=packages)
    lock = next((n for n in ("package-lock.json", "npm-shrinkwrap.json") if n in tree.paths), None)
    if lock is not None:
        setup = Choice("npm ci", f"package.json with {lock}: installs exactly the locked versions")
    else:
        setup = Choice("npm install", "package.json without package-lock.json")
        notes += [
            f"{n} is not read by npm" for n in ("yarn.lock", "pnpm-lock.yaml") if n in tree.paths
        ]
    scripts = package.get("scripts") if isinstance(package, dict) else None
    test = scripts.get("test") if isinstance(scripts, dict) else None
    gates: tuple[ProposedGate, ...] = ()
    if isinstance(test, str) and "no test specified" not in test:
        gates = (ProposedGate("tests", "npm test", True, f"package.json scripts.test: {test}"),)
    else:
        notes.append("package.json has no test script: no npm gate proposed")
    writable = tuple(
        Choice(f"{d}/**", "the sources of a Node project")
        for d in ("src", "lib")
        if tree.has_dir(d)
    )
    return Found("node", (setup,), gates, writable, NODE_TESTS, tuple(notes), packages)


def detect_make(tree: Tree) -> Found | None:
    """A ``Makefile`` with a ``test`` target: ``make test`` as the gate."""
    for name in ("GNUmakefile", "makefile", "Makefile"):  # make's own order of preference
        text = tree.texts.get(name)
        if text is not None and re.search(r"^(?:[^\s:#=]+[ \t]+)*test(?:[ \t]+[^\s:#=]+)*[ \t]*::?(?!=)", text, re.M):  # fmt: skip
            gate = ProposedGate("tests", "make test", True, f"{name} has a test target")
            writable = (Choice("src/**", "sources under src/"),) if tree.has_dir("src") else ()
            make = (Choice("make", "the gate runs `make test`"),)
            return Found("make", gates=(gate,), writable=writable, packages=make)
    return None
