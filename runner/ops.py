"""Library functions behind small CLI commands (``gc``, ``smoke``): config in, result out."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.docker_backend import DockerBackend
from sandbox.engine import connect
from sandbox.gc import GcReport, collect
from sandbox.paths import corral_home
from sandbox.spec import SANDBOX_GID, SANDBOX_UID, SandboxSpec


def gc(*, dry_run: bool = False, docker: bool = True) -> GcReport:
    """Collect dead runs' resources in ``$CORRAL_HOME`` (see ``sandbox.gc``)."""
    home = corral_home()
    client = connect() if docker else None
    try:
        return collect(home, client, dry_run=dry_run)
    finally:
        if client is not None:
            client.close()


@dataclass(frozen=True, slots=True)
class SmokeRow:
    name: str
    ok: bool
    detail: str


def smoke(*, runtime: str = "runc") -> list[SmokeRow]:
    """Start a sandbox on the sandbox image with a scratch workspace and probe it.

    Raises ``EngineUnavailable`` / ``ImageError`` with the fix when not set up.
    """
    from sandbox.images import ensure_sandbox_image

    if runtime not in ("runc", "runsc"):
        raise ValueError(f"unknown runtime {runtime!r}: use runc or runsc")
    client = connect()
    home = corral_home()
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="smoke-", dir=home))
    rows: list[SmokeRow] = []
    try:
        if os.geteuid() == 0:
            os.chown(scratch, SANDBOX_UID, SANDBOX_GID)
        image = ensure_sandbox_image(client)
        spec = SandboxSpec(
            image=image,
            workspace=str(scratch),
            runtime=runtime,
            run_id="smoke",
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
            times = sorted(sb.exec("true").duration_s for _ in range(20))
            rows.append(
                SmokeRow("fast command path", True, f"median {times[10] * 1000:.1f} ms per command")
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        client.close()
    return rows
