"""Per-step overhead of the built-in agent loop, as a ratio to the bare sandbox exec path.

A whole ``corral run`` (``runner.ops.service.start_run``, as the CLI calls it) drives the
built-in agent against a zero-latency scripted model on loopback, with a real
``RunStore`` in a temporary ``CORRAL_HOME`` and the plain-lines run display writing to
``/dev/null`` (what ``corral run`` shows when stderr is not a terminal). One window of N
steps: commands, reads, and every fifth step a file write. Every step takes the real
path: ``Tools`` (budget, validation, sandbox, ``Runner.emit`` -> ``RunStore.append``:
flock, one write, SQLite head update; the log is fsynced at durable boundaries, not per
event; ``Runner.notify`` for the live-only notices; scope check). Timing probes wrap
``ModelClient.complete`` and the sandbox's ``exec``, ``read_file`` and ``write_file``;
they change no behaviour.

overhead of a step = time from the end of one model call to the start of the next,
                     minus the time spent in the sandbox (the command, the read or write).
baseline           = ``Sandbox.exec("true")`` on the run's own sandbox, sampled right
                     before every model call (outside the measured interval), so it sees
                     the same machine load as the steps.

The run is done twice: with the inotify tree watch corral uses (``sandbox.watch``) and
with a full scan after every step. Per step, the overhead is split into the event log
(``RunStore.append`` and ``sync``), the display (``on_event``), the scope check
(``Tools._enforce_scope``) and the rest (agent loop, validation, budget).

    .venv/bin/python bench/bench_agent_step.py [--steps 100] [--files 200]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.gitfixtures

from rich.console import Console

import runner.loop.attempt
from bench.probes import Clock, patched
from runner.llm.client import ModelClient
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from runner.loop.tools import Tools
from runner.ops.service import RunRequest, start_run
from runner.review.display import run_display
from runner.store.runs import RunStore
from sandbox.docker_backend import DockerBackend, DockerSandbox
from sandbox.engine import connect
from sandbox.images import ensure_sandbox_image
from tests.support.gitfixtures import make_repo

TARGET = 1.2
PARTS = ("event log", "display", "scope check")


def actions(n: int) -> list[ScriptedReply]:
    """A window of ``n`` steps: mostly looking (commands, reads), every fifth step an edit."""
    kinds = [
        ToolCall("bash", {"command": "true"}),
        ToolCall("read_file", {"path": "src/f1.py", "start_line": 1, "end_line": 5}),
        ToolCall("bash", {"command": "grep -c X src/f2.py"}),
        ToolCall("bash", {"command": "ls src"}),
    ]
    out = []
    for i in range(n):
        if i % 5 == 4:
            call = ToolCall("write_file", {"path": f"src/f{i % 50}.py", "content": f"Y = {i}\n"})
        else:
            call = kinds[i % len(kinds)]
        out.append(ScriptedReply(tool_calls=[call]))
    out.append(ScriptedReply(tool_calls=[ToolCall("finish", {"summary": "done"})]))
    return out


class Probes:
    """The time per part (``Clock``), one mark per model call, and the baseline samples."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.marks: list[tuple[float, float, dict[str, float]]] = []  # (call start, end, parts)
        self.bare: list[float] = []
        self.sandbox: DockerSandbox | None = None

    def steps(self) -> list[dict[str, float]]:
        """Per step: ``overhead`` and its parts (seconds), between consecutive model calls."""
        out = []
        for (_, end, before), (start, _, after) in itertools.pairwise(self.marks):
            d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("sandbox", *PARTS)}
            step = {"overhead": start - end - d["sandbox"], **{k: d[k] for k in PARTS}}
            step["rest"] = step["overhead"] - sum(d[k] for k in PARTS)
            out.append(step)
        return out


