"""What differs between two trees, path by path, from their listings (``path -> (mode, sha)``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ChangeStatus = Literal["added", "modified", "deleted", "type_changed", "mode_changed"]


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs between two trees; modes are git's (``100644``, ``120000``, ...)."""

    path: str
    status: ChangeStatus
    old_mode: str | None
    new_mode: str | None


def compare(old: Mapping[str, tuple[str, str]], new: Mapping[str, tuple[str, str]]) -> list[Change]:
    """The changes from listing ``old`` to ``new`` (``path -> (mode, sha)``), sorted by path."""
    out: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        if a is None:
            out.append(Change(path, "added", None, b[0] if b else None))
        elif b is None:
            out.append(Change(path, "deleted", a[0], None))
        elif a[0][:2] != b[0][:2]:
            out.append(Change(path, "type_changed", a[0], b[0]))
        elif a[1] != b[1]:
            out.append(Change(path, "modified", a[0], b[0]))
        else:
            out.append(Change(path, "mode_changed", a[0], b[0]))
    return out
