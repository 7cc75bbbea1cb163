"""The run store: records, journal, artifacts, and the tamper-evident event chain."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from runner.store import DuplicateRun, NewRun, RunStore, UnknownRun


def _new(**kw: object) -> NewRun:
    base = dict(repo="/r", base="abc", bug_title="t", bug_path="/b.md", agent="scripted",
                model=None, policy_json="{}", spec_json="{}")  # fmt: skip
    base.update(kw)
    return NewRun(**base)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


def test_create_get_update_list_and_reopen(store: RunStore, tmp_path: Path) -> None:
    a = store.create(_new(run_id="run-a"))
    b = store.create(_new())
    store.update(a, status="failed", failure_domain="governance", reason="wrote setup.cfg")
    rec = store.get(a)
    assert (rec.status, rec.failure_domain, rec.reason) == (
        "failed",
        "governance",
        "wrote setup.cfg",
    )
    assert [r.run_id for r in store.list_runs()] == [b, a]
    with pytest.raises(ValueError, match="unknown run fields"):
        store.update(a, colour="red")
    store.close()
    with RunStore(tmp_path / "home") as again:
        assert again.get(a).reason == "wrote setup.cfg"
        mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_unknown_run_and_idempotency_key(store: RunStore) -> None:
    with pytest.raises(UnknownRun, match="`corral list` shows runs"):
        store.get("nope")
    first = store.create(_new(idempotency_key="bug-17"))
    with pytest.raises(DuplicateRun) as info:
        store.create(_new(idempotency_key="bug-17"))
    assert info.value.run_id == first == store.find_by_key("bug-17")


def test_artifacts_are_atomic_and_names_checked(store: RunStore) -> None:
    run = store.create(_new())
    path = store.write_artifact(run, "attempt-1/gate-tests.log", "ok\n")
    assert path.read_text() == "ok\n" and not list(path.parent.glob(".*tmp"))
    for bad in ("../x", "/abs", "a/../b", "sp ace", ""):
        with pytest.raises(ValueError, match="invalid artifact name"):
            store.artifact_path(run, bad)


def test_journal_records_what_a_crash_interrupted(store: RunStore) -> None:
    run = store.create(_new())
    s1 = store.journal_start(run, "baseline", "base", {})
    store.journal_done(run, s1, {"gates": {}})
    s2 = store.journal_start(run, "attempt", "1", {})
    assert store.last_incomplete(run) is not None and store.last_incomplete(run).seq == s2  # type: ignore[union-attr]
    store.journal_failed(run, s2, {"why": "x"})
    assert store.last_incomplete(run) is None
    assert [(s.kind, s.state) for s in store.journal(run)] == [
        ("baseline", "done"),
        ("attempt", "failed"),
    ]


def _chain(store: RunStore, n: int = 6) -> tuple[str, Path]:
    run = store.create(_new())
    for i in range(n):
        store.append(run, "step", {"i": i})
    return run, store.log_path(run)


def test_chain_verifies_and_finds_every_kind_of_tampering(store: RunStore) -> None:
    run, log = _chain(store)
    assert store.verify(run).ok and store.verify(run).events == 6
    original = log.read_bytes()
    lines = original.splitlines(keepends=True)

    def tampered(data: bytes) -> tuple[int | None, str | None]:
        log.write_bytes(data)
        res = store.verify(run)
        log.write_bytes(original)
        assert not res.ok
        return res.first_bad_seq, res.problem

    edited = lines[2].replace(b'"i":2', b'"i":9')
    assert tampered(b"".join([*lines[:2], edited, *lines[3:]]))[0] == 3
    assert tampered(b"".join(lines[:3] + lines[4:]))[0] == 4  # deleted line 4
    assert tampered(b"".join([lines[0], lines[2], lines[1], *lines[3:]]))[0] == 2  # swapped
    forged = json.loads(lines[3])
    forged["data"] = {"i": "forged"}
    from runner.store import canonical, event_hash

    forged["hash"] = event_hash(forged)  # a consistent hash, but the next line's link breaks
    assert tampered(b"".join([*lines[:3], canonical(forged) + b"\n", *lines[4:]]))[0] == 5
    assert "incomplete" in (tampered(original[:-10])[1] or "")


def test_torn_last_line_is_moved_aside_and_recorded(store: RunStore) -> None:
    run, log = _chain(store, 3)
    with log.open("ab") as f:
        f.write(b'{"v":1,"seq":4,"ty')
    store.append(run, "after_crash", {})
    assert store.verify(run).ok
    types = [e.type for e in store.events(run)]
    assert types[-2:] == ["log_repaired", "after_crash"]
    assert list(log.parent.glob("events.jsonl.torn-*"))


def _writer(home: str, run: str, n: int) -> None:
    s = RunStore(Path(home))
    for i in range(n):
        s.append(run, "w", {"i": i})
    s.close()


def test_two_processes_appending_keep_one_chain(store: RunStore) -> None:
    run = store.create(_new())
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(store.home), run, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    res = store.verify(run)
    assert res.ok and res.events == 400
    assert [e.seq for e in store.events(run)] == list(range(1, 401))


def test_schema_from_a_newer_corral_is_refused(tmp_path: Path) -> None:
    RunStore(tmp_path / "h").close()
    db = sqlite3.connect(tmp_path / "h" / "runs.db")
    db.execute("PRAGMA user_version=99")
    db.close()
    from runner.store import StoreError

    with pytest.raises(StoreError, match="newer corral"):
        RunStore(tmp_path / "h")
