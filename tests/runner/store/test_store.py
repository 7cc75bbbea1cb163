"""The run store: records, journal, artifacts, and the tamper-evident event chain."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.store.chain import GENESIS, canonical, event_hash, link
from runner.store.eventlog import LogCorrupt
from runner.store.runs import (
    FAILURE_DOMAINS,
    STATUSES,
    DuplicateRun,
    NewRun,
    RunStore,
    StoreError,
    UnknownRun,
)
from tests.support.cli import corral


def _new(**kw: str | None) -> NewRun:
    fields: dict[str, str | None] = dict(
        repo="/r", base="abc123", bug_title="division by zero", bug_path="/b.md",
        agent="scripted", model=None, policy_json='{"p": 1}', spec_json='{"image": "x"}',
    )  # fmt: skip
    fields.update(kw)
    return NewRun(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


# ----------------------------------------------------------------- runs


def test_store_touches_nothing_until_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with RunStore(home) as s:
        assert not home.exists()
        assert s.list_runs() == []
    assert (home / "runs.db").is_file()


def test_create_get_update_list(store: RunStore) -> None:
    a = store.create(_new(run_id="run-a"))
    b = store.create(_new())
    assert a == "run-a" and store.run_dir(a).is_dir()
    rec = store.get(a)
    assert (rec.status, rec.repo, rec.policy_json, rec.attempts_done) == (
        "created", "/r", '{"p": 1}', 0,
    )  # fmt: skip
    store.update(a, status="failed", failure_domain="governance", reason="wrote setup.cfg",
                 attempts_done=2, cost_usd=0.25)  # fmt: skip
    rec = store.get(a)
    assert (rec.status, rec.failure_domain, rec.reason, rec.attempts_done, rec.cost_usd) == (
        "failed", "governance", "wrote setup.cfg", 2, 0.25,
    )  # fmt: skip
    assert rec.updated >= rec.created
    assert [r.run_id for r in store.list_runs()] == [b, a]
    assert [r.run_id for r in store.list_runs(limit=1)] == [b]


def test_generated_run_ids_have_the_documented_shape(store: RunStore) -> None:
    run = store.create(_new())
    date, clock, suffix = run.split("-")
    assert (len(date), len(clock), len(suffix)) == (8, 6, 6)
    assert (date + clock).isdigit() and int(suffix, 16) >= 0


def test_update_refuses_unknown_columns_values_and_runs(store: RunStore) -> None:
    run = store.create(_new())
    with pytest.raises(ValueError, match="unknown run fields: colour"):
        store.update(run, colour="red")
    with pytest.raises(ValueError, match="unknown run fields: created"):
        store.update(run, created=0.0)
    with pytest.raises(ValueError, match="unknown status 'done'"):
        store.update(run, status="done")
    with pytest.raises(ValueError, match="unknown failure domain 'network'"):
        store.update(run, failure_domain="network")
    with pytest.raises(UnknownRun):
        store.update("ghost", status="failed")
    assert store.get(run).status == "created"
    assert "ready_for_review" in STATUSES and "tool-interface" in FAILURE_DOMAINS


def test_unknown_run_names_the_fix(store: RunStore) -> None:
    with pytest.raises(UnknownRun) as info:
        store.get("nope")
    assert str(info.value) == f"no run nope in {store.home}: `corral list` shows runs"
    assert isinstance(info.value, StoreError) and isinstance(info.value, LookupError)


def test_idempotency_key_returns_the_existing_run(store: RunStore) -> None:
    first = store.create(_new(idempotency_key="bug-17"))
    with pytest.raises(DuplicateRun) as info:
        store.create(_new(idempotency_key="bug-17", bug_title="other"))
    assert info.value.run_id == first == store.find_by_key("bug-17")
    assert isinstance(info.value, ValueError)
    assert store.find_by_key("bug-18") is None
    assert len(store.list_runs()) == 1
    other = store.create(_new(idempotency_key=None))
    assert other != first


def test_a_taken_or_unsafe_run_id_is_refused(store: RunStore) -> None:
    store.create(_new(run_id="mine"))
    with pytest.raises(DuplicateRun, match="run mine already exists") as info:
        store.create(_new(run_id="mine"))
    assert info.value.run_id == "mine"
    with pytest.raises(ValueError, match="invalid run id"):
        store.create(_new(run_id="../escape"))


def test_reopening_sees_the_same_data_in_wal_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with RunStore(home) as s:
        run = s.create(_new(idempotency_key="k"))
        s.update(run, reason="kept")
        seq = s.journal_start(run, "baseline", "base", {"n": 1})
        s.append(run, "run_start", {"x": 1})
    with RunStore(home) as again:
        assert again.get(run).reason == "kept"
        assert again.find_by_key("k") == run
        assert [st.seq for st in again.journal(run)] == [seq]
        assert [e.type for e in again.events(run)] == ["run_start"]
        assert again.verify(run).ok
    db = sqlite3.connect(home / "runs.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1
    finally:
        db.close()


def test_schema_from_a_newer_corral_is_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path / "h") as s:
        s.list_runs()
    db = sqlite3.connect(tmp_path / "h" / "runs.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer corral"), RunStore(tmp_path / "h") as s:
        s.list_runs()


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    db = sqlite3.connect(home / "runs.db")
    from runner.store.schema import MIGRATIONS

    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with RunStore(home) as s:
        run = s.create(_new())
        s.append(run, "x", {})
        assert s.verify(run).ok


# ----------------------------------------------------------------- journal


def test_journal_records_what_a_crash_interrupted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with RunStore(home) as s:
        run = s.create(_new())
        s1 = s.journal_start(run, "baseline", "base", {})
        s.journal_done(run, s1, {"gates": {"tests": False}})
        s2 = s.journal_start(run, "attempt", "1", {})
        s.journal_failed(run, s2, {"why": "gate failed"})
        s3 = s.journal_start(run, "attempt", "2", {"try": 2})
        assert s.last_incomplete(run) is not None
        # the process dies here: no journal_done for s3
    with RunStore(home) as s:
        step = s.last_incomplete(run)
        assert step is not None
        assert (step.seq, step.kind, step.key, step.state, step.finished, step.data) == (
            s3, "attempt", "2", "started", None, {"try": 2},
        )  # fmt: skip
        assert [(x.seq, x.kind, x.state, x.data) for x in s.journal(run)] == [
            (1, "baseline", "done", {"gates": {"tests": False}}),
            (2, "attempt", "failed", {"why": "gate failed"}),
            (3, "attempt", "started", {"try": 2}),
        ]
        s.journal_done(run, s3, {})
        assert s.last_incomplete(run) is None
        with pytest.raises(StoreError, match="not in progress"):
            s.journal_failed(run, s3, {})
        with pytest.raises(StoreError, match="not in progress"):
            s.journal_done(run, 99, {})
        with pytest.raises(UnknownRun):
            s.journal_start("ghost", "attempt", "1", {})
        with pytest.raises(TypeError):
            s.journal_start(run, "attempt", "3", {"x": object()})
        assert len(s.journal(run)) == 3


# ----------------------------------------------------------------- artifacts


def test_artifacts_are_written_atomically(store: RunStore) -> None:
    run = store.create(_new())
    path = store.write_artifact(run, "attempt-1/gate-tests.log", "first\n")
    assert path == store.run_dir(run) / "attempt-1" / "gate-tests.log"
    assert path.read_text() == "first\n"
    inode = path.stat().st_ino
    again = store.write_artifact(run, "attempt-1/gate-tests.log", b"second\xff")
    assert again == path and path.read_bytes() == b"second\xff"
    assert path.stat().st_ino != inode  # replaced, not rewritten in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["gate-tests.log"]  # no temp left
    assert store.artifact_path(run, "candidate.diff") == store.run_dir(run) / "candidate.diff"


@pytest.mark.parametrize(
    "bad",
    ["../x", "/abs", "a/../b", "a/./b", "a//b", "a/", "", "sp ace", "a\\b", "é",
     "events.jsonl", "events.jsonl.torn-1"],
)  # fmt: skip
def test_artifact_names_are_checked(store: RunStore, bad: str) -> None:
    run = store.create(_new())
    with pytest.raises(ValueError, match="invalid artifact name"):
        store.artifact_path(run, bad)
    with pytest.raises(ValueError, match="invalid artifact name"):
        store.write_artifact(run, bad, "x")
    assert sorted(p.name for p in store.run_dir(run).iterdir()) == []


# ----------------------------------------------------------------- event log


def _chain(store: RunStore, n: int = 6) -> tuple[str, Path]:
    run = store.create(_new())
    for i in range(n):
        store.append(run, "step", {"i": i, "text": "naïve ✓"})
    return run, store.log_path(run)


def test_events_form_a_hash_chain(store: RunStore) -> None:
    run, log = _chain(store, 4)
    events = store.events(run)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev == GENESIS
    lines = log.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    for i, e in enumerate(events):
        obj = json.loads(lines[i])
        assert set(obj) == {"v", "seq", "ts", "run_id", "type", "data", "prev", "hash"}
        assert obj["v"] == 1 and obj["run_id"] == run and obj["ts"].endswith("Z")
        assert canonical(obj) == lines[i]
        assert e.hash == event_hash(obj)
        if i:
            assert e.prev == link(lines[i - 1])
    assert store.verify(run).ok and store.verify(run).events == 4
    with pytest.raises(ValueError):
        store.append(run, "bad", {"x": float("nan")})
    with pytest.raises(TypeError):
        store.append(run, "bad", {"x": object()})
    assert store.verify(run).events == 4  # nothing was written


def test_verify_finds_every_kind_of_tampering(store: RunStore) -> None:
    run, log = _chain(store)
    assert store.verify(run).ok and store.verify(run).events == 6
    original = log.read_bytes()
    lines = original.splitlines(keepends=True)

    def first_bad(data: bytes) -> int | None:
        log.write_bytes(data)
        try:
            res = store.verify(run)
        finally:
            log.write_bytes(original)
        assert not res.ok and res.problem
        assert res.events == (res.first_bad_seq or 0) - 1
        return res.first_bad_seq

    edited = lines[2].replace(b'"i":2', b'"i":9')
    assert edited != lines[2]
    assert first_bad(b"".join([*lines[:2], edited, *lines[3:]])) == 3
    assert first_bad(b"".join(lines[:3] + lines[4:])) == 4  # line 4 deleted
    assert first_bad(b"".join([lines[0], lines[2], lines[1], *lines[3:]])) == 2  # swapped

    forged = json.loads(lines[3])
    forged.update(data={"i": "forged"}, prev="ab" * 32)
    forged["hash"] = event_hash(forged)  # self-consistent, but it links to nothing
    assert first_bad(b"".join([*lines[:3], canonical(forged) + b"\n", *lines[3:]])) == 4

    forged["prev"] = link(lines[2].rstrip(b"\n"))  # links well; the line after it does not
    forged["hash"] = event_hash(forged)
    assert first_bad(b"".join([*lines[:3], canonical(forged) + b"\n", *lines[3:]])) == 5

    assert first_bad(original[: -len(lines[-1]) // 2]) == 6  # last line cut half-way
    assert first_bad(b"".join(lines[:5])) == 6  # last line removed whole: the head knows
    spaced = json.dumps(json.loads(lines[1])).encode() + b"\n"  # same content, other bytes
    assert first_bad(b"".join([lines[0], spaced, *lines[2:]])) == 2
    assert store.verify(run).ok  # the original is back


def test_verify_finds_a_consistently_rewritten_tail(store: RunStore) -> None:
    run, log = _chain(store)
    lines = log.read_bytes().split(b"\n")[:-1]
    rewritten = lines[:3]
    for line in lines[3:]:  # recompute every hash and link from event 4 on
        obj = json.loads(line)
        obj["data"] = {"i": "rewritten"}
        obj["prev"] = link(rewritten[-1])
        obj["hash"] = event_hash(obj)
        rewritten.append(canonical(obj))
    log.write_bytes(b"\n".join(rewritten) + b"\n")
    res = store.verify(run)
    assert (res.ok, res.first_bad_seq) == (False, 6)
    assert "recorded" in (res.problem or "")


def test_events_appended_behind_the_stores_back_are_found(store: RunStore) -> None:
    run, log = _chain(store, 3)
    prev = link(log.read_bytes().split(b"\n")[-2])
    extra = b""
    for seq in (4, 5):
        obj: dict[str, object] = {"v": 1, "seq": seq, "ts": "2030-01-01T00:00:00.000000Z",
                                  "run_id": run, "type": "approved", "data": {}, "prev": prev}  # fmt: skip
        obj["hash"] = event_hash(obj)
        extra += canonical(obj) + b"\n"
        prev = link(canonical(obj))
    with log.open("ab") as f:
        f.write(extra)
    res = store.verify(run)
    assert (res.ok, res.first_bad_seq) == (False, 4)


def test_a_missing_log_of_a_run_with_events_is_found(store: RunStore) -> None:
    run, log = _chain(store, 2)
    log.unlink()
    res = store.verify(run)
    assert (res.ok, res.first_bad_seq) == (False, 1)
    fresh = store.create(_new())
    assert store.verify(fresh).ok and store.events(fresh) == []


@pytest.mark.parametrize(
    "torn", [b'{"v":1,"seq":4,"ty', b"\x00\x00\x00\x00\n"], ids=["no-newline", "garbage"]
)
def test_torn_last_line_is_moved_aside_and_recorded(store: RunStore, torn: bytes) -> None:
    run, log = _chain(store, 3)
    with log.open("ab") as f:
        f.write(torn)
    assert store.verify(run).first_bad_seq == 4
    assert [e.seq for e in store.events(run)] == [1, 2, 3]
    event = store.append(run, "after_crash", {})
    assert event.seq == 5
    assert store.verify(run).ok
    events = store.events(run)
    assert [(e.seq, e.type) for e in events[-2:]] == [(4, "log_repaired"), (5, "after_crash")]
    aside = list(log.parent.glob("events.jsonl.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == torn
    assert events[-2].data["moved_to"] == aside[0].name
    assert events[-2].data["bytes"] == len(torn)


def test_a_log_torn_at_its_first_line_is_repaired(store: RunStore) -> None:
    run = store.create(_new())
    store.log_path(run).write_bytes(b'{"v":1,"se')
    store.append(run, "run_start", {})
    assert [e.type for e in store.events(run)] == ["log_repaired", "run_start"]
    assert store.verify(run).ok


def test_a_last_line_that_is_json_but_no_event_stops_appends(store: RunStore) -> None:
    run, log = _chain(store, 2)
    with log.open("ab") as f:
        f.write(b'{"hello":"world"}\n')
    with pytest.raises(LogCorrupt, match="corral verify"):
        store.append(run, "x", {})
    with pytest.raises(LogCorrupt, match="line 3"):
        store.events(run)
    assert store.verify(run).first_bad_seq == 3


def _writer(home: str, run: str, worker: int, n: int, go: object) -> None:
    go.wait()  # type: ignore[attr-defined]
    with RunStore(Path(home)) as s:
        for i in range(n):
            s.append(run, "w", {"worker": worker, "i": i})


def test_two_processes_appending_keep_one_chain(store: RunStore) -> None:
    run = store.create(_new())
    store.close()  # no open database handle crosses the process boundary
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(store.home), run, w, 200, go)) for w in range(2)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    res = store.verify(run)
    assert (res.ok, res.events, res.problem) == (True, 400, None)
    events = store.events(run)
    assert [e.seq for e in events] == list(range(1, 401))
    for w in range(2):  # each writer's events are all there, in its own order
        assert [e.data["i"] for e in events if e.data["worker"] == w] == list(range(200))
    assert len(store.log_path(run).read_bytes().split(b"\n")) == 401


def test_a_log_copied_from_another_run_does_not_verify(store: RunStore) -> None:
    run_a, log_a = _chain(store, 2)
    run_b, log_b = _chain(store, 2)
    log_b.write_bytes(log_a.read_bytes())
    res = store.verify(run_b)
    assert (res.ok, res.first_bad_seq) == (False, 1)
    assert run_a in (res.problem or "")


# ----------------------------------------------------------------- durability


def _reader(home: str, run: str, conn: object) -> None:
    with RunStore(Path(home)) as s:
        conn.send(([e.type for e in s.events(run)], s.verify(run).ok))  # type: ignore[attr-defined]


def test_an_event_is_readable_by_another_process_right_after_append(store: RunStore) -> None:
    run = store.create(_new())
    store.append(run, "one", {})
    store.append(run, "two", {"x": 1})  # no close, no sync: the write alone must be enough
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=_reader, args=(str(store.home), run, theirs))
    p.start()
    assert ours.poll(120)
    assert ours.recv() == (["one", "two"], True)
    p.join(60)
    assert p.exitcode == 0


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from runner.store.runs import RunStore
store = RunStore(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    store.append(sys.argv[2], "step", {"i": i})
print("appended", flush=True)
time.sleep(600)
"""


