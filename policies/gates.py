"""Gate verdicts: one gate run judged against the baseline, and the feedback on failed gates.

Pure: a gate's exit code, output and per-test outcomes in, a verdict out. Running
the gate in a fresh sandbox is ``runner.loop.gates``; reading junit XML is
``policies.junit``. Only the exit code of a process the runner started counts
as a pass. A gate passes on exit 0, or when its failures are not the
candidate's fault, which is decided against the baseline (the same gates at the
base commit):

- pytest gates (``is_pytest``): the junit report is written by the candidate's
  code, so it only ever counts *against* the candidate: any test that ran
  (passed or failed) at base and now fails, is skipped, is xfailed or is gone
  fails the gate, exit 0 or not. When the exit code is not 0 and every failure
  already failed at base (and something was fixed), ``judge`` passes it, and
  ``runner.loop.gates.run_gate`` must still confirm that with a run that leaves
  those tests out and exits 0. An exit 0 that the report contradicts (failed or
  errored tests in it: ``contradicted``) fails the gate with a finding: the
  candidate's code set the exit code (``atexit``, ``os._exit``).
- other gates pass on exit 0, or when base failed too and the candidate's output
  has no line (numbers ignored) that base's did not.

A gate that cannot run at all (``cannot_run``: not found, killed, timed out,
pytest's usage errors, no report) at base is the configuration's fault, not
the candidate's: the runner ends the run on it (``runner.loop.judge``).

``with_findings`` adds the tamper findings to a candidate's gate result: the
candidate's source (``policies.tamper``), which fail the gate unless its
``on_finding`` is ``flag``, and a contradicted exit code, which always does;
a gate failed by a finding fails the attempt as ``governance``.

``feedback`` frames the failed gates for the model ("Fix the problems below"),
within a character budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from policies.junit import Comparison, TestOutcomes, compare
from policies.targets import without

if TYPE_CHECKING:  # not at import: a run's recorded results need no pydantic
    from policies.policy import GatePolicy


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's run: exit code and log, per-test outcomes if known, and the verdict."""

    name: str
    required: bool
    passed: bool
    exit_code: int
    timed_out: bool
    duration_s: float
    log: str
    reason: str
    outcomes: TestOutcomes | None = None
    comparison: Comparison | None = None
    new_lines: tuple[str, ...] = field(default_factory=tuple)
    flaky: tuple[str, ...] = ()
    """At base (``baseline_runs`` > 1): tests whose outcome flipped across the runs; never blamed."""
    findings: tuple[str, ...] = ()
    """Tamper findings (``with_findings``): shown first in the review, whatever the verdict."""
    failed_on_finding: bool = False
    """The gate failed because of a finding (the attempt fails as ``governance``)."""


def is_pytest(gate: GatePolicy) -> bool:
    return gate.is_pytest


def judge(
    gate: GatePolicy,
    exit_code: int,
    timed_out: bool,
    text: str,
    outcomes: TestOutcomes | None,
    baseline: GateResult | None,
) -> tuple[bool, str, Comparison | None, tuple[str, ...]]:
    """The verdict on one run: (passed, reason, per-test comparison, new output lines).

    For pytest, a pass with a non-zero ``exit_code`` still needs ``run_gate``'s
    confirmation run.
    """
    if timed_out:
        return False, f"timed out after {gate.timeout}s", None, ()
    comparison = None
    flaky = frozenset(baseline.flaky) if baseline is not None else frozenset()
    if outcomes is not None and baseline is not None and baseline.outcomes is not None:
        comparison = compare(without(baseline.outcomes, flaky), without(outcomes, flaky))
    if is_pytest(gate):
        if outcomes is None:
            ok = exit_code == 0 and baseline is None
            why = "exit 0" if ok else f"exit {exit_code}; no junit report the runner accepts"
            return ok, why, None, ()
        if (lie := contradicted(exit_code, outcomes)) is not None:
            return False, lie, comparison, ()
        if comparison is not None and (comparison.newly_failing or comparison.missing):
            return False, _against(comparison, outcomes), comparison, ()
        if exit_code == 0:
            return True, f"{len(outcomes.passed)} passed", comparison, ()
        flaky_now = outcomes.failed & flaky  # a flaky test's failure: not blamed, not fixed
        if (
            comparison is not None
            and (comparison.fixed or (flaky_now and not comparison.still_failing))
            and not outcomes.failed - set(comparison.still_failing) - flaky
        ):
            n = len(comparison.still_failing)
            why = f"fixed {len(comparison.fixed)}; {n} failing at base too (not blamed)"
            if flaky_now:
                why += f"; {len(flaky_now)} flaky at base (not blamed)"
            return True, why, comparison, ()
        return False, f"exit {exit_code}: {len(outcomes.failed)} failed", comparison, ()
    if exit_code == 0:
        return True, "exit 0", None, ()
    if baseline is not None and baseline.exit_code != 0:
        new = tuple(sorted(_lines(text) - _lines(baseline.log)))
        if not new:
            return True, f"exit {exit_code}, as at base; no new problems (not blamed)", None, ()
        return False, f"exit {exit_code}; {len(new)} new line(s) of output vs base", None, new
    return False, f"exit {exit_code}", None, ()


