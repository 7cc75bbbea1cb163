"""Each event log's head in ``runs.db`` (table ``event_heads``): what ``verify`` checks a log by.

A head is the last event's seq and link, written after each append (a
commit, not synced: ``synchronous=NORMAL``), the boot id of the machine then
(``runner.store.schema.boot_id``), and the *durable point*: seq and link of
the last event at the last durable boundary, recorded after that ``fsync``.
``runner.store.chain.verify_log`` says what a head lets it find after a
crash or a power loss. Each function here is one transaction;
``sqlite3.Error`` passes through (``RunStore`` logs it: the event is written
either way, and ``verify`` tolerates one unrecorded head).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runner.store.chain import Head
from runner.store.disk import fsync_dir
from runner.store.schema import transaction


def record_head(db: sqlite3.Connection, run_id: str, seq: int, link: str, boot: str) -> None:
    """Record event ``seq`` (just written, its link ``link``) as the head of the run's log.

    Within a boot the head only moves forward (a log cut behind the store's back
    stays found); the first append after a restart replaces a head that a power
    loss may have left ahead of the log. The durable point is kept either way.
    """
    with transaction(db):
        db.execute(
            "INSERT INTO event_heads (run_id, seq, link, boot) VALUES (?,?,?,?)"
            " ON CONFLICT(run_id) DO UPDATE SET seq = excluded.seq, link = excluded.link,"
            " boot = excluded.boot"
            " WHERE excluded.seq > event_heads.seq OR excluded.boot != event_heads.boot",
            (run_id, seq, link, boot),
        )


def record_durable(
    db: sqlite3.Connection, run_id: str, point: tuple[int, str], boot: str, run_dir: Path
) -> None:
    """Record ``point`` (seq, link: the log was just ``fsync``ed) as the log's durable point.

    At the log's first boundary the run's folder is ``fsync``ed too, as the
    log's entry is in it (``OSError`` passes through).
    """
    with transaction(db):
        row = db.execute(
            "SELECT durable_seq FROM event_heads WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None or row[0] == 0:
            fsync_dir(run_dir)  # the log's first boundary: its entry too
        db.execute(
            "INSERT INTO event_heads (run_id, seq, link, boot, durable_seq, durable_link)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET"
            " durable_seq = excluded.durable_seq, durable_link = excluded.durable_link",
            (run_id, *point, boot, *point),
        )


def read_head(db: sqlite3.Connection, run_id: str) -> Head | None:
    """The head recorded for the run's log, or None (never recorded)."""
    row = db.execute(
        "SELECT seq, link, boot, durable_seq, durable_link FROM event_heads WHERE run_id = ?",
        (run_id,),
    ).fetchone()
    return Head(*row) if row is not None else None
