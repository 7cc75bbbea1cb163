"""Idempotency keys: the same key and the same request return that run with its real exit code,
waiting for it while it runs and resuming it when it was interrupted; the same key for another
request is exit 2 naming what differs."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from runner.errors import RunInterrupted, UsageError
from runner.loop.outcome import RunResult
from sandbox.lease import is_live
from tests.support.demo import FIXED
from tests.support.fastloop import Project, finish, policy, run, script, write


@pytest.fixture
def project(tmp_path: Path, corral_home: Path) -> Project:
    return Project(tmp_path / "project", corral_home)


FIX = script([[write("src/calc.py", FIXED), finish()]])


def test_the_same_request_returns_the_run_with_its_real_exit_code(project: Project) -> None:
    first = project.start(FIX, policy(), idempotency_key="bug-1")
    again = project.start(FIX, policy(), idempotency_key="bug-1")
    assert (again.run_id, again.status, again.exit_code) == (first.run_id, "ready_for_review", 0)
    failing = project.start(script([[finish("nothing")]]), policy(attempts=1), idempotency_key="k2")
    repeat = project.start(script([[finish("nothing")]]), policy(attempts=1), idempotency_key="k2")
    assert repeat.run_id == failing.run_id and repeat.exit_code == failing.exit_code == 1
    assert len(project.store.list_runs()) == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("bug", "bug report"),
        ("policy", "policy"),
        ("agent", "agent"),
    ],
)
def test_the_same_key_for_another_request_names_the_difference(
    project: Project, change: str, named: str
) -> None:
    first = project.start(FIX, policy(), idempotency_key="bug-2")
    text, kw = policy(), {}
    if change == "bug":
        (project.root / "bug.md").write_text("# another bug\n\nmul() is wrong.\n")
    elif change == "policy":
        text = policy(attempts=1)
    else:
        kw = {"agent": "corral", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(UsageError, match=f"names run {first.run_id}, made for another {named}"):
        project.start(None if kw else FIX, text, idempotency_key="bug-2", **kw)
    assert len(project.store.list_runs()) == 1


def test_a_second_call_waits_for_the_run_still_going(project: Project) -> None:
    slow = script([[run("sleep 3"), write("src/calc.py", FIXED), finish()]])
    results: list[RunResult] = []
    first = threading.Thread(
        target=lambda: results.append(project.start(slow, policy(), idempotency_key="busy"))
    )
    first.start()
    try:
        for _ in range(200):  # bounded: 20 s
            found = project.store.find_by_key("busy")
            if found is not None and is_live(project.home, found):
                break
            time.sleep(0.1)
        again = project.start(slow, policy(), idempotency_key="busy")
    finally:
        first.join(60)
    assert results and again.run_id == results[0].run_id
    assert (again.status, again.exit_code) == ("ready_for_review", 0)  # not "running", exit 1
    assert len(project.store.list_runs()) == 1


def test_an_interrupted_run_is_resumed_by_the_same_request(project: Project) -> None:
    def ctrl_c(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "write":
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        project.start(FIX, policy(), on_event=ctrl_c, idempotency_key="cut")
    again = project.start(FIX, policy(), idempotency_key="cut")
    assert again.status == "ready_for_review", again
    assert project.kinds(again.run_id).count("run_resume") == 1
