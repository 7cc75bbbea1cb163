"""The Python detector: how a committed Python project installs for development and tests.

Install: the project editable with its test extra (``pip install -e '.[test]'``); without
one, a development group listed out (PEP 735 ``[dependency-groups]``, pdm, poetry) or a
test/dev requirements file; pytest and mypy added when nothing installed names them.
Packaging layouts: setuptools (pyproject or ``setup.py``/``setup.cfg`` only, setuptools-scm),
hatch(ling), flit, poetry, pdm. Gates: pytest; an advisory mypy gate when mypy is
configured. Scope: the packages under ``src/``, else the top-level packages and modules.
Files are parsed as data (``tomllib``, ``configparser``; ``setup.py`` as text, never run).
"""

from __future__ import annotations

import configparser
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.ops.detect import REQUIREMENTS, Choice, Found, ProposedGate, Tree

#: Optional-dependency groups that install what the tests need, most specific first.
TEST_GROUPS: tuple[str, ...] = ("test", "tests", "testing", "dev", "develop", "development")
#: Top-level directories with an ``__init__.py`` that are not the project's package.
NOT_PACKAGES = frozenset(
    {"tests", "test", "testing", "docs", "doc", "examples", "example", "scripts", "benchmarks",
     "bench", "tools", "ci", "build", "dist"}
)  # fmt: skip
#: Top-level modules that are tooling, not the project's code.
NOT_MODULES = frozenset({"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "tasks.py"})


@dataclass(slots=True)
class _Python:
    """What is known of a Python project while its proposal is built."""

    tree: Tree
    pyproject: dict[str, Any] = field(default_factory=dict)
    setup_cfg: configparser.ConfigParser = field(default_factory=configparser.ConfigParser)
    notes: list[str] = field(default_factory=list)
    named: set[str] = field(default_factory=set)
    """Distributions the set-up installs by name (to tell whether pytest and mypy come with it)."""

    def table(self, *keys: str) -> Any:
        node: Any = self.pyproject
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def ini(self, name: str) -> configparser.ConfigParser:
        text = self.tree.texts.get(name)
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        if text is not None:
            try:
                parser.read_string(text, name)
            except configparser.Error as exc:
                self.notes.append(f"{name} does not parse ({exc.__class__.__name__}): not read")
        return parser


def detect_python(tree: Tree) -> Found | None:
    """A Python project: installed for development with its test extra, tested with pytest."""
    py = _Python(tree)
    if "pyproject.toml" in tree.texts:
        try:
            py.pyproject = tomllib.loads(tree.texts["pyproject.toml"])
        except tomllib.TOMLDecodeError as exc:
            py.notes.append(f"pyproject.toml is not valid TOML ({exc}): not read")
    py.setup_cfg = py.ini("setup.cfg")
    requirements = sorted(p for p in tree.paths if REQUIREMENTS.fullmatch(p))
    pytest_config = _pytest_config(py)
    tests = sorted(p for p in tree.paths if _is_python_test(p))
    installable = bool(
        py.table("project") or py.table("tool", "poetry") or py.table("build-system")
        or "setup.py" in tree.paths or py.setup_cfg.has_section("metadata")
    )  # fmt: skip
    if not (installable or requirements or pytest_config or tests):
        return None
    setup = _install(py, installable, requirements)
    writable = _packages(tree)
    gates = [_tests_gate(tree, pytest_config, tests)]
    if not tests:
        py.notes.append(
            "no Python tests found at base: pytest collects nothing and exits 5, and a gate that"
            " cannot pass at base is a configuration error; commit tests before the first run"
        )
    mypy = _mypy_gate(py, writable)
    if mypy is not None:
        gates.append(mypy)
    tools = (("pytest", "tests"), ("mypy", "typecheck"))
    missing = [(tool, gate) for tool, gate in tools if _needs(py, tool, gates, gate)]
    if missing:
        installed = "what set-up installs" if setup else "the repository"
        for_gates = ", ".join(f"{tool} (the {gate} gate)" for tool, gate in missing)
        command = f"python -m pip install {' '.join(tool for tool, _ in missing)}"
        setup.append(Choice(command, f"not named by {installed}: {for_gates}"))
    return Found("python", tuple(setup), tuple(gates), tuple(writable), notes=tuple(py.notes))


def _needs(py: _Python, tool: str, gates: list[ProposedGate], gate: str) -> bool:
    return any(g.name == gate for g in gates) and tool not in py.named


def _install(py: _Python, installable: bool, requirements: list[str]) -> list[Choice]:
    """The set-up commands: the project for development with its test extra, else requirements."""
    steps: list[Choice] = []
    scm = _scm(py)
    backend = _backend(py)
    py.named |= _names(py.table("project", "dependencies") or ())
    extras = _extras(py)
    extra = next((g for g in TEST_GROUPS if g in extras), None)
    if installable and extra is not None:
        py.named |= _expand(py, extras, extra)
        where, _ = extras[extra]
        steps.append(
            Choice(
                f"python -m pip install -e {shlex.quote(f'.[{extra}]')}",
                f"{where} names the extra {extra!r}; {backend}{scm}",
            )
        )
        return steps
    if installable:
        steps.append(Choice("python -m pip install -e .", f"{backend}{scm}"))
    elif "requirements.txt" in py.tree.paths:
        py.named |= _requirement_file_names(py.tree, "requirements.txt")
        steps.append(
            Choice(
                "python -m pip install -r requirements.txt",
                "requirements.txt, and no package metadata (pyproject.toml [project], setup.py)",
            )
        )
    group = _dev_group(py)
    if group is not None:
        steps.append(group)
        return steps
    dev = _dev_requirements(requirements)
    if dev is not None:
        py.named |= _requirement_file_names(py.tree, dev)
        steps.append(Choice(f"python -m pip install -r {shlex.quote(dev)}", f"{dev}"))
    return steps


def _backend(py: _Python) -> str:
    backend = str(py.table("build-system", "build-backend") or "")
    known = {
        "setuptools": "setuptools", "hatchling": "hatchling", "flit_core": "flit",
        "poetry": "poetry-core", "pdm": "pdm-backend", "maturin": "maturin",
    }  # fmt: skip
    for module, name in known.items():
        if backend.startswith(module):
            return f"build backend {name} (pyproject.toml [build-system])"
    if backend:
        return f"build backend {backend} (pyproject.toml [build-system])"
    if "setup.py" in py.tree.paths and not py.table("project"):
        return "setup.py (setuptools; read as text, never run)"
    return "setuptools (pip's default without [build-system])"


def _scm(py: _Python) -> str:
    """The words for a version that comes from git (set-up runs on a checkout with ``.git``)."""
    requires = " ".join(str(r) for r in py.table("build-system", "requires") or ())
    from_git = (
        re.search(r"setuptools[_-]scm|hatch-vcs|hatch_vcs", requires, re.IGNORECASE)
        or py.table("tool", "setuptools_scm") is not None
        or py.table("tool", "hatch", "version", "source") == "vcs"
        or "use_scm_version" in py.tree.texts.get("setup.py", "")
    )
    return "; the version comes from git, which set-up reads" if from_git else ""


def _extras(py: _Python) -> dict[str, tuple[str, list[str]]]:
    """Extras by name: (where they are declared, their requirements as far as known)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for name, reqs in (py.table("project", "optional-dependencies") or {}).items():
        found[str(name)] = ("pyproject.toml [project.optional-dependencies]", list(reqs))
    for name, reqs in (py.table("tool", "poetry", "extras") or {}).items():
        found.setdefault(str(name), ("pyproject.toml [tool.poetry.extras]", list(reqs)))
    if py.setup_cfg.has_section("options.extras_require"):
        for name, value in py.setup_cfg.items("options.extras_require"):
            reqs = [line for line in value.splitlines() if line.strip()]
            found.setdefault(name, ("setup.cfg [options.extras_require]", reqs))
    setup_py = py.tree.texts.get("setup.py", "")
    block = re.search(r"extras_require\s*=\s*(?:dict\()?\{?(.*?)(?:\}|\)\s*,)", setup_py, re.S)
    if block:
        for name in re.findall(r"""['"]?([A-Za-z][\w.-]*)['"]?\s*[:=]\s*\[""", block.group(1)):
            known = ["pytest"] if "pytest" in setup_py else []
            found.setdefault(name, ("setup.py extras_require (read as text)", known))
    return found


def _expand(py: _Python, extras: Mapping[str, tuple[str, list[str]]], extra: str) -> set[str]:
    """The distribution names an extra installs, through ``project[other]`` self-references."""
    own = _normalize(str(py.table("project", "name") or py.table("tool", "poetry", "name") or ""))
    names: set[str] = set()
    todo, seen = [extra], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in extras:
            continue
        seen.add(current)
        for req in extras[current][1]:
            name = _normalize(_requirement_name(str(req)))
            if name == own and (m := re.search(r"\[([^\]]*)\]", str(req))):
                todo += [e.strip() for e in m.group(1).split(",")]
            elif name:
                names.add(name)
    return names


def _dev_group(py: _Python) -> Choice | None:
    """Development dependencies pip cannot select by group: listed out as requirements."""
    groups: list[tuple[str, str, list[str]]] = []  # (group, where, requirements)
    for name, reqs in (py.table("dependency-groups") or {}).items():
        groups.append((name, "pyproject.toml [dependency-groups]", [r for r in reqs if isinstance(r, str)]))  # fmt: skip
    for name, reqs in (py.table("tool", "pdm", "dev-dependencies") or {}).items():
        groups.append((name, "pyproject.toml [tool.pdm.dev-dependencies]", list(reqs)))
    poetry = py.table("tool", "poetry") or {}
    for name, group in (poetry.get("group") or {}).items():
        deps = group.get("dependencies") or {} if isinstance(group, dict) else {}
        groups.append((name, f"pyproject.toml [tool.poetry.group.{name}]", _poetry(deps)))
    if poetry.get("dev-dependencies"):
        deps = poetry["dev-dependencies"]
        groups.append(("dev", "pyproject.toml [tool.poetry.dev-dependencies]", _poetry(deps)))
    for wanted in TEST_GROUPS:
        for name, where, reqs in groups:
            if name == wanted and reqs:
                py.named |= _names(reqs)
                return Choice(
                    f"python -m pip install {' '.join(shlex.quote(r) for r in reqs)}",
                    f"{where} group {name!r} (pip does not read groups: listed out)",
                )
    return None


def _poetry(deps: Mapping[str, Any]) -> list[str]:
    """Names of poetry dependencies pip can fetch from an index (versions left to pip)."""
    return [
        str(name) for name, spec in deps.items()
        if name != "python" and not (isinstance(spec, dict) and {"path", "git", "url"} & set(spec))
    ]  # fmt: skip


def _dev_requirements(requirements: list[str]) -> str | None:
    for word in ("test", "dev"):
        for path in requirements:
            if word in path.rsplit("/", 1)[-1] or path.startswith(f"requirements/{word}"):
                return path
    return None


def _requirement_file_names(tree: Tree, path: str, depth: int = 0) -> set[str]:
    names: set[str] = set()
    for raw in tree.texts.get(path, "").splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        include = re.match(r"(?:-r|--requirement)[\s=]*(\S+)", line)
        if include and depth < 3:
            base = path.rpartition("/")[0]
            names |= _requirement_file_names(tree, f"{base}/{include.group(1)}".lstrip("/"), depth + 1)  # fmt: skip
        elif line and not line.startswith("-"):
            names.add(_normalize(_requirement_name(line)))
    return names - {""}


def _names(reqs: Iterable[Any]) -> set[str]:
    return {_normalize(_requirement_name(str(r))) for r in reqs} - {""}


def _requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else ""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pytest_config(py: _Python) -> str | None:
    if py.table("tool", "pytest", "ini_options") is not None:
        return "pyproject.toml [tool.pytest.ini_options]"
    if py.table("tool", "pytest") is not None:
        return "pyproject.toml [tool.pytest]"
    if "pytest.ini" in py.tree.paths:
        return "pytest.ini"
    if py.setup_cfg.has_section("tool:pytest"):
        return "setup.cfg [tool:pytest]"
    if py.ini("tox.ini").has_section("pytest"):
        return "tox.ini [pytest]"
    return None


def _is_python_test(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    in_tests = path.split("/", 1)[0] in ("tests", "test") or "/tests/" in f"/{path}"
    return name.endswith(".py") and (
        name.startswith("test_")
        or name.endswith("_test.py")
        or (in_tests and name != "__init__.py")
    )


def _tests_gate(tree: Tree, config: str | None, tests: list[str]) -> ProposedGate:
    dirs = [f"{d}/" for d in ("tests", "test") if tree.has_dir(d)]
    where = f"tests in {' and '.join(dirs)}" if dirs else ""
    if tests and not dirs:
        where = f"test files such as {tests[0]}"
    found = [part for part in (f"pytest configured in {config}" if config else "", where) if part]
    why = "; ".join(found) or "a Python project without pytest configuration or tests"
    return ProposedGate("tests", "python -m pytest -q", True, why)


def _mypy_gate(py: _Python, writable: list[Choice]) -> ProposedGate | None:
    """An advisory type check when the project configures mypy."""
    where, files = None, False
    if py.table("tool", "mypy") is not None:
        where = "pyproject.toml [tool.mypy]"
        files = any(py.table("tool", "mypy", k) for k in ("files", "packages", "modules"))
    else:
        for name, section in (("mypy.ini", "mypy"), (".mypy.ini", "mypy"), ("setup.cfg", "mypy")):
            parser = py.setup_cfg if name == "setup.cfg" else py.ini(name)
            if parser.has_section(section):
                where = f"{name} [{section}]"
                files = parser.has_option(section, "files")
                break
    if where is None:
        return None
    targets = [c.value.removesuffix("/**") for c in writable]
    command = "python -m mypy" if files or not targets else f"python -m mypy {' '.join(targets)}"
    return ProposedGate("typecheck", command, False, f"mypy configured in {where}; advisory")


def _packages(tree: Tree) -> list[Choice]:
    """The project's own code: the packages under ``src/``, else top-level packages and modules."""
    src = sorted(
        {
            p.split("/")[1]
            for p in tree.paths
            if p.startswith("src/") and p.endswith((".py", ".pyi"))
        }
    )
    if src:
        why = "src layout: the Python packages under src/"
        return [Choice(f"src/{n}" if n.endswith(".py") else f"src/{n}/**", why) for n in src]
    found: list[Choice] = []
    for path in sorted(tree.paths):
        top, _, rest = path.partition("/")
        if rest == "__init__.py" and top not in NOT_PACKAGES and not top.startswith("."):
            found.append(Choice(f"{top}/**", "a package (with __init__.py) at the top level"))
        elif (
            not rest and top.endswith(".py") and top not in NOT_MODULES and not _is_python_test(top)
        ):
            found.append(Choice(top, "a module at the top level"))
    return found
