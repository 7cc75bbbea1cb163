"""The sandboxes of one run: the spec of an attempt's sandbox and of a gate's, and their recording.

An attempt's sandbox gets the worktree read-write, its ``.git`` pointer and
every protected path of the base tree read-only (``Scope.readonly_paths``),
and whatever the agent needs besides (``NeedsMounts``: an agent CLI's files,
gateway socket and forwarder). A gate's gets nothing but its tree
(``runner.loop.gates.run_gate`` mounts that, read-only, and its output
directory). Both take the image, runtime and limits of the run. Every sandbox
the run starts is recorded as a ``sandbox_spec`` event (``SpecRecorder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies.policy import SandboxPolicy
from policies.scope import Scope
from runner.loop.agent import Agent
from runner.loop.capabilities import NeedsMounts
from sandbox.interfaces import SandboxBackend
from sandbox.recording import SpecRecorder, spec_record
from sandbox.spec import Limits, Mount, SandboxSpec
from sandbox.workspace import Workspace

Emit = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Sandboxes:
    """Where and how the run's sandboxes start (``backend``), and with which specs."""

    backend: SandboxBackend
    home: Path
    run_id: str
    image: str
    runtime: Literal["runc", "runsc"] | None
    policy: SandboxPolicy
    scope: Scope
    agent: Agent
    """The run's agent: its sandbox mounts, when it needs any (``NeedsMounts``)."""

    def attempt_spec(self, ws: Workspace) -> SandboxSpec:
        """An attempt's sandbox: the worktree, read-only ``.git`` and protected paths, agent mounts."""
        mounts = [Mount(source=str(ws.path / ".git"), target="/workspace/.git")]
        base_files = [p for p in ws.tree_listing(ws.base) if p != ".git"]
        for rel in self.scope.readonly_paths(base_files):
            if (ws.path / rel).exists() and not (ws.path / rel).is_symlink():
                mounts.append(Mount(source=str(ws.path / rel), target=f"/workspace/{rel}"))
        if isinstance(self.agent, NeedsMounts):
            mounts.extend(self.agent.sandbox_mounts())
        return self._spec(ws, tuple(mounts))

    def gate_spec(self, ws: Workspace) -> SandboxSpec:
        """A gate's sandbox: no mounts of its own (``run_gate`` adds the tree and the output)."""
        return self._spec(ws, ())

    def recorded(self, emit: Emit, **role: Any) -> SandboxBackend:
        """The backend, recording each sandbox's effective spec as a ``sandbox_spec`` event."""
        return SpecRecorder(
            self.backend, lambda spec, sb: emit("sandbox_spec", {**role, **spec_record(spec, sb)})
        )

    def _spec(self, ws: Workspace, mounts: tuple[Mount, ...]) -> SandboxSpec:
        sp = self.policy
        return SandboxSpec(
            image=self.image,
            runtime=self.runtime or sp.runtime,
            workspace=str(ws.path),
            mounts=mounts,
            limits=Limits(memory_mb=sp.memory_mb, cpus=sp.cpus, pids=sp.pids),
            run_id=self.run_id,
            owner_home=str(self.home),
        )