#: pytest's own exit codes for a session that did not get to run the tests.
PYTEST_CANNOT_RUN = {
    2: "pytest was interrupted",
    3: "pytest internal error",
    4: "pytest usage error",
    5: "pytest collected no tests",
}
#: Exit codes of the shell that ran the gate's command: it was never started.
SHELL_CANNOT_RUN = {126: "command not executable", 127: "command not found"}


def cannot_run(gate: GatePolicy, result: GateResult) -> str | None:
    """Why ``result`` (a run of ``gate``, at base) shows that the gate cannot run at all; None
    when it ran, passing or failing.

    Any gate: timed out, exit 126/127 (the shell did not start the command), or
    killed by a signal (exit 129-192, 128 + N). A pytest gate also: pytest's own
    exit codes 2-5 (interrupted, internal error, usage error, no tests
    collected), or no junit report the runner accepts, whatever the exit code.
    A gate that ran and failed (the bug's failing tests, a linter's findings)
    can run: that is what the baseline is for.
    """
    code = result.exit_code
    if result.timed_out:
        return f"timed out after {gate.timeout}s"
    if code in SHELL_CANNOT_RUN:
        return f"exit {code}: {SHELL_CANNOT_RUN[code]}"
    if 128 < code <= 128 + 64:
        return f"exit {code}: killed by signal {code - 128}"
    if not is_pytest(gate):
        return None
    if code in PYTEST_CANNOT_RUN:
        return f"exit {code}: {PYTEST_CANNOT_RUN[code]}"
    if result.outcomes is None:
        return f"exit {code}: no junit report the runner accepts"
    if (lie := contradicted(code, result.outcomes)) is not None:
        return f"{lie} (the gate's command must end with pytest's own exit code)"
    return None


def contradicted(exit_code: int, outcomes: TestOutcomes | None) -> str | None:
    """Why an exit 0 cannot be the verdict of the tests: the runner's own report lists failed
    or errored tests (the code under test ended the process its own way); None otherwise."""
    if exit_code != 0 or outcomes is None or not outcomes.failed:
        return None
    failed = sorted(outcomes.failed)
    more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
    return (
        f"exit 0, but the runner's own report lists {len(failed)} failed or errored test(s)"
        f" ({', '.join(failed[:3])}{more}): the exit code is not the tests' verdict"
    )


#: Most source findings a failed gate's reason names (the review lists them all).
SHOWN = 3


def with_findings(gate: GatePolicy, result: GateResult, source: Sequence[str]) -> GateResult:
    """A candidate's ``result`` of ``gate`` with its tamper findings (see the module docstring).

    ``source``: the findings in the candidate's source, as text (``policies.tamper``).
    """
    lie = contradicted(result.exit_code, result.outcomes) if is_pytest(gate) else None
    found = (*source, *([f"gate {gate.name}: {lie}"] if lie is not None else []))
    if not found:
        return result
    if not (lie is not None or (source and gate.on_finding == "fail")):
        return replace(result, findings=found)
    reason = result.reason
    if source and gate.on_finding == "fail":
        more = f" (+{len(source) - SHOWN} more)" if len(source) > SHOWN else ""
        reason = f"finding: {'; '.join(source[:SHOWN])}{more}; {reason}"
    return replace(result, passed=False, reason=reason, findings=found, failed_on_finding=True)


