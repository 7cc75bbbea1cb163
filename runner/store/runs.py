"""The run store under ``$CORRAL_HOME``: workflow state, artifacts, and a tamper-evident event log.

The caller passes ``home``; nothing here reads the environment.

- ``runs.db``: SQLite in WAL mode, so readers (``corral list``, ``corral
  status``) never block a run that writes. Table ``runs`` holds each run's
  state; table ``steps`` is the journal: a step is recorded as started before
  it runs and as done or failed after, so ``resume`` knows the last completed
  one and ``last_incomplete`` names what a crash interrupted. Its tables,
  migrations and transactions are ``runner.store.schema``; the records it
  holds (``RunRecord``, ``Step``, the statuses) are ``runner.store.records``,
  re-exported here.
- ``runs/<run>/``: artifacts (patches, gate logs, progress snapshots), written
  atomically (``runner.store.artifacts``) and made durable with the run's
  events: the next durable boundary ``fsync``s them (and their folders) first.
- ``runs/<run>/events.jsonl``: the run's hash-chained, append-only event log
  (``runner.store.eventlog``: appends and what a torn line becomes;
  ``runner.store.chain``: its format and ``verify_log``).
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
- ``runs.db`` keeps each log's head (``runner.store.heads``): the last event
  appended, the boot of the machine then, and the *durable point* recorded
  at the last boundary. ``verify`` checks the log against it (see
  ``runner.store.chain`` for what that can find after a crash or a power loss).

Nothing of the store is ever mounted into a container: only the runner reads
and writes it. Callers must not hand a store path (a run folder, an artifact)
to a sandbox as a mount; copy what a container produced in with
``write_artifact`` instead.

One ``RunStore`` holds one SQLite connection, opened on first use; use it from
one thread, and ``close()`` it (or use ``with``).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sqlite3
import time
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any

from runner.errors import DuplicateRun as DuplicateRun
from runner.errors import StoreError as StoreError
from runner.errors import UnknownRun as UnknownRun
from runner.store.artifacts import check_artifact_name, fsync_written, write_atomic
from runner.store.chain import Event, VerifyResult, verify_log
from runner.store.eventlog import LOG_NAME, EventLog
from runner.store.heads import read_head, record_durable, record_head
from runner.store.records import FAILURE_DOMAINS as FAILURE_DOMAINS
from runner.store.records import STATUSES as STATUSES
from runner.store.records import FailureDomain as FailureDomain
from runner.store.records import NewRun as NewRun
from runner.store.records import RunRecord as RunRecord
from runner.store.records import RunStatus as RunStatus
from runner.store.records import Step as Step
from runner.store.records import StepState, new_run_id
from runner.store.schema import boot_id, open_db, transaction
from sandbox.lease import check_run_id, is_live

log = logging.getLogger(__name__)

#: ``update`` columns that are counters: an update of only these is not a durable boundary.
_COUNTERS = frozenset({"tokens", "cost_usd", "wall_seconds"})


_UPDATABLE = frozenset(f.name for f in fields(RunRecord)) - {"run_id", "created", "updated"}


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
            self._conn = open_db(self.home)
        return self._conn

    def shown_status(self, rec: RunRecord) -> str:
        """``rec.status`` as a person should read it: ``interrupted`` for a run recorded as
        ``created`` or ``running`` that no live process holds (Ctrl-C, ``kill -9``, a crash;
        ``corral resume`` goes on from its last finished step)."""
        if rec.status in ("created", "running") and not is_live(self.home, rec.run_id):
            return "interrupted"
        return rec.status

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
                with transaction(self._db) as db:
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
        with transaction(self._db) as db:
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

    def delete(self, run_id: str) -> None:
        """Remove the run from the store: its folder (artifacts, event log), then its journal,
        log head and record, in one transaction (``corral rm``).

        The caller holds the run's lease. The record goes last, so a crash part way
        leaves a run that ``delete`` finishes. Raises ``UnknownRun`` when there is none,
        ``OSError`` when the folder cannot be removed (the record is then kept).
        """
        folder = self.run_dir(self.get(run_id).run_id)
        if folder.exists():
            shutil.rmtree(folder)
        self._unsynced.discard(run_id)
        self._unsynced_files.pop(run_id, None)
        with transaction(self._db) as db:
            for table in ("steps", "event_heads", "runs"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    # ----------------------------------------------------------------- journal

    def journal_start(self, run_id: str, kind: str, key: str, data: dict[str, Any]) -> int:
        """Record a step as started, before it runs; return its sequence number.

        Raises ``UnknownRun`` when there is no such run and ``TypeError`` when
        ``data`` is not JSON-serialisable.
        """
        data_json = json.dumps(data, sort_keys=True)
        with transaction(self._db) as db:
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
        with transaction(self._db) as db:
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
        write_atomic(path, data.encode() if isinstance(data, str) else data)
        self._unsynced_files.setdefault(run_id, set()).add(path)
        self._unsynced.add(run_id)
        return path

    def _sync_artifacts(self, run_id: str) -> None:
        """``fsync`` the artifacts written since the last boundary, then their folders up to
        the run's (a folder made for them is an entry of its parent)."""
        fsync_written(self._unsynced_files.pop(run_id, set()), self.run_dir(run_id))

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
            record_durable(self._db, run_id, point, self._boot, self.run_dir(run_id))
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
            record_head(self._db, run_id, seq, after, self._boot)
        except sqlite3.Error as exc:  # the event is written; verify tolerates one unrecorded
            log.warning("run %s: event %d written but its head not recorded: %s", run_id, seq, exc)

    def verify(self, run_id: str) -> VerifyResult:
        """Recompute the run's chain (see ``verify_log``), checked against the recorded head."""
        head = read_head(self._db, run_id)
        return verify_log(self.log_path(run_id), run_id, head, self._boot)


def _step(row: sqlite3.Row) -> Step:
    return Step(row["run_id"], row["seq"], row["kind"], row["key"], row["state"], row["started"],
                row["finished"], json.loads(row["data_json"] or "{}"))  # fmt: skip
