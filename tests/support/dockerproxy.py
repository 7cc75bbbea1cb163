"""A fault-injecting relay in front of the real Docker engine's socket (for removal failures).

Every request is relayed to ``/var/run/docker.sock`` unchanged, except that
plain requests get ``Connection: close`` (one request per connection, so each
one is seen here) and, while ``refuse_delete`` is set, ``DELETE
/containers/...`` is answered ``500`` without reaching the engine. Upgraded
connections (``docker exec`` attach) are relayed both ways until one side closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"
_BODY = b'{"message":"injected: removal refused"}\n'
_REFUSAL = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class EngineProxy:
    """Listen on ``path`` (a unix socket); ``url`` is what ``DOCKER_HOST`` takes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.refuse_delete = True
        self.deletes_refused = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target = lines[0].split(b" ")[:2]
            if (
                self.refuse_delete
                and method == b"DELETE"
                and target.split(b"?")[0].find(b"/containers/") >= 0
            ):
                self.deletes_refused += 1
                conn.sendall(_REFUSAL)
                return
            upgrade = any(line.lower().startswith(b"upgrade:") for line in lines[1:])
            if not upgrade:
                lines = [x for x in lines if not x.lower().startswith(b"connection:")]
                lines.append(b"Connection: close")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
                up.connect(ENGINE_SOCKET)
                up.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + rest)
                pump = threading.Thread(target=_pump, args=(conn, up), daemon=True)
                pump.start()
                _pump(up, conn)
                pump.join(5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends; then half-close ``dst``."""
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
