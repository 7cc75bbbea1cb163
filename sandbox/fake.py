"""``FakeSandbox``: the sandbox interface in-process, for tests of code above it.

It runs commands with the host's bash in the workspace directory, with a
scrubbed environment, the same timeout (whole process group killed) and output
cap as the real backends. **It isolates nothing**: commands run as the calling
user, with the host's network and filesystem. Use it to test the control loop
and agents fast; never to run an untrusted agent. Its documented gaps are
``FAKE_KNOWN_GAPS`` (the conformance suite expects exactly these to fail).

File operations map sandbox paths onto host paths: the workdir to
``spec.workspace`` and every other absolute path into a private directory, so
``write_file("/etc/x")`` never touches the host's ``/etc``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from sandbox.errors import (
    SandboxClosed,
    SandboxFileNotFound,
    SandboxIsADirectory,
    SandboxNotRemoved,
    SandboxPermissionError,
)
from sandbox.interfaces import DEFAULT_OUTPUT_LIMIT, KILL_GRACE_S, Command, ExecResult
from sandbox.output import CappedBuffer
from sandbox.shell import build_script
from sandbox.spec import SandboxSpec

#: Conformance checks the fake cannot pass, because it isolates nothing.
FAKE_KNOWN_GAPS = frozenset({"non_root", "no_network", "read_only_rootfs", "permission"})

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class FakeBackend:
    """Starts ``FakeSandbox``es. ``spec.image`` and the limits are ignored."""

    name = "fake"

    def start(self, spec: SandboxSpec) -> FakeSandbox:
        return FakeSandbox(spec)


class FakeSandbox:
    """See the module docstring. Use as a context manager or call ``close()``."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._root = Path(tempfile.mkdtemp(prefix="corral-fake-"))
        self._workspace = Path(spec.workspace) if spec.workspace else self._root / "workspace"
        self._workspace.mkdir(parents=True, exist_ok=True)
        (self._root / "home").mkdir()
        self._closed = False

    @property
    def id(self) -> str:
        return f"fake-{self._root.name}"

    def host_path(self, path: str) -> Path:
        """The host path behind a sandbox path."""
        workdir = self.spec.workdir.rstrip("/")
        if not path.startswith("/"):
            return self._workspace / path
        if path == workdir or path.startswith(workdir + "/"):
            return self._workspace / path[len(workdir) :].lstrip("/")
        return self._root / "rootfs" / path.lstrip("/")

    def exec(
        self,
        cmd: Command,
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        self._check_open()
        host_cwd = str(self.host_path(cwd or self.spec.workdir))
        script_file = self._root / "command.sh"  # a file, not argv: no 128 KiB argument limit
        script_file.write_text(build_script(cmd, host_cwd, env))
        base_env = {"PATH": _PATH, "HOME": str(self._root / "home"), "LANG": "C.UTF-8"}
        start = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", str(script_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**base_env, **self.spec.env},
            cwd="/",
            start_new_session=True,
        )
        out, err = CappedBuffer(output_limit), CappedBuffer(output_limit)
        timed_out = _drain(proc, out, err, deadline=start + timeout)
        code = proc.wait()
        if timed_out:
            code = 137 if code == -signal.SIGKILL else 124
        return ExecResult(
            exit_code=128 - code if code < 0 else code,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=time.monotonic() - start,
            timed_out=timed_out,
            truncated=bool(out.dropped or err.dropped),
        )

    exec_once = exec

    def read_file(self, path: str) -> bytes:
        self._check_open()
        target = self.host_path(path)
        if target.is_dir():
            raise SandboxIsADirectory(f"{path}: is a directory")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise SandboxFileNotFound(f"{path}: no such file in the sandbox") from None
        except PermissionError as exc:
            raise SandboxPermissionError(f"{path}: permission denied") from exc

    def write_file(self, path: str, data: bytes | str) -> None:
        self._check_open()
        target = self.host_path(path)
        if target.is_dir():
            raise SandboxIsADirectory(f"{path}: is a directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)
        except PermissionError as exc:
            raise SandboxPermissionError(f"{path}: permission denied") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._root, ignore_errors=True)

    def confirm_gone(self) -> None:
        """Raises ``SandboxNotRemoved`` until ``close()`` (the fake's processes end with each call)."""
        if not self._closed:
            raise SandboxNotRemoved(f"sandbox {self.id} is not closed")

    def __enter__(self) -> FakeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxClosed(f"sandbox {self.id} is closed")


def _drain(
    proc: subprocess.Popen[bytes], out: CappedBuffer, err: CappedBuffer, *, deadline: float
) -> bool:
    """Read both pipes until the process ends or ``deadline``; then kill the group.

    Bounded: a process that escaped the group and holds a pipe open is given
    up on ``KILL_GRACE_S + 1`` seconds after the deadline. True if the deadline fired.
    """
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    timed_out = False
    give_up = deadline + KILL_GRACE_S + 1
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= give_up:
                break
            if not timed_out and now >= deadline:
                timed_out = True
                _signal_group(proc.pid, signal.SIGTERM)
            if timed_out and now >= deadline + KILL_GRACE_S:
                _signal_group(proc.pid, signal.SIGKILL)
            next_tick = deadline if not timed_out else min(deadline + KILL_GRACE_S, give_up)
            for key, _ in sel.select(timeout=max(next_tick - now, 0.01)):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    key.data.add(chunk)
                else:
                    sel.unregister(key.fileobj)
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
    finally:
        sel.close()
        if timed_out:
            _signal_group(proc.pid, signal.SIGKILL)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
    return timed_out


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
