"""The ``corral`` command line.

Thin on purpose: each command builds its config, calls one library function and
renders the result. Errors become exit codes here and nowhere else:
0 success, 1 the thing ran and failed, 2 usage or configuration error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from runner.store import StoreError
from sandbox.errors import EngineUnavailable, GitError, ImageError, SandboxError, SpecError

app = typer.Typer(
    name="corral",
    help="Run a coding agent against a bug report inside a hardened sandbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True, emoji=False)  # run text: ":x:" stays ":x:"
out = Console(emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Map library exceptions to red ``error:`` lines and an exit code (the only place that does).

    2: usage or configuration (bad policy, unknown run, bad repo or ref, no
    engine or image, an unreadable ``--api-key-file``: the line names the fix);
    1: something ran and failed. A ``ModelError`` reaching here is set-up (the key
    file): the loop classifies the errors of model calls itself.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SpecError, ValueError, LookupError, GitError, EngineUnavailable, ImageError) as exc:
            _error_lines(exc)
            raise typer.Exit(2) from None
        except (SandboxError, StoreError) as exc:
            _error_lines(exc)
            raise typer.Exit(1) from None
        except Exception as exc:
            if not _is_model_error(exc):
                raise
            _error_lines(_with_fix(exc))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _is_model_error(exc: Exception) -> bool:
    """``exc`` is a ``runner.model.ModelError`` (not imported here: openai is slow to import,
    and a command that never loaded the model client cannot have raised one)."""
    model = sys.modules.get("runner.model")
    return model is not None and isinstance(exc, model.ModelError)


def _with_fix(exc: Exception) -> str:
    if isinstance(exc.__cause__, OSError):  # the key file could not be read
        return f"{exc}: give --api-key-file a readable file, or set CORRAL_API_KEY instead"
    return str(exc)


def _error_lines(exc: BaseException | str) -> None:
    from runner.display import markup  # run text in the message: hidden characters escaped too

    for line in str(exc).splitlines() or [exc.__class__.__name__]:
        err.print(f"[red]error:[/red] {markup(line)}")


@app.command()
@handles_errors
def gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be removed."),
    no_docker: bool = typer.Option(
        False, "--no-docker", help="Skip containers (no engine needed)."
    ),
) -> None:
    """Remove containers, worktrees and leases of runs that no live process owns."""
    from runner.display import markup
    from runner.ops import gc as run_gc

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
def smoke(
    runtime: str = typer.Option("runc", help="OCI runtime: runc or runsc (gVisor)."),
) -> None:
    """Start a hardened sandbox, run a few commands in it, and show what it enforces."""
    from runner.display import markup
    from runner.ops import smoke as run_smoke

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

    from runner import doctor as doc
    from sandbox.paths import corral_home

    home = corral_home()
    if fix:
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


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="corral")


# Sub-commands in their own modules register on ``app`` (they import it, hence at the end).
from runner import cli_merge as _cli_merge  # noqa: E402, F401
from runner import cli_review as _cli_review  # noqa: E402, F401
from runner import cli_run as _cli_run  # noqa: E402, F401
from runner.cli_image import image_app  # noqa: E402

app.add_typer(image_app, name="image")
