"""The event log on its own (no run store): appends, the write hook, fsync points, verify_log.

What the log does inside a run store (the head in ``runs.db``, durable boundaries,
tampering, torn lines, several processes) is tested through ``RunStore`` in
``tests/test_store.py``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runner.store.chain import GENESIS, Head, link, verify_log
from runner.store.disk import write_all
from runner.store.eventlog import EventLog, LogCorrupt, StoreError


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def test_append_creates_the_log_and_events_reads_it_back(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "run-1" / "events.jsonl", "run-1")
    assert log.events() == []  # no log yet
    first = log.append("run_start", {"text": "naïve ✓"})
    second = log.append("step", {"i": 1})
    assert (first.seq, first.prev, second.seq) == (1, GENESIS, 2)
    assert second.prev == link(_lines(log.path)[0])
    assert log.events() == [first, second]
    res = verify_log(log.path, "run-1", None, "")
    assert (res.ok, res.events, res.note) == (True, 2, None)


def test_on_write_gets_every_line_written_the_repair_included(tmp_path: Path) -> None:
    written: list[tuple[int, str]] = []
    log = EventLog(tmp_path / "events.jsonl", "r", lambda seq, after: written.append((seq, after)))
    log.append("one", {})
    with log.path.open("ab") as f:
        f.write(b'{"v":1,"se')  # a torn last line
    log.append("two", {})
    assert [e.type for e in log.events()] == ["one", "log_repaired", "two"]
    assert written == [(n, link(line)) for n, line in enumerate(_lines(log.path), start=1)]


def test_what_on_write_raises_passes_through_with_the_line_written(tmp_path: Path) -> None:
    def refuse(seq: int, after: str) -> None:
        raise RuntimeError(f"head {seq} not recorded")

    log = EventLog(tmp_path / "events.jsonl", "r", refuse)
    with pytest.raises(RuntimeError, match="head 1 not recorded"):
        log.append("one", {})
    assert [e.type for e in log.events()] == ["one"]
    assert verify_log(log.path, "r", None, "").ok


def test_fsync_point_names_the_last_complete_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r")
    assert log.fsync_point() is None  # no log
    log.path.write_bytes(b"")
    assert log.fsync_point() is None  # empty
    log.append("one", {})
    log.append("two", {})
    assert log.fsync_point() == (2, link(_lines(log.path)[1]))
    with log.path.open("ab") as f:
        f.write(b'{"v":1,"seq":3,"ty')
    assert log.fsync_point() is None  # torn: the next append repairs it


def test_a_json_line_that_is_no_event_raises_log_corrupt(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r")
    log.append("one", {})
    with log.path.open("ab") as f:
        f.write(b'{"hello":"world"}\n')
    with pytest.raises(LogCorrupt, match="corral verify r") as info:
        log.append("two", {})
    assert isinstance(info.value, StoreError) and isinstance(info.value, ValueError)
    with pytest.raises(LogCorrupt, match="line 2"):
        log.events()
    assert len(_lines(log.path)) == 2  # nothing was appended


def test_verify_log_checks_the_head_within_its_boot_only(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", "r")
    for i in range(4):
        log.append("step", {"i": i})
    lines = _lines(log.path)
    synced = Head(4, link(lines[3]), "boot-a", 2, link(lines[1]))
    assert verify_log(log.path, "r", synced, "boot-a").ok
    log.path.write_bytes(b"".join(line + b"\n" for line in lines[:3]))  # event 4 cut
    same_boot = verify_log(log.path, "r", synced, "boot-a")
    assert (same_boot.ok, same_boot.first_bad_seq) == (False, 4)
    restarted = verify_log(log.path, "r", synced, "boot-b")
    assert (restarted.ok, restarted.events) == (True, 3)
    assert restarted.note is not None and "after 2" in restarted.note
    log.path.unlink()
    assert verify_log(log.path, "r", None, "boot-a").ok
    missing = verify_log(log.path, "r", synced, "boot-a")
    assert (missing.ok, missing.first_bad_seq) == (False, 1)


def test_write_all_continues_a_short_write() -> None:
    data = os.urandom(1 << 20)  # larger than a pipe's buffer: the first write(2) is short
    read_end, write_end = os.pipe()
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 65536):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_all(write_end, data)
    finally:
        os.close(write_end)
        reader.join()
        os.close(read_end)
    assert bytes(got) == data
