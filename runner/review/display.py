"""What ``corral run`` / ``corral resume`` show on stderr while a run works.

Every mode is one callable, ``on_event(kind, data)``, fed by ``Runner.emit``
(events of the log) and ``Runner.notify`` (live-only notices: ``run_limits``,
``command_start``, ``budget``, ``baseline_started``; and set-up's output,
``setup_output``, line by line from ``runner.ops.environment``):

- ``live``: a rich ``Live`` panel (``runner.review.live``): attempt i/N, window
  j/M, the current step and command, gates vs their baseline, budgets used vs
  limits, elapsed time, drawn from the ``RunView`` the events are folded into
  (``runner.review.runview``).
- ``lines``: one plain line per event (``runner.review.runview.describe``;
  stderr is not a terminal).
- ``json``: one JSON object per event, one per line (``corral run --json``;
  stdout keeps its one final object).
- ``quiet``: nothing (``--quiet``; the CLI prints the outcome).

A display error never fails a run: ``run_display`` logs it and carries on with
plain lines (and with nothing if lines fail too). Every display is closed in a
``finally``, so Ctrl-C leaves the cursor and the terminal as they were.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, Literal, Protocol

from rich.console import Console

from runner.review.live import LiveDisplay
from runner.review.runview import describe

log = logging.getLogger(__name__)

Mode = Literal["live", "lines", "json", "quiet"]
OnEvent = Callable[[str, Mapping[str, Any]], None]

#: Notices that reach the display but are not in the event log.
LIVE_ONLY = frozenset({"run_limits", "command_start", "budget", "baseline_started", "setup_output"})

# --------------------------------------------------------------------------- modes


class Display(Protocol):
    """One way of showing a run; ``close`` must be safe to call more than once."""

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


class QuietDisplay:
    """Shows nothing."""

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def as_line(kind: str, data: Mapping[str, Any]) -> str | None:
    """``[corral] ...`` for the events ``describe`` has a line for."""
    line = describe(kind, data)
    return None if line is None else f"[corral] {line}"


def as_json_line(kind: str, data: Mapping[str, Any]) -> str:
    """``{"type", "ts", "live", "data"}``: ``live`` marks notices that are not in the event log."""
    obj = {"type": kind, "ts": round(time.time(), 3), "live": kind in LIVE_ONLY, "data": data}
    return json.dumps(obj, default=str)


class StreamDisplay:
    """One line per event on a text stream, as ``fmt`` writes it (None: nothing)."""

    def __init__(
        self, stream: IO[str], fmt: Callable[[str, Mapping[str, Any]], str | None] = as_line
    ) -> None:
        self.stream, self.fmt = stream, fmt

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        line = self.fmt(kind, data)
        if line is not None:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- choosing, guarding


def pick_mode(console: Console, *, as_json: bool, quiet: bool) -> Mode:
    """quiet > json > live on a terminal > plain lines."""
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "live" if console.is_terminal and not console.is_dumb_terminal else "lines"


def make_display(mode: Mode, console: Console) -> Display:
    """The display for ``mode``, writing to ``console`` (its file for lines and JSON)."""
    if mode == "live":
        return LiveDisplay(console)
    if mode == "json":
        return StreamDisplay(console.file, as_json_line)
    if mode == "lines":
        return StreamDisplay(console.file)
    return QuietDisplay()


class _Guarded:
    """Runs a display; on its first error logs it and switches to lines (then to nothing)."""

    def __init__(self, display: Display, console: Console) -> None:
        self.display, self.console = display, console

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        try:
            self.display.on_event(kind, data)
        except Exception as exc:  # a display must never fail a run
            self._fall_back(exc)
            try:
                self.display.on_event(kind, data)
            except Exception as again:
                self._fall_back(again)

    def _fall_back(self, exc: Exception) -> None:
        broken = self.display
        log.warning("run display failed (%s: %s); showing plain lines", type(exc).__name__, exc)
        try:
            broken.close()
        except Exception:
            log.debug("closing the failed display failed too", exc_info=True)
        self.display = (
            QuietDisplay()
            if isinstance(broken, (StreamDisplay, QuietDisplay))
            else StreamDisplay(self.console.file)
        )

    def close(self) -> None:
        try:
            self.display.close()
        except Exception:
            log.warning("closing the run display failed", exc_info=True)


@contextmanager
def run_display(
    console: Console, *, as_json: bool = False, quiet: bool = False, display: Display | None = None
) -> Iterator[OnEvent]:
    """``on_event`` for a run; the display is stopped on the way out, Ctrl-C included.

    ``display`` overrides the mode picked from ``console`` (tests).
    """
    try:
        chosen = display or make_display(pick_mode(console, as_json=as_json, quiet=quiet), console)
    except Exception as exc:  # e.g. the terminal refused the live panel
        log.warning("run display failed to start (%s); showing plain lines", exc)
        chosen = StreamDisplay(console.file)
    guarded = _Guarded(chosen, console)
    try:
        yield guarded.on_event
    finally:
        guarded.close()
