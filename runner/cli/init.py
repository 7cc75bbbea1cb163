"""CLI command for a new repository: init (a proposed ``.corral.toml``)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from runner.cli.app import app, err, handles_errors
from runner.errors import UsageError


@app.command()
@handles_errors
def init(
    repo: Path = typer.Option(
        Path("."), "--repo", help="The git repository to propose a policy for."
    ),
    write: bool = typer.Option(False, "--write", help="Also write REPO/.corral.toml."),
    force: bool = typer.Option(False, "--force", help="With --write: overwrite an existing file."),
) -> None:
    """Propose a .corral.toml (set-up, gates, writable scope) from the repository's HEAD commit."""
    from runner.ops.init import propose, write_proposal
    from runner.review.text import markup

    if force and not write:
        raise UsageError("--force only applies with --write: add --write")
    proposal = propose(repo)
    written = write_proposal(repo, proposal, force=force) if write else None
    print(proposal.toml(), end="")
    for note in proposal.notes:
        err.print(f"[yellow]note:[/yellow] {markup(note)}")
    r = shlex.quote(str(repo))
    saved = f"wrote {written}; review it" if written else f"review it, save it as {r}/.corral.toml"
    err.print(
        markup(
            f"next: {saved}, and commit it (corral reads the repository's policy from the base"
            f" commit, not the checkout); then `corral run --repo {r} --bug BUG.md --agent ...`"
        )
    )
