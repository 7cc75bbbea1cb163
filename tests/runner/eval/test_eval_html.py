"""``corral eval report EVAL --html FILE``: one self-contained page, drawn in headless Chromium.

The eval is ``synthetic`` (three tasks x three trials on the fake backend, no Docker: ``always``
resolves 3 of 3, ``sometimes`` 2 of 3, ``never`` 0 of 3). The page is opened at 800 and 1400 px:
it renders and runs only its own script, the model name's ``<script>`` is text, each chart has
the marks its data asks for (a pass@k and a pass^k point per k, with the values computed here by
hand; a cost/success point per task; a bar of four phases per task), and nothing runs off the
page. The screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest

from runner.eval.html import PHASES, trial_phases
from runner.store.chain import Event
from runner.store.runs import RunStore
from tests.runner.eval.synthetic import EVAL_ID, MODEL, OUTCOMES, synthetic_eval
from tests.runner.review.test_review_layout import MEASURE
from tests.support.chromium import Browser, artifacts_dir
from tests.support.cli import corral


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corral home of the synthetic eval and its HTML report."""
    root = tmp_path_factory.mktemp("evalhtml")
    home = synthetic_eval(root)
    out = root / "report.html"
    done = corral("eval", "report", EVAL_ID, "--html", str(out), home=home)
    assert done.returncode == 0, done.stderr
    assert f"wrote the HTML report to {out}" in done.stderr
    return home, out


def _by_hand(k: int, hat: bool) -> float:
    """pass@k (pass^k with ``hat``) over the tasks, from every k-subset of each task's trials."""
    per_task = []
    for outcomes in OUTCOMES.values():
        subsets = list(combinations(outcomes, k))
        per_task.append(sum(map(all if hat else any, subsets)) / len(subsets))
    return sum(per_task) / len(per_task)


def test_the_page_loads_nothing_from_outside(page: tuple[Path, Path]) -> None:
    text = page[1].read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"<link\b|<img\b|<iframe\b|@import|url\(|\b(?:href|src)\s*=", text, re.I)
    assert text.count("<script>") == 1 and MODEL not in text


@pytest.mark.parametrize("width", [800, 1400])
def test_chromium_draws_every_chart_and_nothing_overflows(
    page: tuple[Path, Path], tmp_path: Path, width: int
) -> None:
    with Browser(tmp_path / "profile", width=width, height=900) as browser:
        browser.open(page[1].as_uri())
        shot = browser.screenshot(artifacts_dir() / f"eval-report-{width}.png")
        assert shot.stat().st_size > 10_000
        assert browser.value("document.body.dataset.js") == "ready"
        assert browser.value("document.scripts.length") == 1
        assert MODEL in browser.value("document.querySelector('h1 + p').innerText")
        for kind, hat in (("pass_at_k", False), ("pass_hat_k", True)):
            points = browser.value(
                f"[...document.querySelectorAll('#pass-at-k circle.{kind}')]"
                ".map((c) => [+c.dataset.k, +c.dataset.value])"
            )
            assert [k for k, _ in points] == [1, 2, 3], kind
            for k, value in points:
                assert math.isclose(value, _by_hand(k, hat), abs_tol=1e-6), (kind, k, value)
        rates = browser.value(
            "Object.fromEntries([...document.querySelectorAll('#cost-success circle.point')]"
            ".map((c) => [c.dataset.task, +c.dataset.rate]))"
        )
        assert rates == pytest.approx({t: sum(o) / len(o) for t, o in OUTCOMES.items()}, abs=1e-6)
        bars = browser.value(
            "[...document.querySelectorAll('#phases g.bar')].map((g) => [g.dataset.task,"
            " [...g.querySelectorAll('rect.seg')].map((r) => r.dataset.phase)])"
        )
        assert bars == [[t, list(PHASES)] for t in OUTCOMES]
        seen = browser.value(
            "[...document.querySelectorAll('svg.chart')].map((s) => s.getBoundingClientRect())"
            ".map((r) => [r.left, r.right, r.width])"
        )
        vw = browser.value("document.documentElement.clientWidth")
        assert browser.value("document.documentElement.scrollWidth") <= vw
        assert len(seen) == 3 and all(left >= 0 and right <= vw + 0.5 and w > 300
                                      for left, right, w in seen), seen  # fmt: skip
        table = browser.value(f"{MEASURE}({json.dumps('tasks')})")
        assert table["cut"] == [] and table["table"] <= vw + 0.5, table
        assert table["stacked"] is (width == 800), table
        assert {"task", "resolved", "pass@1", "outcomes"} <= set(table["names"]), table
        assert browser.value("document.getElementById('flaky').innerText") == "sometimes"
        assert browser.value("document.querySelector('#domains td').innerText") == "model"


def test_each_second_of_a_trial_is_in_one_phase(page: tuple[Path, Path]) -> None:
    with RunStore(page[0]) as store:
        runs = store.list_runs()
        assert len(runs) == 9
        for run in runs:
            events = store.events(run.run_id)
            phases = trial_phases(events)
            first, last = _seconds(events[0]), max(_seconds(e) for e in events)
            assert math.isclose(sum(phases.values()), last - first, abs_tol=0.01), phases
            assert phases["agent"] > 0 and phases["gates"] > 0 and phases["set-up"] > 0, phases


def _seconds(e: Event) -> float:
    return datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()


def _event(seq: int, second: float, kind: str, **data: object) -> Event:
    ts = f"2026-01-01T00:00:{second:09.6f}Z"
    return Event(seq, ts, "r", kind, dict(data), "", "")


def test_phases_count_overlaps_once_agent_first_then_gates_then_set_up() -> None:
    """Baseline gates run alongside the first attempt: their overlap with a window is agent time."""
    events = [
        _event(1, 0, "run_start"),
        _event(2, 2, "gate_start", gate="g", label="baseline"),
        _event(3, 3, "attempt_start", attempt=1),
        _event(4, 4, "window_start", attempt=1, window=1),
        _event(5, 6, "gate_end", gate="g", label="baseline"),
        _event(6, 10, "window_end", attempt=1, window=1),
        _event(7, 11, "gate_start", gate="g", label="attempt-1"),
        _event(8, 14, "gate_end", gate="g", label="attempt-1"),
        _event(9, 15, "run_end"),
    ]
    assert trial_phases(events) == {"set-up": 2.0, "agent": 6.0, "gates": 5.0, "runner": 2.0}
    assert trial_phases([]) == dict.fromkeys(PHASES, 0.0)
    cut = trial_phases(events[:4])  # stopped mid-window: the window runs to the last event
    assert cut == {"set-up": 2.0, "agent": 0.0, "gates": 2.0, "runner": 0.0}


def test_an_unwritable_html_path_is_one_line_naming_the_fix(
    page: tuple[Path, Path], tmp_path: Path
) -> None:
    done = corral("eval", "report", EVAL_ID, "--html", str(tmp_path / "no" / "r.html"),
                  home=page[0])  # fmt: skip
    assert done.returncode == 2
    assert "give a file path you can write" in done.stderr and "Traceback" not in done.stderr
