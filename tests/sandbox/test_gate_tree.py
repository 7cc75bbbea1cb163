"""The run's one gate tree, through the real pipeline: what one gate run leaves never reaches the next.

Real Docker, a real repository, the ScriptedAgent. The gates see the tree
read-only; the tree is reused between the baseline and the attempts, so the
tests check that nothing a gate, the candidate or the host put beside the
composed revision is there when a gate runs, and that the tree is gone after.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

from runner.loop.outcome import RunResult
from runner.ops.service import start_run
from runner.store.runs import RunStore
from sandbox.gatetree import gate_tree_path
from sandbox.gitdir import scratch_path
from sandbox.paths import worktrees_dir
from sandbox.treefs import mount_scratch_fs
from tests.support.demo import FIXED, build_demo, run_request

pytestmark = pytest.mark.docker

# Each gate tries to leave something in its tree; the next gate fails if anything is there
# that the composed revision does not hold (or if the tree is not the candidate's code).
WRITER = (
    "sh -c 'touch /workspace/planted; mkdir -p /workspace/tests/__pycache__;"
    " echo hacked > /workspace/src/calc.py; echo done'"
)
CHECK = (
    "sh -c 'test ! -e /workspace/planted && test ! -e /workspace/tests/__pycache__"
    " && test ! -e /workspace/notes.log && test ! -e /workspace/.git"
    ' && grep -q "a + b" /workspace/src/calc.py\''
)
POLICY = textwrap.dedent(
    f"""\
    [budgets]
    attempts = 2
    steps = 20
    wall_seconds = 900

    [[gates]]
    name = "writer"
    command = {json.dumps(WRITER)}
    timeout = 120

    [[gates]]
    name = "check"
    command = {json.dumps(CHECK)}
    timeout = 120
    """
)
SCRIPT = f"""
[[attempt]]
[[attempt.window]]
actions = [{{ write = "src/calc.py", content = {json.dumps(FIXED)} }},
           {{ write = "notes.log", content = "ignored, never in a candidate" }},
           {{ finish = "add() adds" }}]
"""


@pytest.fixture
def run(tmp_path: Path, corral_home: Path, docker_client: Any, sandbox_image: str) -> Iterator[Any]:
    # the demo project, its notes ignored, under the policy of the two gates above
    build_demo(tmp_path, files={".gitignore": "__pycache__/\n*.log\n"}, policy=POLICY)
    (tmp_path / "script.toml").write_text(SCRIPT)

    def go(on_event: Any = None) -> RunResult:
        req = run_request(tmp_path, script=tmp_path / "script.toml", image=sandbox_image)
        return start_run(corral_home, req, on_event)

    with mount_scratch_fs(worktrees_dir(corral_home), size_mb=256):
        yield go


def test_nothing_a_gate_or_the_candidate_left_reaches_the_next_gate(
    run: Any, corral_home: Path
) -> None:
    result = run()
    store = RunStore(corral_home)
    logs = {
        label: store.artifact_path(result.run_id, f"{label}/gate-writer.log").read_text()
        for label in ("baseline", "attempt-1")
    }
    assert all("Read-only file system" in text for text in logs.values()), logs
    assert result.status == "ready_for_review", result.reason
    assert result.attempts[0].gates == {"writer": True, "check": True}
    base = json.loads(store.artifact_path(result.run_id, "baseline.json").read_text())
    assert base["check"]["passed"] is False  # at base the tree holds a - b, as it should
    assert gate_tree_path(corral_home, result.run_id) is None  # removed at the run's end
    assert store.verify(result.run_id).ok


def test_a_gate_tree_changed_on_the_host_during_a_gate_gives_no_verdict(
    run: Any, corral_home: Path, tmp_path: Path
) -> None:
    # the gate tells the host it is running (a file in its private output directory),
    # then waits until the host has changed the tree (or 60 s)
    waiter = "sh -c 'touch /corral/out/running; sleep 60'"
    (tmp_path / "policy.toml").write_text(POLICY.replace(json.dumps(WRITER), json.dumps(waiter), 1))
    planted: list[Path] = []

    def on_event(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "gate_start" and data.get("label") == "attempt-1" and not planted:
            run_id = RunStore(corral_home).list_runs(limit=1)[0].run_id
            tree = gate_tree_path(corral_home, run_id)
            assert tree is not None  # the baseline checked it out
            planted.append(tree / "planted-by-host")
            threading.Thread(target=plant, args=(run_id,), daemon=True).start()

    def plant(run_id: str) -> None:
        out = scratch_path(corral_home, run_id, "out-attempt-1")
        for _ in range(600):  # bounded: 60 s
            if list(out.glob(".run-*/running")):
                planted[0].write_text("x")
                break
            time.sleep(0.1)
        for c in docker.from_env().containers.list(filters={"label": f"corral.run={run_id}"}):
            c.kill()  # the gate's sleep ends now rather than after 60 s

    result = run(on_event)
    assert planted and (result.status, result.failure_domain) == ("failed", "runtime")
    assert "gate tree changed while gate writer ran" in (result.reason or "")
    assert gate_tree_path(corral_home, result.run_id) is None


def test_a_gate_tree_that_cannot_be_prepared_runs_no_gate_and_leaves_no_container(
    tmp_path: Path, docker_client: Any, sandbox_image: str
) -> None:
    from policies.policy import GatePolicy
    from runner.loop.gates import run_gate
    from sandbox.docker_backend import DockerBackend, DockerSandbox
    from sandbox.spec import SandboxSpec

    tree = tmp_path / "tree"
    tree.mkdir()
    started: list[DockerSandbox] = []
    ran: list[str] = []

    class Watched(DockerBackend):  # the real backend; it notes what reached the container
        def start(self, spec: SandboxSpec) -> DockerSandbox:
            sb = super().start(spec)
            started.append(sb)
            real = sb.exec_once

            def exec_once(cmd: Any, **kw: Any) -> Any:
                ran.append(str(cmd))
                return real(cmd, **kw)

            sb.exec_once = exec_once  # type: ignore[method-assign]
            return sb

    def prepare() -> None:
        raise OSError("no space left for the gate tree")

    gate = GatePolicy(name="marker", command="true")
    spec = SandboxSpec(image=sandbox_image, run_id="prep-fails", owner_home=str(tmp_path))
    with pytest.raises(OSError, match="no space left"):
        run_gate(Watched(docker_client), spec, gate, tree, tmp_path / "out", prepare=prepare)
    assert len(started) == 1 and ran == [], "the gate's command never runs on an unprepared tree"
    flt = {"label": ["corral.run=prep-fails"]}
    assert docker_client.containers.list(all=True, filters=flt) == []  # closed all the same
