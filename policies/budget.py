"""Budget counters: what one run and one attempt may spend, checked as they are spent.

``Budget`` counts against the policy's limits (``[budgets]``): per attempt the
steps, the output the agent read, the same command in a row and the steps
without a change to any file; per run the wall clock, tokens and cost. Each
counter raises ``BudgetExceeded`` (a ``StopAttempt``) the moment it is crossed;
``ATTEMPT_BUDGETS`` names those that end only the attempt (the runner retries
with a fresh attempt), the others end the run. Pure: no sandbox, no store
(``runner.loop.resume.RunMeter`` saves and seeds the run-wide counters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from policies.errors import BudgetExceeded as BudgetExceeded

#: Budgets of one attempt: crossing one fails the attempt (harness); the others end the run.
ATTEMPT_BUDGETS = frozenset({"steps", "output_bytes", "repeated_command", "idle_steps"})


@dataclass(slots=True)
class Budget:
    """Counters against the policy's limits. Run-wide: wall, tokens, cost; per attempt: steps, output."""

    steps: int
    output_bytes: int
    tokens: int
    cost_usd: float
    deadline: float
    repeated_command: int = 5
    idle_steps: int = 25
    used_steps: int = 0
    used_output: int = 0
    idle: int = 0
    last_command: str | None = None
    same_command: int = 0
    used_tokens: int = 0
    used_cost: float = 0.0
    on_change: Callable[[], None] | None = None
    """Called after each counted step and model charge (the live display's budget counters)."""

    def counters(self) -> dict[str, float]:
        """Used vs limit for steps (this attempt), tokens and cost (the run)."""
        return {
            "steps": self.used_steps,
            "steps_limit": self.steps,
            "tokens": self.used_tokens,
            "tokens_limit": self.tokens,
            "cost_usd": round(self.used_cost, 6),
            "cost_limit": self.cost_usd,
        }

    def new_attempt(self) -> None:
        """Reset the per-attempt counters (steps, output, loop guards); run-wide ones go on."""
        self.used_steps = 0
        self.used_output = 0
        self.idle = 0
        self.last_command = None
        self.same_command = 0

    def command(self, line: str) -> None:
        """Loop guard: ``BudgetExceeded`` at the ``repeated_command``-th same command in a row."""
        self.same_command = self.same_command + 1 if line == self.last_command else 1
        self.last_command = line
        if self.same_command >= self.repeated_command:
            raise BudgetExceeded("repeated_command", self.same_command, self.repeated_command)

    def progress(self, changed: bool) -> None:
        """Loop guard: ``BudgetExceeded`` after ``idle_steps`` actions that changed no file."""
        self.idle = 0 if changed else self.idle + 1
        if self.idle >= self.idle_steps:
            raise BudgetExceeded("idle_steps", self.idle, self.idle_steps)

    def step(self) -> None:
        """Count one action; ``BudgetExceeded`` (``wall_seconds``, ``steps``) if none is left."""
        self.check_wall()
        if self.used_steps >= self.steps:
            raise BudgetExceeded("steps", self.used_steps, self.steps)
        self.used_steps += 1
        if self.on_change is not None:
            self.on_change()

    def check_wall(self) -> None:
        """``BudgetExceeded("wall_seconds")`` once ``deadline`` (``time.monotonic``) is past."""
        if time.monotonic() > self.deadline:
            raise BudgetExceeded("wall_seconds", round(time.monotonic() - self.deadline), 0)

    def output(self, n: int) -> None:
        """Count ``n`` bytes of output the agent read; ``BudgetExceeded`` past ``output_bytes``."""
        self.used_output += n
        if self.used_output > self.output_bytes:
            raise BudgetExceeded("output_bytes", self.used_output, self.output_bytes)

    def model(self, tokens: int, cost: float) -> None:
        """Charge one model call; ``BudgetExceeded`` (``tokens``, ``cost_usd``) once over a limit.

        The charge is counted before the check: what was spent stays spent.
        """
        self.used_tokens += tokens
        self.used_cost += cost
        if self.on_change is not None:
            self.on_change()
        if self.used_tokens > self.tokens:
            raise BudgetExceeded("tokens", self.used_tokens, self.tokens)
        if self.used_cost > self.cost_usd:
            raise BudgetExceeded("cost_usd", round(self.used_cost, 4), self.cost_usd)
