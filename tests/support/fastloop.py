"""Whole runs on ``FakeBackend``: the control loop end to end in well under a second, no Docker.

``Project`` lays out the demo project (``tests.support.demo``: ``add()``
subtracts) under a test's ``tmp_path``, and per run a policy and a ``ScriptedAgent`` script;
``start`` and ``resume`` drive runs through ``runner.ops.service`` exactly as the
CLI does, with the sandbox backend passed in: ``FakeBackend`` runs each command
with the host's bash in the worktree (it isolates nothing, see ``sandbox.fake``).
Worktrees, the run store, the gate tree and host git are all real.

The gate ``adds`` is a plain command the fake runs in the gate tree: it passes
once ``add()`` adds, and prints the ``return`` line, so that a wrong change
prints a line base did not and is blamed (``policies.gates.judge``).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.loop.outcome import RunResult
from runner.ops.service import OnEvent, RunRequest, resume_run, start_run
from runner.store.eventlog import Event
from runner.store.runs import RunStore, Step
from sandbox.fake import FakeBackend, FakeSandbox
from sandbox.interfaces import SandboxBackend
from sandbox.paths import worktrees_dir
from sandbox.spec import SandboxSpec
from tests.support.demo import BUG, CALC, build_demo

WRONG = CALC.replace("a - b", "a * b")
GATE = "grep -n return src/calc.py && grep -q 'a + b' src/calc.py"


def gate(name: str, command: str, *, required: bool = True, kind: str = "auto") -> str:
    """One ``[[gates]]`` table (``timeout = 30``), for ``policy(gates=...)``."""
    return "\n".join([
        "[[gates]]", f"name = {json.dumps(name)}", f"command = {json.dumps(command)}",
        f"required = {str(required).lower()}", f'kind = "{kind}"', "timeout = 30", "",
    ])  # fmt: skip


#: The demo's gate ``adds`` (``GATE``).
ADDS = gate("adds", GATE)
#: A pytest gate the host's own pytest runs on the fake (``PytestFake``: junit reports work).
PYTEST_GATE = gate("tests", f"{sys.executable} -m pytest -q tests", kind="pytest")


class PytestFake(FakeBackend):
    """``FakeBackend`` on which a pytest gate writes its junit report: each mount's target in the
    sandbox's environment (``PYTEST_ADDOPTS``' ``--junitxml``) names its host source instead, and
    no bytecode is written (the gate tree must stay as it was)."""

    def start(self, spec: SandboxSpec) -> FakeSandbox:
        env = dict(spec.env, PYTHONDONTWRITEBYTECODE="1")
        for mount in spec.mounts:
            env = {k: v.replace(mount.target, mount.source) for k, v in env.items()}
        return super().start(spec.model_copy(update={"env": env}))


def policy(*tables: str, gates: Sequence[str] = (ADDS,), top: str = "", **budgets: int) -> str:
    """A policy: ``top`` (top-level keys, e.g. ``gates = []``), ``[budgets]`` (``attempts=3,
    steps=20`` unless given), ``gates`` (``gate(...)`` tables; the gate ``adds`` unless given),
    then ``tables`` (more TOML)."""
    limits = {"attempts": 3, "steps": 20, "wall_seconds": 300, **budgets}
    lines = [top, "[budgets]", *(f"{k} = {v}" for k, v in limits.items()), "", *gates]
    return "\n".join(lines) + "\n".join(textwrap.dedent(t).strip() + "\n" for t in tables)


def write(path: str, content: str) -> str:
    return f"{{ write = {json.dumps(path)}, content = {json.dumps(content)} }}"


def run(command: str) -> str:
    return f"{{ run = {json.dumps(command)} }}"


def finish(summary: str = "done") -> str:
    return f"{{ finish = {json.dumps(summary)} }}"


def script(*attempts: Sequence[Sequence[str]]) -> str:
    """A ``ScriptedAgent`` script: each attempt a list of windows, each window a list of actions
    (``write``, ``run``, ``finish``); later attempts repeat the last one."""
    out = []
    for windows in attempts:
        out.append("[[attempt]]")
        for actions in windows:
            out += ["[[attempt.window]]", f"actions = [{', '.join(actions)}]"]
    return "\n".join(out) + "\n"


@dataclass
class Project:
    """The repository, bug report and run store of one test; runs on ``FakeBackend``."""

    root: Path
    home: Path

    def __post_init__(self) -> None:
        build_demo(self.root, bug=BUG, policy=policy())  # each run writes its own policy

    @property
    def store(self) -> RunStore:
        return RunStore(self.home)

    def start(
        self,
        agent_script: str | None,
        policy_text: str,
        *,
        on_event: OnEvent | None = None,
        backend: SandboxBackend | None = None,
        **kw: Any,
    ) -> RunResult:
        """A new run of ``agent_script`` (None: ``kw`` names another agent) under ``policy_text``,
        on ``backend`` (default: ``FakeBackend``)."""
        (self.root / "policy.toml").write_text(policy_text)
        if agent_script is not None:
            (self.root / "script.toml").write_text(agent_script)
            kw["script"] = self.root / "script.toml"
        req = RunRequest(
            repo=self.root / "repo", bug=self.root / "bug.md",
            policy=str(self.root / "policy.toml"), **kw,
        )  # fmt: skip
        return start_run(self.home, req, on_event, backend=backend or FakeBackend())

    def resume(self, run_id: str) -> RunResult:
        return resume_run(self.home, run_id, backend=FakeBackend())

    def events(self, run_id: str, kind: str | None = None) -> list[Event]:
        return [e for e in self.store.events(run_id) if kind is None or e.type == kind]

    def kinds(self, run_id: str) -> list[str]:
        return [e.type for e in self.store.events(run_id)]

    def attempt_steps(self, run_id: str) -> list[Step]:
        return [s for s in self.store.journal(run_id) if s.kind == "attempt"]

    def pending(self, run_id: str) -> dict[str, Any]:
        waiting: dict[str, Any] = json.loads(self.store.get(run_id).waiting_json or "{}")
        return waiting

    def tree(self, run_id: str) -> Path:
        """The run's worktree."""
        return worktrees_dir(self.home) / run_id

    def verified(self, run_id: str) -> None:
        check = self.store.verify(run_id)
        assert check.ok, check.problem
