"""The persistent-shell protocol, against a real bash behind a socket pair (no Docker).

A tiny adapter plays the engine's part: it runs the shell loop with its stdin
and stdout/stderr wired to one end of a socket pair and frames the output with
Docker's 8-byte headers, so ``PersistentShell`` runs unmodified.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from sandbox.errors import SandboxError
from sandbox.shell import SHELL_LOOP, PersistentShell, build_script


class _LocalEngine:
    def __init__(self) -> None:
        self.host, self.peer = socket.socketpair()
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-c", SHELL_LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        self._threads = [
            threading.Thread(target=self._pump_in, daemon=True),
            threading.Thread(target=self._pump_out, args=(self.proc.stdout, 1), daemon=True),
            threading.Thread(target=self._pump_out, args=(self.proc.stderr, 2), daemon=True),
        ]
        self._send = threading.Lock()
        self.killed: list[int] = []
        for t in self._threads:
            t.start()

    def _pump_in(self) -> None:
        assert self.proc.stdin is not None
        while chunk := self.peer.recv(65536):
            self.proc.stdin.write(chunk)
            self.proc.stdin.flush()

    def _pump_out(self, pipe: object, kind: int) -> None:
        while chunk := os.read(pipe.fileno(), 65536):  # type: ignore[attr-defined]
            with self._send:
                self.peer.sendall(struct.pack(">BxxxL", kind, len(chunk)) + chunk)
        if kind == 1:
            with contextlib.suppress(OSError):
                self.peer.shutdown(socket.SHUT_WR)

    def kill_group(self, pid: int) -> None:
        self.killed.append(pid)
        os.killpg(pid, signal.SIGKILL)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.host.close()
        self.peer.close()


@pytest.fixture
def engine() -> Iterator[_LocalEngine]:
    e = _LocalEngine()
    yield e
    e.close()


@pytest.fixture
def shell(engine: _LocalEngine) -> PersistentShell:
    return PersistentShell(engine.host, engine.kill_group)


def test_runs_commands_in_sequence_and_keeps_output_apart(shell: PersistentShell) -> None:
    r = shell.run("echo one; echo two >&2; exit 5", cwd="/", timeout=10)
    assert (r.exit_code, r.stdout, r.stderr) == (5, "one\n", "two\n")
    r = shell.run(["printf", "%s", "no newline"], cwd="/tmp", timeout=10)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "no newline", "")


def test_cwd_and_env_are_per_command(shell: PersistentShell, tmp_path: object) -> None:
    r = shell.run("pwd; echo $X", cwd=str(tmp_path), timeout=10, env={"X": "1 2"})
    assert r.stdout == f"{tmp_path}\n1 2\n"
    assert shell.run("echo ${X-unset}", cwd="/", timeout=10).stdout == "unset\n"


def test_output_without_trailing_newline_and_binary(shell: PersistentShell) -> None:
    r = shell.run("printf 'a\\0b\\377'; printf 'e' >&2", cwd="/", timeout=10)
    assert r.stdout == "a\x00b\ufffd" and r.stderr == "e"


def test_a_command_cannot_forge_the_end_of_its_output(shell: PersistentShell) -> None:
    # It does not know this command's sentinel; printing a look-alike is just output.
    fake = "0123456789abcdef0123456789abcdef 0"
    r = shell.run(f"echo '{fake}'; echo after", cwd="/", timeout=10)
    assert r.stdout == f"{fake}\nafter\n" and r.exit_code == 0


def test_timeout_kills_the_group_and_the_shell_survives(shell: PersistentShell) -> None:
    r = shell.run("sleep 30 & sleep 30", cwd="/", timeout=1)
    assert r.timed_out and r.exit_code in (124, 137)
    assert shell.run("echo alive", cwd="/", timeout=10).stdout == "alive\n"


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(shell: PersistentShell) -> None:
    r = shell.run("trap '' TERM; sleep 30", cwd="/", timeout=1)
    assert r.timed_out and r.exit_code == 137


def test_output_is_capped_per_stream(shell: PersistentShell) -> None:
    r = shell.run("head -c 100000 /dev/zero; echo done >&2", cwd="/", timeout=10, output_limit=10)
    assert len(r.stdout) == 10 and r.truncated and r.stderr == "done\n"


def test_reading_stdin_gets_eof_not_the_protocol(shell: PersistentShell) -> None:
    r = shell.run("cat; echo rc=$?", cwd="/", timeout=10)
    assert r.stdout == "rc=0\n"
    assert shell.run("echo next", cwd="/", timeout=10).stdout == "next\n"


def test_a_dead_shell_raises_and_stays_broken(shell: PersistentShell) -> None:
    with pytest.raises(SandboxError):
        # the command runs in a subshell ($BASHPID) forked from the loop shell: kill its parent
        shell.run("me=$BASHPID; kill -9 $(cut -d' ' -f4 /proc/$me/stat)", cwd="/", timeout=10)
    assert shell.broken
    with pytest.raises(SandboxError):
        shell.run("true", cwd="/", timeout=10)


def test_build_script_quotes_everything() -> None:
    script = build_script(["echo", "a b", "$(x)"], "/w d", {"K": "v'q"})
    assert "cd -- '/w d'" in script
    assert "export K='v'\"'\"'q'" in script
    assert script.rstrip().endswith("exec echo 'a b' '$(x)'")
    with pytest.raises(ValueError):
        build_script("true", "/", {"BAD-NAME": "x"})
    with pytest.raises(ValueError):
        build_script([], "/", None)


#: Kills every other child of the loop shell ($$): the command's own watchdog subshell. The loop
#: forks the watchdog just after the command, so it looks again (for at most 10 s) until it killed.
KILL_WATCHDOG = (
    "k=; for _ in {1..1000}; do for s in /proc/[0-9]*/stat; do"
    " read -r p _ _ pp _ < $s 2>/dev/null || continue;"
    ' [ "$pp" = "$$" ] && [ "$p" != "$BASHPID" ] && kill -KILL $p && k=1; done;'
    ' [ -n "$k" ] && break; sleep 0.01; done; '
)


def test_when_the_in_sandbox_timeout_fails_the_host_kills_the_group(
    shell: PersistentShell, engine: _LocalEngine
) -> None:
    r = shell.run(KILL_WATCHDOG + "sleep 30 & sleep 30", cwd="/", timeout=1)
    assert len(engine.killed) == 1  # the host's out-of-band kill, after its own deadline
    assert r.timed_out and r.exit_code == 137 and not shell.broken
    assert _live_members(engine.killed[0]) == []  # the whole group, the background sleep too
    assert shell.run("echo next", cwd="/", timeout=10).stdout == "next\n"


def test_runaway_output_is_killed_long_before_its_timeout(
    shell: PersistentShell, engine: _LocalEngine
) -> None:
    r = shell.run("yes", cwd="/", timeout=600, output_limit=1000)
    assert len(engine.killed) == 1  # killed by the host once far past the cap, not by the timeout
    assert r.truncated and len(r.stdout) == 1000 and r.exit_code == 137 and not r.timed_out
    assert shell.run("echo next", cwd="/", timeout=10).stdout == "next\n"


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a killed process waits for its reaper)."""
    for _ in range(50):
        live = [p.pid for p in psutil.process_iter() if _pgid(p) == pgid and _running(p)]
        if not live:
            return []
        time.sleep(0.1)
    return live


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None


def _running(p: psutil.Process) -> bool:
    try:
        return bool(p.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
