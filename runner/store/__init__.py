"""The run store, outside every container: what happened in a run, and proof that it did.

runs        ``RunStore``: one SQLite row per run, its journal of steps, its artifacts folder
records     what the store holds: ``NewRun``, ``RunRecord``, ``Step``, statuses, failure domains
schema      ``runs.db``: tables, migrations, opening, transactions
artifacts   a run's files: safe names, atomic writes, synced at the next durable boundary
eventlog    the append-only event log of a run (``EventLog``: appends, torn lines)
chain       the log's hash chain: the ``Event`` line format and ``verify_log``
heads       each log's head in ``runs.db``, what ``verify`` checks a log by
disk        the durable write steps (``write_all``, ``fsync_dir``)
trajectory  the agent's steps read back from the log, for review and display
eventlines  one readable line per event type (``corral logs``, the timeline, the run display)
atif        a run's trajectory as ATIF ``trajectory.json`` (``corral eval report --trajectories``)
"""

from runner.store.chain import Event, verify_log
from runner.store.eventlog import EventLog, LogCorrupt, StoreError
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
