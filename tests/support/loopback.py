"""A threaded HTTP server on 127.0.0.1 for the tests' scripted upstreams (``responses_server``,
``anthropic_server``): start on a free port, the base URL, stop; and ``upstream_of``, a server
of one handler function (HTTP or HTTPS, on any loopback address) for the duration of a block."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """``handler`` served on a free loopback port by a daemon thread (and daemon request threads)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def base_url(server: ThreadingHTTPServer | None) -> str:
    """The server's ``/v1`` base URL."""
    assert server is not None, "server not started"
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def stop(server: ThreadingHTTPServer | None) -> None:
    """Stop serving and close the socket."""
    assert server is not None, "server not started"
    server.shutdown()
    server.server_close()


@contextmanager
def upstream_of(
    handle: Callable[[BaseHTTPRequestHandler], None],
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """A loopback HTTP(S) server (on ``host``, any of 127/8) answering every request with
    ``handle``; yields its base URL."""

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            handle(self)

        do_POST = do_GET

    server = ThreadingHTTPServer((host, 0), H)
    server.daemon_threads = True
    if tls is not None:  # handshakes the client refuses are expected: no tracebacks for them
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://{host}:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
