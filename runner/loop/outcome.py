"""What a run and its attempts come to: the records ``corral run --json`` prints and the journal keeps.

``AttemptReport`` is one attempt (how it was judged, with its evidence),
``RunResult`` the run's end (the one JSON object of ``--json``, and the exit
code: 0 ready for review, 1 failed or out of budget, 3 waiting for a human),
``RunStopped`` what ends a run from inside an attempt. Plain dataclasses:
``runner.loop.runner`` fills them, ``runner.ops.service``, ``runner.review.merge`` and the CLI
read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXIT_CODES = {"ready_for_review": 0, "failed": 1, "budget_exhausted": 1, "waiting": 3}


class RunStopped(Exception):
    """The run ends now (not only the attempt): ``status`` and ``domain`` say how."""

    def __init__(self, status: str, domain: str | None, reason: str) -> None:
        self.status, self.domain, self.reason = status, domain, reason
        super().__init__(reason)


@dataclass(slots=True)
class AttemptReport:
    """What one attempt did and how it was judged (the shape of ``--json``'s ``attempts``)."""

    attempt: int
    status: str = "failed"
    failure_domain: str | None = None
    reason: str = ""
    changed_files: list[str] = field(default_factory=list)
    gates: dict[str, bool] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    denied: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    commit: str | None = None
    windows: int = 0
    strategy: str | None = None


@dataclass(slots=True)
class RunResult:
    """The end of ``execute``: the one JSON object ``corral run --json`` prints."""

    run_id: str
    status: str
    failure_domain: str | None
    reason: str
    patch_path: str | None
    attempts: list[AttemptReport]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
