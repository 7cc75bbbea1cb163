"""One run: bounded attempts, context windows, the agent's validated tools, judging and resume.

runner        ``Runner.execute``: attempts until one passes, the budget ends or a human must decide
attempt       one attempt: sandbox, context windows, harvest, verdict (``Attempts``)
outcome       what an attempt comes to (``Judged``/``Waiting``/``Stopped``), ``AttemptReport``,
              ``RunResult``, the questions for a human, ``ResumePoint``
agent         what the loop drives: ``Agent.run_window(WindowContext) -> WindowOutcome``, ``Task``
capabilities  what the loop may find besides an interface (``NeedsMounts``, ``OnEngine`` ...)
config        ``RunConfig``: what a run needs besides the store
tools         ``Tools``: every agent action validated, executed, scope-checked and recorded
specs         the sandboxes of a run: attempt and gate specs, recorded as they start
progress      the progress file, carried across rollbacks and snapshotted per window
lessons       feedback for the next attempt, and the repeated-strategy stop
judge         ``GateJudge``: the baseline at base and the gates on each candidate
gates         running one gate in a fresh sandbox (``GateResult``)
baseline      the baseline gates on a thread of their own
resume        what a resumed run needs: budget already spent, a human's decisions

Nothing is re-exported: each module is imported by its own name, so reading a run's
outcome (``corral status``) does not import the whole loop and the engine client.
"""
