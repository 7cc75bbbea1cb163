"""The gateway's HTTP side: the unix-socket server and one request's forwarding.

``runner.gateway.core`` decides (routes, budgets, accounting); this module moves
bytes: it reads a request from the forwarder's connection (standard library
``http.server`` parsing, bounded body), sends it upstream with ``httpx2``
(the real key in, the client's key headers out) and copies the response back
as it arrives, SSE event by event, while ``runner.gateway.usage`` reads and
charges the ``usage`` in it. ``CONNECT`` to an allowed host is a byte tunnel
(``sandbox.forwarder.relay``). A listed host is reached at the address its
route was checked with (``Route.url``), never looked up again; its name goes
in the ``Host`` header.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2 as httpx

from runner.gateway.usage import Bill, UsageMeter, prepare_request
from sandbox.forwarder import refuse_aside, relay

if TYPE_CHECKING:
    from runner.gateway.core import Gateway, Route

log = logging.getLogger(__name__)

#: An upstream's error body is passed on (redacted) up to this size.
MAX_ERROR_BYTES = 256 * 1024
#: An oversized body up to this size is read and dropped before the 413 (else: closed unread).
DRAIN_BYTES = 128 * 1024 * 1024
#: Seconds a request waits for one of the ``max_concurrent`` upstream slots.
QUEUE_WAIT_S = 120.0

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
AUTH = frozenset(("authorization", "api-key", "x-api-key"))
#: The events that end a stream (OpenAI's ``[DONE]``, Anthropic's ``message_stop``, the
#: Responses API's ``response.completed``): held until the request is charged and recorded.
_ENDS_STREAM = re.compile(rb"data: ?\[DONE\]|event: ?(message_stop|response\.completed)")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP on the gateway's unix socket, at most ``max_connections`` at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(str(gateway.socket_path), Handler, bind_and_activate=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.gateway._conn_slots.acquire(blocking=False):
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
            self.gateway._conn_slots.release()

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
                headers.append(_key_header({k.lower() for k in self.headers}, up.api_key))
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
        bill = Bill(gw, model, len(body)) if up is not None else None
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
            self._relay_response(response, meter, added, bill, record)
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

    def _relay_response(
        self,
        response: httpx.Response,
        meter: UsageMeter,
        changes: bool,
        bill: Bill | None,
        record: Callable[[], None],
    ) -> None:
        """Copy the response to the client as it arrives; ``record`` runs before its last bytes."""
        status = response.status_code
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200

        def settle(final: bool = False) -> None:
            if bill is not None:
                bill.settle(meter, status, final=final)

        if status >= 400 and not no_body:  # an error may echo the key: read it whole, redacted
            self._error_response(response, meter, record)
            return
        length = response.headers.get("content-length")
        chunked = not no_body and (changes or length is None) and self.request_version == "HTTP/1.1"
        self.send_response_only(status, response.reason_phrase)
        for k, v in response.headers.multi_items():
            if k.lower() not in HOP:
                self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None and (no_body or not changes):
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if no_body:
            record()
            return
        held = b""  # what ends the response waits until it is charged and recorded:
        for data in response.iter_raw():  # a JSON body's last piece, a stream's end event
            out = meter.feed(data)
            if not meter.sse or _ENDS_STREAM.search(out):
                held, out = out, held
            settle()
            self._write(out, chunked)
        tail = held + meter.finish()
        record()
        self._write(tail, chunked)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _error_response(
        self, response: httpx.Response, meter: UsageMeter, record: Callable[[], None]
    ) -> None:
        body = bytearray()
        for data in response.iter_raw():
            body += meter.feed(data)
            if len(body) > MAX_ERROR_BYTES:
                break
        meter.finish()
        record()
        text = self.server.gateway.redact(bytes(body[:MAX_ERROR_BYTES]).decode(errors="replace"))
        self.send_response_only(response.status_code, response.reason_phrase)
        for k, v in response.headers.multi_items():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(text.encode())))
        self.end_headers()
        self.wfile.write(text.encode())

    def _write(self, data: bytes, chunked: bool) -> None:
        if data:
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)

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
        limit = self.server.gateway.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0:
            self._refuse(
                400, "corral gateway: bad Content-Length", "invalid_request_error", close=True
            )
            return None
        if n > limit:
            drained = n <= DRAIN_BYTES and self._discard(n)  # read it, so the 413 is what arrives
            self._refuse(413, f"corral gateway: request body over {limit} bytes",
                         "invalid_request_error", close=not drained)  # fmt: skip
            return None
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            return None
        return body

    def _discard(self, n: int) -> bool:
        while n > 0:
            got = len(self.rfile.read(min(n, 1 << 20)))
            if not got:
                return False
            n -= got
        return True

    def _read_chunked(self, limit: int) -> bytes | None:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self._refuse(
                    400, "corral gateway: bad chunked body", "invalid_request_error", close=True
                )
                return None
            if size == 0:
                for _ in range(64):  # trailers, then the blank line
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        return bytes(out)
                return bytes(out)
            if len(out) + size > limit:
                self._refuse(413, f"corral gateway: request body over {limit} bytes", "invalid_request_error", close=True)  # fmt: skip
                return None
            out += self.rfile.read(size)
            self.rfile.readline(8)

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


def _key_header(sent: set[str], key: str) -> tuple[str, str]:
    """The real key in the header style the client used (Anthropic, Azure, else bearer)."""
    if "x-api-key" in sent:
        return "x-api-key", key
    if "api-key" in sent:
        return "api-key", key
    return "Authorization", f"Bearer {key}"
