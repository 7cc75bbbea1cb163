"""The ``corral`` application object, its consoles and the one place errors become exit codes.

Thin on purpose: each command builds its config, calls one library function and
renders the result. Errors become exit codes here and nowhere else:
0 success, 1 the thing ran and failed, 2 usage or configuration error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from runner.store.runs import StoreError
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
    """``exc`` is a ``runner.llm.client.ModelError`` (not imported here: openai is slow to import,
    and a command that never loaded the model client cannot have raised one)."""
    model = sys.modules.get("runner.llm.client")
    return model is not None and isinstance(exc, model.ModelError)


def _with_fix(exc: Exception) -> str:
    if isinstance(exc.__cause__, OSError):  # the key file could not be read
        return f"{exc}: give --api-key-file a readable file, or set CORRAL_API_KEY instead"
    return str(exc)


def _error_lines(exc: BaseException | str) -> None:
    from runner.review.text import (
        markup,  # run text in the message: hidden characters escaped too
    )

    for line in str(exc).splitlines() or [exc.__class__.__name__]:
        err.print(f"[red]error:[/red] {markup(line)}")
