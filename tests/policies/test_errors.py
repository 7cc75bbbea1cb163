"""The policies package's exception tree: one base, user errors marked, builtin parents kept."""

from __future__ import annotations

import pytest

from policies.commands import CommandValidator, Rule, simple_commands
from policies.errors import BudgetExceeded, PoliciesError, PolicyError, StopAttempt, Unverifiable
from policies.load import load_policy
from policies.policy import CommandPolicy
from sandbox.errors import CorralError, UserError


def test_every_policies_error_hangs_from_one_base_under_corral_error() -> None:
    for cls in (PolicyError, Unverifiable, StopAttempt, BudgetExceeded):
        assert issubclass(cls, PoliciesError)
    assert issubclass(PoliciesError, CorralError)


def test_a_malformed_policy_is_a_user_error_and_still_a_value_error() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(overrides={"budgets.attempts": "many"})
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert info.value.lines and info.value.lines[0].startswith("budgets.attempts:")


@pytest.mark.parametrize(("rule", "fix"), [("bad 'rule", "fix its quoting"), ("   ", "remove it")])
def test_a_command_rule_that_does_not_compile_is_a_policy_error_naming_the_fix(
    rule: str, fix: str
) -> None:
    with pytest.raises(PolicyError, match=fix) as info:
        CommandValidator(CommandPolicy(deny=("ok", rule)))
    assert repr(rule) in str(info.value)
    with pytest.raises(PolicyError, match=fix):
        Rule.parse(rule)


def test_an_unverifiable_line_is_not_a_user_error() -> None:
    with pytest.raises(Unverifiable) as info:
        simple_commands('"$CMD" --now')
    assert not isinstance(info.value, UserError)


def test_budget_exceeded_is_an_expected_exit_of_an_attempt() -> None:
    exc = BudgetExceeded("steps", 3, 3)
    assert isinstance(exc, StopAttempt) and not isinstance(exc, UserError)
    assert (exc.resource, exc.used, exc.limit, str(exc)) == ("steps", 3, 3, "budget steps 3/3")
