"""The ``corral`` application object, its consoles and the one place errors become exit codes.

Thin on purpose: each command builds its config, calls one library function and
renders the result. Errors become exit codes here and nowhere else
(``handles_errors``): 0 success, 1 the thing ran and failed (a ``CorralError``),
2 bad input the user can fix (a ``UserError``: a malformed policy, an unknown run
or agent, a missing repo, a bad option; its message names the fix). Any other
exception is a bug in corral: its traceback shows, with a line asking to report
it, and exit 1.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from runner.cli.help import CorralGroup
from sandbox.errors import CorralError, UserError

app = typer.Typer(
    name="corral",
    cls=CorralGroup,  # help in click's words: `--repo PATH`, `--json`, never `<bool>`
    help="Run a coding agent against a bug report inside a hardened sandbox.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)  # Typer's --install-completion / --show-completion: docs/cli.md#shell-completion
err = Console(stderr=True, soft_wrap=True, emoji=False)  # run text: ":x:" stays ":x:"
out = Console(emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        out.print(f"corral {version('corral')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run a coding agent against a bug report inside a hardened sandbox."""


#: The line after the traceback of an exception corral did not mean to raise.
BUG_LINE = (
    "this is a bug in corral, not a mistake of yours: please report it, with the traceback"
    " above and the command you ran"
)


def handles_errors(fn: F) -> F:
    """Map corral's exceptions to red ``error:`` lines and an exit code (the only place that does).

    A ``UserError`` exits 2, any other ``CorralError`` exits 1. Anything else
    (a ``ValueError`` that is not a ``UserError``, a ``KeyError`` ...) is a bug
    in corral, never taken for bad input: its traceback shows, then one line
    asking to report it, and the exit code is 1. Typer's own exits and
    ``KeyboardInterrupt`` pass through.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer.Exit(code), a prompt aborted, a bad option: already what they mean
        except UserError as exc:
            _error_lines(exc)
            raise typer.Exit(2) from None
        except CorralError as exc:
            _error_lines(exc)
            raise typer.Exit(1) from None
        except Exception:
            err.print_exception(show_locals=False)  # never the locals: they may hold a key
            err.print(f"[red]error:[/red] {BUG_LINE}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _error_lines(exc: BaseException | str) -> None:
    from runner.review.text import (
        markup,  # run text in the message: hidden characters escaped too
    )

    for line in str(exc).splitlines() or [exc.__class__.__name__]:
        err.print(f"[red]error:[/red] {markup(line)}")
