"""Per-step overhead of the built-in agent loop, as a ratio to the bare sandbox exec path.

A window of N steps from a zero-latency scripted model on loopback (commands, reads, and
every fifth step a file write) runs through the real loop (CorralAgent -> Tools: validate,
execute, record, scope check, budgets). For each step, the time between the end of one
model call and the start of the next, minus the time spent in the sandbox (the command,
the read or the write itself), is the loop's overhead. The baseline is the median of
`Sandbox.exec("true")` on the same sandbox, measured in the same run. The window runs
twice: with the inotify tree watch corral uses (``sandbox.watch``) and with a full scan
after every step, to show what the watch saves.

    .venv/bin/python bench/bench_agent_step.py [--steps 100] [--files 200]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.gitfixtures

from policies.commands import CommandValidator
from policies.load import load_policy
from policies.scope import Scope
from runner.agent import Task, WindowContext
from runner.corral_agent import CorralAgent
from runner.model import ModelClient, ModelConfig
from runner.modelserver import ScriptedModelServer, ScriptedReply, ToolCall
from runner.tools import Budget, Tools
from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect
from sandbox.images import ensure_sandbox_image
from sandbox.spec import Mount, SandboxSpec
from sandbox.watch import TreeWatch
from sandbox.workspace import Workspace
from tests.gitfixtures import make_repo


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


def measure(sb: Any, ws: Workspace, repo: Path, steps: int, *, watch: bool) -> list[float]:
    """Per-step loop overhead (seconds): the time between two model calls minus the sandbox work."""
    p = load_policy("default", overrides={"budgets.steps": 10_000, "budgets.idle_steps": 10_000,
                                          "budgets.repeated_command": 10_000}).policy  # fmt: skip
    tree_watch = TreeWatch.open(ws.path, ws.ignored()) if watch else None
    tools = Tools(
        sandbox=sb, workspace=ws, scope=Scope(p), validator=CommandValidator(p.commands),
        budget=Budget(steps=10_000, output_bytes=10**9, tokens=10**9, cost_usd=1e9,
                      deadline=time.monotonic() + 3600, repeated_command=10_000, idle_steps=10_000),
        emit=lambda kind, data: None, command_timeout=60, watch=tree_watch,
    )  # fmt: skip
    sandbox_time = [0.0]
    depth = [0]  # write_file may call exec: count only the outermost call
    marks: list[tuple[float, float, float]] = []  # (model call start, end, sandbox time before it)

    def timed(fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            depth[0] += 1
            try:
                return fn(*a, **k)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    sandbox_time[0] += time.perf_counter() - t

        return wrapper

    for name in ("exec", "read_file", "write_file"):
        setattr(sb, name, timed(getattr(type(sb), name).__get__(sb)))
    with ScriptedModelServer(actions(steps)) as server:
        model = ModelClient(ModelConfig(model="bench", base_url=server.base_url, api_key="x"))
        real_complete = model.complete

        def complete_timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return real_complete(*a, **k)
            finally:
                marks.append((t, time.perf_counter(), sandbox_time[0]))

        model.complete = complete_timed  # type: ignore[method-assign]
        agent = CorralAgent(model, p.model.model_copy(update={"steps_per_window": steps + 5}),
                            p.progress.file)  # fmt: skip
        ctx = WindowContext(
            task=Task("bench", "bench", str(repo), ws.base), attempt=1, window=1, max_windows=1,
            progress="", feedback="", policy_summary="", diff_stat="", tools=tools,
        )  # fmt: skip
        outcome = agent.run_window(ctx)
    if tree_watch is not None:
        tree_watch.close()
    for name in ("exec", "read_file", "write_file"):
        delattr(sb, name)
    assert outcome.end == "finished", outcome
    return [
        (start - prev_end) - (work - prev_work)
        for (_, prev_end, prev_work), (start, _, work) in itertools.pairwise(marks)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--files", type=int, default=200)
    args = ap.parse_args()
    client = connect()
    image = ensure_sandbox_image(client)
    root = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    repo = make_repo(
        root / "repo", {f"src/f{i}.py": f"X{i} = {i}\n" * 20 for i in range(args.files)}
    )
    ws = Workspace.create(repo, "HEAD", "bench-step", root / "home")
    spec = SandboxSpec(image=image, workspace=str(ws.path), run_id="bench-step",
                       mounts=(Mount(source=str(ws.path / ".git"), target="/workspace/.git"),))  # fmt: skip
    sb = DockerBackend(client).start(spec)
    try:
        sb.exec("true")
        bare = statistics.median(sb.exec("true").duration_s for _ in range(args.steps))
        scanned = measure(sb, ws, repo, args.steps, watch=False)
        ws.rollback(ws.base)
        watched = measure(sb, ws, repo, args.steps, watch=True)
    finally:
        sb.close()
        ws.remove()
    print(f"repository: {args.files} files   steps: {args.steps} (every fifth writes a file)")
    print(f"  bare sandbox exec `true` (median)           {bare * 1000:7.2f} ms")
    for label, xs in (("full scan every step", scanned), ("tree watch (default)", watched)):
        q = statistics.quantiles(xs, n=10)
        print(
            f"  loop overhead, {label:<22} median {statistics.median(xs) * 1000:6.2f} ms"
            f"   mean {statistics.fmean(xs) * 1000:6.2f} ms   p90 {q[-1] * 1000:6.2f} ms"
        )
    ratio = statistics.median(watched) / bare
    print(
        f"result: {'PASS' if ratio <= 1.2 else 'MISS'} median loop overhead / bare exec = "
        f"{ratio:.2f} (target <= 1.2); with a full scan every step: "
        f"{statistics.median(scanned) / bare:.2f}"
    )


if __name__ == "__main__":
    main()
