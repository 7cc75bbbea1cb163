"""The run store under ``$CORRAL_HOME``: workflow state, artifacts, and a tamper-evident event log.

- ``runs.db``: SQLite in WAL mode (readers such as ``corral list`` never block
  a run that writes). Table ``runs`` holds each run's state; table ``steps`` is
  the journal: a step is recorded as started before it runs and as done or
  failed after, so ``resume`` knows the last completed one. Plain ``sqlite3``:
  two tables need no ORM.
- ``runs/<run>/``: artifacts (patches, gate logs, progress snapshots), written
  atomically (temporary file + ``os.replace``).
- ``runs/<run>/events.jsonl``: append-only, one JSON object per line, each
  carrying the SHA-256 of the previous line and of itself, flushed and
  ``fsync``ed per event under an ``flock``. ``verify`` recomputes the chain: an
  edited, removed, reordered or inserted line is found. A torn last line (a
  crash mid-write) is moved aside and recorded, never silently dropped.

Nothing of the store is mounted into any container; the runner alone reads
and writes it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sandbox.lease import check_run_id

RunStatus = Literal[
    "created", "running", "ready_for_review", "failed", "budget_exhausted", "waiting",
    "approved", "rejected", "merged",
]  # fmt: skip
FailureDomain = Literal["model", "context", "tool-interface", "harness", "runtime", "governance"]
STATUSES: tuple[str, ...] = RunStatus.__args__  # type: ignore[attr-defined]
FAILURE_DOMAINS: tuple[str, ...] = FailureDomain.__args__  # type: ignore[attr-defined]

SCHEMA_VERSION = 1
EVENT_VERSION = 1
GENESIS = "0" * 64
_ARTIFACT = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    repo TEXT NOT NULL,
    base TEXT NOT NULL,
    bug_title TEXT NOT NULL,
    bug_path TEXT NOT NULL,
    agent TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    failure_domain TEXT,
    reason TEXT,
    attempts_done INTEGER NOT NULL DEFAULT 0,
    policy_json TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    cost_usd REAL NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    current_attempt INTEGER NOT NULL DEFAULT 0,
    current_window INTEGER NOT NULL DEFAULT 0,
    waiting_json TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('started', 'done', 'failed')),
    started REAL NOT NULL,
    finished REAL,
    data_json TEXT,
    PRIMARY KEY (run_id, seq)
);
"""


class StoreError(Exception):
    """Base of the run store's errors."""


class UnknownRun(StoreError, LookupError):
    """No run with that id."""


class DuplicateRun(StoreError, ValueError):
    """A run with the same idempotency key exists: ``run_id`` names it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"a run with this idempotency key exists: {run_id}")


class LogCorrupt(StoreError, ValueError):
    """The event log cannot be appended to (it does not verify)."""


@dataclass(frozen=True, slots=True)
class NewRun:
    """What ``create`` records about a new run."""

    repo: str
    base: str
    bug_title: str
    bug_path: str
    agent: str
    model: str | None
    policy_json: str
    spec_json: str
    idempotency_key: str | None = None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of ``runs``."""

    run_id: str
    created: float
    updated: float
    repo: str
    base: str
    bug_title: str
    bug_path: str
    agent: str
    model: str | None
    status: str
    failure_domain: str | None
    reason: str | None
    attempts_done: int
    policy_json: str
    spec_json: str
    idempotency_key: str | None
    cost_usd: float
    tokens: int
    current_attempt: int
    current_window: int
    waiting_json: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """One journal entry: ``state`` is started, done or failed."""

    run_id: str
    seq: int
    kind: str
    key: str
    state: str
    started: float
    finished: float | None
    data: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The chain check: ``ok``, how many events, and the first bad one."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None


