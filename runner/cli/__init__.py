"""The ``corral`` command line: one module per group of commands, all on one Typer ``app``.

Thin on purpose: each command builds its config, calls one library function and
renders the result. Errors become exit codes in ``runner.cli.app.handles_errors``
and nowhere else: 0 success, 1 the thing ran and failed (a ``CorralError``), 2 bad
input the user can fix (a ``UserError``), 3 a run waits for a human.

    app      the Typer app, the consoles, ``handles_errors``
    run      run, resume, verify, status, list, approve, reject, policy
    init     init: a proposed ``.corral.toml`` for a repository
    review   review, report, log
    merge    merge, export
    image    image bootstrap / build
    ops      gc, rm, smoke, doctor
    eval     eval, eval report: many bug reports x trials, pass@k
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging

from runner.cli.app import app
from runner.cli.image import image_app

# Each module registers its commands on ``app`` as it is imported, in the order ``--help`` lists.
for _module in ("run", "init", "review", "merge", "ops", "eval"):
    importlib.import_module(f"runner.cli.{_module}")
app.add_typer(image_app, name="image")

__all__ = ["app", "main"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # At exit the interpreter's last garbage collections walk every object the imports made
    # (0.1-0.2 s, more than a `corral list` itself) to free memory the exit frees anyway.
    # Frozen, they are skipped; atexit hooks, explicit closes and refcounted objects still run.
    atexit.register(gc.freeze)
    app(prog_name="corral")
