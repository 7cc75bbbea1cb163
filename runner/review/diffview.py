"""A candidate patch as a reviewer reads it: per file, per line, with line numbers.

``parse_diff`` reads a unified git diff (quoted paths included) into one
``FileDiff`` per file, each with the scope class its path has under the run's
policy, its added and removed counts, how many hidden characters its added
lines carry (``runner.review.text.HIDDEN``), and its lines (``DiffLine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from policies.scope import Scope
from runner.review.text import HIDDEN


@dataclass(slots=True)
class DiffLine:
    """One line of a file's diff: ``kind`` is add, del, context, hunk or meta."""

    kind: str
    text: str
    old: int | None = None
    new: int | None = None


@dataclass(slots=True)
class FileDiff:
    """One file of the patch, with the scope class its path has under the run's policy."""

    path: str
    scope: str
    status: str
    added: int = 0
    removed: int = 0
    hidden: int = 0
    lines: list[DiffLine] = field(default_factory=list)


_DIFF_GIT = re.compile(r'^diff --git (?:a/(.*) b/(.*)|"a/(.*)" "b/(.*)")$')
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_path(text: str) -> str:
    """A path as git writes it inside double quotes (C escapes, octal bytes) -> the path."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", text[i + 1 : i + 4]):
                out.append(int(text[i + 1 : i + 4], 8))
                i += 4
                continue
            if nxt in _C_ESCAPES:
                out.append(_C_ESCAPES[nxt])
                i += 2
                continue
        out += c.encode()
        i += 1
    return out.decode(errors="replace")


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_diff(patch: str, scope: Scope) -> list[FileDiff]:
    """A unified git diff, per file, with line numbers; lines split on ``\\n`` only.

    ``str.splitlines`` would also split on the very characters (form feed,
    separators) a reviewer must see escaped inside the line.
    """
    files: list[FileDiff] = []
    cur: FileDiff | None = None
    old = new = 0
    in_hunk = False
    for line in patch.split("\n"):
        m = _DIFF_GIT.match(line)
        if m:
            path = m.group(2) if m.group(2) is not None else unquote_path(m.group(4))
            cur = FileDiff(path=path, scope=scope.classify(path), status="modified")
            files.append(cur)
            cur.lines.append(DiffLine("meta", line))
            in_hunk = False
            continue
        if cur is None:
            continue
        h = _HUNK.match(line)
        if h:
            old, new, in_hunk = int(h.group(1)), int(h.group(2)), True
            cur.lines.append(DiffLine("hunk", line))
        elif not in_hunk:
            if line.startswith("new file mode"):
                cur.status = "added"
            elif line.startswith("deleted file mode"):
                cur.status = "deleted"
            elif line.startswith("rename to "):
                cur.status = "renamed"
            if line:
                cur.lines.append(DiffLine("meta", line))
        elif line.startswith("+"):
            cur.lines.append(DiffLine("add", line[1:], None, new))
            cur.added += 1
            cur.hidden += len(HIDDEN.findall(line[1:]))
            new += 1
        elif line.startswith("-"):
            cur.lines.append(DiffLine("del", line[1:], old, None))
            cur.removed += 1
            old += 1
        elif line.startswith(" "):
            cur.lines.append(DiffLine("context", line[1:], old, new))
            old, new = old + 1, new + 1
        elif line.startswith("\\"):
            cur.lines.append(DiffLine("meta", line))
    return files
