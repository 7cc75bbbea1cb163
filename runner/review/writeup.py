"""What a merged run says about itself: the commit message, a mail-style patch, a PR body.

``commit_message``: the bug title, the attempt's finish summary, and the
``Corral-Run:``, ``Corral-Gates:`` and approval trailers. ``export_patch``:
the candidate with a mail header, which ``git am`` takes and ``git apply``
ignores. ``pr_body``: a link-free markdown summary for a pull request (from
``runner.review.evidence.gather``). Run text in them is one line with hidden
characters escaped (``runner.review.text.plain``).
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from runner.review.candidate import (
    last_event,
    passed_attempt,
    read_candidate,
    refuse_broken_chain,
)
from runner.review.evidence import gather
from runner.review.text import plain
from runner.store.chain import Event
from runner.store.runs import RunStore


def commit_message(store: RunStore, run_id: str, *, auto: bool = False, who: str = "") -> str:
    """The merge commit's message: bug title, a short body, and the ``Corral-*`` trailers."""
    rec = store.get(run_id)
    passed = passed_attempt(store, run_id)
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
    review = last_event(store.events(run_id), "review_approved")
    if auto:
        body.append("Corral-Auto-Merge: every required gate passed")
    elif review is not None:
        body.append(f"Corral-Approved-By: {_clean(str(review.data.get('by', '')))}")
    return "\n".join(body) + "\n"


def export_patch(store: RunStore, run_id: str) -> bytes:
    """The candidate as a mail-style patch: ``git am`` takes it, ``git apply`` ignores the header.

    ``MergeRefused`` when the run has no candidate or its event log does not verify."""
    rec = store.get(run_id)
    refuse_broken_chain(store, run_id, "exported")
    diff = read_candidate(store, run_id, rec)
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
    """A link-free markdown summary of the run for a pull request (from ``runner.review.evidence.gather``).

    ``MergeRefused`` when the run has no candidate or its event log does not verify."""
    read_candidate(store, run_id, store.get(run_id))
    refuse_broken_chain(store, run_id, "exported")
    review = gather(store, run_id)
    events = store.events(run_id)
    passed = next((a for a in review.attempts if a.status == "passed"), None)
    lines = [f"# {_md(review.bug_title)}", ""]
    summary = _finish_summary(events, passed.attempt if passed else 0)
    if summary:
        lines += [_md(summary), ""]
    approval = last_event(events, "review_approved")
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


def _finish_summary(events: list[Event], attempt: int) -> str:
    current, summary = 0, ""
    for e in events:
        if e.type == "attempt_start":
            current = int(e.data.get("attempt", 0))
        elif e.type == "finish" and current == attempt:
            summary = str(e.data.get("summary", ""))
    return summary


def _clean(text: str) -> str:
    """One line, control and bidi characters shown escaped (commit messages, markdown)."""
    return plain(" ".join(text.split()))[:200]


def _md(text: Any) -> str:
    return _clean(str(text)).replace("|", "\\|").replace("`", "'").replace("<", "&lt;")
