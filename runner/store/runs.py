"""The run store under ``$CORRAL_HOME``: workflow state, artifacts, and a tamper-evident event log.

The caller passes ``home``; nothing here reads the environment.

- ``runs.db``: SQLite in WAL mode, so readers (``corral list``, ``corral
  status``) never block a run that writes. Table ``runs`` holds each run's
  state; table ``steps`` is the journal: a step is recorded as started before
  it runs and as done or failed after, so ``resume`` knows the last completed
  one and ``last_incomplete`` names what a crash interrupted. The schema
  version is ``PRAGMA user_version``; older databases are migrated on open, a
  newer one is refused. Plain ``sqlite3`` from the standard library: three
  small tables need no ORM, and WAL plus ``BEGIN IMMEDIATE`` give the
  concurrency we need between processes.
- ``runs/<run>/``: artifacts (patches, gate logs, progress snapshots), written
  atomically (temporary file, ``os.replace``) and made durable with the run's
  events: the next durable boundary ``fsync``s them (and their folders) first.
- ``runs/<run>/events.jsonl``: the run's hash-chained, append-only event log
  (``runner.store.eventlog``: its format, ``verify_log`` and what a torn line becomes).
  ``RunStore`` appends through ``EventLog`` and keeps the log's head in
  ``runs.db``.

The event log's durable boundaries, and its head in ``runs.db``:

- An append is not synced. The log is ``fsync``ed at *durable boundaries* only:
  before ``journal_done`` / ``journal_failed`` and before an ``update`` of a
  state column (``status``, ``reason``, ``waiting_json``, ...; a counters-only
  update of ``tokens``, ``cost_usd`` or ``wall_seconds`` is not one), in
  ``sync`` (callers use it before an effect outside the store that a later
  reader relies on) and in ``close``. So whatever ``runs.db`` says was done or
  decided, the events and the artifacts that led to it are on disk first. ``resume`` reruns an
  interrupted attempt from base anyway.
- ``runs.db`` keeps each log's head (table ``event_heads``): the last event's
  seq and link, written after each append (a commit, not synced:
  ``synchronous=NORMAL``), the boot id of the machine then (``boot_id``), and
  the *durable point* (seq and link of the last event at the last boundary,
  recorded after that ``fsync``). ``verify`` checks the log against it (see
  ``runner.store.eventlog`` for what that can find after a crash or a power loss).

Nothing of the store is ever mounted into a container: only the runner reads
and writes it. Callers must not hand a store path (a run folder, an artifact)
to a sandbox as a mount; copy what a container produced in with
``write_artifact`` instead.

One ``RunStore`` holds one SQLite connection, opened on first use; use it from
one thread, and ``close()`` it (or use ``with``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, get_args

from runner.store.eventlog import (
    LOG_NAME,
    Event,
    EventLog,
    Head,
    VerifyResult,
    fsync_dir,
    verify_log,
    write_all,
)
from runner.store.eventlog import StoreError as StoreError
from sandbox.lease import check_run_id

log = logging.getLogger(__name__)

RunStatus = Literal[
    "created", "running", "waiting", "ready_for_review", "failed", "budget_exhausted",
    "approved", "rejected", "merged",
]  # fmt: skip
FailureDomain = Literal["model", "context", "tool-interface", "harness", "runtime", "governance"]
StepState = Literal["started", "done", "failed"]
STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
FAILURE_DOMAINS: tuple[FailureDomain, ...] = get_args(FailureDomain)

SCHEMA_VERSION = 4
_ARTIFACT_PART = re.compile(r"^[A-Za-z0-9._-]+$")

# _MIGRATIONS[n] takes a database from user_version n to n + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS runs (
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
        )""",
        """CREATE TABLE IF NOT EXISTS steps (
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('started', 'done', 'failed')),
            started REAL NOT NULL,
            finished REAL,
            data_json TEXT,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
    (
        """CREATE TABLE IF NOT EXISTS event_heads (
            run_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            link TEXT NOT NULL
        )""",
    ),
    # wall-clock seconds the run's processes have spent (run-wide budget, kept across resumes)
    ("ALTER TABLE runs ADD COLUMN wall_seconds REAL NOT NULL DEFAULT 0",),
    # the head's boot id and durable point (older corral fsynced every event before its head)
    (
        "ALTER TABLE event_heads ADD COLUMN boot TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE event_heads ADD COLUMN durable_seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE event_heads ADD COLUMN durable_link TEXT NOT NULL DEFAULT ''",
        "UPDATE event_heads SET durable_seq = seq, durable_link = link",
    ),
)
#: ``update`` columns that are counters: an update of only these is not a durable boundary.
_COUNTERS = frozenset({"tokens", "cost_usd", "wall_seconds"})
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class UnknownRun(StoreError, LookupError):
    """No run with that id in this store."""


class DuplicateRun(StoreError, ValueError):
    """A run with that id or idempotency key exists already: ``run_id`` names it."""

    def __init__(self, run_id: str, key: str | None = None) -> None:
        self.run_id = run_id
        self.key = key
        if key is None:
            super().__init__(f"run {run_id} already exists: choose another run id")
        else:
            super().__init__(f"idempotency key {key!r} already belongs to run {run_id}")


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
    """One row of ``runs`` (times are seconds since the epoch)."""

    run_id: str
    created: float
    updated: float
    repo: str
    base: str
    bug_title: str
    bug_path: str
    agent: str
    model: str | None
    status: RunStatus
    failure_domain: FailureDomain | None
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
    wall_seconds: float = 0.0
    """Wall-clock seconds spent by the run so far (all its processes; waiting not counted)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One journal entry: started before the step ran, done or failed after."""

    run_id: str
    seq: int
    kind: str
    key: str
    state: StepState
    started: float
    finished: float | None
    data: dict[str, Any]


_UPDATABLE = frozenset(f.name for f in fields(RunRecord)) - {"run_id", "created", "updated"}


def new_run_id() -> str:
    """``YYYYMMDD-HHMMSS-<6 hex>`` in UTC."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_artifact_name(name: str) -> str:
    """Return ``name`` if it is a safe relative artifact path; else ``ValueError``.

    Parts of letters, digits, ``.``, ``_`` and ``-`` joined by ``/``; no empty,
    ``.`` or ``..`` part; ``events.jsonl*`` belongs to the event log.
    """
    parts = name.split("/")
    if (
        any(p in ("", ".", "..") or not _ARTIFACT_PART.match(p) for p in parts)
        or parts[0] == LOG_NAME
        or parts[0].startswith(LOG_NAME + ".")
    ):
        raise ValueError(
            f"invalid artifact name {name!r}: use a relative path of letters, digits, "
            f"'.', '_', '-' and '/', without '.' or '..' parts ({LOG_NAME} is reserved)"
        )
    return name


