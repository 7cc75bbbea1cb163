"""From a reviewed run to the user's branch: review decisions, ``merge`` and ``export``.

- ``review_decision`` records a reviewer's approve/reject of a ``ready_for_review``
  run in the event log (who, when, comment) and sets the status.
- ``merge`` applies the run's ``candidate.diff`` onto a branch of the user's
  repository as ONE commit (message: the bug title, trailers ``Corral-Run:``
  and ``Corral-Gates:``) with ``git apply --3way`` semantics. The commit is
  always built in a temporary index (``read-tree`` the branch, ``apply
  --cached --3way``, ``write-tree``, ``commit-tree``), so the user's index and
  staged work never enter it. When the branch is checked out somewhere, the
  touched paths must be clean there; the worktree and index are then moved
  with a two-tree ``read-tree -m -u`` (only the touched paths change), and the
  ref is updated with its old value as guard. Idempotent: a recorded
  ``merged`` event or a ``Corral-Run:`` trailer on the branch is reported and
  nothing changes.
- ``export_patch`` / ``pr_body``: a ``git am``- and ``git apply``-able patch,
  and a link-free markdown summary for a pull request.

All git runs through ``sandbox.git.HostGit`` (no hooks, no user config beyond
the repository's own). Refusals are ``MergeRefused`` (a ``ValueError``: one
line that names the fix, exit 2 in the CLI).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from policies.policy import Policy
from runner.errors import MergeRefused as MergeRefused
from runner.loop.outcome import AttemptReport
from runner.ops.service import result_of
from runner.review.evidence import gather, plain
from runner.store.chain import Event
from runner.store.runs import RunRecord, RunStore
from sandbox.errors import GitError
from sandbox.git import HostGit, find_git_dirs, split_z
from sandbox.lease import RunLease

#: How many commits of the target branch are searched for a ``Corral-Run:`` trailer.
TRAILER_SEARCH_DEPTH = 10_000
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}


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


def review_decision(
    store: RunStore, run_id: str, verdict: str, who: str, comment: str | None
) -> str:
    """Approve or reject a ``ready_for_review`` run's candidate; return the new status.

    The event records the sha256 of the ``candidate.diff`` decided on, which
    ``merge`` checks again. Raises ``UnknownRun`` for an unknown run,
    ``MergeRefused`` when the run is in any other status (an approved run may
    still be rejected, and a rejected one approved, until it is merged; an
    approved run is approved again only if its candidate changed since) or
    has no candidate to approve.
    """
    rec = store.get(run_id)
    status = "approved" if verdict == "approve" else "rejected"
    if rec.status not in ("ready_for_review", "approved", "rejected"):
        raise MergeRefused(
            f"run {run_id} is {rec.status}: only a run ready for review can be approved or "
            f"rejected (`corral status {run_id}`)"
        )
    digest = (
        _digest(_candidate(store, run_id, rec)) if status == "approved" else _stored(store, run_id)
    )
    events = store.events(run_id)
    end = _last(events, "run_end")
    ended = end.data.get("candidate_sha256") if end is not None else None
    if status == "approved" and ended is not None and ended != digest:
        raise MergeRefused(
            f"run {run_id}'s candidate.diff (sha256 {str(digest)[:12]}) is not the patch the run "
            f"ended with ({str(ended)[:12]}): nothing approved; `corral verify {run_id}` and the "
            "run folder show what changed"
        )
    if rec.status == status and (status == "rejected" or _approved_digest(events) == digest):
        raise MergeRefused(f"run {run_id} is already {status}")
    store.append(
        run_id,
        f"review_{status}",
        {"by": who, "comment": comment or "", "at": _now(), "previous": rec.status,
         "candidate_sha256": digest},
    )  # fmt: skip
    store.update(run_id, status=status)
    return status


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
    _refuse_broken_chain(store, run_id)
    rec = store.get(run_id)
    events = store.events(run_id)
    done = _last(events, "merged")
    if done is not None:
        d = done.data
        return MergeResult(run_id, d["branch"], d["commit"], tuple(d["files"]),
                           d.get("checked_out"), already=True, dry_run=dry_run)  # fmt: skip
    repo = Path(rec.repo)
    _, common = find_git_dirs(repo)
    git = HostGit(common)
    branch = branch or _current_branch(repo)
    ref = _branch_ref(git, branch, repo)
    old = git.rev_parse(ref)
    patch = _candidate(store, run_id, rec)
    files = _touched(git, patch)
    found = _find_trailer(git, ref, run_id)
    worktree = _checked_out(git, ref)
    if found is not None:  # merged before, but the event was lost (a crash in between)
        if not dry_run:
            _record(store, run_id, branch, found, files, worktree, who, recovered=True)
        return MergeResult(run_id, branch, found, files, _s(worktree), True, dry_run)
    auto = _approval(rec, store, run_id)
    _refuse_changed_candidate(events, run_id, patch, auto)
    if worktree is not None:
        _refuse_dirty(worktree, files, branch)
    message = commit_message(store, run_id, auto=auto, who=who)
    tree = _apply(git, old, patch, branch)
    if dry_run:
        return MergeResult(run_id, branch, None, files, _s(worktree), dry_run=True,
                           message=message)  # fmt: skip
    commit = git.text("commit-tree", tree, "-p", old, input=message.encode())
    if worktree is None:
        git.run("update-ref", "-m", f"corral merge {run_id}", ref, commit, old)
    else:
        _move_worktree(worktree, old, commit, run_id)
    _record(store, run_id, branch, commit, files, worktree, who, recovered=False, old=old)
    return MergeResult(run_id, branch, commit, files, _s(worktree), message=message)


def _digest(patch: bytes) -> str:
    return hashlib.sha256(patch).hexdigest()


def _stored(store: RunStore, run_id: str) -> str | None:
    """The sha256 of the run's ``candidate.diff`` as it is now (None without one)."""
    path = store.artifact_path(run_id, "candidate.diff")
    return _digest(path.read_bytes()) if path.is_file() else None


