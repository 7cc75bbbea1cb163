"""``corral eval``: many bug reports x several trials, each trial a normal corral run.

- ``tasks``: the task list (JSONL or TOML) -> ``EvalTask``
- ``record``: an eval's record (``$CORRAL_HOME/evals/<id>/eval.json``), trials, their keys and
  their outcomes read from the run store
- ``pool``: the pool: which trial starts when, N at a time, resumable; the live line, --max-cost
- ``executors``: where trials run: local processes, or Ray tasks on a cluster (``--ray``)
- ``worker``: one trial's process (``start_run`` with the trial's idempotency key)
- ``stats``: pass@k, pass^k, distributions
- ``report``: the report's aggregation (pure data)
- ``html``: the report as one self-contained HTML page, with its SVG charts (``--html``)
- ``swebench``: SWE-bench instance files as tasks; the predictions and run-report exports
"""
