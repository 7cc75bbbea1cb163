"""An eval's report: its trials' outcomes aggregated (``corral eval report``), pure data.

``build_report(record, outcomes)`` turns ``eval.json`` and the ``TrialOutcome``
of every trial into one JSON-able dict: the summary (pass@1, pass@k and pass^k
for each k up to the trials, resolved counts, cost, tokens, wall time and steps
as means and distributions), the failure domains, a row per task, the flaky
tasks and the broken ones.

How trials count. A task whose gold check did not resolve is *broken*: it is
listed, and left out of every figure (the eval set's fault, not the agent's).
With ``--agent gold`` itself, a task is broken when any of its trials failed.
A task's figures use the trials of it that ended (``n``) and those that
resolved (``c``); pass@k and pass^k are the means over the counted tasks with
``n >= k`` (``tasks`` says how many), so an eval stopped midway reports what
it has. A trial ends *resolved* when its run is ``ready_for_review`` (or since
approved or merged); ``unverified``, ``failed``, ``budget_exhausted`` and
``waiting`` are not resolved. A task is *flaky* when its ended trials differ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from runner.eval.record import TrialOutcome
from runner.eval.stats import distribution, pass_at_k, pass_hat_k

REPORT_FORMAT = 1


def build_report(record: dict[str, Any], outcomes: Sequence[TrialOutcome]) -> dict[str, Any]:
    """The report of the eval ``record`` (``eval.json``) from its trials' ``outcomes``."""
    k_max = int(record["trials"])
    task_ids = [t["id"] for t in record["inputs"]["tasks"]]
    agent = record["inputs"]["agent"]
    agent_trials = [o for o in outcomes if o.role == "agent"]
    checks = {o.task: o for o in outcomes if o.role == "gold-check"}
    by_task: dict[str, list[TrialOutcome]] = {t: [] for t in task_ids}
    for o in sorted(agent_trials, key=lambda o: o.trial):
        by_task.setdefault(o.task, []).append(o)
    broken = sorted(t for t, check in checks.items() if check.ended and not check.resolved)
    if agent == "gold":
        broken = sorted(
            t for t, ts in by_task.items() if any(o.ended and not o.resolved for o in ts)
        )
    counted = {t: [o for o in ts if o.ended] for t, ts in by_task.items() if t not in broken}
    rows = [_task_row(t, ts, t in broken, checks.get(t)) for t, ts in by_task.items()]
    ended = [o for ts in counted.values() for o in ts]
    summary: dict[str, Any] = {
        "tasks": len(task_ids),
        "tasks_counted": len(counted),
        "trials_per_task": k_max,
        "trials": len(agent_trials),
        "trials_ended": sum(o.ended for o in agent_trials),
        "trials_running": sum(o.status == "running" for o in agent_trials),
        "trials_unfinished": sum(not o.ended for o in agent_trials),
        "resolved": sum(o.resolved for o in ended),
        "tasks_resolved": sum(any(o.resolved for o in ts) for ts in counted.values()),
        "pass_at_k": _mean_estimate(counted, k_max, pass_at_k),
        "pass_hat_k": _mean_estimate(counted, k_max, pass_hat_k),
        "cost_usd": round(sum(o.cost_usd for o in outcomes), 6),
        "tokens": sum(o.tokens for o in outcomes),
        "cost_per_trial": distribution([o.cost_usd for o in ended]),
        "tokens_per_trial": distribution([o.tokens for o in ended]),
        "wall_seconds": distribution([round(o.wall_seconds, 3) for o in ended]),
        "steps": distribution([o.steps for o in ended if o.steps is not None]),
    }
    summary["pass_at_1"] = summary["pass_at_k"].get("1", {}).get("value")
    domains = Counter(_domain(o) for o in ended if not o.resolved)
    return {
        "format": REPORT_FORMAT,
        "eval_id": record["eval_id"],
        "agent": agent,
        "model": record["inputs"].get("model"),
        "policy": record["inputs"].get("policy"),
        "summary": summary,
        "failure_domains": dict(domains.most_common()),
        "broken_tasks": broken,
        "flaky_tasks": [r["task"] for r in rows if r["flaky"]],
        "tasks": rows,
        "trials": [o.to_json() for o in outcomes],
    }


def _mean_estimate(
    counted: dict[str, list[TrialOutcome]], k_max: int, estimator: Any
) -> dict[str, dict[str, Any]]:
    """Per k: the estimator's mean over the tasks with at least k ended trials."""
    out: dict[str, dict[str, Any]] = {}
    for k in range(1, k_max + 1):
        values = [
            estimator(len(ts), sum(o.resolved for o in ts), k)
            for ts in counted.values()
            if len(ts) >= k
        ]
        if values:
            out[str(k)] = {"value": round(sum(values) / len(values), 6), "tasks": len(values)}
    return out


def _domain(o: TrialOutcome) -> str:
    """Why an ended trial did not resolve: its failure domain, else its status."""
    return o.failure_domain or o.status


def _task_row(
    task: str, trials: list[TrialOutcome], broken: bool, check: TrialOutcome | None
) -> dict[str, Any]:
    ended = [o for o in trials if o.ended]
    n, c = len(ended), sum(o.resolved for o in ended)
    return {
        "task": task,
        "broken": broken,
        "gold": None if check is None else check.status,
        "n": n,
        "resolved": c,
        "pass_at_1": round(c / n, 6) if n else None,
        "flaky": 0 < c < n,
        "outcomes": ["pass" if o.resolved else _domain(o) for o in trials],
        "runs": [o.run_id for o in trials],
        "cost_usd": round(sum(o.cost_usd for o in trials), 6),
        "wall_seconds": round(sum(o.wall_seconds for o in trials), 3),
    }
