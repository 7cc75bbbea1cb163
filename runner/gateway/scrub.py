"""The upstream keys taken out of every response on its way to the sandbox, streamed or not.

An upstream that echoes the request's ``Authorization`` (a debugging proxy, a misconfigured
endpoint) would hand the real key to the agent. ``Scrubber`` replaces each key with ``[key]``
as a response is copied:

- a plain body, byte by byte: the end of a piece that may begin a key waits for the next piece
  (only that end: the rest goes on at once);
- a server-sent event stream, event by event: whole keys inside an event are replaced, and the
  string values of the events' JSON are followed per path (``choices.0.delta.content``) across
  events, because a model's stream cuts its text into deltas: a key spread over several events
  is cut out of the first and dropped from the rest. An event is held while some path's text so
  far ends in what may begin a key (at most ``MAX_HELD_BYTES``; past that the dangling start
  is cut), and rewritten only when a key was taken out of it.

Standard library only (``json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: What a key becomes.
REDACTED = "[key]"
#: Events held while a key may be forming, at most; past that they go, the dangling start cut.
MAX_HELD_BYTES = 1024 * 1024
_EVENT_END = re.compile(rb"\r?\n\r?\n")

Path = tuple[str | int, ...]


@dataclass(slots=True)
class _Event:
    """One server-sent event: its bytes, its JSON data (if any) and that data's string leaves."""

    raw: bytes
    data: Any = None
    leaves: dict[Path, str] = field(default_factory=dict)
    changed: bool = False

    def encode(self) -> bytes:
        """The event as received, or with its data rewritten when a key was taken out."""
        if not self.changed:
            return self.raw
        for path, text in self.leaves.items():
            _set(self.data, path, text)
        lines = [ln for ln in self.raw.splitlines() if ln and not ln.startswith(b"data:")]
        body = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return b"\n".join([*lines, b"data: " + body.encode()]) + b"\n\n"


class Scrubber:
    """Keys out of one response: ``feed`` each piece, then ``finish``; both return what may be
    passed on now. ``sse``: the response is an event stream (see the module docstring)."""

    def __init__(self, keys: Iterable[str], *, sse: bool) -> None:
        # longest first; a "key" inside the mark itself would never be gone
        self._keys = sorted({k for k in keys if k and k not in REDACTED}, key=len, reverse=True)
        self._bkeys = [k.encode() for k in self._keys]
        self._sse = sse
        self._pending = b""  # bytes not yet passed on: a key's possible start, or a partial event
        self._held: list[_Event] = []

    @property
    def active(self) -> bool:
        """Whether there is a key to take out (else bytes pass as they are)."""
        return bool(self._keys)

    def feed(self, data: bytes) -> bytes:
        if not self._keys:
            return data
        buf = self._replace(self._pending + data)
        if not self._sse:
            keep = _dangling(buf, self._bkeys)
            self._pending = buf[len(buf) - keep :]
            return buf[: len(buf) - keep]
        out, start = [], 0
        for m in _EVENT_END.finditer(buf):
            out.append(self._event(buf[start : m.end()]))
            start = m.end()
        self._pending = buf[start:]
        if len(self._pending) > MAX_HELD_BYTES:  # no event end in sight: plain bytes
            keep = _dangling(self._pending, self._bkeys)
            out.append(self._release(force=True) + self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
        return b"".join(out)

    def finish(self) -> bytes:
        """The rest: held events and whatever waited (a key's start that no key followed)."""
        rest = self._release(force=False) + self._pending
        self._pending = b""
        return rest

    def text(self, text: str) -> str:
        """``text`` without the keys (a whole body read at once)."""
        for key in self._keys:
            text = text.replace(key, REDACTED)
        return text

    def _replace(self, data: bytes) -> bytes:
        for key in self._bkeys:
            data = data.replace(key, REDACTED.encode())
        return data

    def _event(self, raw: bytes) -> bytes:
        ev = _Event(raw)
        payload = b"\n".join(
            ln[5:].removeprefix(b" ") for ln in raw.splitlines() if ln.startswith(b"data:")
        )
        try:
            ev.data = json.loads(payload) if payload else None
        except ValueError:
            ev.data = None
        if isinstance(ev.data, dict | list):
            ev.leaves = dict(_leaves(ev.data, ()))
        self._held.append(ev)
        self._cut_spanning_keys()
        if self._dangling_paths():
            if sum(len(e.raw) for e in self._held) <= MAX_HELD_BYTES:
                return b""
            return self._release(force=True)
        return self._release(force=False)

    def _texts(self) -> list[list[tuple[_Event, Path]]]:
        """Per path, the held events that hold a string there, in order."""
        per: dict[Path, list[tuple[_Event, Path]]] = {}
        for ev in self._held:
            for path in ev.leaves:
                per.setdefault(path, []).append((ev, path))
        return list(per.values())

    def _cut_spanning_keys(self) -> None:
        """Keys whose text runs over more than one held event: cut from the first, dropped from
        the rest."""
        for parts in self._texts():
            if len(parts) < 2:
                continue
            for key in self._keys:
                while (at := _joined(parts).find(key)) >= 0:
                    _cut(parts, at, at + len(key), REDACTED)

    def _dangling_paths(self) -> bool:
        """Whether some path's held text ends in what may begin a key."""
        return any(_dangling(_joined(parts), self._keys) for parts in self._texts())

    def _release(self, *, force: bool) -> bytes:
        """Every held event, encoded; ``force``: a key's dangling start is cut first."""
        if force:
            for parts in self._texts():
                text = _joined(parts)
                if n := _dangling(text, self._keys):
                    _cut(parts, len(text) - n, len(text), "")
        out = b"".join(ev.encode() for ev in self._held)
        self._held.clear()
        return out


def _joined(parts: list[tuple[_Event, Path]]) -> str:
    return "".join(ev.leaves[p] for ev, p in parts)


def _cut(parts: list[tuple[_Event, Path]], start: int, end: int, mark: str) -> None:
    """Characters ``start:end`` of the joined text out of the events that hold them; ``mark``
    goes where they began."""
    pos = 0
    for ev, path in parts:
        text = ev.leaves[path]
        lo, hi = max(start - pos, 0), min(end - pos, len(text))
        pos += len(text)
        if lo < hi:
            ev.leaves[path] = text[:lo] + mark + text[hi:]
            ev.changed, mark = True, ""


def _dangling(data: Any, keys: Iterable[Any]) -> int:
    """Length of the longest end of ``data`` (bytes or str) that is a proper start of a key."""
    best = 0
    for key in keys:
        for n in range(min(len(key) - 1, len(data)), best, -1):
            if data.endswith(key[:n]):
                best = n
                break
    return best


def _leaves(obj: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))


def _set(obj: Any, path: Path, value: str) -> None:
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value
