"""The gateway's HTTP side: the unix-socket server and one request's forwarding.

``runner.gateway.core`` decides (routes, budgets, accounting); this module
asks it through ``Gatekeeper``, the few things it needs of it, and never
imports it (``core`` starts ``Server``). This module moves bytes: it reads a
request from the forwarder's connection (standard library ``http.server``
parsing, the bounded body of ``runner.gateway.wire``), sends it upstream with
``httpx2`` (the real key in, the client's key headers out) and copies the
response back as it arrives (``runner.gateway.response``), SSE event by
event, while ``runner.gateway.usage`` reads and charges the ``usage`` in it.
``CONNECT`` to an allowed host is a byte tunnel (``sandbox.forwarder.relay``).
A listed host is reached at the address its route was checked with
(``Route.url``), never looked up again; its name goes in the ``Host`` header.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2 as httpx

from runner.gateway.response import copy_response
from runner.gateway.routes import Route, Validate
from runner.gateway.scrub import Scrubber
from runner.gateway.usage import Bill, UsageMeter, prepare_request
from runner.gateway.wire import AUTH, HOP, BadBody, key_header, read_body
from sandbox.forwarder import refuse_aside, relay

log = logging.getLogger(__name__)

#: Seconds a request waits for one of the ``max_concurrent`` upstream slots.
QUEUE_WAIT_S = 120.0


class Gatekeeper(Protocol):
    """What the HTTP side asks of the gateway (``runner.gateway.core.Gateway``): where a
    request goes, whether a budget is spent, what an answer cost, and the events."""

    @property
    def socket_path(self) -> Path: ...
    @property
    def idle_timeout_s(self) -> float: ...
    @property
    def connect_timeout_s(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...
    @property
    def validate(self) -> Validate | None: ...
    @property
    def client(self) -> httpx.Client:
        """The upstream HTTP client; raises ``GatewayError`` when the gateway is not started."""

    def resolve(self, method: str, target: str) -> Route: ...
    def acquire(self, timeout: float) -> bool:
        """One of the slots for requests in flight upstream; False after ``timeout`` seconds."""

    def release(self) -> None: ...
    def budget_refusal(self) -> str | None: ...
    def charge(self, model: str, prompt: int, completion: int) -> float: ...
    def emit(self, kind: str, data: Mapping[str, Any]) -> None: ...
    def redact(self, text: str) -> str: ...
    def scrubber(self, *, sse: bool) -> Scrubber: ...


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP on the gateway's unix socket, at most ``max_connections`` at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, gateway: Gatekeeper, max_connections: int) -> None:
        self.gateway = gateway
        self._conn_slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(str(gateway.socket_path), Handler, bind_and_activate=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._conn_slots.acquire(blocking=False):
            refuse_aside(request, 503, "corral gateway: too many connections")
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._conn_slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed unexpectedly: logged (redacted), never printed to the terminal."""
        exc = sys.exc_info()[1]
        log.warning("gateway: a request failed: %s", self.gateway.redact(repr(exc))[:500])

    def end_connections(self) -> None:
        """Shut every open connection down (their threads then end on their own)."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    """One connection from the forwarder: any number of requests (keep-alive)."""

    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.gateway.idle_timeout_s)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gateway: " + format, *args)

    def address_string(self) -> str:
        return "sandbox"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method is routed (and refused unless allowed)
            return self._dispatch
        raise AttributeError(name)

    # ------------------------------------------------------------ one request

    def _dispatch(self) -> None:
        gw, start = self.server.gateway, time.monotonic()
        route = gw.resolve(self.command, self.path)
        refused = f"corral gateway: {route.reason}"
        if self.command == "CONNECT":
            if route.kind == "refused":
                self._refuse(403, refused, "corral_gateway_refused", close=True)
            else:
                self._tunnel(route, start)
            return
        # a slot before the body: at most max_concurrent bodies are held in memory at once
        if not gw.acquire(QUEUE_WAIT_S):
            self._refuse(503, "corral gateway: too many requests in flight",
                         "corral_gateway_busy", close=True)  # fmt: skip
            return
        try:
            self._handle(route, refused, start)
        finally:
            gw.release()

    def _handle(self, route: Route, refused: str, start: float) -> None:
        gw = self.server.gateway
        body = self._read_body()  # first, even for a refusal: closing on unread data resets
        if body is None:
            return
        if route.kind == "refused":
            self._refuse(403, refused, "corral_gateway_refused")
        elif route.kind == "local":
            self._validate(body)
        elif route.upstream is not None and (refusal := gw.budget_refusal()) is not None:
            self._refuse(403, refusal, "insufficient_quota", code="corral_budget_spent")
        else:
            self._forward(route, body, start)

    def _forward(self, route: Route, body: bytes, start: float) -> None:
        gw, up = self.server.gateway, route.upstream
        drop = HOP | AUTH if up is not None else HOP
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in drop]
        headers.append(("Accept-Encoding", "identity"))  # usage must be readable
        model, streamed, added = "", False, False
        if up is not None:
            body, model, streamed, added = prepare_request(urlsplit(route.url).path, body)
            if up.api_key:
                headers.append(key_header({k.lower() for k in self.headers}, up.api_key))
        elif route.name:  # the URL holds the checked address; the server wants the name
            headers.append(("Host", route.name))
        summary: dict[str, Any] = {"method": self.command, "path": self._path(),
                                   "host": _hostname(route),
                                   "upstream": "model" if up is not None else "host",
                                   "model": model, "streamed": streamed}  # fmt: skip
        try:
            request = gw.client.build_request(
                self.command, route.url, headers=headers, content=body
            )
        except (httpx.InvalidURL, ValueError) as exc:
            self._refuse(400, f"corral gateway: cannot forward this request ({exc})", "invalid_request_error")  # fmt: skip
            return
        try:
            response = gw.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            self._upstream_failed(504, "timed out", exc, summary, start)
            return
        except httpx.HTTPError as exc:
            self._upstream_failed(502, "is unreachable", exc, summary, start)
            return
        meter = UsageMeter(
            sse="text/event-stream" in response.headers.get("content-type", ""),
            drop_usage_only=added,
        )
        bill = Bill(gw.charge, model, len(body)) if up is not None else None
        recorded = False

        def record(error: str = "") -> None:
            """Settle the bill and log the request, once: before the client can have the end."""
            nonlocal recorded
            if recorded:
                return
            recorded = True
            if bill is not None:
                bill.settle(meter, response.status_code, final=True)
                summary.update(model=model or meter.model, **bill.summary())
            summary.update(status=response.status_code, bytes=meter.size)
            if error:
                summary["error"] = error
            summary["duration_s"] = round(time.monotonic() - start, 3)
            gw.emit("gateway_request", summary)

        error = ""
        try:
            scrub = gw.scrubber(sse=meter.sse)
            copy_response(self, response, meter, added, bill, record, gw.redact, scrub)
        except httpx.HTTPError as exc:  # the upstream broke off mid-response
            error = gw.redact(f"upstream broke off: {exc.__class__.__name__}: {exc}")[:300]
            self.close_connection = True
        except OSError:  # the client went away mid-stream: stop reading, count what came
            error = "client disconnected"
            self.close_connection = True
        finally:
            response.close()
            meter.finish()
            record(error)

    def _tunnel(self, route: Route, start: float) -> None:
        gw = self.server.gateway
        host, _, port = route.url.rpartition(":")  # the checked address, not the name
        summary: dict[str, Any] = {
            "method": "CONNECT",
            "host": _hostname(route),
            "path": "",
            "upstream": "host",
        }
        try:
            up = socket.create_connection((host.strip("[]"), int(port)), gw.connect_timeout_s)
        except OSError as exc:
            self._upstream_failed(502, "is unreachable", exc, summary, start)
            return
        with up:
            self.send_response_only(200, "Connection Established")
            self.end_headers()
            summary.update(status=200, bytes=relay(self.connection, up, gw.idle_timeout_s))
        self.close_connection = True
        summary["duration_s"] = round(time.monotonic() - start, 3)
        gw.emit("gateway_request", summary)

    def _validate(self, body: bytes) -> None:
        gw = self.server.gateway
        try:
            command = json.loads(body)["command"]
            if not isinstance(command, str):
                raise TypeError("command must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            self._json(400, {"error": {"message": f"corral gateway: expected {{\"command\": \"...\"}} ({exc})"}})  # fmt: skip
            return
        assert gw.validate is not None  # resolve() routes here only when it is set
        try:
            decision, reason = gw.validate(command)
        except Exception as exc:  # the hook fails closed on any non-answer; say why here
            log.warning("gateway: the command validator failed: %s", exc)
            self._json(500, {"error": {"message": f"corral gateway: the validator failed ({exc})"}})
            return
        self._json(200, {"decision": decision, "reason": reason})

    # ------------------------------------------------------------ pieces

    def _read_body(self) -> bytes | None:
        """The request body (bounded), or None after answering why it cannot be read."""
        body = read_body(self.rfile, self.headers, self.server.gateway.max_body_bytes)
        if isinstance(body, BadBody):
            self._refuse(body.status, body.message, "invalid_request_error", close=body.close)
            return None
        if body is None:  # the client went away mid-body
            self.close_connection = True
        return body

    def _path(self) -> str:
        """The request's path for events: no query string (it may carry a credential), capped."""
        return self.server.gateway.redact(urlsplit(self.path).path)[:300]

    def _host(self) -> str:
        if self.command == "CONNECT":
            return self.path.rpartition(":")[0]
        return urlsplit(self.path).hostname or ""

    def _refuse(
        self, status: int, message: str, kind: str, code: str | None = None, *, close: bool = False
    ) -> None:
        """Answer an OpenAI-style JSON error and record ``gateway_refused``; ``close``: the
        request's body was not read, so the connection cannot be reused."""
        gw = self.server.gateway
        gw.emit("gateway_refused", {"method": self.command, "host": self._host(),
                                    "path": self._path() if self.command != "CONNECT" else "",
                                    "status": status, "reason": message})  # fmt: skip
        self.close_connection = self.close_connection or close
        error = {"message": message, "type": kind, **({"code": code} if code else {})}
        self._json(status, {"error": error})

    def _upstream_failed(
        self, status: int, what: str, exc: BaseException, summary: dict[str, Any], start: float
    ) -> None:
        gw = self.server.gateway
        detail = gw.redact(f"{exc.__class__.__name__}: {exc}")[:300]
        summary.update(status=status, error=detail, duration_s=round(time.monotonic() - start, 3))
        gw.emit("gateway_request", summary)
        self.close_connection = True
        self._json(status, {"error": {"message": f"corral gateway: the upstream {what} ({detail})",
                                      "type": "corral_gateway_upstream"}})  # fmt: skip

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


def _hostname(route: Route) -> str:
    """The host a request went to, for events: a listed host by its name, else the URL's."""
    return urlsplit(f"//{route.name}" if route.name else route.url).hostname or ""
