"""From a reviewed run to the user's branch: review decisions and ``merge``.

- ``review_decision`` records a reviewer's approve/reject of a ``ready_for_review``
  run in the event log (who, when, comment) and sets the status; the same
  decision twice changes nothing.
- ``merge`` applies the run's ``candidate.diff`` onto a branch of the user's
  repository as ONE commit (message: the bug title, trailers ``Corral-Run:``
  and ``Corral-Gates:``, from ``runner.review.writeup``) with ``git apply
  --3way`` semantics, built in a temporary index so that the user's index and
  staged work never enter it; a branch checked out somewhere moves there only
  if the touched paths are clean (``runner.review.branch`` has the git steps).
  Only the candidate that was approved is merged (``runner.review.candidate``).
  Idempotent: a recorded ``merged`` event or a ``Corral-Run:`` trailer on the
  branch is reported and nothing changes.

Refusals are ``MergeRefused`` (a ``UserError``: one line that names the fix,
exit 2 in the CLI).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from policies.policy import Policy
from runner.errors import MergeRefused as MergeRefused
from runner.review.branch import (
    apply_patch,
    branch_ref,
    checked_out,
    current_branch,
    find_trailer,
    move_worktree,
    refuse_dirty,
    touched_paths,
)
from runner.review.candidate import (
    approved_digest,
    last_event,
    passed_attempt,
    patch_digest,
    read_candidate,
    refuse_broken_chain,
    stored_digest,
)
from runner.review.writeup import commit_message
from runner.store.chain import Event
from runner.store.runs import RunRecord, RunStore
from sandbox.git import HostGit, find_git_dirs
from sandbox.lease import RunLease


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What ``merge`` did (or, with ``dry_run``, would do)."""

    run_id: str
    branch: str
    commit: str | None
    """The merge commit (None for a dry run)."""
    files: tuple[str, ...]
    checked_out: str | None
    """The worktree where the branch is checked out (its index and files are updated), if any."""
    already: bool = False
    """The run was merged before; nothing changed."""
    dry_run: bool = False
    message: str = ""


# ----------------------------------------------------------------- review


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``review_decision`` left: the run's status, and whether it already was that."""

    status: str
    already: bool = False
    """The same decision stood already (on the same candidate): nothing was recorded."""


def review_decision(
    store: RunStore, run_id: str, verdict: str, who: str, comment: str | None
) -> Decision:
    """Approve or reject a ``ready_for_review`` run's candidate; return the new status.

    The event records the sha256 of the ``candidate.diff`` decided on, which
    ``merge`` checks again. The same decision twice (an approval of the same
    candidate) records nothing and says so (``already``), as a second ``merge``
    does. Raises ``UnknownRun`` for an unknown run, ``MergeRefused`` when the
    run is in any other status (an approved run may still be rejected, and a
    rejected one approved, until it is merged), has no candidate to approve, or
    (to approve) its event log does not verify.
    """
    rec = store.get(run_id)
    status = "approved" if verdict == "approve" else "rejected"
    if rec.status == "unverified":
        raise MergeRefused(
            f"run {run_id} is unverified: no required gate checked its candidate; add a required"
            " gate to the policy and run again (or opt out with `gates = []`)"
        )
    if rec.status not in ("ready_for_review", "approved", "rejected"):
        raise MergeRefused(
            f"run {run_id} is {rec.status}: only a run ready for review can be approved or "
            f"rejected (`corral status {run_id}`)"
        )
    if status == "approved":
        refuse_broken_chain(store, run_id, "approved")
    digest = (
        patch_digest(read_candidate(store, run_id, rec))
        if status == "approved"
        else stored_digest(store, run_id)
    )
    events = store.events(run_id)
    end = last_event(events, "run_end")
    ended = end.data.get("candidate_sha256") if end is not None else None
    if status == "approved" and ended is not None and ended != digest:
        raise MergeRefused(
            f"run {run_id}'s candidate.diff (sha256 {str(digest)[:12]}) is not the patch the run "
            f"ended with ({str(ended)[:12]}): nothing approved; `corral verify {run_id}` and the "
            "run folder show what changed"
        )
    if rec.status == status and (status == "rejected" or approved_digest(events) == digest):
        return Decision(status, already=True)
    store.append(
        run_id,
        f"review_{status}",
        {"by": who, "comment": comment or "", "at": _now(), "previous": rec.status,
         "candidate_sha256": digest},
    )  # fmt: skip
    store.update(run_id, status=status)
    return Decision(status)


# ----------------------------------------------------------------- merge


