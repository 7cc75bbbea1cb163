"""corral's forwarder inside the sandbox: ``127.0.0.1:PORT`` <-> the model gateway's unix socket.

The sandbox has no network (``--network none``); the only way out is the
gateway's unix socket, bind-mounted from the host. Agent CLIs want a base URL,
so this script listens on a loopback TCP port inside the container and relays
every connection, byte for byte in both directions, to a fresh connection on
that socket. It knows nothing of HTTP (the gateway on the host decides what
passes), except to answer a clear 502/503 when it cannot relay at all.

Standard library only, no corral imports: the host bind-mounts this very file
read-only into the sandbox and runs it with the image's ``python3``::

    python3 /run/corral/forwarder.py --listen 127.0.0.1:18080 --socket /run/corral/gateway/gw.sock

Bounds: at most ``--max-connections`` relays at once (more are answered 503
and closed), and a relay that moves no byte either way for ``--idle-timeout``
seconds is closed. A client that disconnects mid-stream ends only its own
relay. The host side imports ``relay`` from here for its own tunnels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

MAX_CONNECTIONS = 64
IDLE_TIMEOUT_S = 600.0
CHUNK = 64 * 1024


def relay(a: socket.socket, b: socket.socket, idle_s: float) -> int:
    """Copy bytes both ways between ``a`` and ``b`` until both ends are done; returns bytes moved.

    An end that reaches EOF is half-closed on the other side (``SHUT_WR``) and
    the other direction goes on. Returns early, without raising, when either
    socket fails (a peer that went away) or ``idle_s`` pass without a byte in
    either direction. Closes neither socket: that is the caller's.
    """
    a.settimeout(idle_s)  # bounds a blocked sendall to a peer that stopped reading
    b.settimeout(idle_s)
    peer = {a: b, b: a}
    moved = 0
    with selectors.DefaultSelector() as sel:
        for s in (a, b):
            sel.register(s, selectors.EVENT_READ)
        readable = 2
        while readable:
            ready = sel.select(idle_s)
            if not ready:
                return moved  # idle: nothing moved either way for idle_s
            for key, _ in ready:
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst = peer[src]
                try:
                    data = src.recv(CHUNK)
                    if data:
                        dst.sendall(data)
                        moved += len(data)
                        continue
                    sel.unregister(src)
                    readable -= 1
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    return moved
    return moved


@contextlib.contextmanager
def unix_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """``path`` as an address ``bind``/``connect`` accept, also past AF_UNIX's 108 bytes.

    A long path is reached through ``/proc/self/fd/N/NAME``, N an ``O_PATH``
    descriptor of its directory held open for the ``with`` block.
    """
    path = os.fspath(path)
    if len(os.fsencode(path)) < 100:
        yield path
        return
    head, name = os.path.split(path)
    fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def http_error(status: int, message: str) -> bytes:
    """A minimal HTTP/1.1 response with an OpenAI-style JSON error body (``Connection: close``)."""
    reason = {502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    body = json.dumps({"error": {"message": message, "type": "corral_forwarder"}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _answer(conn: socket.socket, status: int, message: str) -> None:
    """Send an error, then read what the client sent until it closes (1 MiB, 5 s at most):
    closing on unread data would reset the connection, and the reset can overtake the answer."""
    deadline = time.monotonic() + 5
    try:
        conn.settimeout(5)
        conn.sendall(http_error(status, message))
        conn.shutdown(socket.SHUT_WR)
        drained = 0
        while drained < 1 << 20 and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            data = conn.recv(CHUNK)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass


#: Connections being refused at once (each answered in a thread of its own); past it: closed.
_REFUSING = threading.BoundedSemaphore(16)


def refuse_aside(conn: socket.socket, status: int, message: str) -> None:
    """Answer ``status`` and close ``conn`` in a thread, so accepting goes on; under a flood
    (more than 16 refusals at once) the connection is just closed."""
    if not _REFUSING.acquire(blocking=False):
        conn.close()
        return

    def answer() -> None:
        try:
            with conn:
                _answer(conn, status, message)
        finally:
            _REFUSING.release()

    threading.Thread(target=answer, daemon=True).start()


def _serve_one(conn: socket.socket, path: str, idle_s: float, slots: threading.Semaphore) -> None:
    try:
        with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            up.settimeout(idle_s)
            try:
                with unix_path(path) as address:
                    up.connect(address)
            except OSError as exc:
                _answer(conn, 502, f"corral forwarder: the gateway at {path} is not reachable "
                                   f"({exc.strerror or exc})")  # fmt: skip
                return
            relay(conn, up, idle_s)
    except OSError:
        pass  # the client went away: only this relay ends
    finally:
        slots.release()


def serve(
    host: str,
    port: int,
    path: str,
    *,
    max_connections: int = MAX_CONNECTIONS,
    idle_s: float = IDLE_TIMEOUT_S,
    ready: Callable[[int], object] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Accept on ``host:port`` and relay each connection to the unix socket ``path``.

    ``ready`` is called with the bound port once connections are accepted (port
    0 picks a free one). Runs until ``stop`` is set (checked every 0.2 s) or
    forever. Raises ``OSError`` when the port cannot be bound.
    """
    slots = threading.BoundedSemaphore(max_connections)
    with socket.create_server((host, port)) as srv:
        srv.settimeout(0.2)
        if ready is not None:
            ready(srv.getsockname()[1])
        while stop is None or not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            if not slots.acquire(blocking=False):
                refuse_aside(
                    conn, 503, f"corral forwarder: more than {max_connections} connections"
                )
                continue
            threading.Thread(
                target=_serve_one, args=(conn, path, idle_s, slots), daemon=True
            ).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="relay 127.0.0.1:PORT to corral's gateway socket")
    p.add_argument("--listen", default="127.0.0.1:18080", help="HOST:PORT to listen on (loopback)")
    p.add_argument("--socket", required=True, help="the gateway's unix socket")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S)
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        p.error(f"--listen must be a loopback HOST:PORT, got {args.listen!r}")
    if args.max_connections < 1 or args.idle_timeout <= 0:
        p.error("--max-connections and --idle-timeout must be positive")
    try:
        serve(host, int(port), args.socket, max_connections=args.max_connections,
              idle_s=args.idle_timeout)  # fmt: skip
    except OSError as exc:
        print(f"corral forwarder: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