def _approved_digest(events: list[Event]) -> str | None:
    """The candidate sha256 of the run's standing approval (None: no approval stands)."""
    decision = next(
        (e for e in reversed(events) if e.type in ("review_approved", "review_rejected")), None
    )
    if decision is None or decision.type != "review_approved":
        return None
    value = decision.data.get("candidate_sha256")
    return str(value) if value else None


def _refuse_broken_chain(store: RunStore, run_id: str) -> None:
    chain = store.verify(run_id)
    if not chain.ok:
        raise MergeRefused(
            f"the event log of run {run_id} does not verify (event {chain.first_bad_seq}: "
            f"{chain.problem}); nothing merged: `corral verify {run_id}` shows it"
        )


def _refuse_changed_candidate(events: list[Event], run_id: str, patch: bytes, auto: bool) -> None:
    """The patch to merge must be the one approved (an auto-merge: the one the run ended with)."""
    digest = _digest(patch)
    if auto:
        end = _last(events, "run_end")
        recorded = end.data.get("candidate_sha256") if end is not None else None
        if recorded is None or recorded == digest:
            return
        what = "the run ended with"
    else:
        recorded = _approved_digest(events)
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
        passed = _passed_attempt(store, run_id)
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


def _current_branch(repo: Path) -> str:
    git_dir, _ = find_git_dirs(repo)
    head = HostGit(git_dir).text("symbolic-ref", "-q", "HEAD", ok_codes=(0, 1))
    if not head.startswith("refs/heads/"):
        raise MergeRefused(f"{repo} has no branch checked out (detached HEAD): pass --branch B")
    return head.removeprefix("refs/heads/")


def _branch_ref(git: HostGit, branch: str, repo: Path) -> str:
    ref = f"refs/heads/{branch}"
    try:
        git.run("check-ref-format", ref)
        git.rev_parse(ref)
    except GitError:
        raise MergeRefused(f"no branch {branch!r} in {repo}: pass an existing --branch") from None
    return ref


def _candidate(store: RunStore, run_id: str, rec: RunRecord) -> bytes:
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


def _touched(git: HostGit, patch: bytes) -> tuple[str, ...]:
    """Every path the patch creates, changes or deletes (``git apply --numstat -z``)."""
    out = git.run("apply", "--numstat", "-z", "-", input=patch)
    return tuple(sorted({rec.decode(errors="replace").split("\t", 2)[2] for rec in split_z(out)}))


