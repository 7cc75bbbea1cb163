"""Scripted runs of the demo project through ``start_run``, on the real engine (the ``env``
fixture of tests/runner/conftest.py).

``Env.run(script)`` writes the ``ScriptedAgent`` script and the policy beside the demo's
repository and starts a run in the test's corral home; the fixture checks afterwards that no run
changed the user's checkout, branch or index.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.loop.outcome import RunResult
from runner.ops.service import OnEvent, start_run
from runner.store.runs import RunStore
from tests.support.demo import policy, run_request
from tests.support.gitfixtures import checkout_state

#: Three attempts, each bounded; the pytest gate with a timeout.
POLICY = policy(attempts=3, steps=20, wall_seconds=900, timeout=300)


@dataclass
class Env:
    root: Path  # the demo project: repo/, bug.md; each run writes policy.toml and script.toml
    home: Path
    image: str
    before: dict[str, Any] | None = None

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def settle(self) -> None:
        """Take the user's repository state as it is now (after a test's own git set-up)."""
        self.before = checkout_state(self.repo)

    def run(
        self, script: str, *, policy: str = POLICY, on_event: OnEvent | None = None, **kw: Any
    ) -> RunResult:
        """A run of ``script`` under ``policy`` (``kw``: more ``RunRequest`` fields)."""
        (self.root / "script.toml").write_text(textwrap.dedent(script))
        (self.root / "policy.toml").write_text(policy)
        req = run_request(self.root, script=self.root / "script.toml", image=self.image, **kw)
        return start_run(self.home, req, on_event=on_event)

    def events(self, run_id: str) -> list[str]:
        return [e.type for e in RunStore(self.home).events(run_id)]
