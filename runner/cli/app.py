"""The ``corral`` application object, its consoles and the one place errors become exit codes.

Thin on purpose: each command builds its config, calls one library function and
renders the result. Errors become exit codes here and nowhere else
(``handles_errors``): 0 success, 1 the thing ran and failed (a ``CorralError``),
2 bad input the user can fix (a ``UserError``: a malformed policy, an unknown run
or agent, a missing repo, a bad option; its message names the fix). Any other
exception is a bug in corral and shows its traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from sandbox.errors import CorralError, UserError

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
    """Map corral's exceptions to red ``error:`` lines and an exit code (the only place that does).

    A ``UserError`` exits 2, any other ``CorralError`` exits 1; nothing else is
    caught (a ``ValueError`` that is not a ``UserError`` is a bug: its traceback
    shows).
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            _error_lines(exc)
            raise typer.Exit(2) from None
        except CorralError as exc:
            _error_lines(exc)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _error_lines(exc: BaseException | str) -> None:
    from runner.review.text import (
        markup,  # run text in the message: hidden characters escaped too
    )

    for line in str(exc).splitlines() or [exc.__class__.__name__]:
        err.print(f"[red]error:[/red] {markup(line)}")
