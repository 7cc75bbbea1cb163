"""The budget counters on their own: each limit raises ``BudgetExceeded`` naming it, when crossed."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from policies.budget import ATTEMPT_BUDGETS, Budget, BudgetExceeded


def _budget(
    deadline: float | None = None, repeated_command: int = 5, idle_steps: int = 25
) -> Budget:
    if deadline is None:
        deadline = time.monotonic() + 3600
    return Budget(steps=3, output_bytes=100, tokens=50, cost_usd=1.0, deadline=deadline,
                  repeated_command=repeated_command, idle_steps=idle_steps)  # fmt: skip


def _spent(fn: Callable[..., None], *args: object) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as info:
        fn(*args)
    return info.value


def test_steps_are_counted_until_the_limit_then_refused() -> None:
    seen: list[dict[str, float]] = []
    budget = _budget()
    budget.on_change = lambda: seen.append(budget.counters())
    for _ in range(3):
        budget.step()
    crossed = _spent(budget.step)
    assert (crossed.resource, crossed.used, crossed.limit) == ("steps", 3, 3)
    assert [c["steps"] for c in seen] == [1, 2, 3] and seen[-1]["steps_limit"] == 3


def test_a_past_deadline_ends_the_next_step_as_wall_seconds() -> None:
    budget = _budget(deadline=time.monotonic() - 5)
    assert _spent(budget.step).resource == "wall_seconds"
    assert budget.used_steps == 0
    assert _spent(budget.check_wall).resource == "wall_seconds"


def test_output_counts_bytes_and_refuses_past_the_limit() -> None:
    budget = _budget()
    budget.output(100)
    crossed = _spent(budget.output, 1)
    assert (crossed.resource, crossed.used, crossed.limit) == ("output_bytes", 101, 100)


def test_a_model_charge_is_kept_even_when_it_crosses_a_limit() -> None:
    budget = _budget()
    budget.model(40, 0.5)
    tokens = _spent(budget.model, 20, 0.0)
    assert tokens.resource == "tokens" and budget.used_tokens == 60
    money = _budget()
    cost = _spent(money.model, 1, 1.25)
    assert (cost.resource, cost.used, money.counters()["cost_usd"]) == ("cost_usd", 1.25, 1.25)


def test_loop_guards_count_repeats_and_steps_without_a_change() -> None:
    budget = _budget(repeated_command=3, idle_steps=2)
    budget.command("ls")
    budget.command("ls")
    budget.command("pwd")  # another command starts the count again
    budget.command("pwd")
    assert _spent(budget.command, "pwd").resource == "repeated_command"
    budget.progress(False)
    budget.progress(True)  # a change resets the idle count
    budget.progress(False)
    assert _spent(budget.progress, False).resource == "idle_steps"


def test_a_new_attempt_resets_its_own_counters_and_keeps_the_runs() -> None:
    budget = _budget()
    budget.step()
    budget.output(10)
    budget.command("ls")
    budget.model(5, 0.1)
    budget.new_attempt()
    assert (budget.used_steps, budget.used_output, budget.last_command) == (0, 0, None)
    assert (budget.used_tokens, budget.used_cost) == (5, 0.1)


def test_attempt_budgets_are_the_per_attempt_counters() -> None:
    assert {"steps", "output_bytes", "repeated_command", "idle_steps"} == ATTEMPT_BUDGETS
    assert not {"tokens", "cost_usd", "wall_seconds"} & ATTEMPT_BUDGETS
