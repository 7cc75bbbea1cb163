"""``--agent cli:NAME``: a third-party agent CLI, unmodified, in the sandbox, held to the policy.

One context window is one invocation of the CLI, run by the runner in the
sandbox (not through the command validator: the CLI is the agent, not one of
its commands), in a process of its own with a timeout, its output kept as an
artifact. The CLI reads the task from a prompt file the runner writes outside
the worktree (``/run/corral/agent/prompt.md``, mounted read-only): bug report,
policy summary, progress file, diff stat and the last gate feedback. A preset
that takes the prompt as an argument (``{prompt}``) gets it read from that
file when the line runs, never inside the ``bash -c`` script (Linux takes at
most 128 KiB in one argument); its prompt is cut to ``PROMPT_ARG_MAX``, the
progress file's and the feedback's oldest text first. It
reaches the model only through the gateway (``runner.gateway.core``): a unix socket
bind-mounted into the container and a forwarder on ``127.0.0.1:PORT`` started
next to the CLI, so the container holds the dummy key only and has no network.

After each invocation the runner enforces the scope on the tree (the same
check as after every built-in action, ``Tools``), counts the gateway's tokens
and cost against the run's budgets, and turns a spent gateway budget into
``BudgetExceeded``. A CLI does not get to run on once the budget is spent
(the gateway refuses it every call, but a CLI may keep retrying until its
window times out): the moment the gateway reports a budget crossed, a
watcher on the host kills the invocation's processes in the sandbox (every
process carrying the window's ``CORRAL_WINDOW`` marker, and their process
groups) and records ``agent_killed``. A process that scrubs its environment
and leaves its group escapes that kill, not the window's timeout, nor the
container's removal at harvest. Everything else (harvest scan, patch scope, gates) is the
runner's as for any agent. How an invocation ends: exit 0 is ``finished``, a
timeout is ``window_exhausted`` (re-invoked with the updated prompt), any
other exit is an ``agent_error``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from policies.budget import BudgetExceeded
from policies.commands import CommandValidator
from policies.policy import Policy
from runner.agents import AGENT_DIR, PROMPT_FILE, Preset
from runner.agents.builtin import first_message
from runner.llm.client import PRICES
from runner.loop.agent import WindowContext, WindowEnd, WindowOutcome
from sandbox.errors import SandboxError
from sandbox.interfaces import Sandbox
from sandbox.spec import Mount

log = logging.getLogger(__name__)

#: The forwarder's port inside the container (its own network namespace: nothing else listens).
PORT = 18080
GATEWAY_DIR = "/run/corral/gateway"
FORWARDER = "/run/corral/forwarder.py"
SOCKET = "gw.sock"
_PLACEHOLDER = re.compile(r"\{(model|base_url|prompt|prompt_file|agent_dir|validate_url)\}")
#: How much of an invocation's output is kept as the window's artifact (head and tail).
OUTPUT_LIMIT = 1_000_000
#: The largest prompt passed to a CLI as one argument (``{prompt}``): Linux's per-argument limit
#: (MAX_ARG_STRLEN) is 128 KiB, and the rest of the line needs a little.
PROMPT_ARG_MAX = 120 * 1024
#: The shell variable an invocation's line reads the prompt file into, for ``{prompt}``.
PROMPT_VAR = "corral_prompt"
#: Set in every invocation's environment (``a<attempt>-w<window>``): what the budget kill finds.
WINDOW_VAR = "CORRAL_WINDOW"
#: Seconds between the watcher's looks at whether the invocation has ended (the budget wakes it).
WATCH_POLL_S = 0.2
#: Kills, inside the sandbox, every process whose environment holds ``argv[1]`` (``NAME=VALUE``)
#: and every process group they are in; prints how many processes were found. Its own process
#: and group are spared, and group 1 or 0 is never signalled.
KILL_MARKED = """import os, signal, sys
mark = b"\\0" + sys.argv[1].encode() + b"\\0"
own, pids = os.getpgid(0), []
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark in b"\\0" + f.read():
                    pids.append(int(name))
        except OSError:
            pass
groups = set()
for pid in pids:
    try:
        groups.add(os.getpgid(pid))
    except OSError:
        pass