def probed(probes: Probes, *, watch: bool) -> AbstractContextManager[None]:
    """The timing probes (class attributes, restored on exit); ``watch=False``: no tree watch."""
    real_exec = DockerSandbox.exec
    real_start = DockerBackend.start
    real_complete = ModelClient.complete
    clock = probes.clock

    def start(self: DockerBackend, spec: Any) -> DockerSandbox:
        probes.sandbox = real_start(self, spec)
        return probes.sandbox

    def complete(self: ModelClient, *a: Any, **k: Any) -> Any:
        t_enter = time.perf_counter()
        if probes.sandbox is not None:  # the baseline, outside the measured interval
            t = time.perf_counter()
            real_exec(probes.sandbox, "true")
            probes.bare.append(time.perf_counter() - t)
        try:
            return real_complete(self, *a, **k)
        finally:
            probes.marks.append((t_enter, time.perf_counter(), clock.snapshot()))

    class NoWatch:
        @staticmethod
        def open(*a: Any, **k: Any) -> None:
            return None  # what TreeWatch.open returns where inotify is unavailable

    patches: list[tuple[Any, str, Any]] = [
        (DockerBackend, "start", start),
        (ModelClient, "complete", complete),
        (RunStore, "append", clock.wrap("event log", RunStore.append)),
        (RunStore, "sync", clock.wrap("event log", RunStore.sync)),
        (Tools, "_enforce_scope", clock.wrap("scope check", Tools._enforce_scope)),
    ]
    patches += [(DockerSandbox, n, clock.wrap("sandbox", getattr(DockerSandbox, n)))
                for n in ("exec", "read_file", "write_file")]  # fmt: skip
    if not watch:
        patches.append((runner.loop.attempt, "TreeWatch", NoWatch))
    return patched(patches)


def measure(root: Path, repo: Path, image: str, steps: int, *, watch: bool) -> Probes:
    """One ``corral run`` of one window of ``steps`` steps; the probes' record of it."""
    label = "watch" if watch else "scan"
    probes = Probes()
    overrides = {
        "budgets.attempts": 1, "budgets.windows": 1, "budgets.steps": steps + 10,
        "budgets.idle_steps": steps + 10, "budgets.repeated_command": steps + 10,
        "model.steps_per_window": steps + 5,
        "gates": [],  # no gate on purpose: the steps are measured, not the candidate
    }  # fmt: skip
    with (
        ScriptedModelServer(actions(steps)) as server,
        open(os.devnull, "w") as devnull,
        run_display(Console(file=devnull)) as on_event,
        probed(probes, watch=watch),
    ):
        req = RunRequest(
            repo=repo, bug=root / "bug.md", policy="default", overrides=overrides,
            agent="corral", model="bench", base_url=server.base_url, image=image,
            run_id=f"bench-step-{label}",
        )  # fmt: skip
        result = start_run(root / "home", req, on_event=probes.clock.wrap("display", on_event))
    assert result.status == "ready_for_review", result
    assert len(probes.marks) == steps + 1, len(probes.marks)
    return probes


def ms(x: float) -> str:
    return f"{x * 1000:6.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--files", type=int, default=200)
    args = ap.parse_args()
    if args.steps < 10 or args.files < 50:
        ap.error("use --steps >= 10 and --files >= 50")
    image = ensure_sandbox_image(connect())
    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    (root / "bug.md").write_text("# bench\n")
    repo = make_repo(
        root / "repo", {f"src/f{i}.py": f"X{i} = {i}\n" * 20 for i in range(args.files)}
    )
    scanned = measure(root, repo, image, args.steps, watch=False)
    watched = measure(root, repo, image, args.steps, watch=True)
    bare = statistics.median(scanned.bare + watched.bare)
    print(f"repository: {args.files} files   steps: {args.steps} (every fifth writes a file)")
    print(f"  run store: {root / 'home'} (real RunStore; display: plain lines to /dev/null)")
    print(f"  bare sandbox exec `true` (median of {len(scanned.bare + watched.bare)}, "
          f"sampled between steps)   {ms(bare)}")  # fmt: skip
    for label, probes in (("full scan every step", scanned), ("tree watch (default)", watched)):
        xs = probes.steps()
        over = [s["overhead"] for s in xs]
        q = statistics.quantiles(over, n=10)
        print(f"  loop overhead, {label:<21} median {ms(statistics.median(over))}"
              f"   mean {ms(statistics.fmean(over))}   p90 {ms(q[-1])}")  # fmt: skip
        parts = "   ".join(
            f"{k} {ms(statistics.median(s[k] for s in xs)).strip()}" for k in (*PARTS, "rest")
        )
        print(f"      median per step: {parts}")
    ratio = statistics.median(s["overhead"] for s in watched.steps()) / bare
    full = statistics.median(s["overhead"] for s in scanned.steps()) / bare
    print(
        f"result: {'PASS' if ratio <= TARGET else 'MISS'} median loop overhead / bare exec = "
        f"{ratio:.2f} (target <= {TARGET}); with a full scan every step: {full:.2f}"
    )


if __name__ == "__main__":
    main()
