"""CLI commands from a reviewed run to a commit: ``merge`` and ``export``.

Registered on ``runner.cli.app.app`` (imported at the bottom of ``runner.cli.app``).
Refusals (not approved, dirty touched paths, a conflicting branch, an unknown
run) are one ``error:`` line naming the fix and exit 2.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import typer

from runner.cli.app import app, err, handles_errors, out
from runner.cli.review import check_target
from runner.errors import UsageError
from runner.review.text import markup as m
from sandbox.paths import corral_home

#: ``-`` as an export's path: standard output.
STDOUT = Path("-")


def reviewer() -> str:
    """Who is deciding: ``$CORRAL_REVIEWER``, else the login name."""
    return os.environ.get("CORRAL_REVIEWER") or getpass.getuser()


@app.command()
@handles_errors
def merge(
    run_id: str = typer.Argument(..., help="The approved run to merge."),
    branch: str | None = typer.Option(
        None, "--branch", help="Target branch (default: the one checked out in the run's repo)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would happen; change nothing."
    ),
) -> None:
    """Apply an approved run's candidate to a branch as one commit (idempotent)."""
    from runner.review.merge import merge as do_merge

    res = do_merge(corral_home(), run_id, branch=branch, dry_run=dry_run, who=reviewer())
    where = f" (checked out in {m(res.checked_out)})" if res.checked_out else ""
    files, branch = m(", ".join(res.files)), m(res.branch)
    if res.already:
        out.print(f"already merged: {m(res.commit)} on {branch}; nothing changed")
    elif res.dry_run:
        out.print(f"dry run: would commit to {branch}{where}; the candidate applies cleanly")
        out.print(f"  files: {files}")
        for line in res.message.splitlines():
            out.print(f"  | {m(line)}")
    else:
        out.print(f"merged {m(run_id)} as {m(res.commit)} on {branch}{where}")
        out.print(f"  files: {files}")


@app.command()
@handles_errors
def export(
    run_id: str = typer.Argument(..., help="The run whose candidate to export."),
    patch: Path | None = typer.Option(
        None, "--patch", help="Write a git-apply-able patch here (- for stdout)."
    ),
    pr_body: Path | None = typer.Option(
        None, "--pr-body", help="Write a markdown PR body here (- for stdout)."
    ),
) -> None:
    """Export a run's candidate instead of merging: a patch file and/or a PR description."""
    from runner.review.writeup import export_patch
    from runner.review.writeup import pr_body as make_body
    from runner.store.runs import RunStore

    if patch is None and pr_body is None:
        raise UsageError("nothing to export: pass --patch FILE and/or --pr-body FILE")
    if patch == pr_body == STDOUT:
        raise UsageError("--patch - and --pr-body - would mix on stdout: name a file for one")
    for option, path, example in (("--patch", patch, "fix.patch"), ("--pr-body", pr_body, "pr.md")):
        if path is not None and path != STDOUT:
            check_target(option, path, example)
    with RunStore(corral_home()) as store:
        outputs: list[tuple[str, Path, bytes]] = []
        if patch is not None:
            outputs.append(("patch", patch, export_patch(store, run_id)))
        if pr_body is not None:
            outputs.append(("pr body", pr_body, make_body(store, run_id).encode()))
    for what, path, data in outputs:  # all made (or refused) before anything is written
        if path == STDOUT:  # the data alone on stdout, for a pipe (`| git am`); the note on stderr
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            err.print(f"{what}: written to stdout")
        else:
            path.write_bytes(data)
            out.print(f"{what}: {m(path)}")
