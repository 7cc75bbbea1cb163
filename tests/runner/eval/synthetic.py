"""A small eval made without Docker: its ``eval.json`` and its trials as real runs on the fake backend.

``synthetic_eval(root)`` records an eval of three tasks x three trials (``OUTCOMES``: the task
``always`` resolves every trial, ``sometimes`` the first two, ``never`` none) exactly as
``corral eval`` leaves it: ``EvalDir.save`` writes ``eval.json``, and each trial is a run of
``tests.support.fastloop`` started with the trial's idempotency key (``trial_key``), so
``corral eval report`` finds them as it finds a real eval's. The model name holds markup, as
run text an agent or a task file can carry.
"""

from __future__ import annotations

from pathlib import Path

from runner.eval.record import EvalDir, EvalInputs, Trial, trial_key
from runner.eval.tasks import EvalTask
from tests.support.fastloop import ADDS, WRONG, Project, finish, policy, run, script, write

EVAL_ID = "synthetic"
MODEL = "<script>alert(1)</script>"
#: Per task, whether each of its three trials resolves.
OUTCOMES = {"always": (True, True, True), "sometimes": (True, True, False),
            "never": (False, False, False)}  # fmt: skip
FIX = "def add(a, b):\n    return a + b\n"


def synthetic_eval(root: Path) -> Path:
    """The eval ``EVAL_ID`` in the corral home ``root/home`` (returned), with every trial run."""
    home = root / "home"
    project = Project(root / "project", home)
    tasks = tuple(
        EvalTask(id=t, repo=root / "project" / "repo", base="HEAD", bug="add() subtracts",
                 bug_file=None, policy=None, must_pass=(), hidden_tests=None, gold=None)
        for t in OUTCOMES
    )  # fmt: skip
    inputs = EvalInputs(tasks=tasks, tasks_file=str(root / "tasks.jsonl"), agent="scripted",
                        script=str(root / "script.toml"), model=MODEL)  # fmt: skip
    EvalDir(home, EVAL_ID).save(inputs, trials=3, check_gold=False)
    for number in (1, 2, 3):
        for task in tasks:
            good = OUTCOMES[task.id][number - 1]
            actions = [run("grep -n return src/calc.py"), write("src/calc.py", FIX if good else WRONG),
                       finish("fixed add" if good else "tried")]  # fmt: skip
            key = trial_key(EVAL_ID, Trial(task, number), inputs)
            result = project.start(script([actions]), policy(gates=[ADDS], attempts=1),
                                   idempotency_key=key)  # fmt: skip
            assert (result.status == "ready_for_review") is good, result.reason
    return home
