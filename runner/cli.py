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

from sandbox.errors import EngineUnavailable, ImageError, SandboxError, SpecError

app = typer.Typer(
    name="corral",
    help="Run a coding agent against a bug report inside a hardened sandbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Map library exceptions to one red line and an exit code (the only place that does)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SpecError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        except (EngineUnavailable, ImageError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        except SandboxError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app(prog_name="corral")


if __name__ == "__main__":
    sys.exit(main())