def _find_trailer(git: HostGit, ref: str, run_id: str) -> str | None:
    """A commit on ``ref`` whose message has the line ``Corral-Run: <run_id>``."""
    line = f"Corral-Run: {run_id}"
    out = git.text("rev-list", f"--max-count={TRAILER_SEARCH_DEPTH}", "-F", f"--grep={line}", ref)
    for sha in out.split():
        body = git.text("show", "-s", "--format=%B", sha)
        if line in body.splitlines():
            return sha
    return None


def _checked_out(git: HostGit, ref: str) -> Path | None:
    """The worktree (main or linked) that has ``ref`` checked out, if any."""
    out = git.run("worktree", "list", "--porcelain", "-z")
    path: Path | None = None
    for field in split_z(out):
        text = field.decode(errors="replace")
        if text.startswith("worktree "):
            path = Path(text.removeprefix("worktree "))
        elif text == f"branch {ref}" and path is not None:
            return path
    return None


def _refuse_dirty(worktree: Path, files: tuple[str, ...], branch: str) -> None:
    git_dir, _ = find_git_dirs(worktree)
    out = HostGit(git_dir, worktree).run(
        "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all",
        "--ignored=matching", "--", *files, env=_LITERAL,
    )  # fmt: skip
    dirty = sorted({rec.decode(errors="replace")[3:] for rec in split_z(out)})
    if dirty:
        raise MergeRefused(
            f"{branch} is checked out in {worktree} and the patch touches paths with local "
            f"changes: {', '.join(dirty)}; commit or stash them, or merge with --branch OTHER"
        )


def _apply(git: HostGit, old: str, patch: bytes, branch: str) -> str:
    """The tree of ``old`` with the patch applied (3-way), built in a temporary index."""
    with tempfile.TemporaryDirectory(prefix="corral-merge-") as tmp:
        index = Path(tmp) / "index"
        git.run("read-tree", old, index_file=index)
        try:
            git.run("apply", "--cached", "--3way", "-", input=patch, index_file=index)
        except GitError as exc:
            conflicts = split_z(git.run("ls-files", "-u", "-z", index_file=index))
            paths = sorted({c.decode(errors="replace").split("\t", 1)[1] for c in conflicts})
            detail = ", ".join(paths) if paths else _first_line(exc.stderr)
            raise MergeRefused(
                f"the candidate does not apply to {branch} at {old[:12]} (the branch moved in a "
                f"conflicting way: {detail}); run corral again on the new base"
            ) from None
        tree = git.text("write-tree", index_file=index)
    if tree == git.text("rev-parse", f"{old}^{{tree}}"):
        raise MergeRefused(f"{branch} already has this change (applying it changes nothing)")
    return tree


def _move_worktree(worktree: Path, old: str, new: str, run_id: str) -> None:
    """Move a checked-out branch from ``old`` to ``new``: touched paths only, the ref guarded."""
    git_dir, _ = find_git_dirs(worktree)
    wt = HostGit(git_dir, worktree)
    wt.run("read-tree", "-m", "-u", old, new)  # git's own two-tree switch: refuses dirty paths
    try:
        wt.run("update-ref", "-m", f"corral merge {run_id}", "HEAD", new, old)
    except GitError:
        wt.run("read-tree", "-m", "-u", new, old)  # the branch moved meanwhile: put files back
        raise MergeRefused(
            "the branch moved while merging; nothing was changed: run `corral merge` again"
        ) from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "git apply failed")


# ----------------------------------------------------------------- messages and export


