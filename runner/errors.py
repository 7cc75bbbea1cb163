"""The exception tree of the runner package.

::

    CorralError                                (sandbox.errors: the root of all of corral's)
    └── RunnerError                            base of everything the runner raises on purpose
        ├── UsageError(UserError, ValueError)  a CLI option, a bug report or another input is
        │                                      wrong; the message names the fix -> exit 2
        ├── PresetError(UserError, ValueError) an agent CLI preset is unknown or does not load
        ├── MergeRefused(UserError, ValueError)  a run cannot be merged, approved or exported
        ├── StoreError                         the run store
        │   ├── UnknownRun(UserError, LookupError)
        │   ├── DuplicateRun(UserError, ValueError)
        │   └── LogCorrupt(ValueError)         an event log line that is not an event
        ├── ModelError                         a model call failed for good (``domain``)
        │   ├── ContextTooLong
        │   ├── ModelUnavailable(Paused)       the circuit opened: the run waits
        │   └── KeyFileError(UserError)        the ``--api-key-file`` cannot be read
        ├── GatewayError                       the model gateway cannot serve
        ├── BaselineStopped                    the run ended before the baseline's next gate
        ├── GateCannotRun                      a required gate cannot run at base: the run
        │                                      ends ``failed`` (``configuration``), exit 2
        ├── Paused(StopAttempt)                the run waits for ``corral resume``
        └── NeedsHuman(StopAttempt)            an ``ask`` command waits for approve / reject

``StopAttempt`` and ``BudgetExceeded`` (the budget counters' exit) are
``policies.errors``'s: the expected exits of an attempt, which agents let pass.
``RunStopped`` (``runner.loop.outcome``) is what ends a run, not an exception
the CLI sees. The CLI (``runner.cli.app.handles_errors``) maps ``UserError`` to
exit 2 and any other ``CorralError`` to exit 1. Builtin parents stay where
callers catch the builtin type (``except ValueError``, ``except LookupError``).
"""

from __future__ import annotations

from policies.errors import StopAttempt
from sandbox.errors import CorralError, UserError


class RunnerError(CorralError):
    """Base of every error raised by the runner package."""


class UsageError(RunnerError, UserError, ValueError):
    """A command-line option or an input file is wrong; the message names the fix."""


class PresetError(RunnerError, UserError, ValueError):
    """A preset that does not exist or does not load; the message names the fix."""


class MergeRefused(RunnerError, UserError, ValueError):
    """The run cannot be merged, approved or exported as asked; the message names the fix."""


class StoreError(RunnerError):
    """Base of the run store's errors."""


class UnknownRun(StoreError, UserError, LookupError):
    """No run with that id in this store."""


class DuplicateRun(StoreError, UserError, ValueError):
    """A run with that id or idempotency key exists already: ``run_id`` names it."""

    def __init__(self, run_id: str, key: str | None = None) -> None:
        self.run_id = run_id
        self.key = key
        if key is None:
            super().__init__(f"run {run_id} already exists: choose another run id")
        else:
            super().__init__(f"idempotency key {key!r} already belongs to run {run_id}")


class LogCorrupt(StoreError, ValueError):
    """The event log holds a line that is not an event (not a torn write): see ``verify``."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped run ``run_id`` at ``where``; it is recorded, nothing is lost,
    and ``corral resume`` goes on from its last finished step."""

    def __init__(self, run_id: str, where: str) -> None:
        self.run_id, self.where = run_id, where
        super().__init__(f"run {run_id} interrupted during {where}")


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped eval ``eval_id``; its ``ended`` trials are kept, and the same
    ``corral eval`` again runs the rest (``runner.eval.pool``)."""

    def __init__(self, eval_id: str, ended: int) -> None:
        self.eval_id, self.ended = eval_id, ended
        super().__init__(f"eval {eval_id} interrupted; {ended} trial(s) ended")


class Paused(RunnerError, StopAttempt):
    """The run must wait (state saved) and continue with ``corral resume``: ``reason`` says why."""


class NeedsHuman(RunnerError, StopAttempt):
    """An ``ask`` command: the run waits for ``corral approve`` / ``corral reject``."""

    def __init__(self, command: str, reason: str) -> None:
        self.command, self.reason = command, reason
        super().__init__(f"waiting for a human to approve: {command}")


class ModelError(RunnerError):
    """A model call failed for good; ``domain`` is the failure domain it belongs to.

    ``stops_run``: the runner ends the run (not only the attempt) on it, since
    every later call would be refused the same way (a bad key, a request the
    endpoint does not accept, a context the agent did not handle).
    """

    stops_run = True

    def __init__(self, message: str, domain: str = "model") -> None:
        self.domain = domain
        super().__init__(message)


class ContextTooLong(ModelError):
    """The request exceeded the model's context window (domain ``context``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "context")


class ModelUnavailable(ModelError, Paused):
    """The circuit is open: the endpoint failed too often in a row (domain ``runtime``).

    Also a ``Paused``: the run waits with its state saved until ``corral resume``.
    """

    stops_run = False

    def __init__(self, message: str) -> None:
        super().__init__(message, "runtime")


class KeyFileError(ModelError, UserError):
    """The API key file cannot be read (domain ``runtime``); the message names the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "runtime")


class GatewayError(RunnerError):
    """The gateway cannot serve (its socket cannot be bound); the message says why."""


class BaselineStopped(RunnerError):
    """The run ended before the baseline: it stops before its next gate (``stop``)."""


class GateCannotRun(RunnerError):
    """A required gate cannot run at base (``policies.gates.cannot_run``); names the gate, its
    exit code and its base log. Not the agent's fault: the run ends as ``configuration``."""
