"""Loading and merging policies: preset < policy file < the repository's config < CLI flags.

Layers are TOML tables merged key by key; a later layer replaces a value,
except where replacing would quietly weaken a policy: ``commands.deny``,
``scope.protected`` and ``targets.must_pass`` accumulate across layers, and ``gates`` merge by name (a
later gate with the same name replaces the earlier one, new names are
appended). A layer may name the preset it builds on (``preset = "python"``).

The merged table is validated into ``Policy``; every problem becomes one
``loc: msg (source)`` line in ``PolicyError``. The values are also checked as
each layer is merged, so that a later layer setting a key again does not hide
a wrong value (a string where a number belongs) in the file of an earlier one.
TOML is read with the standard library's ``tomllib``.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.errors import PolicyError as PolicyError
from policies.policy import Policy

PRESETS: tuple[str, ...] = ("default", "strict", "python", "node", "make")
ACCUMULATING: tuple[tuple[str, str], ...] = (
    ("commands", "deny"), ("scope", "protected"), ("targets", "must_pass"),
)  # fmt: skip
REPO_FILE = ".corral.toml"


@dataclass(frozen=True, slots=True)
class Layer:
    """One source of policy settings: where it came from and its table."""

    source: str
    table: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """The merged policy, the layers it came from, and the merged table (recorded with a run)."""

    policy: Policy
    sources: tuple[str, ...]
    merged: Mapping[str, Any]
    layers: tuple[Layer, ...] = ()
    """The layers themselves, when just loaded (a run's recorded policy keeps only ``sources``)."""

    def set_by(self, *key: str) -> str | None:
        """The source of the last layer that gives ``key`` (a path of table keys, such as
        ``("scope", "writable")``), or None when none does (the value is ``Policy``'s default)."""
        for layer in reversed(self.layers):
            node: Any = layer.table
            for part in key:
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is not None:
                return layer.source
        return None


def preset_layer(name: str) -> Layer:
    """A shipped preset; ``PolicyError`` naming the presets if there is none of that name."""
    if name not in PRESETS:
        raise PolicyError([f"preset: unknown preset {name!r} (choose one of {', '.join(PRESETS)})"])
    text = resources.files("policies").joinpath(f"presets/{name}.toml").read_text()
    return Layer(f"preset:{name}", _parse(text, f"preset:{name}"))


def file_layer(path: Path) -> Layer:
    """A policy file; ``PolicyError`` if it is missing or not valid TOML."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        maybe_preset = "/" not in str(path) and not str(path).endswith(".toml")
        hint = f" or name a preset ({', '.join(PRESETS)})" if maybe_preset else ""
        raise PolicyError([f"{path}: cannot read ({exc.strerror}); check the path{hint}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8"]) from exc
    return Layer(str(path), _parse(text, str(path)))


def repo_layer(files: Mapping[str, bytes | None], source: str = "repo") -> Layer | None:
    """The repository's own policy: ``.corral.toml``, else ``[tool.corral]`` in ``pyproject.toml``.

    ``files`` maps those two names to their content at the base revision (None:
    absent), so the policy is what was committed, not what the agent wrote.
    """
    own = files.get(REPO_FILE)
    if own is not None:
        return Layer(f"{source}:{REPO_FILE}", _parse(own.decode(errors="replace"), REPO_FILE))
    pyproject = files.get("pyproject.toml")
    if pyproject is not None:
        table = _parse(pyproject.decode(errors="replace"), "pyproject.toml")
        corral = table.get("tool", {}).get("corral")
        if isinstance(corral, dict):
            return Layer(f"{source}:pyproject.toml[tool.corral]", corral)
    return None


def flags_layer(overrides: Mapping[str, Any]) -> Layer:
    """CLI overrides as dotted keys (``{"budgets.attempts": 2}``) turned into a table."""
    table: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = table
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return Layer("flags", table)


def load_policy(
    policy: str | Path | None = None,
    *,
    repo_files: Mapping[str, bytes | None] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedPolicy:
    """Merge a preset name or policy file, the repo's config and CLI overrides into a ``Policy``.

    Raises ``PolicyError`` with one ``loc: msg`` line per problem.
    """
    layers: list[Layer] = []
    if policy is None or (isinstance(policy, str) and policy in PRESETS):
        named = policy or None
    else:
        file = file_layer(Path(policy))
        layers.append(file)
        named = file.table.get("preset")
    repo = repo_layer(repo_files or {})
    if repo is not None:
        layers.append(repo)
        named = named or repo.table.get("preset")
    if overrides:
        layers.append(flags_layer(overrides))
    stack = _preset_chain(str(named or "default")) + layers
    merged: dict[str, Any] = {}
    for n, layer in enumerate(stack, 1):
        merged = merge_tables(merged, {k: v for k, v in layer.table.items() if k != "preset"})
        if n < len(stack):  # a later layer may set a key again: a wrong value fails all the same
            _check_values(merged, [layer.source for layer in stack[:n]])
    try:
        result = Policy.model_validate(merged)
    except ValidationError as exc:
        raise PolicyError(format_errors(exc, [layer.source for layer in stack])) from exc
    return LoadedPolicy(result, tuple(layer.source for layer in stack), merged, tuple(stack))


def _check_values(merged: Mapping[str, Any], sources: Sequence[str]) -> None:
    """``PolicyError`` for any value of the layers merged so far that ``Policy`` refuses: a
    wrong type or range, an unknown key. What a later layer can still complete (a check across
    tables, such as target tests needing a pytest gate) waits for the whole merge."""
    try:
        Policy.model_validate(merged)
    except ValidationError as exc:
        lines = format_errors(exc, sources, fields_only=True)
        if lines:
            raise PolicyError(lines) from exc


def _preset_chain(name: str) -> list[Layer]:
    chain: list[Layer] = []
    seen: set[str] = set()
    while name and name not in seen and len(chain) < len(PRESETS):
        seen.add(name)
        layer = preset_layer(name)
        chain.insert(0, layer)
        name = str(layer.table.get("preset", ""))
    return chain


def merge_tables(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base`` (see the module docstring for the lists that accumulate)."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if key == "gates" and isinstance(value, list):
            out[key] = _merge_gates(out.get(key, []), value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            merged = merge_tables(out[key], value)
            for section, field in ACCUMULATING:
                if key == section and field in value and isinstance(out[key].get(field), list):
                    merged[field] = _union(out[key][field], value[field])
            out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def _union(first: list[Any], second: Any) -> list[Any]:
    extra = second if isinstance(second, list) else [second]
    return first + [item for item in extra if item not in first]


def _merge_gates(base: list[Any], top: list[Any]) -> list[Any]:
    out = list(base)
    own: set[str] = set()  # a name twice in one layer is left for validation to report
    for gate in top:
        name = gate.get("name") if isinstance(gate, dict) else None
        idx = next(
            (i for i, g in enumerate(out) if isinstance(g, dict) and g.get("name") == name), None
        )
        if idx is None or name is None or name in own:
            out.append(gate)
        else:
            out[idx] = gate
        if isinstance(name, str):
            own.add(name)
    return out


def format_errors(
    exc: ValidationError, sources: Sequence[str], *, fields_only: bool = False
) -> list[str]:
    """Pydantic's errors as ``loc: msg`` lines, naming the layers that were merged.

    ``fields_only``: leave out the checks of the whole policy (those with no ``loc``).
    """
    origin = " < ".join(sources)
    lines = []
    for err in exc.errors():
        if fields_only and not err["loc"]:
            continue
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `corral policy show` lists the keys)"
        lines.append(f"{loc}: {msg} [from {origin}]")
    return lines


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{source}: not valid TOML: {exc}"]) from exc
