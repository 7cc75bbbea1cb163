"""Gate verdicts without Docker: junit parsing, the comparison with a baseline, judge, feedback.

Reports come from the host's real pytest, run once on a tree built in ``tmp_path``
(the gate image's pytest writes the same xunit2 format); forged ones are
written by hand, the way candidate code in a gate container could.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from policies.gates import GateResult, cannot_run, feedback, judge
from policies.junit import (
    MAX_JUNIT_BYTES,
    compare,
    deselect_args,
    node_id,
    parse_junit,
    parse_junit_bytes,
)
from policies.junit import TestOutcomes as Outcomes
from policies.policy import GatePolicy

SUITE = "corral-0123456789abcdef"
TESTS = textwrap.dedent(
    """\
    import pytest

    def test_p(): pass
    def test_f(): assert 0
    def test_s(): pytest.skip("not today")
    def test_x(): pytest.xfail("known")

    @pytest.mark.parametrize("n", [1, 10])
    def test_n(n): assert n == 10

    def test_add(): pass
    def test_add_many(): pass

    class TestK:
        def test_m(self): pass
    """
)
GATE = GatePolicy(name="tests", command="python3 -m pytest -q")
OTHER = GatePolicy(name="lint", command="ruff check .")


def _pytest(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


@dataclass(frozen=True)
class Sample:
    """A tree of tests (one module does not import), its real junit report and collected ids."""

    tree: Path
    report: Path
    collected: frozenset[str]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    root = tmp_path_factory.mktemp("gates") / "tree"
    (root / "tests").mkdir(parents=True)
    (root / "tests/test_a.py").write_text(TESTS)
    (root / "tests/test_broken.py").write_text("import no_such_module\n")
    report = root.parent / "report.xml"
    _pytest(root, f"--junitxml={report}", "-o", "junit_family=xunit2",
            "-o", f"junit_suite_name={SUITE}", "--continue-on-collection-errors")  # fmt: skip
    listing = _pytest(root, "--collect-only", "--continue-on-collection-errors").stdout
    return Sample(root, report, frozenset(ln for ln in listing.splitlines() if "::" in ln))


def _base(
    passed: Collection[str], failed: Collection[str] = (), skipped: Collection[str] = ()
) -> Outcomes:
    return Outcomes(frozenset(passed), frozenset(failed), frozenset(skipped))


def _baseline(outcomes: Outcomes | None, exit_code: int = 1, log: str = "") -> GateResult:
    return GateResult(name="tests", required=True, passed=exit_code == 0, exit_code=exit_code,
                      timed_out=False, duration_s=1.0, log=log, reason="", outcomes=outcomes)  # fmt: skip


# ----------------------------------------------------------------- parse_junit


def test_real_report_sorts_passes_failures_skips_and_xfails(sample: Sample) -> None:
    got = parse_junit(sample.report, SUITE)
    assert got is not None
    t = "tests.test_a::"
    assert got.passed == {t + "test_p", t + "test_n[10]", t + "test_add", t + "test_add_many",
                          "tests.test_a.TestK::test_m"}  # fmt: skip
    assert got.failed == {t + "test_f", t + "test_n[1]", "::tests.test_broken"}
    assert got.skipped == {t + "test_s", t + "test_x"}  # an xfail is a skip in junit
    assert got.ran == got.passed | got.failed


def test_report_without_the_runners_suite_name_is_rejected(sample: Sample) -> None:
    real = sample.report.read_bytes()
    assert parse_junit_bytes(real, SUITE) is not None
    assert parse_junit_bytes(real, "corral-somethingelse") is None
    forged = (b'<testsuites><testsuite name="pytest" tests="1">'
              b'<testcase classname="tests.test_a" name="test_f"/></testsuite></testsuites>')  # fmt: skip
    assert parse_junit_bytes(forged, SUITE) is None
    assert parse_junit_bytes(forged) == _base({"tests.test_a::test_f"})  # review reads stored ones
    two = real.replace(b"</testsuites>", b'<testsuite name="%s"/></testsuites>' % SUITE.encode())
    assert parse_junit_bytes(two, SUITE) is None  # a second suite slipped in beside the real one
    assert parse_junit_bytes(b"<testsuites><testsuite", SUITE) is None


def test_unreadable_reports_are_none(tmp_path: Path, sample: Sample) -> None:
    link = tmp_path / "link.xml"
    link.symlink_to(sample.report)
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    big = tmp_path / "big.xml"
    with big.open("wb") as f:
        f.truncate(MAX_JUNIT_BYTES + 1)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        + "".join(
            f'<!ENTITY {c} "{("&" + p + ";") * 10}">'
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + ']><testsuite name="x"><testcase classname="&i;" name="t"/></testsuite>'
    )
    for path in (link, fifo, big, bomb, tmp_path / "absent.xml", tmp_path):
        assert parse_junit(path) is None, path
    assert parse_junit(sample.report) is not None


# ----------------------------------------------------------------- compare


def test_a_test_that_ran_at_base_and_is_skipped_xfailed_or_gone_is_missing() -> None:
    base = _base({"m::p", "m::x"}, {"m::f", "m::g"}, {"m::s"})
    cand = _base({"m::p"}, {"m::g"}, {"m::f", "m::x", "m::s"})  # f skipped, x xfailed; s as at base
    c = compare(base, cand)
    assert c.missing == ("m::f", "m::x")
    assert c.fixed == () and c.still_failing == ("m::g",) and c.newly_failing == ()
    gone = compare(base, _base({"m::p", "m::x"}, {"m::g"}))
    assert gone.missing == ("m::f",)  # a failing test that is no longer in the report


def test_a_module_that_did_not_collect_at_base_and_now_yields_tests_is_fixed() -> None:
    base = _base({"m::p"}, {"::tests.test_b"})
    cand = _base({"m::p", "tests.test_b::t1", "tests.test_b.K::t2"})
    assert compare(base, cand).fixed == ("::tests.test_b",)
    assert compare(base, cand).missing == ()
    assert compare(base, _base({"m::p"})).missing == ("::tests.test_b",)


# ----------------------------------------------------------------- judge


def test_exit_0_with_a_base_failure_skipped_fails_the_gate() -> None:
    base = _base({"m::p"}, {"m::bug"})
    cand = _base({"m::p"}, (), {"m::bug"})  # pytest.skip() called from the code under test
    passed, reason, comparison, _ = judge(GATE, 0, False, "", cand, _baseline(base))
    assert not passed and "1 are skipped or xfailed" in reason
    assert comparison is not None and comparison.missing == ("m::bug",)
    hidden = _base({"m::bug"}, (), {"m::p"})  # the bug fixed, a passing test hidden
    passed, reason, _, _ = judge(GATE, 0, False, "", hidden, _baseline(base))
    assert not passed and "skipped" in reason


def test_failures_only_from_base_pass_judge_only_with_something_fixed() -> None:
    base = _base({"m::p"}, {"m::bug", "m::old"})
    fixed = _base({"m::p", "m::bug"}, {"m::old"})
    passed, reason, _, _ = judge(GATE, 1, False, "", fixed, _baseline(base))
    assert passed and "not blamed" in reason  # run_gate still has to confirm it by a rerun
    nothing = _base({"m::p"}, {"m::bug", "m::old"})
    assert not judge(GATE, 1, False, "", nothing, _baseline(base))[0]
    worse = _base({"m::bug"}, {"m::old", "m::p"})
    passed, reason, _, _ = judge(GATE, 1, False, "", worse, _baseline(base))
    assert not passed and "1 now fail" in reason


def test_no_accepted_report_fails_against_a_baseline_and_no_base_report_needs_exit_0() -> None:
    base = _base({"m::p"}, {"m::bug"})
    passed, reason, _, _ = judge(GATE, 0, False, "", None, _baseline(base))
    assert not passed and "no junit report the runner accepts" in reason
    assert judge(GATE, 0, False, "", None, None)[0]  # the baseline run itself: exit 0 is enough
    no_base_report = _baseline(None)  # base did not get as far as a report (a conftest error)
    assert judge(GATE, 0, False, "", _base({"m::p"}), no_base_report)[0]  # exit 0 is a pass
    passed, reason, _, _ = judge(GATE, 1, False, "", _base({"m::p"}, {"m::q"}), no_base_report)
    assert not passed and reason == "exit 1: 1 failed"  # nothing is blamed on base without one
    assert not judge(GATE, 0, True, "", _base({"m::p"}), _baseline(base))[0]  # timed out


def test_generic_gate_is_not_blamed_only_without_new_output_lines() -> None:
    base = _baseline(None, exit_code=1, log="a.py:3: E1 bad\n")
    assert judge(OTHER, 1, False, "a.py:7: E1 bad\n", None, base)[0]
    passed, _, _, new = judge(OTHER, 1, False, "a.py:3: E1 bad\nb.py:1: E2 worse\n", None, base)
    assert not passed and new == ("b.py:N: EN worse",)


# ----------------------------------------------------------------- cannot run (at base)


@pytest.mark.parametrize(
    ("gate", "exit_code", "timed_out", "outcomes", "why"),
    [
        ("other", 127, False, None, "exit 127: command not found"),
        ("other", 126, False, None, "exit 126: command not executable"),
        ("other", 139, False, None, "exit 139: killed by signal 11"),
        ("other", 124, True, None, "timed out after 600s"),
        ("tests", 4, False, None, "exit 4: pytest usage error"),
        ("tests", 5, False, None, "exit 5: pytest collected no tests"),
        ("tests", 2, False, _base({"m::p"}), "exit 2: pytest was interrupted"),
        ("tests", 1, False, None, "exit 1: no junit report the runner accepts"),
        ("tests", 0, False, None, "exit 0: no junit report the runner accepts"),
        ("tests", 127, False, None, "exit 127: command not found"),
    ],
)
def test_a_gate_that_did_not_get_to_check_anything_cannot_run(
    gate: str, exit_code: int, timed_out: bool, outcomes: Outcomes | None, why: str
) -> None:
    policy = GATE if gate == "tests" else OTHER
    result = replace(_baseline(outcomes, exit_code), timed_out=timed_out)
    assert cannot_run(policy, result) == why


@pytest.mark.parametrize(
    ("gate", "exit_code", "outcomes"),
    [
        ("other", 0, None),
        ("other", 1, None),  # it ran and found problems (the bug, at base)
        ("other", 2, None),
        ("tests", 1, _base({"m::p"}, {"m::bug"})),  # tests fail: the bug
        ("tests", 0, _base({"m::p"})),
    ],
)
def test_a_gate_that_ran_and_failed_can_run(
    gate: str, exit_code: int, outcomes: Outcomes | None
) -> None:
    policy = GATE if gate == "tests" else OTHER
    assert cannot_run(policy, _baseline(outcomes, exit_code)) is None


# ----------------------------------------------------------------- node ids, deselect


def test_node_ids_from_junit_ids_are_the_ones_pytest_collects(sample: Sample) -> None:
    got = parse_junit(sample.report, SUITE)
    assert got is not None
    tests = (got.passed | got.failed | got.skipped) - {"::tests.test_broken"}
    assert {node_id(t, sample.tree) for t in tests} == sample.collected
    assert node_id("::tests.test_broken", sample.tree) == "tests/test_broken.py"
    assert node_id("elsewhere.test_z::test_q", sample.tree) is None


def test_deselect_args_leave_out_exactly_what_was_asked(sample: Sample) -> None:
    drop = ["tests.test_a::test_f", "tests.test_a::test_n[1]", "::tests.test_broken"]
    keep = ["tests.test_a::test_p", "tests.test_a::test_n[10]", "tests.test_a::test_add"]
    args, why = deselect_args(drop, keep, sample.tree)
    assert why is None
    assert args[:2] == ["--ignore", "tests/test_broken.py"]
    run = _pytest(sample.tree, "-rA", *args)
    assert run.returncode == 0, run.stdout  # the rerun that confirms a "not blamed" verdict
    assert "2 deselected" in run.stdout and "PASSED tests/test_a.py::test_n[10]" in run.stdout


def test_deselect_args_refuse_what_they_cannot_do_exactly(sample: Sample) -> None:
    tree = sample.tree
    _, why = deselect_args(["tests.test_a::test_add"], ["tests.test_a::test_add_many"], tree)
    assert why is not None and "would also leave out tests/test_a.py::test_add_many" in why
    _, why = deselect_args(["other.test_z::test_q"], [], tree)
    assert why is not None and "no test file in the tree for other.test_z::test_q" in why
    many = [f"tests.test_a::test_{i:06d}_{'x' * 40}" for i in range(3000)]
    _, why = deselect_args(many, [], tree)
    assert why is not None and "too many" in why


# ----------------------------------------------------------------- feedback


def _failed(reason: str, log: str, cand: Outcomes, base: Outcomes) -> GateResult:
    return GateResult(name="tests", required=True, passed=False, exit_code=1, timed_out=False,
                      duration_s=1.0, log=log, reason=reason, outcomes=cand,
                      comparison=compare(base, cand))  # fmt: skip


def test_feedback_names_skipped_gone_and_failing_tests_for_the_model() -> None:
    base = _base({"m::p", "m::q"}, {"m::bug", "m::old"})
    cand = _base({"m::p"}, {"m::old", "m::new"}, {"m::bug"})
    text = feedback([_failed("3 problems", "E   assert 0\n1 failed", cand, base)], 10_000)
    assert text.startswith("# Gate `tests` failed (required): 3 problems. Fix the problems below.")
    assert "Newly failing: m::new" in text
    assert "Skipped or xfailed now, ran at base (do not skip tests): m::bug" in text
    assert "Gone from the report, ran at base: m::q" in text
    assert "Still failing (failed at base too): m::old" in text
    assert text.endswith("1 failed")
    passing = _failed("x", "log", cand, base)
    assert feedback([replace(passing, passed=True)], 10_000) == ""


def test_feedback_keeps_every_heading_and_log_ends_within_the_budget() -> None:
    base = _base({f"m::t{i}" for i in range(50)})
    cand = _base((), {f"m::t{i}" for i in range(50)})
    logs = ["A" * 20_000 + "SUMMARY-ONE", "B" * 20_000 + "SUMMARY-TWO"]
    results = [_failed("50 now fail", log, cand, base) for log in logs]
    text = feedback(results, 4_000)
    assert len(text) <= 4_000
    assert text.count("# Gate `tests` failed") == 2 and text.count("(+30 more)") == 2
    assert "SUMMARY-ONE" in text and "SUMMARY-TWO" in text
    assert text.count("[... gate output cut ...]") == 2
    assert len(feedback(results, 100)) <= 100
