"""Per-step overhead of the built-in agent loop, as a ratio to the bare sandbox exec path.

A window of N steps, each a `bash("true")` tool call from a zero-latency scripted model on
loopback, runs through the real loop (CorralAgent -> Tools: validate, execute, record,
scope check, budgets). The time of the model calls and of the commands themselves is
measured and taken out; what remains, per step, is the loop's overhead. The baseline is
the median of `Sandbox.exec("true")` on the same sandbox, measured in the same run.

    .venv/bin/python bench/bench_agent_step.py [--steps 60] [--files 200]
"""

from __future__ import annotations

import argparse
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
from sandbox.workspace import Workspace
from tests.gitfixtures import make_repo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
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
        policy = load_policy("default", overrides={"budgets.steps": 10_000, "budgets.idle_steps": 10_000,
                                                   "budgets.repeated_command": 10_000})  # fmt: skip
        p = policy.policy
        events: list[Any] = []
        tools = Tools(
            sandbox=sb, workspace=ws, scope=Scope(p), validator=CommandValidator(p.commands),
            budget=Budget(steps=10_000, output_bytes=10**9, tokens=10**9, cost_usd=1e9,
                          deadline=time.monotonic() + 3600, repeated_command=10_000, idle_steps=10_000),
            emit=lambda kind, data: events.append((kind, data)), command_timeout=60,
        )  # fmt: skip
        timed = {"model": 0.0, "command": 0.0}
        real_exec = sb.exec

        def exec_timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return real_exec(*a, **k)
            finally:
                timed["command"] += time.perf_counter() - t

        sb.exec = exec_timed  # type: ignore[method-assign]
        replies = [
            ScriptedReply(tool_calls=[ToolCall("bash", {"command": "true"})])
            for _ in range(args.steps)
        ]
        replies.append(ScriptedReply(tool_calls=[ToolCall("finish", {"summary": "done"})]))
        with ScriptedModelServer(replies) as server:
            model = ModelClient(ModelConfig(model="bench", base_url=server.base_url, api_key="x"))
            real_complete = model.complete

            def complete_timed(*a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return real_complete(*a, **k)
                finally:
                    timed["model"] += time.perf_counter() - t

            model.complete = complete_timed  # type: ignore[method-assign]
            p_model = p.model.model_copy(update={"steps_per_window": args.steps + 5})
            agent = CorralAgent(model, p_model, p.progress.file)
            ctx = WindowContext(
                task=Task("bench", "bench", str(repo), ws.base), attempt=1, window=1, max_windows=1,
                progress="", feedback="", policy_summary="", diff_stat="", tools=tools,
            )  # fmt: skip
            t0 = time.perf_counter()
            outcome = agent.run_window(ctx)
            total = time.perf_counter() - t0
        assert outcome.end == "finished", outcome
    finally:
        sb.close()
        ws.remove()
    steps = args.steps + 1
    overhead = (total - timed["model"] - timed["command"]) / steps
    print(f"repository: {args.files} files   steps: {steps}")
    print(f"  bare sandbox exec (median)          {bare * 1000:7.2f} ms")
    print(
        f"  loop overhead per step              {overhead * 1000:7.2f} ms   (model calls and commands taken out)"
    )
    ratio = overhead / bare
    print(
        f"result: {'PASS' if ratio <= 1.2 else 'MISS'} loop overhead / bare exec = {ratio:.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
