"""The sandbox conformance suite: one set of checks every backend must pass.

Each check takes a started sandbox and the ``workspace`` host directory behind
its workdir. ``tests/sandbox/test_conformance.py`` runs every check against every
backend (docker/runc, docker/runsc where registered, the fake); a backend's
documented gaps are expected to fail (strict xfail), so a gap that closes, or a
new failure, is noticed.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.errors import SandboxClosed, SandboxNotRemoved
from sandbox.interfaces import Sandbox

Check = Callable[[Sandbox, Path], None]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


@check
def check_read_write(sb: Sandbox, ws: Path) -> None:
    data = b"bin\x00ary \xff\xfe and \xe2\x9c\x93 text\n" * 100
    sb.write_file("sub/dir/file.bin", data)
    assert sb.read_file("sub/dir/file.bin") == data
    assert (ws / "sub/dir/file.bin").read_bytes() == data
    sb.write_file("sub/dir/file.bin", "replaced")
    assert sb.read_file("sub/dir/file.bin") == b"replaced"


@check
def check_zero_length(sb: Sandbox, ws: Path) -> None:
    sb.write_file("empty", b"")
    assert sb.read_file("empty") == b""
    assert sb.exec("wc -c < empty").stdout.strip() == "0"


@check
def check_not_found(sb: Sandbox, ws: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sb.read_file("no/such/file")


@check
def check_is_a_directory(sb: Sandbox, ws: Path) -> None:
    sb.write_file("d/f", "x")
    with pytest.raises(IsADirectoryError):
        sb.read_file("d")
    with pytest.raises(IsADirectoryError):
        sb.write_file("d", "x")


@check
def check_permission(sb: Sandbox, ws: Path) -> None:
    assert sb.exec("echo secret > locked && chmod 000 locked").ok
    with pytest.raises(PermissionError):
        sb.read_file("locked")


@check
def check_exit_code_is_a_result(sb: Sandbox, ws: Path) -> None:
    r = sb.exec("echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (7, "out\n", "err\n", False)
    r = sb.exec(["printf", "%s|", "a b", "$HOME", "'q'"])
    assert r.stdout == "a b|$HOME|'q'|"
    assert sb.exec("no-such-command-xyz").exit_code == 127


@check
def check_env(sb: Sandbox, ws: Path) -> None:
    r = sb.exec('printf "%s" "$CORRAL_T"', env={"CORRAL_T": "va lue $x"})
    assert r.stdout == "va lue $x"
    assert sb.exec('printf "%s" "${CORRAL_T-unset}"').stdout == "unset"  # env is per command
    leaked = sb.exec("env").stdout
    assert "CORRAL_CANARY_SECRET" not in leaked  # the host's environment never enters


@check
def check_cwd(sb: Sandbox, ws: Path) -> None:
    sb.write_file("a/b/marker", "m")
    default = sb.exec("cat a/b/marker")
    assert default.stdout == "m"
    r = sb.exec("pwd; cat marker", cwd=f"{_workdir(sb)}/a/b")
    assert r.stdout.splitlines() == [r.stdout.splitlines()[0], "m"]
    assert r.stdout.splitlines()[0].endswith("/a/b")
    assert sb.exec("true", cwd=f"{_workdir(sb)}/nope").exit_code == 126


@check
def check_timeout_kills_children(sb: Sandbox, ws: Path) -> None:
    r = sb.exec("sleep 60 & echo $! > child.pid; sleep 60", timeout=1)
    assert r.timed_out and r.exit_code in (124, 137)
    # a zombie awaiting its reaper counts as dead: read the state from /proc
    assert sb.exec(_DEAD).stdout.strip() == "dead"
    assert sb.exec("echo still usable").stdout == "still usable\n"
    once = sb.exec_once("sleep 60 & echo $! > once.pid; sleep 60", timeout=1)
    assert once.timed_out and once.exit_code in (124, 137)
    assert sb.exec(_DEAD.replace("child.pid", "once.pid")).stdout.strip() == "dead"


#: Waits up to 5 s for the process in ``child.pid`` to end (a zombie counts as ended).
_DEAD = (
    "for i in $(seq 50); do s=$(cut -d' ' -f3 /proc/$(cat child.pid)/stat 2>/dev/null);"
    ' [ -z "$s" ] || [ "$s" = Z ] && { echo dead; exit; }; sleep 0.1; done; echo alive'
)


@check
def check_command_that_kills_its_shell_is_a_result(sb: Sandbox, ws: Path) -> None:
    r = sb.exec("echo before; kill -KILL $$")  # $$: the shell the command was given
    assert r.exit_code == 137 and not r.timed_out and r.stdout == "before\n"
    assert sb.exec("echo after").stdout == "after\n"  # a new shell


@check
def check_output_cap(sb: Sandbox, ws: Path) -> None:
    r = sb.exec("head -c 3000000 /dev/zero | tr '\\0' x; echo tail >&2", output_limit=1000)
    assert len(r.stdout) == 1000 and r.truncated and r.exit_code == 0
    assert r.stderr == "tail\n"
    small = sb.exec("echo small")
    assert not small.truncated


@check
def check_large_script(sb: Sandbox, ws: Path) -> None:
    big = "x" * 300_000  # past the kernel's 128 KiB single-argument limit
    assert sb.exec(f"printf %s {big} | wc -c").stdout.strip() == "300000"
    sb.write_file("big.txt", big)
    assert len(sb.read_file("big.txt")) == 300_000


@check
def check_non_root(sb: Sandbox, ws: Path) -> None:
    assert sb.exec("id -u").stdout.strip() != "0"
    assert sb.exec("cat /proc/self/status | grep CapEff").stdout.split()[-1] == "0000000000000000"


@check
def check_no_network(sb: Sandbox, ws: Path) -> None:
    with _host_listener() as port:
        probe = f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\""
        r = sb.exec(probe)
        assert r.exit_code != 0, "reached a listener on the host's loopback"
    ifaces = sb.exec(
        "python3 -c 'import socket; print(*(n for _, n in socket.if_nameindex()))'"
    ).stdout.split()
    assert ifaces == ["lo"], ifaces


@check
def check_read_only_rootfs(sb: Sandbox, ws: Path) -> None:
    assert sb.exec("touch /usr/local/corral-probe").exit_code != 0
    with pytest.raises(PermissionError):
        sb.write_file("/usr/local/corral-probe", "x")
    assert sb.exec("echo ok > /tmp/probe && cat /tmp/probe").stdout == "ok\n"


@check
def check_close(sb: Sandbox, ws: Path) -> None:
    with pytest.raises(SandboxNotRemoved):
        sb.confirm_gone()  # still running: a harvest would refuse it
    sb.close()
    sb.confirm_gone()
    sb.close()
    with pytest.raises(SandboxClosed):
        sb.exec("true")
    with pytest.raises(SandboxClosed):
        sb.read_file("x")


def _workdir(sb: Sandbox) -> str:
    spec = getattr(sb, "spec", None)
    return str(spec.workdir) if spec is not None else "/workspace"


@contextmanager
def _host_listener() -> Iterator[int]:
    """A TCP listener on the host's loopback that records connections."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()
