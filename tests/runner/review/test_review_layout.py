"""The review laid out for its medium: a terminal, a pipe or log (80 columns), a page 800 or 1400 px wide.

One run on the fake backend (``tests.support.fastloop``, no Docker): a pytest gate fails at base,
attempt 1 leaves it failing, attempt 2 fixes it. Its review is drawn as a person gets it: by
``corral review`` into a pipe (rich's 80 columns), on a wide terminal, and as the HTML report in
headless Chromium at 800 and 1400 px, where what is measured is that no table cell is cut off and
nothing runs off the page (the screenshots are kept in ``test-artifacts/`` to look at). A second
review adds what a big project has: long test ids in every column of the gates table.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from runner.cli.review import render
from runner.review.evidence import Review, gather
from runner.review.report_html import render_html
from runner.store.runs import RunStore
from tests.support.chromium import Browser, artifacts_dir
from tests.support.cli import corral
from tests.support.fastloop import (
    ADDS,
    PYTEST_GATE,
    Project,
    PytestFake,
    finish,
    run,
    script,
    write,
)
from tests.support.fastloop import policy as fast_policy

LONG = [
    f"tests/integration/test_invoices_and_discounts.py::test_case_number_{i:03d}" for i in range(4)
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("layout")
    project = Project(root / "project", root / "home")
    result = project.start(
        script(
            [[run("python3 -c 'import sys; sys.exit(3)'"),
              write("src/calc.py", "def add(a, b):\n    return a * b\n"), finish("tried")]],
            [[write("src/calc.py", "def add(a, b):\n    return a + b\n"), finish("fixed add")]],
        ),
        fast_policy(gates=[PYTEST_GATE, ADDS], attempts=2),
        backend=PytestFake(),
    )  # fmt: skip
    assert result.status == "ready_for_review", result.reason
    return root / "home", result.run_id


def _review(ran: tuple[Path, str], long: bool = False) -> Review:
    with RunStore(ran[0]) as store:
        rv = gather(store, ran[1])
    if long:  # what a big project's gate says: many long ids in every column
        rv.gates = [dataclasses.replace(g, fixed=LONG, still_failing=LONG, newly_failing=LONG,
                                        missing=LONG) for g in rv.gates]  # fmt: skip
    return rv


def _drawn(rv: Review, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    for part in render(rv):
        console.print(part)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_piped_review_stacks_the_gates_and_cuts_no_cell(ran: tuple[Path, str]) -> None:
    home, run_id = ran
    piped = corral("review", run_id, home=home, env={"COLUMNS": None})  # a pipe: 80 columns
    assert piped.returncode == 0, piped.stderr
    for text in (piped.stdout, _drawn(_review(ran, long=True), 80)):
        assert "…" not in text  # rich's mark of a cut cell
        assert max(len(line) for line in text.splitlines()) <= 80
    gates = piped.stdout[piped.stdout.index("\ngates\n") :]
    assert "  tests on attempt-1: FAIL (base FAIL, exit 1)" in gates
    assert "    still failing: tests.test_calc::test_add" in gates
    assert "  tests on attempt-2: pass (base FAIL, exit 0)" in gates
    long = _drawn(_review(ran, long=True), 80)
    for column in ("fixed", "still failing", "newly failing", "missing"):
        assert f"\n    {column}:\n" + "".join(f"      {i}\n" for i in LONG) in long, column
    assert "    reason: exit 1: 1 failed" in long


def test_a_wide_terminal_keeps_the_gates_table(ran: tuple[Path, str]) -> None:
    wide = _drawn(_review(ran), 200)
    header = next(line for line in wide.splitlines() if "newly failing" in line)
    for column in ("run on", "gate", "base", "result", "fixed", "still failing", "missing",
                   "reason"):  # fmt: skip
        assert column in header
    assert "…" not in wide and "tests on attempt-1" not in wide


#: What a person can see of a stacked-or-table: the page's and the table's width against the
#: viewport, every cell whose content is cut (wider than its box, or past the viewport's edge),
#: and the column names a reader sees (the header row, or each stacked cell's label).
MEASURE = """((id) => {
  const t = document.getElementById(id), vw = document.documentElement.clientWidth;
  const seen = (e) => e.checkVisibility() && e.getBoundingClientRect().width > 0;
  const cells = [...t.querySelectorAll('th, td')].filter(seen);
  const cut = cells.filter((c) => c.scrollWidth > c.clientWidth + 1
    || c.getBoundingClientRect().right > vw + 0.5 || c.getBoundingClientRect().left < -0.5);
  const head = t.querySelector('tr.head');
  const stacked = !seen(head);
  const names = stacked
    ? [...new Set([...t.querySelectorAll('td')].map((td) =>
        getComputedStyle(td, '::before').content.replace(/^"|"$/g, '')))]
    : [...head.querySelectorAll('th')].filter(seen).map((th) => th.innerText);
  return { page: document.documentElement.scrollWidth, vw, table: t.getBoundingClientRect().right,
           cut: cut.map((c) => c.innerText.slice(0, 60)), stacked, names,
           text: t.innerText };
})"""


@pytest.mark.parametrize("width", [800, 1400])
def test_the_html_tables_fit_the_page_at_800_and_1400_px(
    ran: tuple[Path, str], tmp_path: Path, width: int
) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_review(ran, long=True)), encoding="utf-8")
    with Browser(tmp_path / "profile", width=width, height=900) as browser:
        browser.open(page.as_uri())
        shot = browser.screenshot(artifacts_dir() / f"review-layout-{width}.png")
        assert shot.stat().st_size > 10_000
        for table in ("gates", "attempts"):
            seen = browser.value(f"{MEASURE}({json.dumps(table)})")
            assert seen["page"] <= seen["vw"] and seen["table"] <= seen["vw"] + 0.5, seen
            assert seen["cut"] == [], (table, seen["cut"])
            assert seen["stacked"] is (width == 800), seen
            if table == "gates":
                assert {"newly failing", "missing", "reason"} <= set(seen["names"]), seen
                assert all(test_id in seen["text"] for test_id in LONG)
