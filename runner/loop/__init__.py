"""One run: bounded attempts, context windows, the agent's validated tools, judging and resume.

runner     ``Runner.execute``: attempts until one passes, the budget ends or a human must decide
agent      what the loop drives: ``Agent.run_window(WindowContext) -> WindowOutcome``, ``Task``
tools      ``Tools``: every agent action validated, executed, scope-checked and recorded
judge      ``GateJudge``: the baseline at base and the gates on each candidate
gates      running one gate in a fresh sandbox (``GateResult``)
baseline   the baseline gates on a thread of their own
outcome    ``AttemptReport``, ``RunResult``, ``RunStopped``
resume     what a resumed run needs: budget already spent, a human's decisions
"""

from runner.loop.agent import Agent, Task, WindowContext, WindowOutcome
from runner.loop.outcome import AttemptReport, RunResult, RunStopped
from runner.loop.runner import RunConfig, Runner

__all__ = [
    "Agent",
    "AttemptReport",
    "RunConfig",
    "RunResult",
    "RunStopped",
    "Runner",
    "Task",
    "WindowContext",
    "WindowOutcome",
]
