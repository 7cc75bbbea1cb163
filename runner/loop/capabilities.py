"""Optional capabilities the loop looks for: small Protocols, checked with ``isinstance``.

An agent, a backend or an exception the loop meets may offer more than its
interface (``Agent``, ``SandboxBackend``, ``Exception``). What the loop uses
of that is named here, one Protocol per capability, so that a probe is a
typed ``isinstance`` check rather than a ``getattr`` with a default.
Implementations need not know these exist: ``CliAgent`` has ``sandbox_mounts``,
``DockerBackend`` its ``client``, ``ModelError`` its ``domain`` and ``stops_run``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from sandbox.spec import Mount


@runtime_checkable
class NeedsMounts(Protocol):
    """An agent whose sandbox needs host paths besides the worktree (an agent CLI's files,
    the gateway socket and the forwarder, all read-only)."""

    def sandbox_mounts(self) -> tuple[Mount, ...]: ...


@runtime_checkable
class OnEngine(Protocol):
    """A backend on a container engine (``DockerBackend``): a resumed run removes the
    containers a crashed earlier process of it left there (``sandbox.gc``), and images are
    built there. ``isinstance`` reads ``client`` (Python 3.11): a ``DockerBackend`` made
    without a client connects at that check."""

    @property
    def client(self) -> Any: ...


@runtime_checkable
class Classified(Protocol):
    """An exception that names its failure domain (``ModelError``: ``model``, ``context``,
    ``runtime`` ...); the loop takes it when it is one of ``runner.store.runs.FailureDomain``."""

    domain: str


@runtime_checkable
class MayStopRun(Protocol):
    """An agent error that says whether the run, not only the attempt, ends on it
    (``ModelError``: a key the endpoint refuses is refused on every later call too)."""

    stops_run: bool
