"""The package layout holds: no import cycle among corral's modules, dependencies one way.

The graph is read from the source with ``ast`` (nothing is imported): every
``import`` and ``from ... import`` counts, at module level, inside functions and
under ``TYPE_CHECKING`` alike, since each of them ties the two modules together
for a reader and for mypy. ``from package import name`` is an edge to the
submodule ``package.name`` when there is one, else to the package. Importing a
submodule does not count as importing its parent package (every package would
otherwise be in a cycle with the submodules its ``__init__`` re-exports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: corral's top-level packages, innermost first: each may import only those before it.
LAYERS = ("sandbox", "policies", "runner")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of corral's packages by dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for top in LAYERS:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import statement in ``tree``."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the corral modules it imports (see the module docstring)."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for module, member in _imported(tree, name, path.name == "__init__.py"):
            target = f"{module}.{member}" if member and f"{module}.{member}" in files else module
            if target in files and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "runner" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "runner" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from runner.pkg.a import A\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from runner.pkg.b import B\n"
        "A = 1\n"
    )
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import runner.pkg.a\n")
    graph = import_graph(tmp_path)
    assert graph["runner.pkg"] == {"runner.pkg.a"}
    assert graph["runner.pkg.a"] == {"runner.pkg.b"}  # under TYPE_CHECKING
    assert graph["runner.pkg.b"] == {"runner.pkg.c"}  # in a function, relative
    assert graph["runner.pkg.c"] == {"runner.pkg.a"}
    assert cycles(graph) == [["runner.pkg.a", "runner.pkg.b", "runner.pkg.c"]]


def test_no_import_cycle_among_corral_modules() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_dependencies_point_one_way() -> None:
    """``sandbox`` <- ``policies`` <- ``runner``: no package imports one after it."""
    wrong = [
        f"{name} imports {target}"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if LAYERS.index(target.split(".")[0]) > LAYERS.index(name.split(".")[0])
    ]
    assert wrong == []
