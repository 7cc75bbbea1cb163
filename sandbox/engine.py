"""The Docker engine: connecting to it, probing it, and (``provision``) setting it up.

Uses the official ``docker`` SDK, which negotiates the API version with the
engine (Debian's 20.10 speaks 1.41), and ``psutil`` to find a running dockerd.
On a fresh Debian machine ``provision`` installs ``docker.io``, registers
gVisor's ``runsc`` (Debian's build works only with ``--network=none``) in
``/etc/docker/daemon.json`` and starts ``dockerd`` in its own session, logging
to a file, with a bounded wait for it to answer.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import psutil
from docker.errors import DockerException
from requests.exceptions import RequestException

from sandbox.errors import EngineUnavailable

#: What a call to the engine raises when it fails: the SDK's own errors, and the ``requests``
#: errors it lets through when the socket is gone (the engine died, ``DOCKER_HOST`` is wrong).
ENGINE_ERRORS: tuple[type[Exception], ...] = (DockerException, RequestException)


def connect(timeout: float = 120.0) -> docker.DockerClient:
    """A client for the local engine (``DOCKER_HOST`` or the default socket).

    Raises ``EngineUnavailable`` with the fix (``corral doctor --fix``) when no
    engine answers.
    """
    try:  # negotiating the API version asks the engine (``/version``): no ping needed
        client = docker.from_env(timeout=int(timeout))
    except ENGINE_ERRORS as exc:
        raise EngineUnavailable(
            f"no Docker engine answers ({exc.__class__.__name__}); run `corral doctor --fix`"
        ) from exc
    return client


def connect_soon(timeout: float = 120.0) -> Callable[[], docker.DockerClient]:
    """Start ``connect`` on a daemon thread now; the returned function waits for its client.

    For a caller with other work to do first (the engine takes tens of
    milliseconds to answer the version request): the function returns the
    client or raises what ``connect`` raised, every time it is called. A
    caller that never asks leaves a thread that ends with ``connect``.
    """
    box: list[docker.DockerClient | BaseException] = []

    def work() -> None:
        try:
            box.append(connect(timeout))
        except BaseException as exc:  # handed to the caller, who raises it
            box.append(exc)

    thread = threading.Thread(target=work, name="corral-connect", daemon=True)
    thread.start()

    def client() -> docker.DockerClient:
        thread.join()
        got = box[0]
        if isinstance(got, BaseException):
            raise got
        return got

    return client


#: Where Debian's dockerd reads its configuration, and where corral logs a dockerd it starts.
DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/corral-dockerd.log")
#: ``--network=none``: Debian's runsc fails without it. ``--host-uds=open``: the sandbox may
#: connect to a host unix socket bind-mounted into it (the model gateway's); without it gVisor
#: refuses even to list the socket's directory. Creating host sockets stays off.
RUNSC_ARGS = ["--network=none", "--host-uds=open"]


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """What ``probe`` found out about the engine."""

    reachable: bool
    server_version: str = ""
    api_version: str = ""
    storage_driver: str = ""
    runtimes: tuple[str, ...] = ()
    runsc_network_none: bool = False
    runsc_host_uds: bool = False
    """runsc may connect to bind-mounted host unix sockets (the model gateway needs it)."""
    error: str = ""

    @property
    def runsc_registered(self) -> bool:
        return "runsc" in self.runtimes


def probe(daemon_json: Path = DAEMON_JSON) -> EngineStatus:
    """Ask the engine what it is; never raises (``reachable`` False with ``error`` instead)."""
    try:
        client = connect(timeout=10)
    except EngineUnavailable as exc:
        return EngineStatus(False, error=str(exc))
    try:
        info = client.info()
        version = client.version()
    except ENGINE_ERRORS as exc:
        return EngineStatus(False, error=str(exc))
    finally:
        client.close()
    runtimes = tuple(sorted(info.get("Runtimes", {})))
    configured = read_daemon_json(daemon_json).get("runtimes", {}).get("runsc", {})
    runsc_args = info.get("Runtimes", {}).get("runsc", {}).get("runtimeArgs") or configured.get(
        "runtimeArgs", []
    )
    return EngineStatus(
        True,
        server_version=str(version.get("Version", "")),
        api_version=str(version.get("ApiVersion", "")),
        storage_driver=str(info.get("Driver", "")),
        runtimes=runtimes,
        runsc_network_none="--network=none" in (runsc_args or []),
        runsc_host_uds=any(a in ("--host-uds=open", "--host-uds=all") for a in runsc_args or []),
    )


def read_daemon_json(path: Path) -> dict[str, Any]:
    """The daemon's JSON config, ``{}`` when absent; ``EngineUnavailable`` if it is not JSON."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"{path} is not valid JSON ({exc}); fix or remove it") from exc
    return data if isinstance(data, dict) else {}


