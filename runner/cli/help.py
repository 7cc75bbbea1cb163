"""``--help`` in words a person reads: ``--repo PATH``, ``--json``, ``corral review RUN_ID``.

Typer (0.29) prints the Python annotation of every parameter in the help: ``<bool>`` next to a
flag such as ``--json`` or ``--help``, ``<list[str]>`` next to a repeatable option and
``{run_id}`` for an argument in the usage line. ``CorralGroup`` (the app's ``cls``, a documented
Typer hook) walks the command tree once, before it parses anything, and gives each parameter
click's own words instead: nothing for a flag, ``PATH``, ``TEXT``, ``INTEGER``, ``FLOAT`` or the
choices for a value, an upper-case name for an argument.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

#: Typer's type labels and the word the help shows instead (None: nothing, for a flag).
_WORDS = {"bool": None, "str": "TEXT", "path": "PATH", "int": "INTEGER", "float": "FLOAT"}


class CorralGroup(TyperGroup):
    """The ``corral`` group: its help (and every subcommand's) without Typer's type labels."""

    _tidied = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not self._tidied:
            tidy_help(self)
            self._tidied = True
        return super().main(*args, **kwargs)


def tidy_help(command: Any) -> None:
    """Give every parameter of ``command`` and its subcommands a help label in click's words."""
    ctx = typer.Context(command, info_name=command.name)
    params = list(command.params)
    help_option = command.get_help_option(ctx)  # made on first use; cached, so tidied once here
    if help_option is not None:
        params.append(help_option)
    for param in params:
        label = _label(param, ctx)
        param.display_type_rich = lambda ctx, label=label: label  # this parameter's own label
        if isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = str(param.name).upper()
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


def _label(param: Any, ctx: typer.Context) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return str(param.metavar)
    raw = str(param.display_type(ctx)).strip("<>")
    inner = re.fullmatch(r"list\[(.*)\]", raw)
    name = inner.group(1) if inner else raw
    return _WORDS.get(name, name.upper())
