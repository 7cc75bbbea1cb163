"""A threaded HTTP server on 127.0.0.1 for the tests' scripted upstreams (``responses_server``,
``anthropic_server``): start on a free port, the base URL, stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
