"""HTTP/1.1 framing on the gateway's socket, with nothing of the gateway in it.

``read_body`` reads one request's body from the connection, bounded
(``Content-Length`` or ``chunked``); an oversized body of at most
``DRAIN_BYTES`` is read and dropped so that the client gets the 413 rather
than a reset. ``HOP`` and ``AUTH`` name the headers that are never passed on
(hop-by-hop ones, and the client's keys on the way to an upstream);
``key_header`` is the real key in the header style the client used.
``runner.gateway.http`` does the rest with the standard library's
``http.server``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from io import BufferedIOBase

#: An oversized body up to this size is read and dropped before the 413 (else: closed unread).
DRAIN_BYTES = 128 * 1024 * 1024

#: Headers of one hop (and what the gateway sets itself): never passed on either way.
HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    ]
)
#: The client's key headers (it holds a dummy key): dropped on the way to an upstream.
AUTH = frozenset(("authorization", "api-key", "x-api-key"))


@dataclass(frozen=True, slots=True)
class BadBody:
    """Why a request body is refused: the status and message to answer, and whether the
    connection must be closed (the body was not read whole, so it cannot be reused)."""

    status: int
    message: str
    close: bool


def read_body(rfile: BufferedIOBase, headers: Message, limit: int) -> bytes | BadBody | None:
    """The request body of at most ``limit`` bytes, a ``BadBody`` to answer, or None when the
    client sent less than its ``Content-Length`` (it went away: close, answer nothing).

    ``OSError`` from the connection (an idle timeout) passes through.
    """
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(rfile, limit)
    try:
        n = int(headers.get("Content-Length") or 0)
    except ValueError:
        n = -1
    if n < 0:
        return BadBody(400, "corral gateway: bad Content-Length", close=True)
    if n > limit:
        drained = n <= DRAIN_BYTES and _discard(rfile, n)  # read it, so the 413 is what arrives
        return BadBody(413, f"corral gateway: request body over {limit} bytes", close=not drained)
    body = rfile.read(n)
    return body if len(body) == n else None


def key_header(sent: set[str], key: str) -> tuple[str, str]:
    """The real key in the header style the client used (Anthropic, Azure, else bearer);
    ``sent``: the names of the headers the client sent, in lower case."""
    if "x-api-key" in sent:
        return "x-api-key", key
    if "api-key" in sent:
        return "api-key", key
    return "Authorization", f"Bearer {key}"


def _discard(rfile: BufferedIOBase, n: int) -> bool:
    while n > 0:
        got = len(rfile.read(min(n, 1 << 20)))
        if not got:
            return False
        n -= got
    return True


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes | BadBody:
    out = bytearray()
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return BadBody(400, "corral gateway: bad chunked body", close=True)
        if size == 0:
            for _ in range(64):  # trailers, then the blank line
                if rfile.readline(8192) in (b"\r\n", b"\n", b""):
                    return bytes(out)
            return bytes(out)
        if len(out) + size > limit:
            return BadBody(413, f"corral gateway: request body over {limit} bytes", close=True)
        out += rfile.read(size)
        rfile.readline(8)
