"""``corral eval report EVAL --trajectories DIR``: each trial's run as ATIF ``trajectory.json``.

The eval is ``synthetic`` (three tasks x three trials on the fake backend, no Docker); the files
are checked against the ATIF v1.4 schema written from Harbor's RFC (``atif_schema``) and against
what each run recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from runner.store.runs import RunStore
from tests.runner.eval.atif_schema import Trajectory
from tests.runner.eval.synthetic import EVAL_ID, MODEL, OUTCOMES, synthetic_eval
from tests.support.cli import corral


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_eval(tmp_path_factory.mktemp("eval"))


def test_each_trial_is_one_atif_trajectory_the_schema_accepts(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "trajectories"
    done = corral("eval", "report", EVAL_ID, "--trajectories", str(out), home=home)
    assert done.returncode == 0, done.stderr
    assert "wrote 9 trajectory.json file(s) (ATIF)" in done.stderr
    files = sorted(out.glob("*/trajectory.json"))
    assert [f.parent.name for f in files] == sorted(
        f"{task}-agent-{n}" for task in OUTCOMES for n in (1, 2, 3)
    )
    with RunStore(home) as store:
        for f in files:
            data = json.loads(f.read_text())
            traj = Trajectory.model_validate(data)
            rec = store.get(traj.session_id)
            task, _, n = f.parent.name.partition("-agent-")
            assert rec.status == ("ready_for_review" if OUTCOMES[task][int(n) - 1] else "failed")
            assert traj.agent.name == "corral" and traj.agent.extra == {"agent": rec.agent}
            assert traj.steps[0].source == "user" and "add() subtracts" in traj.steps[0].message
            agent_steps = [s for s in traj.steps if s.source == "agent"]
            calls = [c for s in agent_steps for c in s.tool_calls or []]
            assert [c.function_name for c in calls] == ["bash", "write_file", "finish"]
            assert calls[0].arguments == {"command": "grep -n return src/calc.py"}
            assert calls[1].arguments["path"] == "src/calc.py"
            results = [r for s in agent_steps for r in s.observation.results]  # type: ignore[union-attr]
            assert (results[0].content or "").startswith("$ grep -n return src/calc.py  -> exit 0")
            gates = [s.message for s in traj.steps if s.message.startswith("gate adds [")]
            verdict = "passed" if rec.status == "ready_for_review" else "FAILED"
            assert gates[0::2] == ["gate adds [baseline] started", "gate adds [attempt-1] started"]
            assert gates[1].startswith("gate adds [baseline] FAILED")
            assert gates[3].startswith(f"gate adds [attempt-1] {verdict}")
            assert traj.final_metrics is not None
            assert traj.final_metrics.total_steps == len(traj.steps)
            assert traj.final_metrics.total_cost_usd == rec.cost_usd
            assert traj.final_metrics.extra["status"] == rec.status  # type: ignore[index]
            assert traj.steps[-1].message.startswith(f"run {rec.status}")


def test_the_schema_refuses_what_atif_does_not_allow(home: Path, tmp_path: Path) -> None:
    """The check is real: the schema fails a file that breaks each rule it holds."""
    out = tmp_path / "t"
    assert corral("eval", "report", EVAL_ID, "--trajectories", str(out), home=home).returncode == 0
    good = json.loads(next(out.glob("*/trajectory.json")).read_text())
    agent_at = next(i for i, s in enumerate(good["steps"]) if s["source"] == "agent")
    broken = {
        "no schema_version": lambda d: d.pop("schema_version"),
        "a step out of order": lambda d: d["steps"][1].update(step_id=7),
        "a tool call on a system step": lambda d: d["steps"][0].update(tool_calls=[]),
        "an unknown source": lambda d: d["steps"][0].update(source="runner"),
        "an observation of no call": lambda d: d["steps"][agent_at]["observation"]["results"][
            0
        ].update(source_call_id="nope"),
        "an unknown field": lambda d: d.update(model=MODEL),
    }
    for name, breaks in broken.items():
        data = json.loads(json.dumps(good))
        breaks(data)
        with pytest.raises(ValidationError):
            Trajectory.model_validate(data)
            pytest.fail(name)


def test_an_unwritable_trajectories_folder_is_one_line_naming_the_fix(
    home: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = corral("eval", "report", EVAL_ID, "--trajectories", str(blocker / "x"), home=home)
    assert done.returncode == 2
    assert "give a writable folder" in done.stderr and "Traceback" not in done.stderr


def test_a_model_call_becomes_the_metrics_of_the_step_it_led_to(tmp_path: Path) -> None:
    from runner.store.atif import to_atif
    from tests.support.storefixtures import stored_run

    with stored_run(tmp_path, "r1", status="failed", bug_title="b") as store:
        for prompt, completion, cost, command in ((100, 20, 0.01, "ls"), (150, 30, 0.02, "pwd")):
            store.append("r1", "model_call", {"prompt_tokens": prompt, "cost_usd": cost,
                                              "completion_tokens": completion,
                                              "finish_reason": "tool_calls"})  # fmt: skip
            store.append("r1", "command", {"args": {"command": command}, "command": command,
                                           "exit_code": 2, "tool": "bash"})  # fmt: skip
        store.append("r1", "progress_snapshot", {"attempt": 1})
        data = to_atif(store, "r1")
    traj = Trajectory.model_validate(data)
    agent = [s for s in traj.steps if s.source == "agent"]
    assert [s.tool_calls[0].arguments for s in agent] == [{"command": "ls"}, {"command": "pwd"}]  # type: ignore[index]
    metrics = [s.metrics for s in agent]
    assert [(m.prompt_tokens, m.completion_tokens, m.cost_usd) if m else None
            for m in metrics] == [(100, 20, 0.01), (150, 30, 0.02)]  # fmt: skip
    final = traj.final_metrics
    assert final is not None
    assert (final.total_prompt_tokens, final.total_completion_tokens) == (250, 50)
    assert traj.steps[0].message == "b"  # the bug file is gone: its title
    assert not any("snapshot" in s.message for s in traj.steps)