def merge(
    home: Path, run_id: str, *, branch: str | None = None, dry_run: bool = False, who: str = ""
) -> MergeResult:
    """Merge the run's approved candidate onto ``branch`` (see the module docstring).

    Raises ``UnknownRun`` for an unknown run (before any lock file is made),
    ``MergeRefused`` when the run's event log does not verify, the run is not
    approved (or allowed to auto-merge), its ``candidate.diff`` is not the one
    approved (or, for an auto-merge, the one the run ended with), it has no
    candidate, the branch is unknown or detached, touched paths are dirty, or
    the patch does not apply to the branch as it is now; ``LeaseHeld`` when
    another process holds the run.
    """
    store = RunStore(home)
    with store:
        store.get(run_id)  # an unknown run ends here, before the lease creates locks/<id>.lock
        with RunLease(home, run_id):
            return _merge(store, run_id, branch, dry_run, who)


def _merge(
    store: RunStore, run_id: str, branch: str | None, dry_run: bool, who: str
) -> MergeResult:
    refuse_broken_chain(store, run_id, "merged")
    rec = store.get(run_id)
    events = store.events(run_id)
    done = last_event(events, "merged")
    if done is not None:
        d = done.data
        return MergeResult(run_id, d["branch"], d["commit"], tuple(d["files"]),
                           d.get("checked_out"), already=True, dry_run=dry_run)  # fmt: skip
    repo = Path(rec.repo)
    _, common = find_git_dirs(repo)
    git = HostGit(common)
    branch = branch or current_branch(repo)
    ref = branch_ref(git, branch, repo)
    old = git.rev_parse(ref)
    patch = read_candidate(store, run_id, rec)
    files = touched_paths(git, patch)
    found = find_trailer(git, ref, run_id)
    worktree = checked_out(git, ref)
    if found is not None:  # merged before, but the event was lost (a crash in between)
        if not dry_run:
            _record(store, run_id, branch, found, files, worktree, who, recovered=True)
        return MergeResult(run_id, branch, found, files, _s(worktree), True, dry_run)
    auto = _approval(rec, store, run_id)
    _refuse_changed_candidate(events, run_id, patch, auto)
    if worktree is not None:
        refuse_dirty(worktree, files, branch)
    message = commit_message(store, run_id, auto=auto, who=who)
    tree = apply_patch(git, old, patch, branch)
    if dry_run:
        return MergeResult(run_id, branch, None, files, _s(worktree), dry_run=True,
                           message=message)  # fmt: skip
    commit = git.text("commit-tree", tree, "-p", old, input=message.encode())
    if worktree is None:
        git.run("update-ref", "-m", f"corral merge {run_id}", ref, commit, old)
    else:
        move_worktree(worktree, old, commit, run_id)
    _record(store, run_id, branch, commit, files, worktree, who, recovered=False, old=old)
    return MergeResult(run_id, branch, commit, files, _s(worktree), message=message)


def _refuse_changed_candidate(events: list[Event], run_id: str, patch: bytes, auto: bool) -> None:
    """The patch to merge must be the one approved (an auto-merge: the one the run ended with)."""
    digest = patch_digest(patch)
    if auto:
        end = last_event(events, "run_end")
        recorded = end.data.get("candidate_sha256") if end is not None else None
        if recorded is None or recorded == digest:
            return
        what = "the run ended with"
    else:
        recorded = approved_digest(events)
        if recorded == digest:
            return
        what = "was approved"
    seen = str(recorded)[:12] if recorded else "none recorded"
    raise MergeRefused(
        f"run {run_id}'s candidate.diff (sha256 {digest[:12]}) is not the patch that {what} "
        f"({seen}): review it again (`corral review {run_id}`), then `corral approve {run_id}`"
    )


def _s(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _record(
    store: RunStore,
    run_id: str,
    branch: str,
    commit: str,
    files: tuple[str, ...],
    worktree: Path | None,
    who: str,
    *,
    recovered: bool,
    old: str | None = None,
) -> None:
    data = {"branch": branch, "commit": commit, "old": old, "files": list(files),
            "checked_out": _s(worktree), "by": who, "at": _now(), "recovered": recovered}  # fmt: skip
    store.append(run_id, "merged", data)
    store.update(run_id, status="merged")


def _approval(rec: RunRecord, store: RunStore, run_id: str) -> bool:
    """Whether this is an auto-merge (False: a human approved); refuses otherwise."""
    if rec.status == "approved":
        return False
    if rec.status == "ready_for_review":
        policy = Policy.model_validate(json.loads(rec.policy_json)["policy"])
        passed = passed_attempt(store, run_id)
        required = [g.name for g in policy.gates if g.required]
        if (
            policy.merge.auto_merge
            and passed is not None
            and required
            and all(passed.gates.get(name) for name in required)
        ):
            return True
        raise MergeRefused(
            f"run {run_id} is not approved: review it, then `corral approve {run_id}`"
        )
    raise MergeRefused(
        f"run {run_id} is {rec.status}, not approved: only an approved candidate is merged"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