_UPDATABLE = {f.name for f in fields(RunRecord)} - {"run_id", "created"}


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes hashed for an event: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in obj.items() if k != "hash"})).hexdigest()


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    """All runs of one ``$CORRAL_HOME``. One SQLite connection per object; close it or use ``with``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.runs_dir = self.home / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.home / "runs.db", timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=5000",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.home}/runs.db is from a newer corral (schema {version}); upgrade corral"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- runs

    def create(self, run: NewRun) -> str:
        """Record a new run; return its id. ``DuplicateRun`` if the idempotency key is taken."""
        if run.idempotency_key is not None:
            existing = self.find_by_key(run.idempotency_key)
            if existing is not None:
                raise DuplicateRun(existing)
        run_id = check_run_id(run.run_id or new_run_id())
        now = time.time()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO runs (run_id, created, updated, repo, base, bug_title, bug_path,"
                    " agent, model, status, policy_json, spec_json, idempotency_key)"
                    " VALUES (?,?,?,?,?,?,?,?,?,'created',?,?,?)",
                    (run_id, now, now, run.repo, run.base, run.bug_title, run.bug_path, run.agent,
                     run.model, run.policy_json, run.spec_json, run.idempotency_key),
                )  # fmt: skip
        except sqlite3.IntegrityError as exc:
            if run.idempotency_key is not None and (found := self.find_by_key(run.idempotency_key)):
                raise DuplicateRun(found) from exc
            raise StoreError(f"run {run_id} already exists") from exc
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def find_by_key(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return str(row["run_id"]) if row else None

    def get(self, run_id: str) -> RunRecord:
        """The run's record; ``UnknownRun`` (naming ``corral list``) if there is none."""
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in {self.home}: `corral list` shows runs")
        return RunRecord(**dict(row))

    def update(self, run_id: str, **values: Any) -> None:
        """Set columns of a run (only known ones; ``ValueError`` otherwise)."""
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown run fields: {', '.join(sorted(unknown))}")
        values["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in values)
        with self._db:
            cur = self._db.execute(
                f"UPDATE runs SET {cols} WHERE run_id = ?", (*values.values(), run_id)
            )
        if cur.rowcount == 0:
            self.get(run_id)

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,))
        return [RunRecord(**dict(r)) for r in rows]

    # ----------------------------------------------------------------- journal

    def journal_start(self, run_id: str, kind: str, key: str, data: dict[str, Any]) -> int:
        """Record a step as started (before it runs); return its sequence number."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?", (run_id,)
            ).fetchone()
            seq = int(row[0])
            self._db.execute(
                "INSERT INTO steps (run_id, seq, kind, key, state, started, data_json)"
                " VALUES (?,?,?,?,'started',?,?)",
                (run_id, seq, kind, key, time.time(), json.dumps(data)),
            )
        return seq

    def journal_done(self, run_id: str, seq: int, data: dict[str, Any]) -> None:
        self._finish_step(run_id, seq, "done", data)

    def journal_failed(self, run_id: str, seq: int, data: dict[str, Any]) -> None:
        self._finish_step(run_id, seq, "failed", data)

    def _finish_step(self, run_id: str, seq: int, state: str, data: dict[str, Any]) -> None:
        with self._db:
            self._db.execute(
                "UPDATE steps SET state = ?, finished = ?, data_json = ? WHERE run_id = ? AND seq = ?",
                (state, time.time(), json.dumps(data), run_id, seq),
            )

    def journal(self, run_id: str) -> list[Step]:
        rows = self._db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
        return [
            Step(r["run_id"], r["seq"], r["kind"], r["key"], r["state"], r["started"],
                 r["finished"], json.loads(r["data_json"] or "{}"))
            for r in rows
        ]  # fmt: skip

    def last_incomplete(self, run_id: str) -> Step | None:
        """The step a crash interrupted (started, never finished), if any."""
        started = [s for s in self.journal(run_id) if s.state == "started"]
        return started[-1] if started else None

    # ----------------------------------------------------------------- artifacts

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_run_id(run_id)

    def artifact_path(self, run_id: str, name: str) -> Path:
        """Where artifact ``name`` (``a/b.log``: letters, digits, ``._-``) of a run lives."""
        if not _ARTIFACT.match(name) or ".." in name.split("/"):
            raise ValueError(f"invalid artifact name {name!r}")
        return self.run_dir(run_id) / name

    def write_artifact(self, run_id: str, name: str, data: bytes | str) -> Path:
        """Write an artifact atomically; return its path."""
        path = self.artifact_path(run_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
        return path

    # ----------------------------------------------------------------- event log

    def log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "events.jsonl"

    def append(self, run_id: str, type: str, data: dict[str, Any]) -> Event:
        """Append one event to the run's chain (flushed and fsynced before returning)."""
        path = self.log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._tail(path, fd, run_id)
            obj: dict[str, Any] = {
                "v": EVENT_VERSION, "seq": seq, "ts": datetime.now(UTC).isoformat(),
                "run_id": run_id, "type": type, "data": data, "prev": prev,
            }  # fmt: skip
            obj["hash"] = event_hash(obj)
            os.write(fd, canonical(obj) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return Event(seq, obj["ts"], run_id, type, data, prev, obj["hash"])

    def _tail(self, path: Path, fd: int, run_id: str) -> tuple[int, str]:
        """(next seq, hash of the last event); a torn last line is moved aside first."""
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            keep, _, torn = raw.rpartition(b"\n")
            keep = keep + b"\n" if keep else b""
            aside = path.with_name(f"events.jsonl.torn-{int(time.time())}")
            aside.write_bytes(torn)
            os.ftruncate(fd, len(keep))
            raw = keep
            seq, prev = self._last(raw)
            repair = {
                "v": EVENT_VERSION, "seq": seq, "ts": datetime.now(UTC).isoformat(),
                "run_id": run_id, "type": "log_repaired",
                "data": {"torn_bytes": len(torn), "moved_to": aside.name}, "prev": prev,
            }  # fmt: skip
            repair["hash"] = event_hash(repair)
            os.write(fd, canonical(repair) + b"\n")
            return seq + 1, str(repair["hash"])
        return self._last(raw)

    @staticmethod
    def _last(raw: bytes) -> tuple[int, str]:
        lines = raw.splitlines()
        if not lines:
            return 1, GENESIS
        try:
            last = json.loads(lines[-1])
            return int(last["seq"]) + 1, str(last["hash"])
        except (ValueError, KeyError) as exc:
            raise LogCorrupt("the last event is unreadable: `corral verify` shows where") from exc

    def events(self, run_id: str) -> list[Event]:
        """Every readable event, in order (``verify`` says whether they are genuine)."""
        path = self.log_path(run_id)
        out: list[Event] = []
        if not path.exists():
            return out
        for line in path.read_bytes().splitlines():
            try:
                o = json.loads(line)
                out.append(
                    Event(
                        o["seq"], o["ts"], o["run_id"], o["type"], o["data"], o["prev"], o["hash"]
                    )
                )
            except (ValueError, KeyError):
                continue
        return out

    def verify(self, run_id: str) -> VerifyResult:
        """Recompute the chain: hashes, links and sequence numbers."""
        path = self.log_path(run_id)
        if not path.exists():
            return VerifyResult(False, 0, None, "no event log")
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        else:
            return VerifyResult(
                False, len(lines), len(lines), "the last line is incomplete (torn write)"
            )
        prev = GENESIS
        for i, line in enumerate(lines, start=1):
            try:
                obj = json.loads(line)
            except ValueError:
                return VerifyResult(False, i - 1, i, "not valid JSON")
            if obj.get("seq") != i:
                return VerifyResult(
                    False, i - 1, i, f"sequence {obj.get('seq')} where {i} was expected"
                )
            if obj.get("prev") != prev:
                return VerifyResult(False, i - 1, i, "does not link to the previous event")
            if event_hash(obj) != obj.get("hash"):
                return VerifyResult(False, i - 1, i, "content does not match its hash")
            prev = obj["hash"]
        return VerifyResult(True, len(lines))
