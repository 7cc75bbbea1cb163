"""The sandbox package's interfaces, read first.

Protocols of a few methods and frozen result types. Implementations
(``DockerBackend``, ``FakeBackend``) match these; nothing inherits from them.

Failure behaviour is part of each interface and is tested by the conformance
suite (``sandbox/conformance.py``) against every backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sandbox.spec import SandboxSpec

#: Default cap on each of stdout and stderr of one command, in bytes. Output past
#: it is dropped (the command keeps running) and ``ExecResult.truncated`` is set.
DEFAULT_OUTPUT_LIMIT = 1024 * 1024

#: Seconds between the in-container SIGTERM on timeout and the SIGKILL that follows.
KILL_GRACE_S = 2


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one command did. A non-zero ``exit_code`` is a result, not an error.

    ``exit_code`` is the command's exit status (128+N when killed by signal N;
    124/137 when the timeout fired, with ``timed_out`` set). Output is decoded
    as UTF-8 with ``errors="replace"``.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


Command = str | Sequence[str]
"""A shell script (``str``, run by bash) or an argv list (run without a shell)."""


@runtime_checkable
class Sandbox(Protocol):
    """A running, isolated environment with the workspace mounted at ``spec.workdir``."""

    @property
    def id(self) -> str:
        """A stable identifier (the container id for Docker)."""
        ...

    def exec(
        self,
        cmd: Command,
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run ``cmd`` on the fast path (one persistent shell) and wait for it.

        The timeout is enforced inside the sandbox (the whole process group is
        killed) and on the host; the shell stays usable afterwards. ``cwd``
        defaults to the workdir. ``env`` adds to the spec's environment.

        Raises ``SandboxClosed`` after ``close()``; ``SandboxError`` when the
        sandbox itself is gone (container removed, engine down). Never raises
        for the command's own failure: a command that kills the persistent
        shell itself is a result (exit 137, a note on stderr) and the next
        command gets a new shell.
        """
        ...

    def exec_once(
        self,
        cmd: Command,
        *,
        timeout: float = 60.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Like ``exec`` but in a new process of its own (no shared shell state).

        Slower; for isolated work such as gates. Same errors as ``exec``.
        """
        ...

    def read_file(self, path: str) -> bytes:
        """Return the bytes of ``path`` (relative paths are under the workdir).

        Raises ``FileNotFoundError``, ``IsADirectoryError`` or ``PermissionError``
        (all as ``SandboxError`` subclasses too), ``SandboxClosed`` after close.
        """
        ...

    def write_file(self, path: str, data: bytes | str) -> None:
        """Create or replace ``path`` with ``data``; parent directories are created.

        Raises ``IsADirectoryError``, ``PermissionError`` (read-only mount or
        rootfs, no permission), ``SandboxClosed`` after close.
        """
        ...

    def close(self) -> None:
        """Kill and remove the sandbox, retrying a failed removal a bounded number of times.

        Idempotent; never raises for an already-gone sandbox. Raises
        ``SandboxNotRemoved`` when it still exists after the retries (commands
        are refused from the first call on; a later ``close()`` tries again).
        """
        ...

    def confirm_gone(self) -> None:
        """Return only when the sandbox is known to be gone (Docker: the engine says NotFound).

        Raises ``SandboxNotRemoved`` while it exists, ``EngineUnavailable`` when
        the engine cannot say. ``harvest`` calls it before it reads the tree.
        """
        ...


class SandboxBackend(Protocol):
    """Where sandboxes run (Docker with runc or gVisor, or the in-process fake)."""

    name: str

    def start(self, spec: SandboxSpec) -> Sandbox:
        """Create and start a sandbox from ``spec``.

        Raises ``SpecError`` for an unsafe spec, ``ImageError`` when the image
        is missing, ``EngineUnavailable`` when the engine cannot be reached,
        ``SandboxStartError`` for anything else that stops it starting.
        """
        ...
