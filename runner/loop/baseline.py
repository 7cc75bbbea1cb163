"""The baseline gates in the background, while attempt 1's sandbox and agent work.

The baseline (the gates at the base commit) and the attempts share the run's
one gate tree (``sandbox.gatetree``), so an attempt's gates start only once the
baseline is done with it: the judge calls ``result`` first, which waits.

Threads: the baseline gets its own ``RunStore`` (a SQLite connection belongs to
the thread that opened it; the event log takes appends from any thread, under
its ``flock``), so its events are in the log as they happen. The live display
(``on_event``) is only ever called on the runner's thread: the baseline's
events reach it before the runner's next event of its own, and at ``result``
or ``stop``, in order.

Failure: whatever the baseline raised (``SandboxError``, ``BudgetExceeded``)
is raised again by ``result``, and returned by ``stop``; the runner reports it
exactly as if the baseline had run in line.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from policies.gates import GateResult
from runner.errors import BaselineStopped as BaselineStopped
from runner.store.runs import RunStore

log = logging.getLogger(__name__)

Emit = Callable[[str, Mapping[str, Any]], None]
#: The baseline's work: run the gates at base with this store and emit, return them by name.
Work = Callable[[RunStore, Emit, threading.Event], dict[str, GateResult]]


class BackgroundBaseline:
    """``work`` on a thread of its own, from ``start`` until ``result`` or ``stop``."""

    def __init__(self, store: RunStore, run_id: str, work: Work, *, join_timeout: float) -> None:
        self._home, self._run_id, self._work = store.home, run_id, work
        self._join_timeout = join_timeout
        self._cancel = threading.Event()
        # for on_event, on the runner's thread (deque: appended here, popped there)
        self._notices: deque[tuple[str, dict[str, Any]]] = deque()
        self._gates: dict[str, GateResult] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"corral-baseline-{run_id}")

    def start(self) -> None:
        self._thread.start()

    def done(self) -> bool:
        """Whether the baseline has ended (``result`` would not wait)."""
        return self._thread.ident is not None and not self._thread.is_alive()

    def result(self, on_event: Emit | None) -> dict[str, GateResult]:
        """Wait for the baseline; its gates by name. Raises what the baseline raised."""
        self._thread.join()  # bounded: every gate is (its timeout, on the host and in the container)
        self.deliver(on_event)
        if self._error is not None:
            raise self._error
        assert self._gates is not None
        return self._gates

    def stop(self, on_event: Emit | None) -> BaseException | None:
        """No next gate; wait for the running one (at most ``join_timeout``); what it failed with.

        Idempotent. A baseline stopped before its end leaves its journal step
        started: ``resume`` runs it again.
        """
        self._cancel.set()
        if self._thread.ident is not None:
            self._thread.join(self._join_timeout)
            if self._thread.is_alive():
                log.warning("run %s: baseline gates still running after %.0f s",
                            self._run_id, self._join_timeout)  # fmt: skip
        self.deliver(on_event)
        return None if isinstance(self._error, BaselineStopped) else self._error

    def _run(self) -> None:
        store = RunStore(self._home)
        notices = self._notices

        def emit(kind: str, data: Mapping[str, Any]) -> None:
            store.append(self._run_id, kind, dict(data))
            notices.append((kind, dict(data)))

        try:
            self._gates = self._work(store, emit, self._cancel)
        except BaseException as exc:  # handed to the runner's thread: result() raises it
            self._error = exc
        finally:
            store.close()

    def deliver(self, on_event: Emit | None) -> None:
        """Hand the baseline's events so far to ``on_event``, on the caller's (the runner's) thread.

        The runner calls it before each of its own events, so the display shows
        the baseline's gates about as they happen and in order with the rest.
        """
        while self._notices:
            kind, data = self._notices.popleft()
            if on_event is not None:
                on_event(kind, data)
