"""Tamper findings: constructs in a candidate's Python source that could talk a gate round.

A gate runs the candidate's code, so the candidate can reach into the test runner that judges
it. This module reads the source of the files a candidate added or changed with the standard
library's ``ast`` (nothing is imported or run) and flags:

- **test-runner hooks and plugins**: a function named ``pytest_*`` outside a ``conftest.py``
  (a hook implementation), ``pytest_plugins``, ``hookimpl``/``hookspec``, anything reaching a
  ``pluginmanager``, and imports of ``_pytest`` or ``pluggy``;
- **patches of the test runner**: assigning to, deleting or ``setattr``-ing an attribute of
  ``pytest``, ``_pytest``, ``pluggy`` or ``unittest`` (or of a name imported from them), a
  ``sys.modules`` entry of one of them, and a module or package at the top of the tree or of
  ``src/`` named like one of them (imported instead of it);
- **ending the process at import**: ``os._exit``, ``sys.exit``, ``exit()``/``quit()``,
  ``raise SystemExit`` and ``atexit.register`` reached by code that runs when the module is
  imported: module and class bodies, decorators and default values, and the bodies of the
  module's functions called from there (not under ``if __name__ == "__main__":``);
- those names spelt as strings (``getattr(os, "_exit")``, ``__import__("atexit")``), and a
  file the scan cannot parse or that is too big to scan (it is not vouched for).

Aliases are followed (``import os as o``, ``from unittest import TestCase``). A scan is
evidence, not proof: code built at run time (``exec``, names computed from pieces) escapes
it; README.md, "What a gate can and cannot prove", says what else the runner checks.
A changed file is judged on what the candidate added: what its base version has is left out.
Pure: source bytes in, findings out; ``scan`` never raises.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

FindingKind = Literal["runner_hook", "runner_patch", "exit_at_import", "not_scanned"]

#: Largest source file scanned; a bigger one is a ``not_scanned`` finding.
MAX_SOURCE_BYTES = 4 * 1024 * 1024
#: Most findings kept per file (the rest are counted in one more).
MAX_PER_FILE = 20

#: Modules of the test runners: patching them, or shadowing them, changes how a gate judges.
RUNNER_MODULES = frozenset({"pytest", "_pytest", "pluggy", "unittest", "py"})
#: Dotted names whose use at import ends the process or outlives the test session.
EXIT_NAMES = {
    "os._exit": "os._exit ends the process with an exit code of its choosing",
    "posix._exit": "posix._exit ends the process with an exit code of its choosing",
    "sys.exit": "sys.exit ends the process",
    "atexit.register": "atexit.register runs code after the test session (it can set the exit code)",
}
#: Strings that name one of the above (``getattr(os, "_exit")``, ``__import__("atexit")``).
SENSITIVE_STRINGS = frozenset(
    {"_exit", "atexit", "_pytest", "pluggy", "pluginmanager", "pytest_plugins", "hookimpl",
     "hookwrapper", "hookspec"}
)  # fmt: skip
_HOOK_STRING = re.compile(r"pytest_[a-z0-9_]+|(_pytest|pluggy)(\.\w+)+")
#: Attribute names of pytest's and pluggy's plugin machinery.
HOOK_ATTRIBUTES = frozenset(
    {"pluginmanager", "hookimpl", "hookspec", "HookimplMarker", "HookspecMarker", "PluginManager"}
)
#: Calls whose first argument is the object they change.
_SETTERS = frozenset({"setattr", "delattr", "object", "setitem", "delitem"})
#: A hook every test module may define (pytest reads it from test modules, not as a plugin).
_TEST_MODULE_HOOKS = frozenset({"pytest_generate_tests"})


@dataclass(frozen=True, slots=True)
class Finding:
    """Something in a candidate's source that could change how a gate judges it."""

    path: str
    line: int
    kind: FindingKind
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def is_python(path: str) -> bool:
    """Whether ``path`` is Python source the scan reads."""
    return path.lower().endswith(".py")


