"""Runs written straight into a real ``RunStore`` (no Docker): what the renderers and ``merge`` read.

``stored_run`` records a run as the runner would leave it: the record, one
journal step per attempt (its report), the attempt events, and optionally a
candidate patch. ``repo_with_patch`` makes a real repository and the git diff
of a change to it (never committed: the tree is reset afterwards).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from runner.loop.outcome import AttemptReport
from runner.store.runs import NewRun, RunStore
from tests.support.gitfixtures import build_tree, git, make_repo


def stored_run(
    home: Path,
    run_id: str,
    *,
    status: str = "failed",
    reason: str = "",
    bug_title: str = "t",
    repo: str = "/r",
    base: str = "0" * 40,
    attempts: tuple[AttemptReport, ...] = (),
    candidate: bytes | None = None,
    summary: str = "",
    failure_domain: str | None = None,
) -> RunStore:
    """A run ``run_id`` in ``home`` as a finished run leaves it; returns the (open) store."""
    store = RunStore(home)
    store.create(
        NewRun(
            repo=repo, base=base, bug_title=bug_title, bug_path="/b", agent="scripted",
            model=None, policy_json=json.dumps({"sources": ["preset:default"], "policy": {}}),
            spec_json="{}", run_id=run_id,
        )
    )  # fmt: skip
    store.append(run_id, "run_start", {"title": bug_title, "agent": "scripted"})
    for a in attempts:
        seq = store.journal_start(run_id, "attempt", f"attempt-{a.attempt}", {})
        store.journal_done(run_id, seq, {"report": asdict(a)})
        store.append(run_id, "attempt_start", {"attempt": a.attempt})
        if a.status == "passed" and summary:
            store.append(run_id, "finish", {"summary": summary})
        store.append(run_id, "attempt_end", asdict(a))
    if candidate is not None:
        store.write_artifact(run_id, "candidate.diff", candidate)
    store.update(
        run_id, status=status, reason=reason, failure_domain=failure_domain,
        attempts_done=len(attempts),
    )  # fmt: skip
    end: dict[str, object] = {"status": status, "reason": reason}
    if candidate is not None:  # as the runner records it: what the gates verified
        end["candidate_sha256"] = hashlib.sha256(candidate).hexdigest()
    store.append(run_id, "run_end", end)
    return store


def repo_with_patch(
    root: Path, files: Mapping[str, str], changed: Mapping[str, str], deleted: tuple[str, ...] = ()
) -> tuple[Path, str, bytes]:
    """A repository holding ``files``, its HEAD, and the binary git diff of writing ``changed``
    and deleting ``deleted``."""
    repo = make_repo(root, files)
    build_tree(repo, changed)
    for path in deleted:
        (repo / path).unlink()
    git(repo, "add", "-A")
    patch = subprocess.run(
        ["git", "diff", "--cached", "--full-index", "--binary"],
        cwd=repo, capture_output=True, check=True,
    ).stdout  # fmt: skip
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfdx")
    return repo, git(repo, "rev-parse", "HEAD"), patch
