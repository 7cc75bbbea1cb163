"""Docker sandboxes (runc or gVisor's runsc) on the official ``docker`` SDK.

A container is created from ``sandbox.container.container_config(spec)``: the
hardened defaults of ``SandboxSpec`` (non-root, no capabilities, read-only root
filesystem, network none, limits, labels; never the docker socket).

Commands go through one persistent shell per container (``sandbox.shell``);
``exec_once`` is a fresh ``docker exec`` for isolated work. The SDK's
``exec_run`` has no timeout, so both paths enforce the timeout inside the
container (the shell's watchdog subshell for ``exec``, ``timeout -k`` for
``exec_once``) and on the host (a deadline on the socket, then a kill of the
process group).
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from sandbox.container import container_config
from sandbox.engine import ENGINE_ERRORS
from sandbox.errors import (
    EngineUnavailable,
    ImageError,
    SandboxClosed,
    SandboxError,
    SandboxFileNotFound,
    SandboxIsADirectory,
    SandboxNotRemoved,
    SandboxPermissionError,
    SandboxStartError,
    ShellEnded,
)
from sandbox.interfaces import DEFAULT_OUTPUT_LIMIT, KILL_GRACE_S, Command, ExecResult
from sandbox.output import CappedBuffer
from sandbox.shell import (
    HOST_SLACK_S,
    SHELL_LOOP,
    STDERR,
    FrameStream,
    PersistentShell,
    build_script,
)
from sandbox.spec import SandboxSpec

log = logging.getLogger(__name__)

#: How often ``close`` tries to remove a container, and the pause before a retry (x try number).
REMOVE_ATTEMPTS = 3
REMOVE_BACKOFF_S = 0.5

#: ``exit_code`` of a command that ended the persistent shell (as if killed by SIGKILL).
SHELL_ENDED_EXIT = 137

#: Largest file ``read_file`` returns (bytes).
MAX_READ_BYTES = 64 * 1024 * 1024


class DockerBackend:
    """Starts hardened containers on the local engine."""

    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from sandbox.engine import connect

            self._client = connect()
        return self._client

    def start(self, spec: SandboxSpec) -> DockerSandbox:
        """Create and start a container for ``spec`` (its persistent shell opens on first ``exec``).

        Raises ``ImageError`` (image missing: build it with ``corral image
        build``), ``EngineUnavailable``, ``SandboxStartError``.
        """
        config = container_config(spec)
        try:
            container = self.client.containers.run(**config)
        except ImageNotFound as exc:
            raise ImageError(f"image {spec.image} not found; run `corral image build`") from exc
        except APIError as exc:
            raise SandboxStartError(f"could not start sandbox: {exc.explanation or exc}") from exc
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"engine error starting sandbox: {exc}") from exc
        # The persistent shell opens with the first ``exec``: a gate's container only ever
        # runs ``exec_once`` and never needs one (an exec the engine would do for nothing).
        return DockerSandbox(self.client, container, spec)


class DockerSandbox:
    """One running container. Use as a context manager or call ``close()``."""

    def __init__(self, client: docker.DockerClient, container: Any, spec: SandboxSpec) -> None:
        self._client = client
        self._api = client.api
        self._container = container
        self.spec = spec
        self._shell: PersistentShell | None = None
        self._closed = False
        self._gone = False
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return str(self._container.id)

    @property
    def image_id(self) -> str:
        """The ``sha256:`` id of the image the container runs (what the spec's name resolved to)."""
        return str(self._container.attrs.get("Image") or self.spec.image)

    # -- lifecycle -------------------------------------------------------

    def open_shell(self) -> None:
        """(Re)start the persistent shell."""
        if self._shell is not None:
            self._shell.close()
        sock = self._exec_socket(["bash", "--noprofile", "--norc", "-c", SHELL_LOOP], stdin=True)
        self._shell = PersistentShell(sock, self._kill_group)

    def close(self) -> None:
        """Kill and remove the container: up to ``REMOVE_ATTEMPTS`` tries, each one checked.

        Raises ``SandboxNotRemoved`` when the engine still lists the container
        after the last try (commands are refused already; a later ``close()``
        tries again, ``corral gc`` too).
        """
        if self._gone:
            return
        self._closed = True
        if self._shell is not None:
            self._shell.close()
        problem = "?"
        for attempt in range(REMOVE_ATTEMPTS):
            if attempt:
                time.sleep(REMOVE_BACKOFF_S * attempt)
            try:
                self._container.remove(force=True, v=True)
            except NotFound:
                pass
            except ENGINE_ERRORS as exc:
                problem = str(exc)
                log.warning(
                    "removing container %s failed (try %d): %s", self.id[:12], attempt + 1, exc
                )
            try:
                self.confirm_gone()
                return
            except SandboxError as exc:
                problem = f"{problem}; {exc}" if problem != "?" else str(exc)
        raise SandboxNotRemoved(
            f"container {self.id[:12]} still exists after {REMOVE_ATTEMPTS} removals: {problem}"
            " (`docker rm -f` it, or `corral gc`)"
        )

    def confirm_gone(self) -> None:
        """Return only when the engine answers NotFound for the container.

        Raises ``SandboxNotRemoved`` while it exists, ``EngineUnavailable`` when
        the engine cannot be asked.
        """
        if self._gone:
            return
        try:
            self._api.inspect_container(self._container.id)
        except NotFound:
            self._gone = True
            return
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"cannot tell whether {self.id[:12]} is gone: {exc}") from exc
        raise SandboxNotRemoved(f"container {self.id[:12]} still exists")

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------

    def exec(
        self,
        cmd: Command,
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        with self._lock:
            self._check_open()
            if self._shell is None:
                self.open_shell()
            assert self._shell is not None
            if self._shell.broken:
                self._reopen_or_raise()
            try:
                return self._shell.run(
                    cmd,
                    cwd=cwd or self.spec.workdir,
                    timeout=timeout,
                    env=env,
                    output_limit=output_limit,
                )
            except ShellEnded as ended:  # the command's own doing while the container runs on
                self._reopen_or_raise()
                note = "[corral] the command ended the sandbox's shell; a new one was started\n"
                return ExecResult(
                    exit_code=SHELL_ENDED_EXIT,
                    stdout=ended.stdout,
                    stderr=ended.stderr + note,
                    duration_s=ended.duration_s,
                )
            except SandboxError:
                self._reopen_or_raise()
                raise

    def exec_once(
        self,
        cmd: Command,
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        self._check_open()
        script = build_script(cmd, cwd or self.spec.workdir, env)
        seconds = max(1, int(-(-timeout // 1)))
        argv = [
            "timeout",
            "-k",
            str(KILL_GRACE_S),
            str(seconds),
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            script,
        ]
        start = time.monotonic()
        exec_id, sock = self._exec_start(argv, stdin=False)
        stream = FrameStream(sock)
        out, err = CappedBuffer(output_limit), CappedBuffer(output_limit)
        deadline = start + seconds + KILL_GRACE_S + HOST_SLACK_S
        killed = False
        try:
            while not stream.eof:
                frames = stream.read_frames(deadline)
                if not frames and not stream.eof and time.monotonic() >= deadline:
                    if killed:
                        break
                    self._kill_exec(exec_id)
                    killed = True
                    deadline = time.monotonic() + HOST_SLACK_S
                for kind, payload in frames:
                    (err if kind == STDERR else out).add(payload)
        finally:
            sock.close()
        info = self._api.exec_inspect(exec_id)
        code = info.get("ExitCode")
        duration = time.monotonic() - start
        exit_code = int(code) if code is not None else 137
        return ExecResult(
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=duration,
            timed_out=killed or (exit_code in (124, 137) and duration >= seconds),
            truncated=bool(out.dropped or err.dropped),
        )

    # -- files -----------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        p = shlex.quote(self._abspath(path))
        script = (
            f"if [ -d {p} ]; then exit 21; elif [ ! -e {p} ]; then exit 2; "
            f"elif [ ! -r {p} ]; then exit 13; fi; exec base64 -w 0 < {p}"
        )
        limit = MAX_READ_BYTES * 4 // 3 + 8
        result = self.exec(script, timeout=120, output_limit=limit)
        self._raise_for_file(result, path)
        if result.truncated:
            raise SandboxError(f"{path} is larger than {MAX_READ_BYTES} bytes")
        return base64.b64decode(result.stdout)

    def write_file(self, path: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        target = self._abspath(path)
        p = shlex.quote(target)
        d = shlex.quote(os.path.dirname(target) or "/")
        encoded = base64.encodebytes(raw).decode()
        script = (
            f"if [ -d {p} ]; then exit 21; fi\n"
            f"mkdir -p -- {d} 2>/dev/null || exit 13\n"
            f"base64 -d > {p} <<'__CORRAL_EOF__' || exit 13\n{encoded}__CORRAL_EOF__\n"
        )
        result = self.exec(script, timeout=120)
        self._raise_for_file(result, path)

    # -- internals -------------------------------------------------------

    def _abspath(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.spec.workdir.rstrip('/')}/{path}"

    @staticmethod
    def _raise_for_file(result: ExecResult, path: str) -> None:
        if result.exit_code == 0:
            return
        detail = result.stderr.strip()[:300]
        if result.exit_code == 2:
            raise SandboxFileNotFound(f"{path}: no such file in the sandbox")
        if result.exit_code == 21:
            raise SandboxIsADirectory(f"{path}: is a directory")
        if result.exit_code == 13:
            raise SandboxPermissionError(f"{path}: permission denied ({detail or 'read-only?'})")
        raise SandboxError(f"{path}: file operation failed ({result.exit_code}): {detail}")

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosed(f"sandbox {self.id[:12]} is closed")

    def _reopen_or_raise(self) -> None:
        """The shell died: reopen it if the container still runs, else raise."""
        try:
            self._container.reload()
        except NotFound as exc:
            raise SandboxError(f"sandbox {self.id[:12]} is gone") from exc
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"engine error: {exc}") from exc
        if self._container.status != "running":
            raise SandboxError(
                f"sandbox {self.id[:12]} is {self._container.status} "
                f"(OOMKilled={self._container.attrs['State'].get('OOMKilled')})"
            )
        self.open_shell()

    def _exec_start(self, argv: list[str], *, stdin: bool) -> tuple[str, socket.socket]:
        try:
            created = self._api.exec_create(
                self._container.id,
                argv,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                user=self.spec.user,
            )
            raw = self._api.exec_start(created["Id"], socket=True, tty=False)
        except NotFound as exc:
            raise SandboxError(f"sandbox {self.id[:12]} is gone") from exc
        except APIError as exc:
            raise SandboxError(f"exec failed: {exc.explanation or exc}") from exc
        except ENGINE_ERRORS as exc:
            raise EngineUnavailable(f"engine error: {exc}") from exc
        sock = getattr(raw, "_sock", raw)
        return str(created["Id"]), sock

    def _exec_socket(self, argv: list[str], *, stdin: bool) -> socket.socket:
        return self._exec_start(argv, stdin=stdin)[1]

    def _kill_group(self, pid: int) -> None:
        """Kill process group ``pid`` inside the container, out of band."""
        try:
            self.exec_once(["kill", "-KILL", "--", f"-{pid}"], timeout=10)
        except SandboxError as exc:
            log.warning("could not kill process group %d: %s", pid, exc)

    def _kill_exec(self, exec_id: str) -> None:
        """Kill a one-shot exec whose in-container timeout failed (host pid, runc only)."""
        pid = self._api.exec_inspect(exec_id).get("Pid")
        if pid:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError) as exc:
                log.warning("could not kill exec %s: %s", exec_id[:12], exc)