def test_kill_9_after_n_appends_leaves_n_verified_events(store: RunStore) -> None:
    run = store.create(_new())
    store.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(store.home), run, "25"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "appended\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    res = store.verify(run)
    assert (res.ok, res.events, res.problem) == (True, 25, None)
    assert [e.data["i"] for e in store.events(run)] == list(range(25))
    assert store.append(run, "resumed", {}).seq == 26  # the next process appends on
    assert store.verify(run).ok


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files ``os.fsync`` is called on (the real fsync runs)."""
    names: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    yield names


def test_the_log_is_fsynced_at_durable_boundaries_only(store: RunStore, fsynced: list[str]) -> None:
    run = store.create(_new())
    for i in range(5):
        store.append(run, "step", {"i": i})
    seq = store.journal_start(run, "attempt", "1", {})
    store.update(run, tokens=10, cost_usd=0.5, wall_seconds=3.0)  # counters only
    assert "events.jsonl" not in fsynced
    store.journal_done(run, seq, {})
    assert fsynced.count("events.jsonl") == 1
    store.append(run, "step", {"i": 5})
    store.update(run, status="running")
    assert fsynced.count("events.jsonl") == 2
    seq = store.journal_start(run, "attempt", "2", {})
    store.journal_failed(run, seq, {})
    store.sync(run)
    assert fsynced.count("events.jsonl") == 4
    store.close()  # nothing appended since the last boundary
    assert fsynced.count("events.jsonl") == 4
    store.append(run, "run_end", {})
    store.close()
    assert fsynced.count("events.jsonl") == 5
    assert store.verify(run).ok


def test_artifacts_are_fsynced_at_the_next_boundary_before_the_log(
    store: RunStore, fsynced: list[str]
) -> None:
    run = store.create(_new())
    seq = store.journal_start(run, "attempt", "1", {})
    patch = store.write_artifact(run, "attempt-1/patch.diff", "diff\n")
    store.write_artifact(run, "attempt-1/gate-tests.log", "ok\n")
    store.write_artifact(run, "attempt-1/patch.diff", "diff 2\n")  # rewritten: synced once
    store.append(run, "attempt_end", {})
    assert fsynced == [] and patch.read_text() == "diff 2\n"  # readers see it at once
    store.journal_done(run, seq, {})  # the boundary: what the step wrote is on disk first
    assert fsynced[:2] == ["gate-tests.log", "patch.diff"]
    assert fsynced[2:5] == ["attempt-1", run, "events.jsonl"]
    store.write_artifact(run, "candidate.diff", "x\n")
    store.close()  # the run's last writes are synced by close too
    assert fsynced[-3:] == ["candidate.diff", run, "events.jsonl"]
    assert not list(store.run_dir(run).rglob("*.tmp"))


def test_a_boundary_records_the_durable_point_from_the_log(store: RunStore) -> None:
    run, log = _chain(store, 4)
    store.update(run, status="running")
    with sqlite3.connect(store.home / "runs.db") as db:
        row = db.execute(
            "SELECT seq, durable_seq, durable_link FROM event_heads WHERE run_id = ?", (run,)
        ).fetchone()
    assert row == (4, 4, link(log.read_bytes().split(b"\n")[3]))


def _restarted(store: RunStore, run: str) -> None:
    """What runs.db holds when its head was recorded before the machine last started."""
    with sqlite3.connect(store.home / "runs.db") as db:
        db.execute("UPDATE event_heads SET boot = 'an-earlier-boot' WHERE run_id = ?", (run,))


def _synced_chain(store: RunStore, synced: int, after: int = 0) -> tuple[str, Path]:
    """A chain of ``synced`` events, a boundary (the durable point), then ``after`` more."""
    run, log = _chain(store, synced)
    store.update(run, status="running")
    for i in range(after):
        store.append(run, "step", {"i": i})
    return run, log


def _cut(log: Path, keep: int) -> None:
    log.write_bytes(b"".join(line + b"\n" for line in log.read_bytes().split(b"\n")[:keep]))


def test_a_tail_cut_after_the_durable_point_is_tampering_in_the_same_boot(
    store: RunStore,
) -> None:
    run, log = _synced_chain(store, 3, 3)
    _cut(log, 4)
    res = store.verify(run)
    assert (res.ok, res.first_bad_seq) == (False, 5)
    assert "removed" in (res.problem or "")


def test_after_a_restart_a_power_loss_explains_a_tail_lost_after_the_durable_point(
    store: RunStore,
) -> None:
    run, log = _synced_chain(store, 3, 3)
    _restarted(store, run)
    _cut(log, 4)  # events 5 and 6 were never written back
    res = store.verify(run)
    assert (res.ok, res.events, res.problem) == (True, 4, None)
    assert res.note is not None and "after 3" in res.note and "power loss" in res.note
    shown = corral("verify", run, home=store.home)
    assert shown.returncode == 0 and "note: not checked" in shown.stdout, shown
    event = store.append(run, "run_resume", {})  # the next boot appends on from the log
    assert event.seq == 5
    res = store.verify(run)
    assert (res.ok, res.note) == (True, None)  # the head is this boot's again: checked in full


def test_after_a_restart_a_head_behind_the_log_is_explained_too(store: RunStore) -> None:
    run, _ = _synced_chain(store, 3)
    with sqlite3.connect(store.home / "runs.db") as db:  # runs.db lost its last commits
        db.execute("UPDATE event_heads SET seq = 1, link = ? WHERE run_id = ?", ("0" * 64, run))
    assert not store.verify(run).ok  # in this boot that is tampering
    _restarted(store, run)
    res = store.verify(run)
    assert res.ok and res.note is not None


def test_the_durable_point_is_checked_whatever_the_boot(store: RunStore) -> None:
    run, log = _synced_chain(store, 4)  # durable point: event 4, on disk
    _restarted(store, run)
    _cut(log, 2)
    res = store.verify(run)
    assert (res.ok, res.first_bad_seq) == (False, 3)
    assert "synced 4" in (res.problem or "")
    run2, log2 = _synced_chain(store, 4)
    _restarted(store, run2)
    lines = log2.read_bytes().split(b"\n")[:-1]
    obj = json.loads(lines[3])
    obj["data"] = {"i": "rewritten"}
    obj["hash"] = event_hash(obj)
    log2.write_bytes(b"\n".join([*lines[:3], canonical(obj)]) + b"\n")
    res = store.verify(run2)
    assert (res.ok, res.first_bad_seq) == (False, 4)
    assert "synced" in (res.problem or "")