def tamper_findings(results: Sequence[GateResult]) -> list[str]:
    """The findings of ``results``, each once, in order (the source's first, then the gates')."""
    return list(dict.fromkeys(f for r in results for f in r.findings))


def _against(c: Comparison, outcomes: TestOutcomes) -> str:
    skipped, gone = _split_missing(c, outcomes)
    counts = [(len(c.newly_failing), "now fail"), (len(skipped), "are skipped or xfailed"),
              (len(gone), "are gone from the report")]  # fmt: skip
    return "tests that ran at base " + ", ".join(f"{n} {what}" for n, what in counts if n)


def _split_missing(c: Comparison, outcomes: TestOutcomes | None) -> tuple[list[str], list[str]]:
    skipped = outcomes.skipped if outcomes is not None else frozenset()
    return [t for t in c.missing if t in skipped], [t for t in c.missing if t not in skipped]


_NUMBERS = re.compile(r"\d+")


def _lines(text: str) -> set[str]:
    return {_NUMBERS.sub("N", line.strip()) for line in text.splitlines() if line.strip()}


#: Most test ids and new output lines listed per gate in the feedback.
LIST_ITEMS, LIST_LINES = 20, 40


#: A gate's output in the feedback when the gates ran tests the agent must not see.
WITHHELD = "[gate output withheld: the gates ran tests that are hidden from you]"


def feedback(results: Sequence[GateResult], budget_chars: int, *, show_logs: bool = True) -> str:
    """Failed gates framed for the model: what failed, which tests, then the log's tail.

    Each failed gate's heading and test lists come first and are kept; the logs
    share what is left of ``budget_chars`` and keep their ends (where pytest
    prints its summary). The whole text never exceeds ``budget_chars``.
    ``show_logs=False`` (hidden tests) leaves out the logs and new output lines.
    """
    heads: list[str] = []
    logs: list[str] = []
    for r in results:
        if r.passed:
            continue
        kind = "required" if r.required else "advisory"
        head = [f"# Gate `{r.name}` failed ({kind}): {r.reason}. Fix the problems below."]
        if r.comparison is not None:
            skipped, gone = _split_missing(r.comparison, r.outcomes)
            for label, items in (
                ("Newly failing", r.comparison.newly_failing),
                ("Skipped or xfailed now, ran at base (do not skip tests)", skipped),
                ("Gone from the report, ran at base", gone),
                ("Still failing (failed at base too)", r.comparison.still_failing),
            ):
                if items:
                    more = f" (+{len(items) - LIST_ITEMS} more)" if len(items) > LIST_ITEMS else ""
                    head.append(f"{label}: {', '.join(items[:LIST_ITEMS])}{more}")
        if r.new_lines and show_logs:
            head.append("New output lines vs base:\n" + "\n".join(r.new_lines[:LIST_LINES]))
        heads.append("\n".join(head))
        logs.append(r.log if show_logs else WITHHELD)
    if not heads:
        return ""
    room = max(0, budget_chars - sum(len(h) + 2 for h in heads)) // len(heads)
    parts = [h + "\n" + _tail(text, room) for h, text in zip(heads, logs, strict=True)]
    return "\n\n".join(parts)[:budget_chars]


def _tail(text: str, chars: int) -> str:
    cut = "[... gate output cut ...]\n"
    if len(text) <= chars:
        return text
    if chars <= len(cut):
        return ""
    return cut + text[len(text) - (chars - len(cut)) :]


def gate_map(results: Sequence[GateResult]) -> Mapping[str, bool]:
    """``name -> passed`` (the shape run summaries and ``--json`` use)."""
    return {r.name: r.passed for r in results}
