"""Crash cleanup: remove what corral left behind for runs that no process owns.

A resource belongs to a run (container label ``corral.run`` + ``corral.home``,
worktree and git dir named by run id, lease file). A run is *dead* when no live
process holds its lease (``sandbox.lease``); the kernel releases leases on any
exit, ``kill -9`` included. ``collect`` removes the dead runs' containers,
workspaces and lease files, and the gate trees in RAM of homes that no longer
exist (``sandbox.gatetree``), and nothing else: containers without corral's
labels, of another ``$CORRAL_HOME``, or of a live run are never touched, and
images are never removed. ``keep(run_id)`` lets the caller spare dead runs
that can still be resumed (a run waiting for a human keeps its worktree).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import NotFound

from sandbox.container import LABEL_HOME, LABEL_MANAGED, LABEL_RUN
from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import LeaseHeld
from sandbox.gatetree import sweep_ram
from sandbox.gitdir import list_workspaces, remove_workspace
from sandbox.lease import RunLease
from sandbox.paths import locks_dir

log = logging.getLogger(__name__)


@dataclass(slots=True)
class GcReport:
    """What ``collect`` removed (or would remove, with ``dry_run``) and what it kept."""

    containers: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    kept_live: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ram_trees: list[str] = field(default_factory=list)
    """Gate trees in RAM of homes that no longer exist (``sandbox.gatetree.sweep_ram``)."""

    @property
    def removed_anything(self) -> bool:
        return bool(self.containers or self.workspaces or self.leases or self.ram_trees)


def collect(
    home: Path,
    client: Any | None,
    *,
    keep: Callable[[str], bool] = lambda run_id: False,
    dry_run: bool = False,
) -> GcReport:
    """Remove resources of dead runs of ``home``. ``client`` None: skip containers.

    A run is dead when its lease can be taken (non-blocking); ``collect`` then
    holds that lease until it is done, so a run that starts (or resumes) meanwhile
    waits for nothing and loses nothing: its ``RunLease.acquire`` fails with
    ``LeaseHeld`` instead. Never raises for one resource that cannot be
    removed: the failure is in ``GcReport.errors`` and the rest is still collected.
    """
    report = GcReport()
    held: dict[str, RunLease] = {}
    had_lock = {p.name.removesuffix(".lock") for p in _lock_files(home)}

    def claimed(run_id: str) -> bool:
        """Whether this gc holds the run's lease now (taking it if no live process has it)."""
        if run_id in held:
            return True
        if run_id in report.kept_live:
            return False
        try:
            held[run_id] = RunLease(home, run_id).acquire()
        except LeaseHeld:
            report.kept_live.append(run_id)
            return False
        except ValueError:  # not a run id corral makes: nobody's to collect
            return False
        return True

    def dead(run_id: str) -> bool:
        return claimed(run_id) and not keep(run_id)

    try:
        if client is not None:
            flt = {"label": [f"{LABEL_MANAGED}=1", f"{LABEL_HOME}={home}"]}
            for container in client.containers.list(all=True, filters=flt):
                run_id = container.labels.get(LABEL_RUN, "")
                if not dead(run_id):
                    continue
                report.containers.append(f"{container.short_id} ({run_id})")
                if dry_run:
                    continue
                try:
                    container.remove(force=True, v=True)
                except NotFound:
                    pass
                except ENGINE_ERRORS as exc:
                    report.errors.append(f"container {container.short_id}: {exc}")
        for run_id in list_workspaces(home):
            if not dead(run_id):
                continue
            report.workspaces.append(run_id)
            if not dry_run:
                try:
                    remove_workspace(home, run_id)
                except OSError as exc:
                    report.errors.append(f"workspace {run_id}: {exc}")
        for run_id in sorted(had_lock):
            if claimed(run_id):
                report.leases.append(run_id)
        try:  # any home's: a home that is gone owns nothing any more
            report.ram_trees = sweep_ram(dry_run=dry_run)
        except OSError as exc:
            report.errors.append(f"gate trees in RAM: {exc}")
    finally:
        for run_id, lease in held.items():
            # the lease file is the run's last resource; a dry run keeps any that was there
            lease.release(remove_file=not (dry_run and run_id in had_lock))
    for err in report.errors:
        log.warning("gc: %s", err)
    return report


def _lock_files(home: Path) -> list[Path]:
    locks = locks_dir(home)
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


def remove_run_containers(client: Any, home: Path, run_id: str) -> list[str]:
    """Remove every container of ``run_id`` in ``home`` (a resumed run's crashed leftovers).

    The caller must hold the run's lease, so none of them can belong to a live process.
    """
    flt = {"label": [f"{LABEL_MANAGED}=1", f"{LABEL_HOME}={home}", f"{LABEL_RUN}={run_id}"]}
    removed = []
    for container in client.containers.list(all=True, filters=flt):
        try:
            container.remove(force=True, v=True)
            removed.append(container.short_id)
        except NotFound:
            pass
    return removed
