"""Runner overhead per attempt, as a ratio to the floor measured in the same run.

floor:   per attempt, what any sandboxed attempt costs: Workspace.create + sandbox
         start + one command + close + harvest + remove.
runner:  a whole `corral run` of ATTEMPTS attempts, divided by ATTEMPTS. The scripted
         agent runs the same one command and finishes without a change, so every
         attempt fails and the next one starts; there are no gates. What is measured
         is the runner's own work per attempt: run record, policy, journal, hash-chained
         events, read-only mounts, scope check after the command, progress snapshot,
         harvest, judge, rollback -- with run-wide costs shared by the attempts as in a
         real run. Same repository, same image.

Prints medians over N rounds and the ratio runner / floor (target <= 1.1).

    .venv/bin/python bench/bench_overhead.py [--rounds 9] [--files 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.gitfixtures

from runner.service import RunRequest, start_run
from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect
from sandbox.harvest import harvest
from sandbox.images import ensure_sandbox_image
from sandbox.spec import Mount, SandboxSpec
from sandbox.workspace import Workspace
from tests.gitfixtures import make_repo

SCRIPT = """
[[attempt]]
[[attempt.window]]
actions = [{ run = "cat src/f0.py > /dev/null" }, { finish = "nothing to change" }]
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--attempts", type=int, default=3)
    args = ap.parse_args()
    client = connect()
    image = ensure_sandbox_image(client)
    backend = DockerBackend(client)
    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    files = {f"src/f{i}.py": f"X{i} = {i}\n" * 20 for i in range(args.files)}
    files["tests/test_x.py"] = "def test_x():\n    assert True\n"
    repo = make_repo(root / "repo", files)
    (root / "bug.md").write_text("# bench\n")
    (root / "script.toml").write_text(SCRIPT)
    (root / "policy.toml").write_text(
        f"[budgets]\nattempts = {args.attempts}\nrepeated_strategy = 100\n"
    )
    floor, runner = [], []
    for i in range(args.rounds + 1):  # the first round warms caches and is dropped
        home = root / f"home-{i}"
        t0 = time.perf_counter()
        ws = Workspace.create(repo, "HEAD", f"floor-{i}", home)
        spec = SandboxSpec(
            image=image,
            workspace=str(ws.path),
            mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),),
            run_id=f"floor-{i}",
        )
        sb = backend.start(spec)
        sb.exec("cat src/f0.py > /dev/null")
        sb.close()
        harvest(ws, label="a1")
        ws.remove()
        t1 = time.perf_counter()
        req = RunRequest(
            repo=repo,
            bug=root / "bug.md",
            policy=str(root / "policy.toml"),
            script=root / "script.toml",
            image=image,
            run_id=f"run-{i}",
        )
        result = start_run(home, req)
        Workspace.open(home, f"run-{i}").remove()
        t2 = time.perf_counter()
        assert len(result.attempts) == args.attempts, result
        if i:
            floor.append(t1 - t0)
            runner.append((t2 - t1) / args.attempts)
    f, r = statistics.median(floor), statistics.median(runner)
    print(f"repository: {args.files} files   rounds: {args.rounds}   attempts/run: {args.attempts}")
    print(f"  floor  (worktree + container + command + harvest)  {f * 1000:8.1f} ms per attempt")
    print(f"  runner (whole run / attempts, no gates)            {r * 1000:8.1f} ms per attempt")
    verdict = "PASS" if r / f <= 1.1 else "MISS"
    print(f"result: {verdict} runner overhead ratio = {r / f:.2f} (target <= 1.1)")


if __name__ == "__main__":
    main()
