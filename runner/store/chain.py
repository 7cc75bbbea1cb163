"""The hash chain of a run's event log: the format of a line, and ``verify_log``.

One canonical JSON object per line (``canonical``: sorted keys, no spaces,
UTF-8, strict JSON) carrying the SHA-256 of the previous line (``prev``,
``GENESIS`` for the first) and of itself without ``hash`` (``event_hash``).
``verify_log`` recomputes the chain: an edited, removed, reordered or inserted
line is found. Writing the log is ``runner.store.eventlog``.

The store records each log's ``Head`` in ``runs.db``: the last event appended
(``EventLog``'s ``on_write``), the boot of the machine then, and the *durable
point* (``EventLog.fsync_point``'s answer at a durable boundary, see
``runner.store.runs``). ``verify_log`` checks the log against it:

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
it aside (``runner.store.eventlog``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENT_VERSION = 1
GENESIS = "0" * 64
#: The fields of every event line, no more and no fewer.
EVENT_KEYS = frozenset({"v", "seq", "ts", "run_id", "type", "data", "prev", "hash"})


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
    if not isinstance(obj, dict) or set(obj) != EVENT_KEYS:
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
