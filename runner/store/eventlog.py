"""A run's event log: ``runs/<run>/events.jsonl``, hash-chained and append-only.

``EventLog`` appends events in the format of ``runner.store.chain`` (which
also verifies a log) and reads them back. A torn last line (a crash
mid-write) is moved aside to ``events.jsonl.torn-<ts>`` on the next append
and recorded as a ``log_repaired`` event, never silently dropped.

Durability:

- ``EventLog.append`` writes each event's whole line with one ``write(2)``
  (``O_APPEND``; only a short write is continued) under an ``flock`` on the log
  before it returns. From then on every reader sees it, and it survives any
  crash of the process (Ctrl-C, ``kill -9``, a daemon restart): the kernel
  holds it.
- The log is ``fsync``ed only by ``EventLog.fsync_point``, which the run store
  calls at its *durable boundaries* (see ``runner.store.runs``). An fsync per event
  was the largest part of the per-step overhead and bought only this: after a
  *power loss* no events since the last boundary are lost; what
  ``verify_log`` can then say is in ``runner.store.chain``.

``StoreError`` is the base of the run store's errors; it and ``LogCorrupt`` live in
``runner.errors`` and are re-imported here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.errors import LogCorrupt as LogCorrupt
from runner.errors import StoreError as StoreError
from runner.store.chain import (
    EVENT_KEYS,
    EVENT_VERSION,
    GENESIS,
    Event,
    canonical,
    event_hash,
    link,
)
from runner.store.disk import fsync_dir, write_all

log = logging.getLogger(__name__)

LOG_NAME = "events.jsonl"
_TAIL_CHUNK = 64 * 1024

#: Called with ``(seq, link)`` after each line is written, under the log's lock.
OnWrite = Callable[[int, str], None]


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
            if obj is None or not set(obj) >= EVENT_KEYS:
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
        size = os.fstat(fd).st_size
        try:
            write_all(fd, line + b"\n")
        except OSError:  # a full disk: no torn line is left for `verify` to call broken
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        after = link(line)
        self.on_write(seq, after)
        return Event(seq, ts, self.run_id, type, data, prev, obj["hash"]), after


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
