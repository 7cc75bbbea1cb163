"""The fast command path: one persistent bash per sandbox, fed over a pipe.

A ``docker exec`` costs ~65-80 ms; a command sent to a shell that is already
running costs a few ms. The protocol (no pexpect, no tty):

* The host writes a header line ``<sentinel> <nbytes> <timeout>`` and then
  exactly ``nbytes`` of script. The sentinel is 32 random hex characters, new
  for every command, so the command cannot forge the end of its own output.
* The shell loop reads the script and ``eval``s it in a forked subshell,
  stdin from ``/dev/null``. Job control (``set -m``) gives that subshell a
  process group of its own; a second forked subshell is its watchdog: it
  waits ``T`` seconds on a private FIFO (``read -t``), then signals the whole
  group with SIGTERM and, ``GRACE`` seconds later, SIGKILL. No program is
  exec'd per command besides the command's own (``timeout`` plus ``bash -c``
  cost about 1.5 ms more per command). A command ended by the watchdog's
  SIGTERM reports 124, as ``timeout`` would; one that needed SIGKILL, 137.
* It reports ``<sentinel> P <pid>`` on stderr when the command starts (the
  host can then kill the group itself if the in-sandbox timeout ever fails),
  and ``<sentinel> <exit>`` on stdout plus ``<sentinel> E`` on stderr when it
  ends. The host strips these marks from the output.

Output past ``output_limit`` bytes per stream is dropped (``truncated``); a
command that keeps streaming far past the cap is killed. The transport is a
pair of byte streams from the backend; this module knows nothing of Docker
beyond the 8-byte frame header of its multiplexed attach stream.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import select
import shlex
import socket
import struct
import time
from collections.abc import Callable, Mapping

from sandbox.errors import SandboxError, ShellEnded
from sandbox.interfaces import DEFAULT_OUTPUT_LIMIT, KILL_GRACE_S, Command, ExecResult
from sandbox.output import CappedBuffer

log = logging.getLogger(__name__)

#: Host-side slack beyond the in-sandbox timeout and its kill grace.
HOST_SLACK_S = 3.0
#: A command whose dropped output exceeds this many bytes is killed.
RUNAWAY_OUTPUT_BYTES = 32 * 1024 * 1024

# The loop runs as `bash --noprofile --norc -c LOOP`. LC_ALL=C is a shell
# variable only (not exported) so `read -N` counts bytes, not characters,
# while commands keep the sandbox's own locale.
SHELL_LOOP = r"""
LC_ALL=C
w=$(mktemp -u "${TMPDIR:-/tmp}/.corral-w.XXXXXXXX") && mkfifo -m 600 "$w" && exec 5<>"$w" && rm -f "$w" || exit 90
exec 4>&2 2>/dev/null
set -m
while IFS=' ' read -r s n t; do
  IFS= read -r -d '' -N "$n" c || exit 0
  b=${EPOCHREALTIME/./}
  ( exec 2>&4 4>&- 5<&-; set +m; unset -v s n t w b p q r LC_ALL; eval "$c" ) </dev/null &
  p=$!
  printf '%s P %d\n' "$s" "$p" >&4
  ( read -t "$t" -u 5 _; kill -TERM -- "-$p"; read -t __GRACE__ -u 5 _; kill -KILL -- "-$p" ) </dev/null >/dev/null &
  q=$!
  wait "$p"; r=$?
  kill "$q"; wait "$q"
  if (( r == 143 && ${EPOCHREALTIME/./} - b >= t * 1000000 )); then r=124; fi
  printf '%s %d\n' "$s" "$r"
  printf '%s E\n' "$s" >&4
done
""".replace("__GRACE__", str(KILL_GRACE_S))

STDOUT, STDERR = 1, 2


def build_script(cmd: Command, cwd: str, env: Mapping[str, str] | None) -> str:
    """The bash script for one command: close fd 3, cd, export, then the command.

    An argv list runs without shell interpretation (``exec`` of the quoted argv).
    """
    lines = ["exec 3<&-", f"cd -- {shlex.quote(cwd)} || exit 126"]
    for key, value in (env or {}).items():
        if not key.isidentifier():
            raise ValueError(f"invalid environment variable name {key!r}")
        lines.append(f"export {key}={shlex.quote(value)}")
    if isinstance(cmd, str):
        lines.append(cmd)
    else:
        if not cmd:
            raise ValueError("empty argv")
        lines.append("exec " + shlex.join(list(cmd)))
    return "\n".join(lines) + "\n"


class FrameStream:
    """Reads Docker's multiplexed attach stream (8-byte headers) from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self.eof = False

    def read_frames(self, deadline: float) -> list[tuple[int, bytes]]:
        """Frames available before ``deadline`` (at least one unless time is up or EOF)."""
        frames: list[tuple[int, bytes]] = []
        while not frames and not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                break
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                self.eof = True
                break
            self._buf += chunk
            while len(self._buf) >= 8:
                kind, size = struct.unpack(">BxxxL", self._buf[:8])
                if len(self._buf) < 8 + size:
                    break
                frames.append((kind, bytes(self._buf[8 : 8 + size])))
                del self._buf[: 8 + size]
        return frames


