"""The run store's database: ``runs.db``'s tables, their migrations, and how it is opened.

Plain ``sqlite3`` from the standard library: three small tables need no ORM,
and WAL plus ``BEGIN IMMEDIATE`` (``transaction``) give the concurrency we
need between processes. Table ``runs`` holds each run's state, ``steps`` the
journal and ``event_heads`` the head of each event log. The schema version is
``PRAGMA user_version``; ``open_db`` migrates an older database and refuses a
newer one.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from runner.errors import StoreError
from sandbox.paths import check_home

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

#: ``MIGRATIONS[n]`` takes a database from user_version n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def open_db(home: Path) -> sqlite3.Connection:
    """``home``'s ``runs.db``, made if need be, in WAL mode and at ``SCHEMA_VERSION``.

    An older database is migrated; ``StoreError`` when it is from a newer corral.
    ``sqlite3.Error`` and ``OSError`` pass through for a broken disk.
    """
    check_home(home)
    db = sqlite3.connect(home / "runs.db", timeout=5.0, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=5000")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            log.warning("%s/runs.db: WAL unavailable here (journal_mode=%s)", home, mode)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db, home)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, home: Path) -> None:
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    with transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{home}/runs.db is from a newer corral (schema {version}, this one "
                f"knows {SCHEMA_VERSION}): upgrade corral"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
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


def boot_id() -> str:
    """This boot of the machine (Linux's ``boot_id``; ``""`` where there is none)."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""
