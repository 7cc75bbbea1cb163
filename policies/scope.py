"""File scope: which class each path belongs to, and what a change set violates.

Globs are gitignore-style, matched with ``pathspec``'s ``GitIgnoreSpec`` (the
same rules as git itself: ``dir/`` matches everything below, ``**`` any depth,
a pattern without ``/`` matches at any level). Order of precedence, first hit
wins: the progress file, protected (built-in + packaging metadata + the
default-protected files ``scope.unprotect`` does not name + policy + tests
unless allowed), ignored artifacts, writable; anything else is read-only for
the agent. Protected paths are matched without regard to case: a checkout on a
case-insensitive file system, or Python finding packaging metadata, does not
tell ``ConfTest.py`` from ``conftest.py``.

The scope is enforced three ways (see ``runner``): protected paths that exist
in the base tree are bind-mounted read-only into the sandbox
(``readonly_paths``); changes are classified after every agent step and
out-of-scope ones are reverted at once; the harvested patch is checked with
``check_patch`` before any gate runs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pathspec

from policies.hidden import HIDDEN_CHARACTERS

if TYPE_CHECKING:  # not at import: the result of a run read back needs no pydantic
    from policies.policy import Policy

ScopeClass = Literal["writable", "protected", "read_only", "artifact", "progress"]
Severity = Literal["block", "warn"]

_HIDDEN = re.compile(f"[{HIDDEN_CHARACTERS}]")

MODE_LINK = "120000"
MODE_GITLINK = "160000"
#: Most paths bind-mounted read-only into one sandbox (more are enforced by the other two layers).
MAX_RO_MOUNTS = 128

#: Packaging metadata, always protected and matched in any case: what Python reads to load code
#: it was not asked to (a ``[pytest11]`` entry point is a plugin every pytest session loads from
#: a ``*.dist-info`` on ``sys.path``; a ``.pth`` file runs code at start-up).
PACKAGING_METADATA: tuple[str, ...] = ("*.dist-info/", "*.egg-info/", "entry_points.txt", "*.pth")
_PACKAGING = pathspec.GitIgnoreSpec.from_lines(PACKAGING_METADATA)

#: How ``Scope.dead_writable`` names the classes that keep a file from the agent.
_KEPT: dict[str, str] = {
    "protected": "protected", "artifact": "build artifacts", "progress": "the progress file",
    "read_only": "taken out by a `!` pattern",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Violation:
    """A change the policy does not allow (``block``) or a reviewer should see (``warn``)."""

    kind: str
    path: str
    detail: str
    severity: Severity = "block"

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} ({self.detail})"


class Scope:
    """A compiled file scope for one policy."""

    def __init__(self, policy: Policy) -> None:
        from policies.policy import BUILTIN_PROTECTED, DEFAULT_PROTECTED

        scope = policy.scope
        defaults = [p for p in DEFAULT_PROTECTED if p not in scope.unprotect]
        protected = [*BUILTIN_PROTECTED, *defaults, *scope.protected]
        if not scope.allow_tests:
            protected += list(scope.tests)
        self.progress_file = policy.progress.file.strip("/")
        # in any case: a checkout on a case-insensitive file system (macOS, Windows) makes
        # src/ConfTest.py the conftest.py that pytest loads
        self._protected = pathspec.GitIgnoreSpec.from_lines(p.lower() for p in protected)
        self._artifacts = pathspec.GitIgnoreSpec.from_lines(scope.ignored_artifacts)
        self._writable = pathspec.GitIgnoreSpec.from_lines(scope.writable)
        self.allow_symlinks = scope.allow_symlinks
        self.allow_mode_changes = scope.allow_mode_changes
        self._policy = scope
        self._cache: dict[str, ScopeClass] = {}

    def summary(self) -> str:
        """One paragraph for prompts and reports: what the agent may and may not change."""
        extra = f" and {', '.join(self._policy.protected)}" if self._policy.protected else ""
        tests = "tests may be changed" if self._policy.allow_tests else "tests are protected"
        return (
            f"Writable: {', '.join(self._policy.writable) or 'nothing'}. Protected (read-only): "
            f"repository metadata, CI, editor/agent config, test and tool config, packaging"
            f" metadata ({', '.join(p.rstrip('/') for p in PACKAGING_METADATA)}), build,"
            f" container and environment files (Makefile, setup.py, package.json, Dockerfile,"
            f" .env ...){extra}; {tests}. "
            f"Your progress file: {self.progress_file}."
        )

    def classify(self, path: str) -> ScopeClass:
        """The class of tree-relative ``path`` (a file; append ``/`` for a directory)."""
        cls = self._cache.get(path)
        if cls is None:
            cls = self._cache[path] = self._classify(path)
        return cls

    def _classify(self, path: str) -> ScopeClass:
        if path == self.progress_file:
            return "progress"
        if self._protected.match_file(path.lower()) or _PACKAGING.match_file(path.lower()):
            return "protected"
        if self._artifacts.match_file(path):
            return "artifact"
        if self._writable.match_file(path):
            return "writable"
        return "read_only"

    def may_write(self, path: str) -> bool:
        """Whether the agent may create, change or delete ``path``."""
        return self.classify(path) in ("writable", "progress")

    def dead_writable(self, base_paths: Iterable[str], where: str = "the base tree") -> list[str]:
        """One line per ``scope.writable`` glob through which the agent can change no file of
        ``base_paths`` (the files of the tree ``where`` names): it matches none, or another
        rule keeps every file it matches (protected, the tests, build artifacts, a later ``!``
        pattern). Such a glob fails every attempt that needs it; ``corral run`` and ``corral
        policy check`` say so before anything starts."""
        paths = list(base_paths)
        lines = []
        for glob in self._policy.writable:
            if not glob.strip() or glob.lstrip().startswith(("!", "#")):
                continue  # a negation only takes away; a comment is none
            matched = list(pathspec.GitIgnoreSpec.from_lines([glob]).match_files(paths))
            classes = Counter(self.classify(p) for p in matched)
            if not matched:
                lines.append(f'scope.writable "{glob}" matches no file of {where}')
            elif not classes["writable"]:
                kept = ", ".join(f"{_KEPT[c]}: {n}" for c, n in sorted(classes.items()))
                lines.append(
                    f'scope.writable "{glob}" matches only files the policy keeps from the'
                    f" agent ({kept})"
                )
        return lines

    def readonly_paths(self, base_paths: Iterable[str]) -> list[str]:
        """Paths to bind-mount read-only: whole directories where all of them is protected, else files.

        ``base_paths`` are the files of the base tree. A directory is mounted
        whole when every file in it, and a new file in it, would be protected
        (so new files cannot be planted there either). At most
        ``MAX_RO_MOUNTS`` paths; the rest are left to the other two layers.
        """
        files = sorted(p for p in base_paths if not self.may_write(p))
        protected_files = [p for p in files if self.classify(p) == "protected"]
        dirs: dict[str, bool] = {}
        for path in base_paths:
            parts = path.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                dirs[d] = dirs.get(d, True) and self.classify(path) == "protected"
        whole = sorted(
            d for d, all_protected in dirs.items()
            if all_protected and self.classify(f"{d}/corral-probe.py") == "protected"
            and self.classify(f"{d}/corral-probe") == "protected"
        )  # fmt: skip
        top = [d for d in whole if not any(d.startswith(o + "/") for o in whole if o != d)]
        singles = [p for p in protected_files if not any(p.startswith(d + "/") for d in top)]
        return (top + singles)[:MAX_RO_MOUNTS]

    def check_changes(
        self, changes: Iterable[tuple[str, str | None, str | None]]
    ) -> list[Violation]:
        """Violations in ``(path, old_mode, new_mode)`` changes: scope, symlinks, gitlinks, modes."""
        out: list[Violation] = []
        for path, old_mode, new_mode in changes:
            cls = self.classify(path)
            if cls == "protected":
                out.append(Violation("protected_path", path, "protected by policy"))
            elif cls == "read_only":
                out.append(Violation("out_of_scope", path, "not in scope.writable"))
            elif cls == "artifact":
                out.append(Violation("artifact", path, "build/cache output", "warn"))
            if MODE_GITLINK in (old_mode, new_mode):
                out.append(Violation("gitlink", path, "submodule pointer change"))
            elif new_mode == MODE_LINK and old_mode != MODE_LINK and not self.allow_symlinks:
                out.append(Violation("symlink", path, "new symlink (scope.allow_symlinks is off)"))
            elif (
                old_mode is not None
                and new_mode is not None
                and {old_mode, new_mode} == {"100644", "100755"}
                and not self.allow_mode_changes
            ):
                out.append(Violation("mode_change", path, f"{old_mode} -> {new_mode}"))
        return out


def hidden_characters(patch: str) -> list[Violation]:
    """Control and bidi characters on added lines of a unified diff (path from the ``+++`` line)."""
    out: list[Violation] = []
    path = "?"
    for line in patch.split("\n"):  # not splitlines: it splits at U+000B/C, U+001C-E, U+0085
        if line.startswith("+++ "):
            path = line[6:] if line.startswith("+++ b/") else line[4:]
            continue
        if line.startswith("+") and (m := _HIDDEN.search(line[1:].replace("\t", " "))):
            out.append(
                Violation("hidden_character", path, f"U+{ord(m.group()):04X} in an added line")
            )
    return out


def check_patch(
    scope: Scope, changes: Iterable[tuple[str, str | None, str | None]], patch: str
) -> list[Violation]:
    """Everything the final patch violates: scope, links, modes, hidden characters."""
    return scope.check_changes(changes) + hidden_characters(patch)