class PersistentShell:
    """Runs commands one at a time in a long-lived bash behind ``sock``.

    ``kill_group(pid)`` is the backend's out-of-band way to kill a process
    group inside the sandbox when the in-sandbox timeout did not end it.
    Not thread-safe: one command at a time (the sandbox serialises calls).
    """

    def __init__(self, sock: socket.socket, kill_group: Callable[[int], None]) -> None:
        self.stream = FrameStream(sock)
        self.sock = sock
        self._kill_group = kill_group
        self.broken = False

    def run(
        self,
        cmd: Command,
        *,
        cwd: str,
        timeout: float,
        env: Mapping[str, str] | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> ExecResult:
        """Run one command. Raises ``ShellEnded`` if the shell died meanwhile, ``SandboxError``
        if it was gone already or the command could not be killed (the caller restarts it)."""
        if self.broken:
            raise SandboxError("persistent shell is broken")
        script = build_script(cmd, cwd, env).encode()
        sentinel = secrets.token_hex(16)
        seconds = max(1, int(-(-timeout // 1)))  # whole seconds, rounded up
        start = time.monotonic()
        try:
            self.sock.sendall(f"{sentinel} {len(script)} {seconds}\n".encode() + script)
        except OSError as exc:
            self.broken = True
            raise SandboxError(f"persistent shell is gone: {exc}") from exc
        return self._collect(sentinel.encode(), start, seconds, output_limit)

    def _collect(self, sentinel: bytes, start: float, seconds: int, limit: int) -> ExecResult:
        out, err = CappedBuffer(limit), CappedBuffer(limit)
        raw_out, raw_err = bytearray(), bytearray()
        exit_code: int | None = None
        got_err_end = False
        pid: int | None = None
        killed_by_host = False
        deadline = start + seconds + KILL_GRACE_S + HOST_SLACK_S
        end_mark_err = sentinel + b" E\n"
        pid_mark = sentinel + b" P "
        tail = len(sentinel) + 24  # bytes kept back so a mark split across frames is still found
        while exit_code is None or not got_err_end:
            frames = self.stream.read_frames(deadline)
            if self.stream.eof:
                self.broken = True
                out.add(bytes(raw_out))
                err.add(bytes(raw_err))
                raise ShellEnded(out.text(), err.text(), time.monotonic() - start)
            if not frames and time.monotonic() >= deadline:
                if killed_by_host or pid is None:
                    self.broken = True
                    raise SandboxError("command outlived its timeout and could not be killed")
                log.warning("in-sandbox timeout did not end pid %s; killing from the host", pid)
                self._kill_group(pid)
                killed_by_host = True
                deadline = time.monotonic() + HOST_SLACK_S
                continue
            for kind, payload in frames:
                if kind == STDERR:
                    raw_err += payload
                    if pid is None and (i := raw_err.find(pid_mark)) >= 0:
                        j = raw_err.find(b"\n", i)
                        if j >= 0:
                            pid = int(raw_err[i + len(pid_mark) : j])
                            del raw_err[i : j + 1]
                    if raw_err.endswith(end_mark_err):
                        del raw_err[-len(end_mark_err) :]
                        got_err_end = True
                    if pid is not None and not got_err_end and len(raw_err) > tail:
                        err.add(bytes(raw_err[:-tail]))
                        del raw_err[:-tail]
                else:
                    raw_out += payload
                    i = raw_out.find(sentinel + b" ")
                    j = raw_out.find(b"\n", i) if i >= 0 else -1
                    if j >= 0:
                        exit_code = int(raw_out[i + len(sentinel) + 1 : j])
                        del raw_out[i:]
                    if exit_code is None and len(raw_out) > tail:
                        out.add(bytes(raw_out[:-tail]))
                        del raw_out[:-tail]
            runaway = out.dropped + err.dropped > RUNAWAY_OUTPUT_BYTES
            if runaway and pid is not None and not killed_by_host:
                log.warning(
                    "command streamed more than %d bytes past its cap; killing it",
                    RUNAWAY_OUTPUT_BYTES,
                )
                self._kill_group(pid)
                killed_by_host = True
        assert exit_code is not None
        out.add(bytes(raw_out))
        err.add(bytes(raw_err))
        duration = time.monotonic() - start
        timed_out = exit_code in (124, 137) and duration >= seconds
        if killed_by_host and not out.dropped + err.dropped:
            timed_out = True
        return ExecResult(
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            duration_s=duration,
            timed_out=timed_out,
            truncated=bool(out.dropped or err.dropped),
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.broken = True