def register_runsc(daemon_json: Path, runsc: str) -> bool:
    """Merge the ``runsc`` runtime (with ``--network=none``) into ``daemon_json``; True if changed.

    Other keys and runtimes are kept; the file is replaced atomically.
    """
    data = read_daemon_json(daemon_json)
    want = {"path": runsc, "runtimeArgs": RUNSC_ARGS}
    runtimes = data.setdefault("runtimes", {})
    if runtimes.get("runsc") == want:
        return False
    runtimes["runsc"] = want
    daemon_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = daemon_json.with_suffix(".json.corral-tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, daemon_json)
    return True


def _dockerd_pid() -> int | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd":
            return int(proc.pid)
    return None


def provision(
    *,
    daemon_json: Path = DAEMON_JSON,
    log_path: Path = DOCKERD_LOG,
    wait_s: float = 60.0,
) -> list[str]:
    """Make an engine answer: install docker.io, register runsc, start dockerd. Root only.

    Returns the steps taken (``[]`` when nothing was needed). Raises
    ``EngineUnavailable`` naming the log when the engine does not come up.
    """
    if os.geteuid() != 0:
        raise EngineUnavailable(
            "provisioning the engine needs root; as root run: `corral doctor --fix`"
        )
    steps: list[str] = []
    if shutil.which("dockerd") is None:
        _apt_install(["docker.io"])
        steps.append("installed docker.io")
    runsc = shutil.which("runsc")
    if runsc is not None and register_runsc(daemon_json, runsc):
        steps.append(f"registered runsc ({runsc}) with {' '.join(RUNSC_ARGS)} in {daemon_json}")
        pid = _dockerd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)  # dockerd re-reads runtimes on SIGHUP
            steps.append("reloaded dockerd")
    if _dockerd_pid() is None:
        stale = Path("/var/run/docker.pid")
        stale.unlink(missing_ok=True)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as logf:
            subprocess.Popen(
                ["dockerd"], stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        steps.append(f"started dockerd (log: {log_path})")
    deadline = time.monotonic() + wait_s
    while True:
        status = probe(daemon_json)
        if status.reachable and (runsc is None or status.runsc_registered):
            return steps
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"dockerd did not come up within {wait_s:.0f}s; see {log_path}")
        time.sleep(0.5)


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", *packages]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EngineUnavailable(
                f"apt-get install {' '.join(packages)} failed: {proc.stderr.strip()[-300:]}"
            )


def provision_commands(
    *, daemon_json: Path = DAEMON_JSON, log_path: Path = DOCKERD_LOG, runsc: str = "/usr/bin/runsc"
) -> list[str]:
    """The shell commands a root user runs to get what ``provision`` does, in order.

    Printed for non-root users (``corral doctor --fix``); each line runs as it is.
    The ``daemon.json`` line replaces the file: merge by hand if it holds other settings.
    """
    config = json.dumps({"runtimes": {"runsc": {"path": runsc, "runtimeArgs": RUNSC_ARGS}}})
    return [
        "apt-get update && apt-get install -y docker.io runsc",
        f"mkdir -p {shlex.quote(str(daemon_json.parent))} && printf '%s\\n' {shlex.quote(config)}"
        f" > {shlex.quote(str(daemon_json))}",
        f"pidof dockerd && kill -HUP $(pidof dockerd)"
        f" || (nohup dockerd >> {shlex.quote(str(log_path))} 2>&1 &)",
        "until docker info >/dev/null 2>&1; do sleep 1; done",
    ]