def commit_message(store: RunStore, run_id: str, *, auto: bool = False, who: str = "") -> str:
    """The merge commit's message: bug title, a short body, and the ``Corral-*`` trailers."""
    rec = store.get(run_id)
    passed = _passed_attempt(store, run_id)
    summary = _finish_summary(store.events(run_id), passed.attempt if passed else 0)
    gates = passed.gates if passed else {}
    body = [_clean(rec.bug_title) or "corral candidate", ""]
    if summary:
        body += [_clean(summary), ""]
    attempt = f"attempt {passed.attempt} of {rec.attempts_done}" if passed else "no attempt"
    body += [f"Candidate from corral run {run_id} ({attempt}), verified by the runner's gates.", ""]
    body.append(f"Corral-Run: {run_id}")
    if gates:
        shown = ", ".join(f"{k}={'passed' if v else 'failed'}" for k, v in gates.items())
        body.append(f"Corral-Gates: {shown}")
    review = _last(store.events(run_id), "review_approved")
    if auto:
        body.append("Corral-Auto-Merge: every required gate passed")
    elif review is not None:
        body.append(f"Corral-Approved-By: {_clean(str(review.data.get('by', '')))}")
    return "\n".join(body) + "\n"


def export_patch(store: RunStore, run_id: str) -> bytes:
    """The candidate as a mail-style patch: ``git am`` takes it, ``git apply`` ignores the header."""
    rec = store.get(run_id)
    diff = _candidate(store, run_id, rec)
    message = commit_message(store, run_id)
    subject, _, rest = message.partition("\n")
    header = (
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: corral <corral@localhost>\n"
        f"Date: {formatdate(rec.updated)}\n"
        f"Subject: [PATCH] {subject}\n"
        f"{rest}---\n\n"
    )
    return header.encode() + diff + b"-- \ncorral\n"


def pr_body(store: RunStore, run_id: str) -> str:
    """A link-free markdown summary of the run for a pull request (from ``runner.review.evidence.gather``)."""
    _candidate(store, run_id, store.get(run_id))
    review = gather(store, run_id)
    events = store.events(run_id)
    passed = next((a for a in review.attempts if a.status == "passed"), None)
    lines = [f"# {_md(review.bug_title)}", ""]
    summary = _finish_summary(events, passed.attempt if passed else 0)
    if summary:
        lines += [_md(summary), ""]
    approval = _last(events, "review_approved")
    approved = f", approved by {_md(approval.data.get('by'))}" if approval else ""
    lines += [
        f"Prepared by corral run `{run_id}` from base `{review.base[:12]}` "
        f"(agent `{_md(review.agent.partition(':')[0])}`; status {review.status}{approved}).",
        "",
        "## Gates",
        "",
        "| gate | at base | candidate | detail |",
        "| --- | --- | --- | --- |",
    ]
    label = f"attempt-{passed.attempt}" if passed else ""
    for g in (g for g in review.gates if g.label == label):
        detail = g.reason + (f"; fixed: {', '.join(g.fixed)}" if g.fixed else "")
        lines.append(f"| {_md(g.name)} | {_verdict(g.baseline_passed)} | {_verdict(g.passed)} "
                     f"| {_md(detail)} |")  # fmt: skip
    lines += ["", "## Files changed", "", "| file | added | removed |", "| --- | --- | --- |"]
    lines += [f"| `{_md(f.path)}` | {f.added} | {f.removed} |" for f in review.files]
    lines += ["", "## Attempts", "", "| # | status | failure domain | reason |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for a in review.attempts:
        lines.append(f"| {a.attempt} | {a.status} | {a.failure_domain or '-'} | {_md(a.reason)} |")
    return "\n".join(lines) + "\n"


def _verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("passed" if passed else "failed")


def _passed_attempt(store: RunStore, run_id: str) -> AttemptReport | None:
    return next((a for a in result_of(store, run_id).attempts if a.status == "passed"), None)


def _finish_summary(events: list[Event], attempt: int) -> str:
    current, summary = 0, ""
    for e in events:
        if e.type == "attempt_start":
            current = int(e.data.get("attempt", 0))
        elif e.type == "finish" and current == attempt:
            summary = str(e.data.get("summary", ""))
    return summary


def _last(events: list[Event], kind: str) -> Event | None:
    return next((e for e in reversed(events) if e.type == kind), None)


def _clean(text: str) -> str:
    """One line, control and bidi characters shown escaped (commit messages, markdown)."""
    return plain(" ".join(text.split()))[:200]


def _md(text: Any) -> str:
    return _clean(str(text)).replace("|", "\\|").replace("`", "'").replace("<", "&lt;")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
