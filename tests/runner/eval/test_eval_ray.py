"""``corral eval --ray``: the same eval on a local Ray cluster as on the local pool, same results.

Three corpus tasks x 2 trials (``test_eval_corpus``'s task file and scripts: the fix on
some trials, nothing on the others), no gold check: once on the local pool of two
workers, once as Ray tasks on a cluster this test starts (``ray.init``: 2 CPUs, 2
``docker`` units, no dashboard, its temp dir under pytest's), both through the CLI.
Each trial's status, pass@k and pass^k are equal; the Ray trials ran on the cluster's
node (each trial's log names it) as runs of their own. Mid-way through the Ray eval, the
node is "lost": each Ray worker running a trial is killed with its trial's process
(``kill -9``); Ray runs those tasks again, and their trials resume the runs the lost
ones had started (a ``run_resume`` event, still one run per trial). Ray picks free ports for its
processes (none fixed, so a parallel CI does not collide) on this machine's address
(Ray refuses to bind a node to loopback); ``ray.shutdown`` stops them all.

Bad input: a ``--ray`` address nothing answers at, or a cluster that offers no ``docker``
unit, is one error line and exit 2.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.store.runs import RunStore
from tests.runner.eval.test_eval_corpus import _report, write_scripts, write_tasks
from tests.support.cli import corral, corral_argv, corral_env

FIXED_ON = {"parse": {1}, "pathspec": {1, 2}, "sqlparse": set[int]()}
K = 2


@contextlib.contextmanager
def _cluster(tmp_path_factory: pytest.TempPathFactory, docker: int) -> Iterator[str]:
    """A one-node Ray cluster of 2 CPUs and ``docker`` units (its workers see this process's
    environment: the test's ``CORRAL_HOME``), shut down on the way out; its GCS address."""
    import ray

    temp = tmp_path_factory.mktemp("ray")  # short: Ray's sockets live under it
    ray.init(num_cpus=2, resources={"docker": docker} if docker else None,
             include_dashboard=False, _temp_dir=str(temp), log_to_driver=False)  # fmt: skip
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, corral_home: Path) -> Iterator[str]:
    with _cluster(tmp_path_factory, docker=2) as address:
        yield address


