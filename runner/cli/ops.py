"""CLI commands for the machine: gc, rm, smoke, doctor."""

from __future__ import annotations

import typer
from rich.markup import escape

from runner.cli.app import app, err, handles_errors, out


@app.command()
@handles_errors
def gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed."),
    no_docker: bool = typer.Option(
        False, "--no-docker", help="Skip containers (no engine needed)."
    ),
) -> None:
    """Remove containers, worktrees and leases of runs that no live process owns."""
    from runner.ops.maintenance import gc as run_gc
    from runner.review.text import markup

    report = run_gc(dry_run=dry_run, docker=not no_docker)
    verb = "would remove" if dry_run else "removed"
    for kind in ("containers", "workspaces", "leases"):
        items = getattr(report, kind)
        listed = f": {markup(', '.join(items))}" if items else ""
        out.print(f"{verb} {len(items)} {kind}{listed}")
    if report.ram_trees:
        out.print(f"{verb} {len(report.ram_trees)} gate trees in RAM of deleted homes")
    if report.kept_live:
        out.print(f"kept {len(report.kept_live)} live runs: {markup(', '.join(report.kept_live))}")
    for line in report.errors:
        err.print(f"[yellow]warning:[/yellow] {markup(line)}")
    if report.errors:
        raise typer.Exit(1)


@app.command()
@handles_errors
def rm(
    run_id: str = typer.Argument(..., help="The run to remove."),
    force: bool = typer.Option(False, "--force", help="Remove a run that waits for a human too."),
    no_docker: bool = typer.Option(
        False, "--no-docker", help="Skip containers (no engine needed; `corral gc` gets them)."
    ),
) -> None:
    """Remove a run that is over: its record, events, artifacts, workspace and containers."""
    from runner.ops.maintenance import remove_run
    from runner.review.text import markup

    removed = remove_run(run_id, force=force, docker=not no_docker)
    containers = "" if no_docker else f", {len(removed.containers)} container(s)"
    out.print(
        f"removed run {markup(removed.run_id)} ({markup(removed.status)}): record, events,"
        f" artifacts, workspace{containers}",
        soft_wrap=True,
    )


@app.command()
@handles_errors
def smoke(
    runtime: str = typer.Option("runc", help="OCI runtime: runc or runsc (gVisor)."),
) -> None:
    """Start a hardened sandbox, run a few commands in it, and show what it enforces."""
    from runner.ops.maintenance import smoke as run_smoke
    from runner.review.text import markup

    rows = run_smoke(runtime=runtime)
    failed = [r for r in rows if not r.ok]
    for r in rows:
        mark = "[green]ok[/green]  " if r.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {r.name:<28} {markup(r.detail)}")
    if failed:
        raise typer.Exit(1)


@app.command()
@handles_errors
def doctor(
    fix: bool = typer.Option(False, "--fix", help="Provision what is missing (as root)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check the engine, images, git, disk and worktree filesystem; exit 0 only when ready."""
    import json
    from dataclasses import asdict

    from rich.table import Table

    from runner.ops import doctor as doc
    from sandbox.paths import corral_home

    home = corral_home()
    if fix:
        import logging

        # the bootstrap and the image builds take minutes: their progress lines
        logging.getLogger("sandbox.images").setLevel(logging.INFO)
        for step in doc.fix(home):
            err.print(f"[green]fix:[/green] {escape(step)}")
    checks = doc.diagnose(home)
    if as_json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        table = Table("check", "status", "detail", "fix")
        for c in checks:
            mark = (
                "[green]ok[/green]"
                if c.ok
                else ("[yellow]warn[/yellow]" if c.severity == "warning" else "[red]FAIL[/red]")
            )
            table.add_row(c.name, mark, escape(c.detail), "" if c.ok else escape(c.fix or ""))
        out.print(table)
    if not doc.ready(checks):
        raise typer.Exit(1)
