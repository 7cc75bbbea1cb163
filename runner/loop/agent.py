"""The agent interface, read first: what an agent gets for one context window and what it returns.

An agent acts only through ``Tools`` (``runner.loop.tools``): every call is
validated against the policy, executed in the sandbox, scope-checked,
budgeted and recorded by the runner. The agent never sees the host, the run
store or the policy's enforcement; it sees results and messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from runner.store.runs import FailureDomain

if TYPE_CHECKING:
    from runner.loop.tools import Tools

#: How a window ended: the agent finished the attempt, the window ran out (context
#: or steps per window), or the agent stopped early (error in the agent itself).
WindowEnd = Literal["finished", "window_exhausted", "agent_error"]


@dataclass(frozen=True, slots=True)
class Task:
    """The bug to fix."""

    title: str
    body: str
    repo: str
    base: str


@dataclass(frozen=True, slots=True)
class WindowContext:
    """What an agent knows at the start of a context window (never the transcript of earlier ones)."""

    task: Task
    attempt: int
    window: int
    max_windows: int
    progress: str
    feedback: str
    policy_summary: str
    diff_stat: str
    tools: Tools


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """How a window ended, with the agent's summary when it finished."""

    end: WindowEnd
    summary: str = ""
    detail: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    domain: FailureDomain = "model"
    """The failure domain of an ``agent_error`` (``tool-interface`` for malformed tool calls)."""


class Agent(Protocol):
    """Anything that can work one context window through ``ctx.tools``."""

    name: str

    def run_window(self, ctx: WindowContext) -> WindowOutcome:
        """Work until finished or out of window; ``BudgetExceeded`` / ``RunPaused`` may pass through.

        An agent must not catch ``runner.loop.tools.StopAttempt`` (the runner's
        expected exits); any other exception is an ``agent_error`` of the
        window, classified by the runner.
        """
        ...
