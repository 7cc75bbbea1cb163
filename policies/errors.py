"""The exception tree of the policies package.

::

    CorralError                              (sandbox.errors: the root of all of corral's)
    └── PoliciesError                        base of everything this package raises
        ├── PolicyError(UserError, ValueError)   a policy (or a script, a rule) does not load:
        │                                        ``lines`` are ``loc: msg`` problems -> exit 2
        ├── Unverifiable(ValueError)         a command line cannot be checked statically; the
        │                                    message is the reason the agent is given
        └── StopAttempt                      a policy verdict that ends the attempt; agents let
            └── BudgetExceeded               it pass (the runner adds ``Paused``, ``NeedsHuman``)

``StopAttempt`` lives here, not in ``runner``, because ``BudgetExceeded`` (raised by the
budget counters of ``policies.budget``) is one, and ``policies`` does not import ``runner``.
Builtin parents stay where callers catch the builtin type (``except ValueError``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.errors import CorralError, UserError


class PoliciesError(CorralError):
    """Base of every error raised by the policies package."""


class PolicyError(PoliciesError, UserError, ValueError):
    """A policy cannot be loaded; ``lines`` are ``loc: msg`` problems, one per line."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class Unverifiable(PoliciesError, ValueError):
    """The line cannot be checked statically; the message is the reason given to the agent."""


class StopAttempt(PoliciesError):
    """Base of the expected exits from inside an attempt (agents must not catch it)."""


class BudgetExceeded(StopAttempt):
    """A budget is spent; ``resource`` names it (``steps``, ``wall_seconds``, ``tokens`` ...)."""

    def __init__(self, resource: str, used: float, limit: float) -> None:
        self.resource, self.used, self.limit = resource, used, limit
        super().__init__(f"budget {resource} {used:g}/{limit:g}")