def boot_id() -> str:
    """This boot of the machine (Linux's ``boot_id``; ``""`` where there is none)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def _tx(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction. IMMEDIATE takes the write lock up front: a read that later
    upgrades to a write can fail with SQLITE_BUSY in WAL mode, whatever the busy timeout."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class RunStore:
    """All runs of one corral home. Creates ``home`` and ``runs.db`` on first use.

    Raises ``StoreError`` on open when ``runs.db`` is from a newer corral;
    ``sqlite3.Error`` and ``OSError`` pass through for a broken disk.
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.runs_dir = self.home / "runs"
        self._conn: sqlite3.Connection | None = None
        self._unsynced: set[str] = set()  # runs this store appended to since their last sync
        self._unsynced_files: dict[str, set[Path]] = {}  # artifacts written since then, by run
        self._boot = boot_id()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.home / "runs.db", timeout=5.0, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout=5000")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                log.warning("%s/runs.db: WAL unavailable here (journal_mode=%s)", self.home, mode)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with _tx(db):
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.home}/runs.db is from a newer corral (schema {version}, this one "
                    f"knows {SCHEMA_VERSION}): upgrade corral"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Sync the event logs appended to since their last boundary, close the database.

        Idempotent; the store reopens on next use. ``OSError`` from the disk
        passes through (the connection is closed all the same).
        """
        try:
            for run_id in sorted(self._unsynced):
                self.sync(run_id)
        finally:
            self._unsynced.clear()
            self._close_db()

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- runs

    def create(self, run: NewRun) -> str:
        """Record a new run with status ``created`` and make its folder; return its id.

        Raises ``DuplicateRun`` when the idempotency key or the given run id is
        taken (``.run_id`` names the existing run) and ``ValueError`` for an
        invalid run id. A generated id is ``YYYYMMDD-HHMMSS-<6 hex>``.
        """
        key = run.idempotency_key
        if key is not None and (existing := self.find_by_key(key)) is not None:
            raise DuplicateRun(existing, key)
        for _ in range(1 if run.run_id is not None else 5):
            run_id = check_run_id(run.run_id if run.run_id is not None else new_run_id())
            now = time.time()
            try:
                with _tx(self._db) as db:
                    db.execute(
                        "INSERT INTO runs (run_id, created, updated, repo, base, bug_title,"
                        " bug_path, agent, model, status, policy_json, spec_json, idempotency_key)"
                        " VALUES (?,?,?,?,?,?,?,?,?,'created',?,?,?)",
                        (run_id, now, now, run.repo, run.base, run.bug_title, run.bug_path,
                         run.agent, run.model, run.policy_json, run.spec_json, key),
                    )  # fmt: skip
            except sqlite3.IntegrityError:
                if key is not None and (existing := self.find_by_key(key)) is not None:
                    raise DuplicateRun(existing, key) from None
                continue  # the run id is taken
            self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
            return run_id
        raise DuplicateRun(run_id)

    def find_by_key(self, key: str) -> str | None:
        """The id of the run created with idempotency key ``key``, or None."""
        row = self._db.execute("SELECT run_id FROM runs WHERE idempotency_key = ?", (key,))
        found = row.fetchone()
        return str(found["run_id"]) if found else None

    def get(self, run_id: str) -> RunRecord:
        """The run's record. Raises ``UnknownRun`` (which names ``corral list``)."""
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id} in {self.home}: `corral list` shows runs")
        return RunRecord(**dict(row))

    def update(self, run_id: str, **values: Any) -> None:
        """Set columns of a run and its ``updated`` time.

        Raises ``ValueError`` for an unknown or read-only column, a status not in
        ``STATUSES`` or a failure domain not in ``FAILURE_DOMAINS``, and
        ``UnknownRun`` when there is no such run.
        """
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"unknown run fields: {', '.join(sorted(unknown))}")
        if "status" in values and values["status"] not in STATUSES:
            raise ValueError(f"unknown status {values['status']!r}: one of {', '.join(STATUSES)}")
        domain = values.get("failure_domain")
        if domain is not None and domain not in FAILURE_DOMAINS:
            raise ValueError(
                f"unknown failure domain {domain!r}: one of {', '.join(FAILURE_DOMAINS)}"
            )
        if set(values) - _COUNTERS:
            self.sync(run_id)  # a state change: the events that led to it go to disk first
        values["updated"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in values)  # names checked above
        with _tx(self._db) as db:
            cur = db.execute(
                f"UPDATE runs SET {columns} WHERE run_id = ?", (*values.values(), run_id)
            )
        if cur.rowcount == 0:
            self.get(run_id)  # raises UnknownRun

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """Up to ``limit`` runs, newest first."""
        rows = self._db.execute(
            "SELECT * FROM runs ORDER BY created DESC, run_id DESC LIMIT ?", (max(limit, 0),)
        )
        return [RunRecord(**dict(r)) for r in rows]

    # ----------------------------------------------------------------- journal

    def journal_start(self, run_id: str, kind: str, key: str, data: dict[str, Any]) -> int:
        """Record a step as started, before it runs; return its sequence number.

        Raises ``UnknownRun`` when there is no such run and ``TypeError`` when
        ``data`` is not JSON-serialisable.
        """
        data_json = json.dumps(data, sort_keys=True)
        with _tx(self._db) as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise UnknownRun(f"no run {run_id} in {self.home}: `corral list` shows runs")
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM steps WHERE run_id = ?", (run_id,)
            ).fetchone()
            seq = int(row[0])
            db.execute(
                "INSERT INTO steps (run_id, seq, kind, key, state, started, data_json)"
                " VALUES (?,?,?,?,'started',?,?)",
                (run_id, seq, kind, key, time.time(), data_json),
            )
        return seq

    def journal_done(self, run_id: str, seq: int, data: dict[str, Any]) -> None:
        """Mark a started step done. ``StoreError`` if it is not in progress."""
        self._finish_step(run_id, seq, "done", data)

    def journal_failed(self, run_id: str, seq: int, data: dict[str, Any]) -> None:
        """Mark a started step failed. ``StoreError`` if it is not in progress."""
        self._finish_step(run_id, seq, "failed", data)

    def _finish_step(self, run_id: str, seq: int, state: StepState, data: dict[str, Any]) -> None:
        data_json = json.dumps(data, sort_keys=True)
        self.sync(run_id)  # a finished step: what it recorded goes to disk first
        with _tx(self._db) as db:
            cur = db.execute(
                "UPDATE steps SET state = ?, finished = ?, data_json = ?"
                " WHERE run_id = ? AND seq = ? AND state = 'started'",
                (state, time.time(), data_json, run_id, seq),
            )
        if cur.rowcount == 0:
            raise StoreError(f"step {seq} of run {run_id} is not in progress (unknown or finished)")

    def journal(self, run_id: str) -> list[Step]:
        """The run's steps in order (empty for an unknown run)."""
        rows = self._db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
        return [_step(r) for r in rows]

    def last_incomplete(self, run_id: str) -> Step | None:
        """The last step started and never finished (what a crash interrupted), if any."""
        row = self._db.execute(
            "SELECT * FROM steps WHERE run_id = ? AND state = 'started' ORDER BY seq DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return _step(row) if row is not None else None

    # ----------------------------------------------------------------- artifacts

    def run_dir(self, run_id: str) -> Path:
        """The run's folder (not created here). ``ValueError`` for an invalid run id."""
        return self.runs_dir / check_run_id(run_id)

    def artifact_path(self, run_id: str, name: str) -> Path:
        """Where artifact ``name`` (e.g. ``attempt-1/gate-tests.log``) lives; not created.

        Raises ``ValueError`` for an invalid run id or name (see ``check_artifact_name``).
        """
        return self.run_dir(run_id) / check_artifact_name(name)

    def write_artifact(self, run_id: str, name: str, data: bytes | str) -> Path:
        """Write an artifact atomically (``str`` as UTF-8); return its path.

        Readers see the old content or the new, never a part. It is durable
        once the run's next durable boundary (``sync``) has returned, as the
        events are. Raises ``ValueError`` for a bad name and ``OSError`` from
        the disk.
        """
        path = self.artifact_path(run_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = data.encode() if isinstance(data, str) else data
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            write_all(fd, payload)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except BaseException:
            if fd != -1:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        self._unsynced_files.setdefault(run_id, set()).add(path)
        self._unsynced.add(run_id)
        return path

    def _sync_artifacts(self, run_id: str) -> None:
        """``fsync`` the artifacts written since the last boundary, then their folders up to
        the run's (a folder made for them is an entry of its parent)."""
        paths = self._unsynced_files.pop(run_id, set())
        for path in sorted(paths):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:  # replaced or removed since: nothing of it to keep
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        top = self.run_dir(run_id)
        folders = {f for p in paths for f in p.parents if f == top or top in f.parents}
        for folder in sorted(folders, reverse=True):  # a new folder's own entry: its parent
            fsync_dir(folder)

    # ----------------------------------------------------------------- event log

    def log_path(self, run_id: str) -> Path:
        """The run's event log file."""
        return self.run_dir(run_id) / LOG_NAME

    def append(self, run_id: str, type: str, data: dict[str, Any]) -> Event:
        """Append one event to the run's chain with one ``write(2)``; not synced (see ``sync``).

        When this returns, every reader sees the event and it survives a crash of
        this process; it survives a power loss once the next durable boundary
        has synced it. Safe across processes (``flock`` on the log). A torn last line is first
        moved aside and a ``log_repaired`` event recorded. Raises ``TypeError``
        or ``ValueError`` when ``data`` is not strict JSON (nothing is written),
        ``LogCorrupt`` when the last line is JSON but not an event.
        """
        event = self._log(run_id).append(type, data)
        self._unsynced.add(run_id)
        return event

    def sync(self, run_id: str) -> None:
        """A durable boundary: ``fsync`` the run's event log, then record its durable point.

        Every event appended so far (by any process), and every artifact this
        store wrote for the run, is on disk when this returns (artifacts first).
        No log yet: only the artifacts. ``OSError`` passes through; a
        durable point that cannot be recorded is logged (``verify`` then checks
        against the previous one).
        """
        self._sync_artifacts(run_id)
        point = self._log(run_id).fsync_point()
        self._unsynced.discard(run_id)
        if point is None:  # no log, empty, or a torn last line that the next append repairs
            return
        try:
            with _tx(self._db) as db:
                row = db.execute(
                    "SELECT durable_seq FROM event_heads WHERE run_id = ?", (run_id,)
                ).fetchone()
                if row is None or row[0] == 0:
                    fsync_dir(self.run_dir(run_id))  # the log's first boundary: its entry too
                db.execute(
                    "INSERT INTO event_heads (run_id, seq, link, boot, durable_seq, durable_link)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET"
                    " durable_seq = excluded.durable_seq, durable_link = excluded.durable_link",
                    (run_id, *point, self._boot, *point),
                )
        except sqlite3.Error as exc:
            log.warning("run %s: durable point %d not recorded: %s", run_id, point[0], exc)

    def events(self, run_id: str) -> list[Event]:
        """The log's events in file order (``verify`` says whether they are genuine).

        A torn last line (no newline, or not JSON) is left out, as ``append``
        would move it aside; any other line that is not an event raises ``LogCorrupt``.
        """
        return self._log(run_id).events()

    def _log(self, run_id: str) -> EventLog:
        return EventLog(self.log_path(run_id), run_id, functools.partial(self._record_head, run_id))

    def _record_head(self, run_id: str, seq: int, after: str) -> None:
        """Record event ``seq`` (just written, link ``after``) as the log's head."""
        try:
            # Within a boot the head only moves forward (a log cut behind the store's back
            # stays found); the first append after a restart replaces a head that a power
            # loss may have left ahead of the log. The durable point is kept either way.
            with _tx(self._db) as db:
                db.execute(
                    "INSERT INTO event_heads (run_id, seq, link, boot) VALUES (?,?,?,?)"
                    " ON CONFLICT(run_id) DO UPDATE SET seq = excluded.seq, link = excluded.link,"
                    " boot = excluded.boot"
                    " WHERE excluded.seq > event_heads.seq OR excluded.boot != event_heads.boot",
                    (run_id, seq, after, self._boot),
                )
        except sqlite3.Error as exc:  # the event is written; verify tolerates one unrecorded
            log.warning("run %s: event %d written but its head not recorded: %s", run_id, seq, exc)

    def verify(self, run_id: str) -> VerifyResult:
        """Recompute the run's chain (see ``verify_log``), checked against the recorded head."""
        row = self._db.execute(
            "SELECT seq, link, boot, durable_seq, durable_link FROM event_heads WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        head = Head(*row) if row is not None else None
        return verify_log(self.log_path(run_id), run_id, head, self._boot)


def _step(row: sqlite3.Row) -> Step:
    return Step(row["run_id"], row["seq"], row["kind"], row["key"], row["state"], row["started"],
                row["finished"], json.loads(row["data_json"] or "{}"))  # fmt: skip
