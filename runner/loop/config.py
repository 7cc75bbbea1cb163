"""``RunConfig``: everything a run needs besides the store, decided by the CLI and recorded with the run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from policies.load import LoadedPolicy
from runner.loop.agent import Task


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs besides the store: decided by the CLI, recorded with the run."""

    task: Task
    loaded: LoadedPolicy
    image: str
    runtime: Literal["runc", "runsc"] | None = None
    approved: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()
    scope_answers: Mapping[int, str] = field(default_factory=dict)
    """A human's answer (``approved``/``rejected``) to attempt N's escalated scope violation."""
