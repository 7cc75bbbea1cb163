"""The run store, outside every container: what happened in a run, and proof that it did.

runs        ``RunStore``: one SQLite row per run, its journal of steps, its artifacts folder
eventlog    the append-only, hash-chained event log of a run (``EventLog``, ``verify_log``)
trajectory  the agent's steps read back from the log, for review and display
"""

from runner.store.eventlog import Event, EventLog, LogCorrupt, StoreError, verify_log
from runner.store.runs import NewRun, RunRecord, RunStore, Step, UnknownRun

__all__ = [
    "Event",
    "EventLog",
    "LogCorrupt",
    "NewRun",
    "RunRecord",
    "RunStore",
    "Step",
    "StoreError",
    "UnknownRun",
    "verify_log",
]
