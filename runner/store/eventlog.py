"""A run's event log: ``runs/<run>/events.jsonl``, hash-chained and append-only.

One canonical JSON object per line (``canonical``: sorted keys, no spaces,
UTF-8, strict JSON) carrying the SHA-256 of the previous line (``prev``,
``GENESIS`` for the first) and of itself without ``hash`` (``event_hash``).
``verify_log`` recomputes the chain: an edited, removed, reordered or inserted
line is found. A torn last line (a crash mid-write) is moved aside to
``events.jsonl.torn-<ts>`` on the next append and recorded as a
``log_repaired`` event, never silently dropped.

Durability, and what ``verify_log`` can then say:

- ``EventLog.append`` writes each event's whole line with one ``write(2)``
  (``O_APPEND``; only a short write is continued) under an ``flock`` on the log
  before it returns. From then on every reader sees it, and it survives any
  crash of the process (Ctrl-C, ``kill -9``, a daemon restart): the kernel
  holds it.
- The log is ``fsync``ed only by ``EventLog.fsync_point``, which the run store
  calls at its *durable boundaries* (see ``runner.store.runs``). An fsync per event
  was the largest part of the per-step overhead and bought only this: after a
  *power loss* no events since the last boundary are lost.
- The store records each log's ``Head`` in ``runs.db``: the last event appended
  (``EventLog``'s ``on_write``), the boot of the machine then, and the *durable
  point* (``fsync_point``'s answer). ``verify_log`` checks the log against it:
  - the durable point must be in the log, unchanged, always: the log was on disk
    before the point was recorded, so no crash or power loss explains its loss
    (only tampering, or a disk that lies about ``fsync``);
  - the last recorded head must match too when it was recorded in this boot of
    the machine: then no power loss happened since, so events cut from the end,
    a rewritten tail or events appended behind the store's back are tampering
    (one event past the head is allowed: a crash between the write and the head
    update);
  - when the head was recorded before the machine last started, a power loss can
    have cut the log after the durable point or lost the head's latest updates,
    in either order, and nothing tells that apart from an edit of those events:
    they are checked by the hash chain alone, and ``VerifyResult.note`` says so
    when the head does not match (``ok`` stays true).
  After a power loss the log may also end in a torn line: the next append moves
  it aside as above.

``StoreError`` is the base of the run store's errors, this module's included;
``runner.store.runs`` re-exports it. ``write_all`` and ``fsync_dir`` are the durable
write steps the store's artifacts use too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_VERSION = 1
GENESIS = "0" * 64
LOG_NAME = "events.jsonl"
_EVENT_KEYS = frozenset({"v", "seq", "ts", "run_id", "type", "data", "prev", "hash"})
_TAIL_CHUNK = 64 * 1024

#: Called with ``(seq, link)`` after each line is written, under the log's lock.
OnWrite = Callable[[int, str], None]


class StoreError(Exception):
    """Base of the run store's errors."""


class LogCorrupt(StoreError, ValueError):
    """The event log holds a line that is not an event (not a torn write): see ``verify``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log."""

    seq: int
    ts: str
    run_id: str
    type: str
    data: dict[str, Any]
    prev: str
    hash: str
    v: int = EVENT_VERSION


@dataclass(frozen=True, slots=True)
class Head:
    """What ``runs.db`` recorded of a log: the last append and the last durable point.

    ``seq``/``link``: the last event appended through the store, recorded in the
    boot ``boot`` of the machine (``""``: unknown). ``durable_seq``/``durable_link``:
    the last event when the log was last ``fsync``ed (0 and ``""``: never).
    """

    seq: int
    link: str
    boot: str = ""
    durable_seq: int = 0
    durable_link: str = ""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The chain check: ``ok``, how many events verified, and the first bad one and why.

    ``note``: with ``ok``, what could not be checked (see the module docstring:
    after a restart of the machine, events past the durable point).
    """

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    note: str | None = None


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes of an event line and of what is hashed: sorted keys, no spaces, UTF-8, strict JSON."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def event_hash(obj: dict[str, Any]) -> str:
    """An event's ``hash``: SHA-256 of its canonical JSON without the ``hash`` key."""
    return hashlib.sha256(canonical({k: v for k, v in obj.items() if k != "hash"})).hexdigest()


def link(line: bytes) -> str:
    """The ``prev`` of the event after ``line``: SHA-256 of the line's bytes (no newline)."""
    return hashlib.sha256(line).hexdigest()


