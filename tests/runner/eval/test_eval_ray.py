"""``corral eval --ray``: the same eval on a local Ray cluster as on the local pool, same results.

Three corpus tasks x 2 trials (``test_eval_corpus``'s task file and scripts: the fix on
some trials, nothing on the others), no gold check: once on the local pool of two
workers, once as Ray tasks on a cluster this test starts (``ray.init``: 2 CPUs, 2
``docker`` units, no dashboard, its temp dir under pytest's), both through the CLI.
Each trial's status, pass@k and pass^k are equal; the Ray trials ran on the cluster's
node (each trial's log names it) as runs of their own. Ray picks free ports for its
processes (none fixed, so a parallel CI does not collide) on this machine's address
(Ray refuses to bind a node to loopback); ``ray.shutdown`` stops them all.

Bad input: a ``--ray`` address nothing answers at, or a cluster that offers no ``docker``
unit, is one error line and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runner.store.runs import RunStore
from tests.runner.eval.test_eval_corpus import write_scripts, write_tasks
from tests.support.cli import corral

FIXED_ON = {"parse": {1}, "pathspec": {1, 2}, "sqlparse": set[int]()}
K = 2


@contextmanager
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


def _eval(home: Path, *args: str) -> dict[str, Any]:
    proc = corral("eval", *args, home=home, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ran 6 trial(s), 0 had ended before" in proc.stdout
    eval_id = args[args.index("--eval-id") + 1]
    report = corral("eval", "report", eval_id, "--json", home=home)
    assert report.returncode == 0, report.stderr
    data: dict[str, Any] = json.loads(report.stdout)
    return data


@pytest.mark.docker
def test_an_eval_on_a_ray_cluster_has_the_results_of_the_local_pool(
    tmp_path: Path, corral_home: Path, sandbox_image: str, ray_cluster: str
) -> None:
    tasks = write_tasks(tmp_path / "corpus", list(FIXED_ON))
    scripts = write_scripts(tmp_path / "scripts", FIXED_ON, K)
    common = ("--tasks", str(tasks), "--script", str(scripts / "{task}-{trial}.toml"),
              "--trials", str(K), "--no-gold-check")  # fmt: skip
    local = _eval(corral_home, *common, "--workers", "2", "--eval-id", "local")
    on_ray = _eval(corral_home, *common, "--ray", ray_cluster, "--eval-id", "ray")

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
