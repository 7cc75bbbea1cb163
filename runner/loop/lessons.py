"""What the next attempt learns from the failed ones: feedback, and which changes already failed.

Every failed attempt's report becomes the next attempt's feedback (its reason,
the scope violations reverted, the commands denied, the gates' output framed
for the model). Its change is remembered by ``strategy_key``: the same failing
change made again is pointed out in the feedback, and made
``budgets.repeated_strategy`` times it ends the run (``harness``; ``governance``
when every attempt so far failed on governance: the policy kept each one out).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policies.gates import GateResult, feedback
from policies.targets import HiddenTests
from runner.loop.outcome import AttemptReport, RunStopped

Emit = Callable[[str, Mapping[str, Any]], None]

_HUNK = re.compile(r"^(index |@@ ).*$", re.MULTILINE)


def strategy_key(patch: str) -> str:
    """A hash of a patch with index lines, hunk positions and whitespace normalized away."""
    body = _HUNK.sub("", patch)
    norm = "\n".join(" ".join(line.split()) for line in body.splitlines() if line.strip())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


class Lessons:
    """The feedback for the next attempt and the failed strategies of one run, so far."""

    def __init__(
        self, *, repeated_limit: int, feedback_chars: int, emit: Emit,
        hidden: HiddenTests | None = None,
    ) -> None:  # fmt: skip
        self.repeated_limit, self.feedback_chars, self.emit = repeated_limit, feedback_chars, emit
        self.hidden = hidden
        """The run's hidden tests: no gate log, and no mention of them, reaches the agent."""
        self.feedback = ""
        self.failed_strategies: dict[str, int] = {}
        self.domains: set[str | None] = set()
        """The failure domains of the failed attempts so far."""

    def replay(self, report: AttemptReport) -> None:
        """A finished attempt taken from the journal (a resumed run): its feedback, its strategy."""
        self._count(report)
        self.feedback = self._feedback_for(report, ())

    def learn(self, report: AttemptReport, gates: Sequence[GateResult]) -> RunStopped | None:
        """Attempt ``report`` failed: the feedback for the next; how the run ends, if it must."""
        self._count(report)
        self.feedback = self._feedback_for(report, gates)
        repeats = self.failed_strategies.get(report.strategy or "", 0)
        if repeats > 1:
            self.emit(
                "repeated_strategy",
                {"attempt": report.attempt, "strategy": report.strategy, "times": repeats},
            )
            self.feedback += (
                f"\nThis attempt repeated a change that already failed ({repeats} times). "
                "Try a different approach."
            )
        if repeats >= self.repeated_limit:
            reason = f"repeated strategy: the same failing change {repeats} times"
            if self.domains == {"governance"}:  # the harness stops it; the policy failed it
                return RunStopped("failed", "governance", f"{reason}; every attempt failed on"
                                  f" governance; last: {report.reason}")  # fmt: skip
            return RunStopped("failed", "harness", reason)
        return None

    def _count(self, report: AttemptReport) -> None:
        self.domains.add(report.failure_domain)
        strategy = report.strategy
        if strategy:
            self.failed_strategies[strategy] = self.failed_strategies.get(strategy, 0) + 1

    def _feedback_for(self, report: AttemptReport, results: Sequence[GateResult]) -> str:
        lines = [f"Attempt {report.attempt} failed ({report.failure_domain}): {report.reason}."]
        if report.violations:
            lines.append("Scope violations (reverted): " + "; ".join(report.violations[:10]))
        if report.denied:
            lines.append("Commands denied by policy: " + "; ".join(report.denied[:10]))
        show_logs = self.hidden is None
        gate_text = feedback(results, self.feedback_chars, show_logs=show_logs) if results else ""
        text = "\n".join(lines) + ("\n" + gate_text if gate_text else "")
        return text if self.hidden is None else self.hidden.redact(text)