def _eval(home: Path, *args: str, lose_node: bool = False) -> dict[str, Any]:
    """``corral eval ARGS`` to its end (``lose_node``: losing the node's trials once one runs);
    its report."""
    eval_id = args[args.index("--eval-id") + 1]
    proc = subprocess.Popen(
        corral_argv("eval", *args), env=corral_env(home), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    if lose_node:
        _lose_the_node(home, eval_id)
    stdout, stderr = proc.communicate(timeout=3600)
    assert proc.returncode == 0, stderr[-3000:]
    assert "ran 6 trial(s), 0 had ended before" in stdout
    return _report(home, eval_id)


def _lose_the_node(home: Path, eval_id: str) -> None:
    """Once a trial's run is under way, kill -9 each Ray worker running a trial and the trial's
    process: what losing their node does to them."""
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        report = corral("eval", "report", eval_id, "--json", home=home)
        started = report.returncode == 0 and any(
            t["status"] == "running" for t in json.loads(report.stdout)["trials"]
        )
        victims = []
        for proc in psutil.Process().children(recursive=True) if started else []:
            with contextlib.suppress(psutil.Error):
                parent = proc.parent()
                title = " ".join(parent.cmdline()) if parent is not None else ""
                if _is_trial(proc) and title.startswith("ray::"):
                    victims += [parent, proc]  # a Ray worker (by its title) and its trial
        for proc in victims:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if victims:
            return
        time.sleep(1)
    raise AssertionError(f"no trial of eval {eval_id} ran under a Ray worker")


@pytest.mark.docker
def test_an_eval_on_a_ray_cluster_has_the_results_of_the_local_pool(
    tmp_path: Path, corral_home: Path, sandbox_image: str, ray_cluster: str
) -> None:
    tasks = write_tasks(tmp_path / "corpus", list(FIXED_ON))
    scripts = write_scripts(tmp_path / "scripts", FIXED_ON, K)
    common = ("--tasks", str(tasks), "--script", str(scripts / "{task}-{trial}.toml"),
              "--trials", str(K), "--no-gold-check")  # fmt: skip
    local = _eval(corral_home, *common, "--workers", "2", "--eval-id", "local")
    on_ray = _eval(corral_home, *common, "--ray", ray_cluster, "--eval-id", "ray", lose_node=True)

    def statuses(report: dict[str, Any]) -> dict[tuple[str, int], str]:
        return {(t["task"], t["trial"]): t["status"] for t in report["trials"]}

    expected = {
        (task, n): "ready_for_review" if n in fixed else "failed"
        for task, fixed in FIXED_ON.items()
        for n in range(1, K + 1)
    }
    assert statuses(local) == expected
    assert statuses(on_ray) == expected
    for key in ("pass_at_k", "pass_hat_k", "resolved", "trials_ended"):
        assert on_ray["summary"][key] == local["summary"][key]
    assert on_ray["summary"]["pass_at_k"]["1"] == {"value": 0.5, "tasks": 3}
    assert on_ray["flaky_tasks"] == local["flaky_tasks"] == ["parse"]

    with RunStore(corral_home) as store:  # twelve runs: none shared between the two evals
        assert len({t["run_id"] for t in local["trials"] + on_ray["trials"]}) == 12
        assert len(store.list_runs(limit=100)) == 12
        resumed = [  # the lost trials, run again by Ray: their runs went on, not anew
            t for t in on_ray["trials"]
            if any(e.type == "run_resume" for e in store.events(t["run_id"]))
        ]  # fmt: skip
        assert resumed, "no trial of the lost node was resumed"
    import ray

    node = ray.get_runtime_context().get_node_id()
    for t in on_ray["trials"]:  # each trial's log: the node, then its run's events and result
        log = corral_home / "evals" / "ray" / "logs" / f"{t['task']}-agent-{t['trial']}.log"
        text = log.read_text()
        assert text.startswith(f"[corral] on Ray node {node}\n"), text[:300]
        assert "[corral] run_end " in text, text[-1000:]
        assert f'{{"run_id": "{t["run_id"]}", "status": "{t["status"]}"}}' in text, text[-500:]
    local_logs = (corral_home / "evals" / "local" / "logs").glob("*.log")
    assert not any("Ray node" in log.read_text() for log in local_logs)


@pytest.mark.docker
def test_sigterm_stops_the_ray_trials_the_recorded_way_and_the_same_command_goes_on(
    tmp_path: Path, corral_home: Path, sandbox_image: str, ray_cluster: str
) -> None:
    tasks = write_tasks(tmp_path / "corpus", ["parse"])
    scripts = write_scripts(tmp_path / "scripts", {"parse": {1}}, 2)
    args = ("eval", "--tasks", str(tasks), "--script", str(scripts / "{task}-{trial}.toml"),
            "--trials", "2", "--no-gold-check", "--ray", ray_cluster, "--eval-id", "stop")  # fmt: skip
    proc = subprocess.Popen(
        corral_argv(*args), env=corral_env(corral_home), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        report = corral("eval", "report", "stop", "--json", home=corral_home)
        if report.returncode == 0 and "running" in {
            t["status"] for t in json.loads(report.stdout)["trials"]
        }:
            break
        time.sleep(1)
    assert proc.poll() is None, "the eval ended before it could be stopped"
    proc.terminate()
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted: eval stop:" in stderr
    stopped = [t for t in _report(corral_home, "stop")["trials"] if t["run_id"]]
    assert [t["status"] for t in stopped] == ["interrupted"]  # recorded, and no process holds it
    with RunStore(corral_home) as store:
        kinds = [e.type for e in store.events(stopped[0]["run_id"])]
    assert "run_interrupted" in kinds
    left = [p for p in psutil.Process().children(recursive=True) if _is_trial(p)]
    assert left == [], "a trial's process outlived its cancelled Ray task"

    again = corral(*args, home=corral_home, timeout=1200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "ran 2 trial(s), 0 had ended before" in again.stdout
    done = {t["trial"]: t for t in _report(corral_home, "stop")["trials"]}
    assert {n: t["status"] for n, t in done.items()} == {1: "ready_for_review", 2: "failed"}
    assert done[stopped[0]["trial"]]["run_id"] == stopped[0]["run_id"]  # the same run, resumed


def _is_trial(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "runner.eval.worker" in proc.cmdline()
    return False


def test_a_ray_address_nothing_answers_at_is_one_error_line(
    tmp_path: Path, corral_home: Path
) -> None:
    tasks = write_tasks(tmp_path / "corpus", ["parse"])
    proc = corral("eval", "--tasks", str(tasks), "--agent", "empty", "--ray", "127.0.0.1:1",
                  home=corral_home)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --ray 127.0.0.1:1: no Ray cluster to join ([Errno 111] Connection refused);"
        " start one with `ray start --head --resources='{\"docker\": 2}'` or give its address"
    )


def test_a_cluster_that_offers_no_docker_unit_is_one_error_line(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, corral_home: Path
) -> None:
    tasks = write_tasks(tmp_path / "corpus", ["parse"])
    with _cluster(tmp_path_factory, docker=0) as address:
        proc = corral("eval", "--tasks", str(tasks), "--agent", "empty", "--ray", address,
                      home=corral_home)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: --ray {address}: no node of the cluster offers a `docker` resource; start each"
        " node with a Docker engine with `ray start ... --resources='{\"docker\": 2}'`"
    )
