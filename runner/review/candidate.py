"""A run's candidate patch and what was decided about it, read from the run store.

``read_candidate`` is the run's ``candidate.diff`` (refused when there is none
or it is empty), ``patch_digest`` its sha256 as the events record it; a reviewer's
standing approval (``approved_digest``) names the sha256 it approved, and
``merge`` checks the patch against it. ``passed_attempt`` is the attempt
whose candidate it is. ``refuse_broken_chain`` stops approve, merge and export
of a run whose event log does not verify. Refusals are ``MergeRefused``.
"""

from __future__ import annotations

import hashlib

from runner.errors import MergeRefused
from runner.loop.outcome import AttemptReport, result_of
from runner.store.chain import Event
from runner.store.runs import RunRecord, RunStore


def read_candidate(store: RunStore, run_id: str, rec: RunRecord) -> bytes:
    """The run's ``candidate.diff``; ``MergeRefused`` when it has none or it is empty."""
    path = store.artifact_path(run_id, "candidate.diff")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MergeRefused(
            f"run {run_id} has no candidate patch (status {rec.status}): nothing to merge or export"
        ) from None
    if not data.strip():
        raise MergeRefused(f"run {run_id}'s candidate patch is empty: nothing to merge")
    return data


def patch_digest(patch: bytes) -> str:
    """The sha256 of a patch, as ``run_end`` and the review events record it."""
    return hashlib.sha256(patch).hexdigest()


def stored_digest(store: RunStore, run_id: str) -> str | None:
    """The sha256 of the run's ``candidate.diff`` as it is now (None without one)."""
    path = store.artifact_path(run_id, "candidate.diff")
    return patch_digest(path.read_bytes()) if path.is_file() else None


def approved_digest(events: list[Event]) -> str | None:
    """The candidate sha256 of the run's standing approval (None: no approval stands)."""
    decision = next(
        (e for e in reversed(events) if e.type in ("review_approved", "review_rejected")), None
    )
    if decision is None or decision.type != "review_approved":
        return None
    value = decision.data.get("candidate_sha256")
    return str(value) if value else None


def last_event(events: list[Event], kind: str) -> Event | None:
    """The last event of type ``kind``, if any."""
    return next((e for e in reversed(events) if e.type == kind), None)


def passed_attempt(store: RunStore, run_id: str) -> AttemptReport | None:
    """The attempt whose candidate the run holds (the one that passed), if any."""
    return next((a for a in result_of(store, run_id).attempts if a.status == "passed"), None)


def refuse_broken_chain(store: RunStore, run_id: str, nothing: str) -> None:
    """``MergeRefused`` when the run's event log does not verify (``nothing``: what was not
    done, e.g. ``merged``): a record someone changed is no ground for a decision."""
    chain = store.verify(run_id)
    if not chain.ok:
        raise MergeRefused(
            f"the event log of run {run_id} does not verify (event {chain.first_bad_seq}: "
            f"{chain.problem}); nothing {nothing}: `corral verify {run_id}` shows it"
        )
