"""Run text, shown safely: what an agent wrote can hide, move or fake nothing on screen.

Text from a run (diff lines, bug titles, commands, logs) is kept as it was
recorded; each renderer escapes it for its medium with these:

- ``visible`` splits text into plain parts and the control, C1 or bidi
  characters that must be shown escaped (the table of ``policies.hidden``, plus
  carriage return, zero-width and line-separator marks), as ``<U+XXXX>``;
  ``plain`` joins them back (one-line plain output, JSON, markdown);
- ``escape_controls`` also writes newlines and tabs as ``\\n`` and ``\\t`` (one
  line of a terminal), ``shown`` cuts that to a length, and ``markup`` makes it
  safe inside rich markup (``x[/y].py`` prints as itself);
- ``number``: a budget figure for people.
"""

from __future__ import annotations

import re

from rich.markup import escape

from policies.hidden import HIDDEN_CHARACTERS

#: Longest command shown by default (``shown``); the rest is cut with a marker.
COMMAND_CHARS = 160

#: Shown escaped wherever run text is displayed: the patch checker's table and a few more
#: characters that hide or move text on screen without being "controls" to the checker.
HIDDEN = re.compile(f"[{HIDDEN_CHARACTERS}\r\u200b-\u200d\u2028\u2029\ufeff]")
#: What ``plain`` leaves (it escapes the C0, C1 and bidi table of ``policies.scope``)
#: that would still break a one-line display.
_LINE_UNSAFE = re.compile("[\n\t]")


def visible(text: str) -> list[tuple[str, bool]]:
    """``text`` as (part, is_escaped) pairs: hidden characters become ``<U+XXXX>`` parts."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in HIDDEN.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((f"<U+{ord(m.group()):04X}>", True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def plain(text: str) -> str:
    """``text`` with hidden characters written as ``<U+XXXX>`` (for one-line plain output)."""
    return "".join(part for part, _ in visible(text))


def escape_controls(text: str) -> str:
    """``text`` on one line: hidden characters (C0, C1, bidi) as ``corral review`` shows them
    (``<U+202E>``, ``<U+009B>``), newlines and tabs as ``\\n`` and ``\\t``."""

    def one(m: re.Match[str]) -> str:
        return "\\n" if m.group() == "\n" else "\\t"

    return _LINE_UNSAFE.sub(one, plain(text))


def markup(text: object) -> str:
    """Run text to put inside a rich markup string: ``escape_controls`` (one line, hidden
    characters as ``<U+XXXX>``), then ``rich.markup.escape`` (``x[/y].py`` prints as itself)."""
    return escape(escape_controls(str(text)))


def shown(text: str, limit: int = COMMAND_CHARS) -> str:
    """One safe line of at most ``limit`` characters (escaped first, then cut)."""
    safe = escape_controls(text)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def number(value: float | None) -> str:
    """A budget figure for people: ``2,000,000``, ``5``, ``0.0123``."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"
