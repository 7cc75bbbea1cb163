"""How corral's cost grows with the repository, as ratios to the smallest one measured in the same run.

The same trivial ``corral run`` (``runner.ops.service.start_run`` on Docker, the scripted agent:
one command, one file written, finish; one attempt; the gate ``true``) on generated repositories
of 100, 3,000 and 30,000 files (4 KiB each, in directories of 100), and on one real repository
when ``--real PATH`` names a checkout. Next to it, through the library on the same repositories:

- ``rollback``: ``Workspace.rollback`` to the start after one file was changed (what every
  attempt after the first, and every per-step revert, pays);
- ``no-op step``: the scope check of a step that changed nothing, without the tree watch
  (``Workspace.snapshot(reuse=True)``: what a step costs when the watch cannot say "nothing").

Prints medians over ``--rounds`` (the first round warms caches and is dropped), then each size's
ratio to the 100-file repository. Issue 17's targets: the 30,000-file run at most 1.5x the
100-file run; rollback and a no-op step at most 1.2x across the sizes. Nothing here asserts:
figures go to docs/benchmarks.md with the date and machine.

    .venv/bin/python bench/bench_scale.py [--rounds 3] [--sizes 100,3000,30000] [--real PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.gitfixtures

from runner.ops.service import RunRequest, start_run
from sandbox.engine import connect
from sandbox.images import ensure_sandbox_image
from sandbox.workspace import Workspace
from tests.support.gitfixtures import git

SCRIPT = """
[[attempt]]
[[attempt.window]]
actions = [{ run = "true" }, { write = "bench_change.txt", content = "changed\\n" },
           { finish = "changed one file" }]
"""
POLICY = """
[budgets]
attempts = 1

[[gates]]
name = "check"
command = "true"
"""
FILE = "x = 1\n" * 680  # ~4 KiB


def generated_repo(root: Path, files: int) -> Path:
    """A git repository of ``files`` Python files in directories of 100, one commit."""
    repo = root / f"repo-{files}"
    for i in range(files):
        d = repo / "src" / f"d{i // 100:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i:05d}.py").write_text(FILE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{files} files")
    return repo


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def one_run(repo: Path, work: Path, image: str, n: int) -> float:
    """Seconds of one trivial ``corral run`` on ``repo`` in a fresh home (its worktree included)."""
    home = work / f"home-{repo.name}-{n}"
    (work / "bug.md").write_text("# bench\n\nchange one file\n")
    (work / "policy.toml").write_text(POLICY)
    (work / "script.toml").write_text(SCRIPT)
    req = RunRequest(repo=repo, bug=work / "bug.md", policy=str(work / "policy.toml"),
                     script=work / "script.toml", image=image)  # fmt: skip
    started = time.perf_counter()
    result = start_run(home, req)
    seconds = time.perf_counter() - started
    assert result.status == "ready_for_review", result
    shutil.rmtree(home, ignore_errors=True)
    return seconds


def library_parts(repo: Path, work: Path, n: int) -> tuple[float, float]:
    """(rollback, no-op step) seconds on a workspace of ``repo``."""
    home = work / f"lib-{repo.name}-{n}"
    ws = Workspace.create(repo, "HEAD", f"bench-{n}", home)
    ws.snapshot(reuse=True)  # the hash cache a run's first step fills
    noop = timed(lambda: ws.snapshot(reuse=True))
    (ws.path / "bench_change.txt").write_text("changed\n")
    rollback = timed(lambda: ws.rollback(ws.start))
    ws.remove()
    shutil.rmtree(home, ignore_errors=True)
    return rollback, noop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="100,3000,30000")
    ap.add_argument("--real", type=Path, help="a real repository's checkout to measure too")
    args = ap.parse_args()
    client = connect()
    image = ensure_sandbox_image(client)
    with tempfile.TemporaryDirectory(prefix="corral-bench-scale-") as tmp:
        work = Path(tmp)
        repos = [generated_repo(work, int(s)) for s in args.sizes.split(",")]
        if args.real is not None:
            repos.append(args.real.resolve())
        rows: dict[str, list[tuple[float, float, float]]] = {r.name: [] for r in repos}
        for n in range(args.rounds + 1):
            for repo in repos:
                run = one_run(repo, work, image, n)
                rollback, noop = library_parts(repo, work, n)
                if n:  # round 0 warms caches
                    rows[repo.name].append((run, rollback, noop))
        subprocess.run(["sync"], check=False)
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in rows.items()}
    first = med[repos[0].name]
    print(
        f"{'repository':<24} {'run s':>8} {'rollback ms':>12} {'no-op step ms':>14}   ratios to {repos[0].name}"
    )
    for repo in repos:
        run, rollback, noop = med[repo.name]
        ratios = f"run {run / first[0]:.2f}x  rollback {rollback / first[1]:.2f}x  no-op {noop / first[2]:.2f}x"
        print(
            f"{repo.name:<24} {run:>8.2f} {rollback * 1000:>12.1f} {noop * 1000:>14.1f}   {ratios}"
        )
    print(
        "targets: run <= 1.5x, rollback <= 1.2x, no-op step <= 1.2x (the largest against the smallest)"
    )


if __name__ == "__main__":
    main()
