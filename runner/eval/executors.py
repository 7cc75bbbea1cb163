"""Where an eval's trials run: processes on this machine, or Ray tasks on a cluster.

The pool (``runner.eval.pool``) keeps the eval's bookkeeping: which trial starts
when (a task's second trial waits for its first, so its environment image is built
once), the live line, the eval's ``--max-cost``. It hands each trial to an
``Executor``, which only runs it: ``python -m runner.eval.worker`` with the trial's
job (``{"home", "request"}``) on stdin, one normal corral run keyed by the trial's
idempotency key, and reports its exit code (the worker's: 0 an outcome, 2 bad
input, 1 another failure, 130 interrupted) once it ended.

    LocalProcesses  the worker as a child process of this one, its output in the trial's log
    RayTrials       the worker started by a Ray task on a node of a cluster (``--ray auto|ADDRESS``)

Ray (``ray`` from PyPI) rather than our own scheduler of remote processes: it
places each task on a node with a free ``docker`` slot, streams results back as
they finish (``ray.wait``), and re-runs a task whose node or worker died
(``max_retries``) on another node. A node offers trials by advertising the custom
resource ``docker`` when it joins, one unit per trial its Docker engine may run at
once: ``ray start --address HEAD:6379 --resources='{"docker": 2}'``. A retry is
safe because a trial is idempotent: the same key and request return the run that
ended or resume the one that was interrupted. Application errors are not retried
(``retry_exceptions=False``): the worker reports them as exit codes, and a
cancelled task (Ctrl-C) must stay cancelled. Every node needs corral (the same
version, in the Python Ray runs) and a Docker engine (``scripts/setup.sh``), and
the paths the eval names (``CORRAL_HOME``, the task file's repositories, bug
reports, scripts and policies) must be the same on every node: the trials' runs
are read back from the run store by their keys.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

from runner.errors import UsageError

log = logging.getLogger(__name__)

#: How long a stopped trial may take to record its interruption before it is killed.
STOP_SECONDS = 60.0
#: How many times Ray runs a trial again whose node or worker process was lost.
RAY_RETRIES = 3
#: How long to wait for the cluster's address to answer before giving up on it.
CONNECT_SECONDS = 10.0
WORKER = ("-m", "runner.eval.worker")


class Executor(Protocol):
    """Runs trials; knows nothing of tasks, budgets or the order they start in."""

    slots: int
    """How many trials may run at once."""

    def start(self, trial: int, job: dict[str, Any], logfile: Path) -> None:
        """Start trial ``trial`` (the pool's id for it): the worker with ``job``, its output to
        ``logfile`` (appended)."""

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """The trials that ended (each with its worker's exit code), waiting up to ``timeout``
        seconds for one when none has. A trial is reported once; its log is written by then."""

    def stop_all(self) -> None:
        """Interrupt every running trial the recorded way (the worker records
        ``run_interrupted``), waiting up to ``STOP_SECONDS``; forget them."""

    def close(self) -> None:
        """Release what the executor holds (a connection to the cluster)."""


class LocalProcesses:
    """Each trial a child process of this one, ``slots`` at a time."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, trial: int, job: dict[str, Any], logfile: Path) -> None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        jobfile = logfile.with_suffix(".job.json")
        jobfile.write_text(json.dumps(job))
        out = open(logfile, "ab")  # noqa: SIM115 - closed in wait or stop_all
        with open(jobfile, "rb") as stdin:
            proc = subprocess.Popen(
                [sys.executable, *WORKER], stdin=stdin, stdout=out, stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        log.info("trial %s: pid %d", logfile.stem, proc.pid)
        self.running[trial] = (proc, out)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        done = self._ended()
        if not done and self.running:
            time.sleep(timeout)
            done = self._ended()
        return done

    def _ended(self) -> list[tuple[int, int]]:
        done = []
        for trial, (proc, out) in list(self.running.items()):
            code = proc.poll()
            if code is not None:
                out.close()
                del self.running[trial]
                done.append((trial, code))
        return done

    def stop_all(self) -> None:
        for proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc, out in self.running.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            out.close()
        self.running.clear()

    def close(self) -> None:
        """Nothing to release: ``stop_all`` or ``wait`` reaped every child."""


def run_worker(job: dict[str, Any]) -> tuple[int, str]:
    """A Ray task's body, on a node: the worker with ``job``; its exit code and output (first
    line: the node it ran on).

    A cancelled task (``ray.cancel``: ``KeyboardInterrupt`` here) stops its worker with
    SIGTERM, so the run records its interruption, then re-raises.
    """
    import ray

    node = f"[corral] on Ray node {ray.get_runtime_context().get_node_id()}\n"
    proc = subprocess.Popen(
        [sys.executable, *WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    data: bytes | None = json.dumps(job).encode()
    try:
        while True:  # bounded by the run's budgets; wakes each second so a cancel is seen
            try:
                out, _ = proc.communicate(data, timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                data = None  # sent: a retry goes on reading
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
        raise
    return proc.returncode, node + out.decode(errors="replace")


def _reachable(address: str) -> None:
    """``ConnectionError`` when nothing listens at ``[ray://]HOST:PORT`` (``auto``: Ray looks)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("give auto, HOST:PORT or ray://HOST:PORT")
    with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS):
        pass


class RayTrials:
    """Each trial a Ray task needing one ``docker`` unit, on the cluster at ``address``.

    ``slots``: ``workers`` when given, else the cluster's ``docker`` units. Raises
    ``UsageError`` when there is no cluster at ``address`` or no node offers ``docker``.
    """

    def __init__(self, address: str, workers: int | None = None) -> None:
        import ray

        try:
            _reachable(address)  # ray.init waits minutes for an address nothing answers at
            sigterm = signal.getsignal(signal.SIGTERM)
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            finally:  # ray.init makes SIGTERM exit at once; the caller's handler stops trials first
                if sigterm is not None and threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, sigterm)
        except (OSError, ValueError, RuntimeError) as exc:
            why = (str(exc) or type(exc).__name__).splitlines()[0]
            raise UsageError(
                f"--ray {address}: no Ray cluster to join ({why}); start one"
                " with `ray start --head --resources='{\"docker\": 2}'` or give its address"
            ) from None
        units = int(ray.cluster_resources().get("docker", 0))  # type: ignore[no-untyped-call]
        if units < 1:
            ray.shutdown()
            raise UsageError(
                f"--ray {address}: no node of the cluster offers a `docker` resource; start each"
                " node with a Docker engine with `ray start ... --resources='{\"docker\": 2}'`"
            )
        self.ray = ray
        self.slots = workers or units
        self.remote = ray.remote(
            resources={"docker": 1}, num_cpus=0, max_retries=RAY_RETRIES, retry_exceptions=False
        )(run_worker)
        self.running: dict[Any, tuple[int, Path]] = {}  # ObjectRef -> trial, its log

    def start(self, trial: int, job: dict[str, Any], logfile: Path) -> None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        ref = self.remote.remote(job)
        log.info("trial %s: ray task %s", logfile.stem, ref.task_id().hex())
        self.running[ref] = (trial, logfile)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        if not self.running:
            return []
        ready, rest = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if ready and rest:  # the others that ended meanwhile
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        done = []
        for ref in ready:
            trial, logfile = self.running.pop(ref)
            try:
                code, output = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:  # retries spent, or the task failed
                code, output = 1, f"error: the trial's Ray task failed: {exc}\n"
            with open(logfile, "a", errors="replace") as f:
                f.write(output)
            done.append((trial, code))
        return done

    def stop_all(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref)
        refs = list(self.running)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_SECONDS)
        self.running.clear()

    def close(self) -> None:
        """Disconnect from the cluster (the cluster and its other jobs go on)."""
        self.ray.shutdown()
