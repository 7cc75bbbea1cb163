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
    err.print(markup(next_steps(repo, written)))


def next_steps(repo: Path, written: Path | None) -> str:
    """The closing hint, as commands that work from here: ``--repo`` and ``git -C`` only when
    the current directory is not the repository."""
    here = repo.resolve() == Path.cwd().resolve()
    r = shlex.quote(str(repo))
    opt, git = ("", "git") if here else (f" --repo {r}", f"git -C {r}")
    saved = (
        f"wrote {written}; review it"
        if written
        else f"review it; `corral init{opt} --write` saves it as {r}/.corral.toml"
    )
    return (
        f"next: {saved}; commit it (corral reads the policy from the base commit, not the"
        f" checkout): `{git} add .corral.toml && {git} commit -m 'Add corral policy'`; then"
        f" `corral run{opt} --bug BUG.md --agent ...`"
    )
