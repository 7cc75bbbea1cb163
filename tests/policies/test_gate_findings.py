"""Gate verdicts with tamper findings: an exit 0 the report contradicts, and the source's findings.

Pure (``policies.gates``): the end-to-end attacks are tests/runner/loop/test_fake_green.py.
"""

from __future__ import annotations

from collections.abc import Collection

from policies.gates import (
    GateResult,
    cannot_run,
    contradicted,
    judge,
    tamper_findings,
    with_findings,
)
from policies.junit import TestOutcomes as Outcomes
from policies.policy import GatePolicy

GATE = GatePolicy(name="tests", command="python3 -m pytest -q")
FLAG = GATE.model_copy(update={"on_finding": "flag"})
LINT = GatePolicy(name="lint", command="ruff check .")
SOURCE = ("src/__init__.py:4: atexit.register at import", "src/x.py:1: os._exit at import")


def _outcomes(passed: Collection[str], failed: Collection[str] = ()) -> Outcomes:
    return Outcomes(frozenset(passed), frozenset(failed))


def _result(
    outcomes: Outcomes | None, exit_code: int, passed: bool, name: str = "tests"
) -> GateResult:
    return GateResult(name=name, required=True, passed=passed, exit_code=exit_code,
                      timed_out=False, duration_s=1.0, log="", reason="1 passed",
                      outcomes=outcomes)  # fmt: skip


def test_exit_0_with_failures_in_the_report_fails_judge_whatever_the_baseline() -> None:
    base = _result(_outcomes({"m::p"}, {"m::bug"}), 1, False)
    still = _outcomes({"m::p"}, {"m::bug"})  # the bug's test still fails; os._exit(0) at exit
    passed, reason, comparison, _ = judge(GATE, 0, False, "", still, base)
    assert not passed and reason.startswith("exit 0, but the runner's own report lists 1")
    assert "m::bug" in reason and comparison is not None
    assert judge(GATE, 0, False, "", _outcomes({"m::p"}, {"m::new"}), None)[0] is False
    assert judge(GATE, 0, False, "", _outcomes({"m::p", "m::bug"}), base)[0]  # a real fix
    assert judge(GATE, 1, False, "", still, base)[0] is False  # exit 1 is no contradiction


def test_contradicted_lists_at_most_three_tests() -> None:
    why = contradicted(0, _outcomes((), {f"m::t{i}" for i in range(5)}))
    assert why is not None and "5 failed or errored" in why and "(+2 more)" in why
    assert contradicted(0, _outcomes({"m::p"})) is None
    assert contradicted(0, None) is None
    assert contradicted(1, _outcomes((), {"m::t"})) is None


def test_a_command_that_hides_pytests_exit_code_cannot_run_at_base() -> None:
    hidden = _result(_outcomes({"m::p"}, {"m::bug"}), 0, True)  # `pytest || true`
    why = cannot_run(GATE, hidden)
    assert why is not None and why.startswith("exit 0, but the runner's own report lists 1")
    assert "must end with pytest's own exit code" in why
    assert cannot_run(GATE, _result(_outcomes({"m::p"}), 0, True)) is None


def test_source_findings_fail_the_gate_by_default_and_only_show_when_flagged() -> None:
    ok = _result(_outcomes({"m::p", "m::bug"}), 0, True)
    failed = with_findings(GATE, ok, SOURCE)
    assert not failed.passed and failed.failed_on_finding
    assert failed.reason == f"finding: {SOURCE[0]}; {SOURCE[1]}; 1 passed"
    many = with_findings(GATE, ok, SOURCE * 2).reason
    assert many == f"finding: {SOURCE[0]}; {SOURCE[1]}; {SOURCE[0]} (+1 more); 1 passed"
    assert failed.findings == SOURCE
    flagged = with_findings(FLAG, ok, SOURCE)
    assert flagged.passed and not flagged.failed_on_finding and flagged.findings == SOURCE
    assert flagged.reason == "1 passed"
    assert with_findings(GATE, ok, ()) is ok  # nothing found: the result as it was


def test_a_contradicted_exit_code_fails_the_gate_even_when_findings_are_only_flagged() -> None:
    lied = _result(_outcomes({"m::p"}, {"m::bug"}), 0, False)
    for gate in (GATE, FLAG):
        r = with_findings(gate, lied, ())
        assert not r.passed and r.failed_on_finding
        (finding,) = r.findings
        assert finding.startswith("gate tests: exit 0, but the runner's own report lists 1")
    generic = with_findings(LINT, _result(_outcomes((), {"m::x"}), 0, True, "lint"), ())
    assert generic.passed and not generic.findings  # no report of its own to contradict it


def test_tamper_findings_of_all_gates_come_once_source_first() -> None:
    lied = _result(_outcomes({"m::p"}, {"m::bug"}), 0, False)
    results = [with_findings(GATE, lied, SOURCE), with_findings(FLAG, lied, SOURCE)]
    found = tamper_findings(results)
    assert found[:2] == list(SOURCE) and len(found) == 3 and found[2].startswith("gate tests")