for target in [-g for g in groups if g > 1 and g != own] + pids:
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
print(len(pids))
"""

Emit = Callable[[str, Mapping[str, Any]], None]
WriteArtifact = Callable[[str, bytes | str], Any]


class CliAgent:
    """An agent CLI preset bound to one run: its gateway, its files, its invocations."""

    def __init__(
        self,
        preset: Preset,
        policy: Policy,
        *,
        model: str | None,
        base_url: str | None,
        api_key: str | None,
    ) -> None:
        self.preset, self.policy = preset, policy
        self.name = f"cli:{preset.name}"
        self.model = model or preset.default_model
        self.base_url = base_url or preset.default_base_url
        self._api_key = api_key
        self.validator = CommandValidator(policy.commands)
        self._dir: Path | None = None
        self._gateway: Any = None
        self._emit: Emit = lambda kind, data: None
        self._write_artifact: WriteArtifact | None = None
        self._spent = threading.Event()  # set by the gateway's budget_exhausted event

    # ------------------------------------------------------------ lifecycle (the service's)

    def bind(
        self,
        home: Path,
        run_id: str,
        emit: Emit,
        write_artifact: WriteArtifact,
        *,
        used_tokens: int = 0,
        used_cost: float = 0.0,
    ) -> None:
        """Make the run's agent directory and start its gateway; ``close`` undoes both.

        ``used_tokens``/``used_cost``: what the run spent before (a resume); the
        gateway counts on from there, so its budgets are the run's, not a new allowance.

        Raises ``OSError`` when the directory cannot be made, and whatever
        ``Gateway.start`` raises when the socket cannot be served.
        """
        from runner.gateway import Gateway, Upstream

        self._emit, self._write_artifact = emit, write_artifact
        # not under worktrees/: `corral gc` takes every directory there for a run's tree
        root = home / "agent-files" / run_id
        shutil.rmtree(root, ignore_errors=True)
        (root / "files").mkdir(parents=True)
        (root / "gateway").mkdir()
        for p in (root, root / "files", root / "gateway"):
            p.chmod(0o755)
        self._dir = root
        for name, text in self.preset.files.items():
            (root / "files" / name).write_text(text)  # verbatim: JSON has braces
        if self.preset.command_validation == "hook":
            hook = resources.files("runner.agents").joinpath("corral_hook.py").read_text()
            (root / "files" / "corral_hook.py").write_text(hook)
        b = self.policy.budgets
        self._spent.clear()
        self._gateway = Gateway(
            str(root / "gateway" / SOCKET),
            [Upstream(self.base_url, self._api_key)],
            on_event=self._on_gateway_event,
            max_tokens=b.tokens,
            max_cost_usd=b.cost_usd,
            prices={**PRICES, **self.policy.model.prices},
            allow_hosts=self.policy.gateway.allow_hosts,
        )
        self._gateway.used_tokens, self._gateway.used_cost = used_tokens, used_cost
        if self.preset.command_validation == "hook":
            self._gateway.validate = self.validate
        self._gateway.start()

    def close(self) -> None:
        """Stop the gateway and remove the agent directory (idempotent)."""
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def sandbox_mounts(self) -> tuple[Mount, ...]:
        """What the attempt's sandbox needs besides the worktree: files, gateway socket, forwarder."""
        from runner.gateway.core import FORWARDER_SOURCE

        root = self._bound()
        return (
            Mount(source=str(root / "files"), target=AGENT_DIR),
            Mount(source=str(root / "gateway"), target=GATEWAY_DIR),
            Mount(source=str(FORWARDER_SOURCE), target=FORWARDER),
        )

    # ------------------------------------------------------------ one window

    def run_window(self, ctx: WindowContext) -> WindowOutcome:
        """One invocation of the CLI; see the module docstring for how it ends.

        Raises ``BudgetExceeded`` (wall time before it starts, the gateway's
        token or cost budget after it returns, which is at once: a spent budget
        kills the invocation) and ``SandboxError`` when the sandbox itself fails.
        """
        root, tools = self._bound(), ctx.tools
        tools.budget.step()
        (root / "files" / "prompt.md").write_text(self.prompt(ctx))
        b = self.policy.budgets
        timeout = min(b.wall_seconds / b.windows, tools.budget.deadline - time.monotonic())
        tokens0, cost0 = self._gateway.used_tokens, self._gateway.used_cost
        self._emit("agent_invocation", {"agent": self.name, "attempt": ctx.attempt,
                                        "window": ctx.window, "timeout_s": round(timeout)})  # fmt: skip
        marker = f"{WINDOW_VAR}=a{ctx.attempt}-w{ctx.window}"
        with self._killed_when_spent(tools.sandbox, marker) as kill:
            result = tools.sandbox.exec_once(
                self.command_line(),
                timeout=max(1.0, timeout),
                env={**self.environment(), WINDOW_VAR: marker.partition("=")[2]},
                output_limit=OUTPUT_LIMIT,
            )
        if kill:
            self._emit("agent_killed", kill)
        if self._write_artifact is not None:
            body = f"$ exit {result.exit_code}\n{result.stdout}\n[stderr]\n{result.stderr}"
            self._write_artifact(f"attempt-{ctx.attempt}/window-{ctx.window}/agent.log", body)
        self._emit("agent_exit", {"agent": self.name, "exit_code": result.exit_code,
                                  "timed_out": result.timed_out, "killed": bool(kill),
                                  "duration_s": round(result.duration_s, 3)})  # fmt: skip
        note = tools._enforce_scope()  # the same scope check as after every built-in action
        tokens = self._gateway.used_tokens - tokens0
        cost = self._gateway.used_cost - cost0
        exhausted = self._gateway.exhausted
        if exhausted:
            tools.budget.model(tokens, cost)  # raises when the run's own counters cross too
            limit = b.tokens if exhausted == "tokens" else b.cost_usd
            used = tools.budget.used_tokens if exhausted == "tokens" else tools.budget.used_cost
            raise BudgetExceeded(exhausted, used, limit)
        tools.budget.output(len(result.stdout) + len(result.stderr))  # after the run-wide budgets
        notes = (note.strip(),) if note else ()
        end: WindowEnd
        if result.timed_out:
            end = "window_exhausted"
            detail = f"the agent ran out of its {timeout:.0f}s window"
        elif result.exit_code == 0:
            end, detail = "finished", ""
        else:
            end = "agent_error"
            detail = (
                f"{self.name} exited {result.exit_code}: {_tail(result.stderr or result.stdout)}"
            )
        return WindowOutcome(
            end=end, summary="agent exited" if end == "finished" else "", detail=detail,
            tokens=tokens, cost_usd=cost, notes=notes,
        )  # fmt: skip

    # ------------------------------------------------------------ the budget kill

    def _on_gateway_event(self, kind: str, data: Mapping[str, Any]) -> None:
        self._emit(kind, data)
        if kind == "gateway_budget_exhausted":
            self._spent.set()

    @contextlib.contextmanager
    def _killed_when_spent(self, sandbox: Sandbox, marker: str) -> Iterator[dict[str, Any]]:
        """While the block runs the invocation: once the gateway's budget is spent, kill it.

        Yields a dict that, after the block, describes the kill (the
        ``agent_killed`` event's data) or stays empty. The watcher thread ends
        with the block (it is joined); a kill that fails is logged and carries
        ``error``, and the window's timeout still ends the invocation.
        """
        done, report = threading.Event(), {}

        def watch() -> None:
            while not done.is_set():  # bounded by the invocation (the block) it watches
                if self._spent.wait(WATCH_POLL_S):
                    break
            if done.is_set():
                return
            data: dict[str, Any] = {"agent": self.name, "reason": "budget_exhausted",
                                    "resource": self._gateway.exhausted}  # fmt: skip
            try:
                out = sandbox.exec_once(["python3", "-c", KILL_MARKED, marker], timeout=30)
                data["processes"] = int(out.stdout.strip() or 0) if out.exit_code == 0 else 0
                if out.exit_code != 0:
                    data["error"] = _tail(out.stderr or out.stdout)
            except (SandboxError, ValueError) as exc:
                log.warning("could not kill %s after its budget was spent: %s", self.name, exc)
                data["error"] = str(exc)[:300]
            report.update(data)

        watcher = threading.Thread(target=watch, name="corral-budget-watch", daemon=True)
        watcher.start()
        try:
            yield report
        finally:
            done.set()
            watcher.join(timeout=60)

    # ------------------------------------------------------------ pieces

    def prompt(self, ctx: WindowContext) -> str:
        """The window's prompt file; cut to ``PROMPT_ARG_MAX`` bytes when the preset passes it as
        an argument: the progress file's oldest text first, then the feedback's, then the end."""
        progress_file = ctx.tools.scope.progress_file
        tail = Template(
            resources.files("runner.agents").joinpath("prompt_tail.md").read_text()
        ).safe_substitute(progress_file=progress_file)
        text = first_message(ctx, progress_file) + tail
        if not any("{prompt}" in a for a in self.preset.argv):
            return text
        over = len(text.encode()) - PROMPT_ARG_MAX
        if over > 0 and ctx.progress:
            cut = _cut_head(ctx.progress, over, f"the whole file is {progress_file}")
            ctx = dataclasses.replace(ctx, progress=cut)
            text = first_message(ctx, progress_file) + tail
        over = len(text.encode()) - PROMPT_ARG_MAX
        if over > 0 and ctx.feedback:
            cut = _cut_head(ctx.feedback, over, "the whole of it is in the run's gate logs")
            ctx = dataclasses.replace(ctx, feedback=cut)
            text = first_message(ctx, progress_file) + tail
        if len(text.encode()) <= PROMPT_ARG_MAX:
            return text
        return text.encode()[:PROMPT_ARG_MAX].decode(errors="ignore")

    def command_line(self) -> str:
        """The shell line of one invocation: forwarder up, then the CLI in /workspace, then down.

        ``{prompt}`` in an argument is the prompt file, read by the line itself.
        """
        argv = " ".join(self._argument(a) for a in self.preset.argv)
        read = f"{PROMPT_VAR}=$(cat {PROMPT_FILE}); " if "$" + PROMPT_VAR in argv else ""
        socket = f"{GATEWAY_DIR}/{SOCKET}"
        return (
            f"python3 {FORWARDER} --listen 127.0.0.1:{PORT} --socket {socket}"
            " >/tmp/corral-forwarder.log 2>&1 & fwd=$!; "
            f"for _ in $(seq 100); do (: </dev/tcp/127.0.0.1/{PORT}) 2>/dev/null && break; "
            f"sleep 0.05; done; {read}"
            f"cd /workspace && {argv} </dev/null; rc=$?; kill $fwd 2>/dev/null; exit $rc"
        )

    def _argument(self, arg: str) -> str:
        """One argument as shell words: placeholders filled, ``{prompt}`` as ``"$corral_prompt"``."""
        return f'"${PROMPT_VAR}"'.join(shlex.quote(self._fill(p)) for p in arg.split("{prompt}"))

    def environment(self) -> dict[str, str]:
        """The invocation's environment: preset variables, base URL, the dummy key."""
        from runner.gateway.core import DUMMY_KEY

        env = {k: self._fill(v) for k, v in self.preset.env.items()}
        env.update({name: self._base_url() for name in self.preset.base_url_vars})
        env.update({name: DUMMY_KEY for name in self.preset.key_vars})
        env["CORRAL_PROMPT_FILE"] = PROMPT_FILE
        if self.policy.gateway.allow_hosts:  # fetches go through the gateway as a proxy
            proxy = f"http://127.0.0.1:{PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = proxy
            env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def validate(self, command: str) -> tuple[str, str]:
        """The validator's decision on a command a CLI's hook asks about (``ask`` cannot wait: deny)."""
        verdict = self.validator.check(command)
        decision = verdict.decision if verdict.decision != "ask" else "deny"
        reason = verdict.reason if verdict.decision != "ask" else (
            f"needs a human's approval, which an agent CLI cannot wait for: {verdict.reason}"
        )  # fmt: skip
        self._emit("command_hook", {"command": command, "decision": decision, "reason": reason})
        return decision, reason

    def _base_url(self) -> str:
        url = str(self._gateway.container_base_url(PORT))
        return url if self.preset.base_url_suffix else url.removesuffix("/v1")

    def _fill(self, text: str) -> str:
        """``text`` with the known ``{placeholders}`` replaced; every other brace stays as it is
        (``{prompt}``, outside an argument, is empty: the prompt goes in no environment)."""
        from runner.gateway.routes import VALIDATE_PATH  # not at import: a scripted run needs none

        values = {
            "model": self.model,
            "base_url": self._base_url() if self._gateway is not None else "",
            "prompt": "",
            "prompt_file": PROMPT_FILE,
            "agent_dir": AGENT_DIR,
            "validate_url": f"http://127.0.0.1:{PORT}{VALIDATE_PATH}",
        }
        return _PLACEHOLDER.sub(lambda m: values[m[1]], text)

    def _bound(self) -> Path:
        if self._dir is None or self._gateway is None:
            raise RuntimeError("CliAgent used before bind(): the service binds it to its run")
        return self._dir


def _cut_head(text: str, over: int, whole: str) -> str:
    """``text`` without its first ``over`` bytes (and room for the note saying so)."""
    data = text.encode()
    note = f"[corral: {{}} bytes cut here to fit the agent CLI's argument limit; {whole}]\n"
    drop = min(len(data), over + len(note) + 16)
    return note.format(drop) + data[drop:].decode(errors="ignore")


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text[-n:] if text else "(no output)"