def scan(files: Mapping[str, bytes], before: Mapping[str, bytes] | None = None) -> list[Finding]:
    """The candidate's findings in ``files`` (tree-relative path -> its bytes), by path and line.

    Names are checked for every path; the source of Python files (``is_python``) is read.
    ``before``: the bytes at base of the paths that were there. A finding the base version
    has too (the same words, on any line) is not the candidate's and is left out, so that
    a fix to a pytest plugin's own module is judged on what it adds; a file that cannot be
    scanned always counts. Never raises.
    """
    out: list[Finding] = []
    for path in sorted(files):
        found = _found(path, files[path])
        if before is not None and path in before:
            found = _added(found, _found(path, before[path]))
        out += _capped(path, found)
    return out


def scan_source(path: str, source: bytes) -> list[Finding]:
    """Findings in one Python file's ``source`` (``path`` names it). Never raises."""
    return _capped(path, _source(path, source))


def _found(path: str, data: bytes) -> list[Finding]:
    return [*_shadowing(path), *(_source(path, data) if is_python(path) else ())]


def _added(found: list[Finding], base: list[Finding]) -> list[Finding]:
    """``found`` less what ``base`` has too (by kind and words; unscannable files stay)."""
    left: Counter[tuple[str, str]] = Counter(
        (f.kind, f.what) for f in base if f.kind != "not_scanned"
    )
    out = []
    for f in found:
        if left[(f.kind, f.what)] > 0:
            left[(f.kind, f.what)] -= 1
        else:
            out.append(f)
    return out


def _capped(path: str, found: list[Finding]) -> list[Finding]:
    if len(found) <= MAX_PER_FILE:
        return found
    cut = found[MAX_PER_FILE]
    return [
        *found[:MAX_PER_FILE],
        Finding(path, cut.line, cut.kind, f"{len(found) - MAX_PER_FILE} more"),
    ]


def _source(path: str, source: bytes) -> list[Finding]:
    if len(source) > MAX_SOURCE_BYTES:
        return [Finding(path, 1, "not_scanned", f"not scanned: {len(source)} bytes, over the"
                        f" scan's {MAX_SOURCE_BYTES}; read it before you trust a gate")]  # fmt: skip
    try:
        tree = ast.parse(source, filename=path)
        found = sorted(set(_Scan(path, tree).findings()), key=lambda f: (f.line, f.what))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None) or 1
        what = f"not scanned: Python cannot parse it ({type(exc).__name__}); read it before you trust a gate"
        return [Finding(path, line, "not_scanned", what)]
    return found


def _shadowing(path: str) -> Iterator[Finding]:
    """A module or package, at the top of the tree or of ``src/`` (where ``python -m`` and
    ``PYTHONPATH=src`` look first), named like a test runner's module: it is imported instead."""
    parts = path.split("/")
    for rel in (parts, parts[1:]) if parts[0] == "src" else (parts,):
        if not rel:
            continue
        name = rel[0] if len(rel) > 1 else (rel[0][:-3] if is_python(rel[0]) else "")
        if name in RUNNER_MODULES:
            yield Finding(path, 1, "runner_patch", f"shadows the test runner's module {name}")
            return