def _ignore(seq: int, after: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class EventLog:
    """The event log of run ``run_id`` in file ``path`` (created by the first append).

    ``on_write`` is called after each line is written, still under the lock
    (the run store records the log's head with it); what it raises passes
    through, the line already written.
    """

    path: Path
    run_id: str
    on_write: OnWrite = _ignore

    def append(self, type: str, data: dict[str, Any]) -> Event:
        """Append one event to the chain with one ``write(2)``; not synced (see ``fsync_point``).

        When this returns, every reader sees the event and it survives a crash of
        this process. Safe across processes (``flock`` on the log). A torn last
        line is first moved aside and a ``log_repaired`` event recorded. Raises
        ``TypeError`` or ``ValueError`` when ``data`` is not strict JSON (nothing
        is written), ``LogCorrupt`` when the last line is JSON but not an event.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when the process dies
            seq, prev = self._tail(fd)
            event, _ = self._write(fd, seq, prev, type, data)
        finally:
            os.close(fd)
        return event

    def fsync_point(self) -> tuple[int, str] | None:
        """``fsync`` the log; return ``(seq, link)`` of its last event, now on disk.

        Every event appended so far (by any process) is on disk when this
        returns. None when there is no log, it is empty, or its last line is
        torn (the next append repairs it). ``OSError`` passes through.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # no append between the fsync and the point read
            os.fsync(fd)
            return _last_event(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def events(self) -> list[Event]:
        """The log's events in file order (``verify_log`` says whether they are genuine).

        No log: none. A torn last line (no newline, or not JSON) is left out, as
        ``append`` would move it aside; any other line that is not an event
        raises ``LogCorrupt``.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = raw.split(b"\n")
        lines.pop()  # b"", or a torn last line
        if lines and _parse(lines[-1]) is None:
            lines.pop()  # a torn last line that got its newline: not JSON at all
        out = []
        for n, line in enumerate(lines, start=1):
            obj = _parse(line)
            if obj is None or not set(obj) >= _EVENT_KEYS:
                raise LogCorrupt(
                    f"line {n} of the event log of run {self.run_id} is not an event: "
                    f"`corral verify {self.run_id}` shows the damage"
                )
            out.append(Event(obj["seq"], obj["ts"], obj["run_id"], obj["type"], obj["data"],
                             obj["prev"], obj["hash"], obj["v"]))  # fmt: skip
        return out

    def _tail(self, fd: int) -> tuple[int, str]:
        """(next seq, link of the last line), moving a torn last line aside first."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 1, GENESIS
        start, last = _last_line(fd, size)
        if last.endswith(b"\n") and (obj := _parse(last[:-1])) is not None:
            return _next_after(obj, last[:-1], self.run_id)
        moved = f"{LOG_NAME}.torn-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
        aside = os.open(self.path.with_name(moved), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(aside, last)
            os.fsync(aside)
        finally:
            os.close(aside)
        fsync_dir(self.path.parent)
        os.ftruncate(fd, start)
        os.fsync(fd)
        log.warning("run %s: torn last line of the event log moved to %s", self.run_id, moved)
        seq, prev = 1, GENESIS
        if start > 0:
            _, before = _last_line(fd, start)
            if (obj := _parse(before[:-1])) is None:
                raise LogCorrupt(
                    f"event log of run {self.run_id} is damaged: `corral verify {self.run_id}`"
                )
            seq, prev = _next_after(obj, before[:-1], self.run_id)
        data = {"moved_to": moved, "bytes": len(last), "sha256": link(last), "offset": start}
        repaired, after = self._write(fd, seq, prev, "log_repaired", data)
        return repaired.seq + 1, after

    def _write(
        self, fd: int, seq: int, prev: str, type: str, data: dict[str, Any]
    ) -> tuple[Event, str]:
        """Write one event line under the caller's lock, then ``on_write``; return it and its link."""
        ts = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        obj: dict[str, Any] = {"v": EVENT_VERSION, "seq": seq, "ts": ts, "run_id": self.run_id,
                               "type": type, "data": data, "prev": prev}  # fmt: skip
        obj["hash"] = event_hash(obj)
        line = canonical(obj)
        write_all(fd, line + b"\n")
        after = link(line)
        self.on_write(seq, after)
        return Event(seq, ts, self.run_id, type, data, prev, obj["hash"]), after


def verify_log(path: Path, run_id: str, head: Head | None, boot: str) -> VerifyResult:
    """Check an event log file: canonical lines, ``seq`` 1..n, ``prev`` links and hashes.

    ``head`` is what the store recorded (see ``Head``; None: the chain alone);
    with it, events removed from the end, a rewritten tail and events appended
    behind the store's back are found too: up to the durable point always, up
    to the last head only when it was recorded in this boot of the machine
    (``boot``), as a power loss explains a different tail (then ``note`` says
    what was not checked). Never raises for a bad log; an unreadable file
    raises ``OSError``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if head is None:
            return VerifyResult(True, 0)
        return VerifyResult(False, 0, 1, f"the event log is missing; the store recorded {head.seq}")
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, as it should
    prev = GENESIS
    for seq, line in enumerate(lines, start=1):
        problem = _line_problem(line, seq, prev, run_id)
        if problem is not None:
            return VerifyResult(False, seq - 1, seq, problem)
        prev = link(line)
    n = len(lines)
    if head is not None and head.durable_seq > 0:
        bad = _head_problem(lines, head.durable_seq, head.durable_link, "synced")
        if bad is not None:
            return VerifyResult(False, bad[0] - 1, *bad)
    if tail:
        return VerifyResult(
            False,
            n,
            n + 1,
            "the last line is incomplete (a torn write); the next append moves it aside",
        )
    if head is None:
        return VerifyResult(True, n)
    bad = _head_problem(lines, head.seq, head.link, "recorded")
    if bad is None and n > head.seq + 1:  # head.seq + 1: a crash between write and head update
        bad = (head.seq + 1, f"events after {head.seq} were not appended through the store")
    if bad is None:
        return VerifyResult(True, n)
    if head.boot == boot:
        return VerifyResult(False, bad[0] - 1, *bad)
    return VerifyResult(
        True,
        n,
        note=f"not checked: events after {head.durable_seq} (the last synced) against the "
        f"store's record ({bad[1]}); the machine restarted since, and a power loss explains it",
    )


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``: one ``write(2)``, continued only after a short write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """``fsync`` directory ``path``, so the entries made in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _head_problem(lines: list[bytes], seq: int, recorded: str, what: str) -> tuple[int, str] | None:
    """Whether event ``seq`` of ``lines`` is the one the store recorded: (bad seq, why) if not."""
    n = len(lines)
    if n < seq:
        return n + 1, f"the log ends at event {n} but the store {what} {seq} (removed)"
    if link(lines[seq - 1]) != recorded:
        return seq, f"differs from the event the store {what} (a rewritten tail)"
    return None


def _line_problem(line: bytes, seq: int, prev: str, run_id: str) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return "not valid JSON"
    if not isinstance(obj, dict) or set(obj) != _EVENT_KEYS:
        return "not an event (missing or extra fields)"
    if obj["v"] != EVENT_VERSION:
        return f"event format {obj['v']!r}, expected {EVENT_VERSION}"
    if type(obj["seq"]) is not int or obj["seq"] != seq:
        return f"sequence number {obj['seq']!r} where {seq} was expected (lines removed or moved)"
    if obj["run_id"] != run_id:
        return f"belongs to run {obj['run_id']!r}"
    if obj["prev"] != prev:
        return "does not link to the line before it (a line was changed, removed or inserted)"
    if obj["hash"] != event_hash(obj):
        return "content does not match its hash (the line was edited)"
    if canonical(obj) != line:
        return "not in canonical form (the line was re-encoded)"
    return None


def _parse(line: bytes) -> dict[str, Any] | None:
    """The event object of a complete line, or None if it is not JSON at all."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _last_line(fd: int, size: int) -> tuple[int, bytes]:
    """Offset and bytes of the file's last line (its newline included when it has one)."""
    pos, buf = size, b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        cut = buf.rfind(b"\n", 0, len(buf) - 1)  # a newline before the file's last byte
        if cut != -1:
            return pos + cut + 1, buf[cut + 1 :]
    return 0, buf


def _last_event(fd: int, size: int) -> tuple[int, str] | None:
    """``(seq, link)`` of the file's last line if it is a complete event line, else None."""
    if size == 0:
        return None
    _, last = _last_line(fd, size)
    obj = _parse(last[:-1]) if last.endswith(b"\n") else None
    if obj is None or type(obj.get("seq")) is not int:
        return None
    return obj["seq"], link(last[:-1])


def _next_after(obj: dict[str, Any], line: bytes, run_id: str) -> tuple[int, str]:
    seq = obj.get("seq")
    if type(seq) is not int:
        raise LogCorrupt(
            f"the last line of run {run_id}'s event log is not an event: `corral verify {run_id}`"
        )
    return seq + 1, link(line)
