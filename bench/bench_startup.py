"""What ``corral`` costs before it does any work, as ratios to floors measured in the same run.

commands:  ``corral --help``, ``list``, ``status RUN`` and ``review RUN`` (the ``corral`` script
           of this environment, a run of the bench's own in a temporary ``CORRAL_HOME``) against
           ``python -c pass`` of the same interpreter. Issue 17's target: each at most 0.25 s;
           the ratio says how much of that is the interpreter's own start.
run:       a trivial ``corral run`` (the CLI in a fresh process, on Docker: the scripted agent runs
           ``true`` and finishes; one attempt; the gate ``true``) against the same work through
           the library (``runner.ops.service.start_run`` in this process, whose imports, engine
           connection and images are warm). The difference is the CLI's fixed cost outside the
           sandbox work: the interpreter, the imports, the policy, the display. Target: at most
           0.4 s.

The sides alternate round by round and the first round, which warms caches, is dropped; medians
are printed with both ratios. Nothing here asserts: figures go to docs/benchmarks.md with the
date and machine.

    .venv/bin/python bench/bench_startup.py [--rounds 9] [--run-rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.gitfixtures

from bench.bench_scale import POLICY  # one attempt, the gate `true`
from runner.ops.service import RunRequest, start_run
from sandbox.engine import connect
from sandbox.images import ensure_sandbox_image
from tests.support.gitfixtures import make_repo

COMMAND_TARGET = 0.25
RUN_TARGET = 0.4
SCRIPT = """
[[attempt]]
[[attempt.window]]
actions = [{ run = "true" }, { finish = "nothing to change" }]
"""


def corral_command() -> list[str]:
    """The ``corral`` a user runs: this environment's script, else ``python -m runner``."""
    script = Path(sys.executable).with_name("corral")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "runner"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of ``argv`` run to its end (its output discarded; a failure stops the bench)."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # a trivial run with no change ends `failed`: exit 1
        sys.exit(f"bench: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return seconds


def library_run(home: Path, work: Path) -> tuple[float, str]:
    """Seconds of the trivial run through the library, and its run id. Its image is found as the
    CLI finds it (none named): by the recipe's hash, in the engine."""
    req = RunRequest(repo=work / "repo", bug=work / "bug.md", policy=str(work / "policy.toml"),
                     script=work / "script.toml")  # fmt: skip
    started = time.perf_counter()
    result = start_run(home, req)
    return time.perf_counter() - started, result.run_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="rounds of the commands")
    ap.add_argument("--run-rounds", type=int, default=5, help="rounds of the trivial run")
    args = ap.parse_args()
    ensure_sandbox_image(connect())  # built before the clock starts, if need be
    corral = corral_command()
    with tempfile.TemporaryDirectory(prefix="corral-bench-startup-") as tmp:
        work = Path(tmp)
        make_repo(work / "repo", {"README.md": "bench\n"})
        (work / "bug.md").write_text("# bench\n\nnothing to fix\n")
        (work / "policy.toml").write_text(POLICY)
        (work / "script.toml").write_text(SCRIPT)
        home = work / "home"
        env = {**os.environ, "CORRAL_HOME": str(home)}
        cli_run = [*corral, "run", "--repo", str(work / "repo"), "--bug", str(work / "bug.md"),
                   "--policy", str(work / "policy.toml"), "--agent",
                   f"scripted:{work / 'script.toml'}", "--quiet"]  # fmt: skip
        runs: dict[str, list[float]] = {"corral run (CLI)": [], "the same run (library)": []}
        run_id = ""
        for n in range(args.run_rounds + 1):
            lib, run_id = library_run(home, work)
            cli = timed(cli_run, env)
            if n:  # round 0 warms caches
                runs["the same run (library)"].append(lib)
                runs["corral run (CLI)"].append(cli)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "corral --help": [*corral, "--help"],
            "corral list": [*corral, "list"],
            "corral status RUN": [*corral, "status", run_id],
            "corral review RUN": [*corral, "review", run_id],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(args.rounds + 1):
            for name, argv in commands.items():
                seconds = timed(argv, env)
                if n:
                    times[name].append(seconds)
        shutil.rmtree(home, ignore_errors=True)
    med = {name: statistics.median(v) for name, v in {**times, **runs}.items()}
    floor = med["python -c pass"]
    print(f"{'command':<26} {'median s':>9} {'x python -c pass':>17}   target")
    for name in commands:
        mark = "" if name == "python -c pass" else f"<= {COMMAND_TARGET} s"
        print(f"{name:<26} {med[name]:>9.3f} {med[name] / floor:>16.1f}x   {mark}")
    cli, lib = med["corral run (CLI)"], med["the same run (library)"]
    print(f"{'the same run (library)':<26} {lib:>9.3f}")
    print(f"{'corral run (CLI)':<26} {cli:>9.3f}   fixed cost {cli - lib:.3f} s")
    slowest = max(med[name] for name in commands if name != "python -c pass")
    ok = slowest <= COMMAND_TARGET and cli - lib <= RUN_TARGET
    print(
        f"result: {'PASS' if ok else 'MISS'} slowest command {slowest:.3f} s "
        f"({slowest / floor:.1f}x python -c pass; target <= {COMMAND_TARGET} s); "
        f"corral run / library = {cli / lib:.2f}, fixed cost {cli - lib:.3f} s "
        f"(target <= {RUN_TARGET} s)"
    )


if __name__ == "__main__":
    main()