class _Scan:
    """One module's findings: aliases first, then every node, then the code run at import."""

    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path, self.tree = path, tree
        self.name = path.rsplit("/", 1)[-1]
        self.aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def findings(self) -> Iterator[Finding]:
        for node in ast.walk(self.tree):
            yield from self._anywhere(node)
        for node in self._at_import():
            yield from self._exits(node)

    def _at(self, node: ast.AST, kind: FindingKind, what: str) -> Finding:
        return Finding(self.path, getattr(node, "lineno", 1), kind, what)

    def dotted(self, node: ast.AST) -> str | None:
        """``node``'s dotted name with import aliases resolved (``o._exit`` -> ``os._exit``)."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    def _runner(self, node: ast.AST) -> str | None:
        """The dotted name of ``node`` when it is in a test runner's module."""
        name = self.dotted(node)
        if name is not None and name.split(".")[0] in RUNNER_MODULES:
            return name
        if isinstance(node, ast.Subscript) and self.dotted(node.value) == "sys.modules":
            key = node.slice
            if isinstance(key, ast.Constant) and str(key.value).split(".")[0] in RUNNER_MODULES:
                return f"sys.modules[{key.value!r}]"
        return None

    def _anywhere(self, node: ast.AST) -> Iterator[Finding]:
        """Hooks, plugins and runner patches, wherever they are in the file."""
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and self._is_hook(node.name):
            yield self._at(
                node, "runner_hook", f"defines pytest hook {node.name} outside a conftest.py"
            )
        elif (
            isinstance(node, ast.Name | ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and ((node.id if isinstance(node, ast.Name) else node.attr) == "pytest_plugins")
        ):
            yield self._at(node, "runner_hook", "sets pytest_plugins (loads pytest plugins)")
        elif isinstance(node, ast.Attribute) and node.attr in HOOK_ATTRIBUTES:
            yield self._at(node, "runner_hook", f"reaches pytest's plugin machinery ({node.attr})")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            yield from self._imports(node)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (node.value in SENSITIVE_STRINGS or _HOOK_STRING.fullmatch(node.value))
        ):
            yield self._at(node, "runner_hook", f"names {node.value!r} in a string")
        yield from self._patches(node)

    def _is_hook(self, function: str) -> bool:
        """Whether a function of this name here is a pytest hook (conftest.py may have them;
        a test module may have ``pytest_generate_tests``)."""
        if not function.startswith("pytest_") or self.name == "conftest.py":
            return False
        return not (function in _TEST_MODULE_HOOKS and self.name.startswith("test_"))

    def _imports(self, node: ast.Import | ast.ImportFrom) -> Iterator[Finding]:
        """Imports of pytest's internals, of its hook markers, or of a way out of the process."""
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        for m in modules:
            if m.split(".")[0] in ("_pytest", "pluggy"):
                yield self._at(node, "runner_hook", f"imports {m} (pytest's internals)")
                return
            if m.startswith("pytest.") and m.split(".")[1] in HOOK_ATTRIBUTES:
                yield self._at(node, "runner_hook", f"imports {m}")
                return
            if m in EXIT_NAMES and m != "sys.exit":  # sys.exit: found where it is used at import
                yield self._at(node, "exit_at_import", f"imports {m}")
                return

    def _patches(self, node: ast.AST) -> Iterator[Finding]:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        for t in targets:
            for part in ast.walk(t):  # tuple targets: (pytest.a, x) = ...
                if isinstance(part, ast.Attribute | ast.Subscript) and (name := self._runner(part)):
                    yield self._at(node, "runner_patch", f"patches the test runner ({name})")
                    break
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            verb = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if verb in _SETTERS and (name := self._runner(node.args[0])):
                yield self._at(node, "runner_patch", f"patches the test runner ({verb} on {name})")

    def _at_import(self) -> Iterator[ast.AST]:
        """Every node of the code that runs when the module is imported (see the docstring)."""
        functions = {
            s.name: s
            for s in self.tree.body
            if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        pending: list[ast.AST] = list(self.tree.body)
        entered: set[str] = set()
        while pending:
            node = pending.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                a = node.args
                pending += [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
                if not isinstance(node, ast.Lambda):
                    pending += node.decorator_list
                else:
                    pending.append(node.body)  # a lambda made at import is there to be called
                continue
            if isinstance(node, ast.If) and _is_main_guard(node.test):
                pending += node.orelse
                continue
            yield node
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called = functions.get(node.func.id)
                if called is not None and called.name not in entered:
                    entered.add(called.name)
                    pending += called.body
            pending += ast.iter_child_nodes(node)

    def _exits(self, node: ast.AST) -> Iterator[Finding]:
        """Ways out of the process, in code that runs at import."""
        if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            name = self.dotted(node)
            if name in EXIT_NAMES:
                yield self._at(node, "exit_at_import", f"{name} at import: {EXIT_NAMES[name]}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("exit", "quit") and node.func.id not in self.aliases:
                yield self._at(
                    node, "exit_at_import", f"{node.func.id}() at import ends the process"
                )
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if self.dotted(exc) in ("SystemExit", "builtins.SystemExit"):
                yield self._at(node, "exit_at_import", "raises SystemExit at import")


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round): the block does not run at import."""
    if not (
        isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
    ):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )
