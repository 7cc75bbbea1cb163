"""Runner overhead per attempt, as a ratio to the floor measured in the same run.

Both sides do the same sandboxed work for N attempts on the same repository and image:
each attempt starts a container on the worktree, runs the agent's actions (one command
and one file write), closes the container, harvests the tree, and runs one trivial gate
in a fresh container; attempts 2..N start with a rollback to base.

floor:   that work and nothing else, through the sandbox library directly:
         (Workspace.create + N x (start, actions, close, harvest, gate) + (N-1) x rollback
         + Workspace.remove) / N.
runner:  a whole ``corral run`` (``runner.ops.service.start_run``) of N attempts with the
         scripted agent, plus removing its worktree, divided by N. Its extra work is the
         runner's overhead: run record, policy, journal, hash-chained events, read-only
         mounts, per-step scope check, progress snapshots, judging, the gate tree
         (compose, then one tree per run, in RAM when small, updated in place while
         each gate's container starts and checked before and after each gate), gate
         logs, and waiting for the baseline gate at base (one more gate container per
         run, shared by the N attempts; it starts on a thread of its own as soon as the
         run's git dir exists, while attempt 1 is set up and works, and attempt 1's
         judge waits for what is left of it).

The gate is ``! grep -q bench-change src/f0.py``: it passes at base and fails on every
candidate (the agent writes that text), so each attempt fails and the next one starts
(a gate that passes would end the run after attempt 1; one that fails at base too is not
blamed by corral and passes). The floor's gate is the same command, run with
``exec_once`` in a fresh container on the read-only tree, as ``runner.loop.gates`` does.

The runner's time is split by probes on the same library calls (worktree, sandbox start
and close, actions, harvest, gate containers, rollback) and on its own work: the gate
tree (``Workspace.compose``, ``GateTree.checkout``/``unchanged``, removing it and the
junit scratch directory), the event log (``RunStore.append`` and ``sync``), artifacts
(``RunStore.write_artifact``) and the judge's wait for the baseline; ``rest`` is the
remainder. Calls on the baseline's thread are timed apart (they overlap the runner's own)
and printed as the baseline's line: its time per run, all of it off the runner's path
except the wait.

Prints medians over the rounds (floor and runner alternate; the first round warms caches
and is dropped), the parts of both sides per attempt, and the ratio (target <= 1.1).

    .venv/bin/python bench/bench_overhead.py [--rounds 9] [--files 200] [--attempts 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.gitfixtures

import runner.loop.attempt
import runner.loop.judge
from bench.probes import Clock, patched
from runner.loop.baseline import BackgroundBaseline
from runner.ops.service import RunRequest, start_run
from runner.store.runs import RunStore
from sandbox.docker_backend import DockerBackend, DockerSandbox
from sandbox.engine import connect
from sandbox.gatetree import GateTree
from sandbox.harvest import harvest
from sandbox.images import ensure_sandbox_image
from sandbox.spec import Mount, SandboxSpec
from sandbox.workspace import Workspace
from tests.support.gitfixtures import make_repo

TARGET = 1.1
COMMAND = "cat src/f0.py > /dev/null"
CHANGE = "X0 = 'bench-change'\n"
GATE = "! grep -q bench-change src/f0.py"
PARTS = ("worktree", "sandbox", "actions", "harvest", "gate", "rollback")
RUNNER_PARTS = ("gate tree", "event log", "artifacts", "base wait")  # the runner's own, by part
SCRIPT = f"""
[[attempt]]
[[attempt.window]]
actions = [{{ run = "{COMMAND}" }}, {{ write = "src/f0.py", content = "{CHANGE.strip()}\\n" }},
           {{ finish = "changed f0" }}]
"""
POLICY = f"""
[budgets]
attempts = {{attempts}}
repeated_strategy = 100

[[gates]]
name = "check"
command = "{GATE}"
"""


def probed(clock: Clock, background: Clock) -> AbstractContextManager[None]:
    """Time the runner's calls into the sandbox library by part (class attributes, restored).

    Calls on another thread than the main one (the baseline's) count in ``background``.
    """
    parts: list[tuple[Any, str, str]] = [
        (Workspace, "create", "worktree"), (Workspace, "remove", "worktree"),
        (Workspace, "rollback", "rollback"), (DockerBackend, "start", "sandbox"),
        (DockerSandbox, "close", "sandbox"), (DockerSandbox, "exec", "actions"),
        (DockerSandbox, "write_file", "actions"), (runner.loop.attempt, "harvest", "harvest"),
        (runner.loop.judge, "run_gate", "gate"), (Workspace, "compose", "gate tree"),
        (GateTree, "checkout", "gate tree"), (GateTree, "unchanged", "gate tree"),
        (runner.loop.judge, "remove_gate_tree", "gate tree"), (runner.loop.judge, "clean_dir", "gate tree"),
        (RunStore, "append", "event log"), (RunStore, "sync", "event log"),
        (RunStore, "write_artifact", "artifacts"), (BackgroundBaseline, "result", "base wait"),
        (BackgroundBaseline, "stop", "base wait"),
    ]  # fmt: skip

    def timed(part: str, fn: Any) -> Any:
        main, other = clock.wrap(part, fn), background.wrap(part, fn)

        def by_thread(*a: Any, **k: Any) -> Any:
            on_main = threading.current_thread() is threading.main_thread()
            return (main if on_main else other)(*a, **k)

        return by_thread

    return patched([(obj, name, timed(part, getattr(obj, name))) for obj, name, part in parts])


def floor_attempts(
    backend: DockerBackend, image: str, repo: Path, home: Path, run_id: str, n: int
) -> Clock:
    """The floor: the same sandboxed work as ``n`` attempts of the runner, nothing else."""
    clock = Clock()
    with clock.part("worktree"):
        ws = Workspace.create(repo, "HEAD", run_id, home)
    spec = SandboxSpec(image=image, workspace=str(ws.path), run_id=run_id, owner_home=str(home),
                       mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),))  # fmt: skip
    gate_spec = spec.model_copy(update={"workspace_read_only": True, "mounts": ()})
    for attempt in range(1, n + 1):
        if attempt > 1:
            with clock.part("rollback"):
                ws.rollback(ws.base)
        with clock.part("sandbox"):
            sb = backend.start(spec)
        with clock.part("actions"):
            sb.exec(COMMAND)
            sb.write_file("src/f0.py", CHANGE)
        with clock.part("sandbox"):
            sb.close()
        with clock.part("harvest"):
            h = harvest(ws, label=f"attempt-{attempt}")
        assert [c.path for c in h.changes] == ["src/f0.py"], h.changes
        with clock.part("gate"):
            gate = backend.start(gate_spec)
            try:
                assert gate.exec_once(GATE, timeout=60).exit_code == 1
            finally:
                gate.close()
    with clock.part("worktree"):
        ws.remove()
    return clock


def runner_attempts(
    root: Path, repo: Path, image: str, home: Path, run_id: str, n: int
) -> tuple[Clock, Clock]:
    """A whole ``corral run`` of ``n`` attempts (and removing its worktree), by part.

    The second clock has the baseline's thread, by part.
    """
    clock, background = Clock(), Clock()
    req = RunRequest(repo=repo, bug=root / "bug.md", policy=str(root / "policy.toml"),
                     script=root / "script.toml", image=image, run_id=run_id)  # fmt: skip
    with probed(clock, background):
        result = start_run(home, req)
        Workspace.open(home, run_id).remove()
    assert len(result.attempts) == n, result
    assert all(a.gates == {"check": False} for a in result.attempts), result.attempts
    return clock, background


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--attempts", type=int, default=3)
    args = ap.parse_args()
    if args.rounds < 1 or not 1 <= args.attempts <= 100 or args.files < 1:
        ap.error("use --rounds >= 1, --attempts 1..100 and --files >= 1")
    client = connect()
    image = ensure_sandbox_image(client)
    backend = DockerBackend(client)
    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    try:
        measure(args, backend, image, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, backend: DockerBackend, image: str, root: Path) -> None:
    """The rounds of floor and runner in ``root``, and the table and result line they give."""
    files = {f"src/f{i}.py": f"X{i} = {i}\n" * 20 for i in range(args.files)}
    repo = make_repo(root / "repo", files)
    (root / "bug.md").write_text("# bench\n")
    (root / "script.toml").write_text(SCRIPT)
    (root / "policy.toml").write_text(POLICY.format(attempts=args.attempts))
    n = args.attempts
    floor: list[tuple[float, Clock]] = []
    runs: list[tuple[float, Clock]] = []
    baselines: list[Clock] = []
    for i in range(args.rounds + 1):  # the first round warms caches and is dropped
        home = root / f"home-{i}"
        t0 = time.perf_counter()
        f = floor_attempts(backend, image, repo, home, f"floor-{i}", n)
        t1 = time.perf_counter()
        r, b = runner_attempts(root, repo, image, home, f"run-{i}", n)
        t2 = time.perf_counter()
        if i:
            floor.append(((t1 - t0) / n, f))
            runs.append(((t2 - t1) / n, r))
            baselines.append(b)
    fl = statistics.median(t for t, _ in floor)
    rn = statistics.median(t for t, _ in runs)
    print(f"repository: {args.files} files   rounds: {args.rounds}   attempts/run: {n}   "
          f"gate: {GATE!r}")  # fmt: skip
    cols = (*PARTS, *RUNNER_PARTS, "rest")
    print(f"  {'per attempt (median ms)':<24}" + "".join(f"{p:>10}" for p in (*cols, "total")))
    for label, total, rows in (("floor", fl, floor), ("runner (corral run)", rn, runs)):
        cells = [statistics.median(c.parts[p] for _, c in rows) / n for p in cols[:-1]]
        rest = statistics.median(t - sum(c.parts.values()) / n for t, c in rows)
        print(f"  {label:<24}" + "".join(f"{x * 1000:10.1f}" for x in (*cells, rest, total)))
    on_thread = statistics.median(sum(b.parts.values()) for b in baselines)
    waited = statistics.median(c.parts["base wait"] for _, c in runs)
    parts = ", ".join(f"{p} {statistics.median(b.parts[p] for b in baselines) * 1000:.0f}"
                      for p in sorted(baselines[0].parts))  # fmt: skip
    print(f"  baseline (its own thread, per run): {on_thread * 1000:.0f} ms ({parts}); "
          f"attempt 1's judge waited {waited * 1000:.0f} ms of it")  # fmt: skip
    verdict = "PASS" if rn / fl <= TARGET else "MISS"
    print(f"result: {verdict} runner / floor per attempt = {rn / fl:.2f} (target <= {TARGET}); "
          f"runner overhead {(rn - fl) * 1000:.0f} ms per attempt")  # fmt: skip


if __name__ == "__main__":
    main()
