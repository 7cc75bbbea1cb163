"""Library functions behind small CLI commands (``gc``, ``rm``, ``smoke``): config in, result
out."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UsageError
from sandbox.docker_backend import DockerBackend, DockerSandbox
from sandbox.engine import connect
from sandbox.errors import LeaseHeld
from sandbox.gatetree import delete_path
from sandbox.gc import GcReport, collect, remove_run_containers
from sandbox.gitdir import remove_workspace
from sandbox.lease import RunLease
from sandbox.paths import corral_home
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, SandboxSpec

#: Run statuses whose worktree ``gc`` keeps: the run can still be resumed on it.
RESUMABLE = frozenset({"waiting"})


def gc(*, dry_run: bool = False, docker: bool = True) -> GcReport:
    """Collect dead runs' resources in ``$CORRAL_HOME`` (see ``sandbox.gc``).

    Runs the store records as waiting (for a human, or a paused model) keep
    their worktree and containers are still collected: ``resume`` needs the tree.
    """
    home = corral_home()
    client = connect() if docker else None
    try:
        return collect(home, client, keep=_resumable(home), dry_run=dry_run)
    finally:
        if client is not None:
            client.close()


def _resumable(home: Path) -> Callable[[str], bool]:
    """``keep`` for ``collect``: the run's record says it can be resumed (no record: collect)."""
    from runner.store.runs import RunStore, UnknownRun

    if not (home / "runs.db").exists():  # no store yet: nothing is resumable
        return lambda run_id: False
    store = RunStore(home)

    def keep(run_id: str) -> bool:
        try:
            return store.get(run_id).status in RESUMABLE
        except UnknownRun:
            return False

    return keep


@dataclass(frozen=True, slots=True)
class Removed:
    """What ``remove_run`` removed besides the run's record, events and artifacts."""

    run_id: str
    status: str
    """The status the run had."""
    containers: tuple[str, ...]
    """The short ids of its containers (none checked without the engine)."""


def remove_run(run_id: str, *, force: bool = False, docker: bool = True) -> Removed:
    """Remove run ``run_id`` of ``$CORRAL_HOME`` for good (``corral rm``): its containers, its
    workspace (worktree, private git dir, gate tree, the keep-alive ref in the user's
    repository), its agent files, then its artifacts, event log and record.

    Holds the run's lease throughout. Raises ``UnknownRun``, and ``UsageError``
    for a run a live process holds (never removed) or one that waits for a human
    (unless ``force``); ``EngineUnavailable`` when ``docker`` and there is no
    engine. The user's branches and what was merged are never touched.
    """
    from runner.store.runs import RunStore

    home = corral_home()
    with RunStore(home) as store:
        rec = store.get(run_id)
        try:
            lease = RunLease(home, run_id).acquire()
        except LeaseHeld:
            raise UsageError(
                f"run {run_id} is live (a corral process is working on it): stop it first"
                f" (Ctrl-C where it runs), then `corral rm {run_id}`"
            ) from None
        try:
            if rec.status in RESUMABLE and not force:
                raise UsageError(
                    f"run {run_id} waits for a human (`corral status {run_id}` says for what):"
                    f" answer it, or remove it all the same with `corral rm --force {run_id}`"
                )
            containers: list[str] = []
            if docker:
                client = connect()
                try:
                    containers = remove_run_containers(client, home, run_id)
                finally:
                    client.close()
            remove_workspace(home, run_id)
            delete_path(home / "agent-files" / run_id)  # an agent CLI's, left by a crash
            store.delete(run_id)
        finally:
            lease.release()
    return Removed(run_id, rec.status, tuple(containers))


@dataclass(frozen=True, slots=True)
class SmokeRow:
    name: str
    ok: bool
    detail: str


#: Commands timed on the persistent shell for the smoke's fast-path row.
FAST_PATH_SAMPLES = 20


def smoke(*, runtime: str = "runc") -> list[SmokeRow]:
    """Start a sandbox on the sandbox image with a scratch workspace and probe it.

    Raises ``EngineUnavailable`` / ``ImageError`` with the fix when not set up.
    """
    from sandbox.images import ensure_sandbox_image

    if runtime not in ("runc", "runsc"):
        raise UsageError(f"unknown runtime {runtime!r}: use runc or runsc")
    client = connect()
    home = corral_home()
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="smoke-", dir=home))
    run_id = f"smoke-{os.getpid()}-{scratch.name.removeprefix('smoke-')}"
    rows: list[SmokeRow] = []
    lease = RunLease(home, run_id).acquire()  # `corral gc` leaves a live smoke's container alone
    try:
        if os.geteuid() == 0:
            os.chown(scratch, SANDBOX_UID, SANDBOX_GID)
        image = ensure_sandbox_image(client)
        spec = SandboxSpec(
            image=image,
            workspace=str(scratch),
            runtime=runtime,
            run_id=run_id,
            owner_home=str(home),
        )
        with DockerBackend(client).start(spec) as sb:
            r = sb.exec("id -u")
            rows.append(
                SmokeRow(
                    "runs as non-root", r.stdout.strip() not in ("", "0"), f"uid {r.stdout.strip()}"
                )
            )
            r = sb.exec("python3 --version && git --version")
            rows.append(SmokeRow("python and git", r.ok, r.stdout.replace("\n", "; ").strip("; ")))
            sb.write_file("hello.txt", "hello from corral\n")
            on_host = (scratch / "hello.txt").read_text()
            rows.append(
                SmokeRow(
                    "workspace is shared",
                    on_host == "hello from corral\n",
                    "hello.txt written inside, read on host",
                )
            )
            r = sb.exec("touch /usr/bin/x")
            rows.append(
                SmokeRow("root filesystem read-only", r.exit_code != 0, r.stderr.strip()[:60])
            )
            r = sb.exec("python3 -c 'import socket; print(*(n for _, n in socket.if_nameindex()))'")
            rows.append(
                SmokeRow(
                    "no network", r.stdout.split() == ["lo"], f"interfaces: {r.stdout.strip()}"
                )
            )
            r = sb.exec("sleep 30", timeout=1)
            rows.append(
                SmokeRow("timeout enforced", r.timed_out, f"killed after {r.duration_s:.1f}s")
            )
            rows.append(_fast_path_row(sb))
    finally:
        lease.release()
        shutil.rmtree(scratch, ignore_errors=True)
        client.close()
    return rows


def _fast_path_row(sb: DockerSandbox) -> SmokeRow:
    """The persistent shell against a fresh ``docker exec`` (medians): ok when it is faster."""
    fast = [sb.exec("true") for _ in range(FAST_PATH_SAMPLES)]
    once = [sb.exec_once("true") for _ in range(3)]
    if not all(r.ok for r in fast + once):
        return SmokeRow("fast command path", False, "`true` failed on the command path")
    fast_ms = statistics.median(r.duration_s for r in fast) * 1000
    once_ms = statistics.median(r.duration_s for r in once) * 1000
    return SmokeRow(
        "fast command path",
        fast_ms < once_ms,
        f"median {fast_ms:.1f} ms per command ({once_ms:.0f} ms with a docker exec)",
    )
