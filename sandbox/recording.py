"""The spec each sandbox actually ran with, reported as it starts (the run records it).

``SpecRecorder`` wraps a backend (cross-cutting, as tracing is: the backends only
execute) and hands every started sandbox's effective ``SandboxSpec`` to a
callback, so a run's event log says which image digest, runtime, limits,
mounts, user and network each attempt and each gate container had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.interfaces import Sandbox, SandboxBackend
from sandbox.spec import SandboxSpec


def spec_record(spec: SandboxSpec, sandbox: Sandbox) -> dict[str, Any]:
    """The JSON record of one started sandbox: its id, resolved image id and full spec."""
    image_id = getattr(sandbox, "image_id", None) or spec.image
    return {"container": sandbox.id, "image_id": image_id, "spec": spec.model_dump(mode="json")}


class SpecRecorder:
    """A ``SandboxBackend`` that calls ``on_start(spec, sandbox)`` for each sandbox it starts.

    ``start`` raises what the wrapped backend raises; if ``on_start`` raises,
    the sandbox is closed first and the error propagates (a sandbox whose spec
    could not be recorded is never handed out).
    """

    def __init__(
        self, backend: SandboxBackend, on_start: Callable[[SandboxSpec, Sandbox], None]
    ) -> None:
        self._backend = backend
        self._on_start = on_start
        self.name = backend.name

    def start(self, spec: SandboxSpec) -> Sandbox:
        sandbox = self._backend.start(spec)
        try:
            self._on_start(spec, sandbox)
        except BaseException:
            sandbox.close()
            raise
        return sandbox
