"""Copying an upstream's response back to the client as it arrives, charged before its end.

A JSON body passes through piece by piece and an SSE stream event by event;
``UsageMeter`` reads the usage on the way and ``Bill`` charges it before each
write. What ends a response (a JSON body's last piece, a stream's end event)
is held back until the request is charged and recorded, so an agent that
exits on its last reply cannot outrun the budget or the event log. Any answer
may echo the key: an error is read whole (at most ``MAX_ERROR_BYTES``) and
passed on redacted; every other body goes through ``runner.gateway.scrub``
(a key split across pieces or stream events included), its headers too, and
is sent chunked (a key taken out changes its length). The client is the standard library's
``BaseHTTPRequestHandler`` of the connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import httpx2 as httpx

from runner.gateway.scrub import Scrubber
from runner.gateway.usage import Bill, UsageMeter
from runner.gateway.wire import HOP

#: An upstream's error body is passed on (redacted) up to this size.
MAX_ERROR_BYTES = 256 * 1024
#: The events that end a stream (OpenAI's ``[DONE]``, Anthropic's ``message_stop``, the
#: Responses API's ``response.completed``): held until the request is charged and recorded.
_ENDS_STREAM = re.compile(rb"data: ?\[DONE\]|event: ?(message_stop|response\.completed)")


def copy_response(
    client: BaseHTTPRequestHandler,
    response: httpx.Response,
    meter: UsageMeter,
    changes: bool,
    bill: Bill | None,
    record: Callable[[], None],
    redact: Callable[[str], str],
    scrub: Scrubber,
) -> None:
    """Copy ``response`` to ``client`` as it arrives; ``record`` runs before its last bytes.

    ``bill`` is None for a request that is not a model's (nothing to charge);
    ``changes``: the meter may drop bytes (a usage-only chunk the gateway asked
    for), so the upstream's length is not passed on. ``redact`` cleans an error
    body and every header; ``scrub`` takes the keys out of every other body as it
    streams (``runner.gateway.scrub``). ``httpx.HTTPError`` (the upstream broke off)
    and ``OSError`` (the client went away) pass through.
    """
    status = response.status_code
    no_body = client.command == "HEAD" or status in (204, 304) or status < 200

    def settle(final: bool = False) -> None:
        if bill is not None:
            bill.settle(meter, status, final=final)

    if status >= 400 and not no_body:  # an error may echo the key: read it whole, redacted
        _copy_error(client, response, meter, record, redact)
        return
    changes = changes or scrub.active  # a key taken out changes the length
    length = response.headers.get("content-length")
    chunked = not no_body and (changes or length is None) and client.request_version == "HTTP/1.1"
    client.send_response_only(status, response.reason_phrase)
    for k, v in response.headers.multi_items():
        if k.lower() not in HOP:
            client.send_header(k, scrub.text(v))
    if chunked:
        client.send_header("Transfer-Encoding", "chunked")
    elif length is not None and (no_body or not changes):
        client.send_header("Content-Length", length)
    elif not no_body:
        client.send_header("Connection", "close")
        client.close_connection = True
    client.end_headers()
    if no_body:
        record()
        return
    held, ending = b"", False  # what ends the response waits until it is charged and recorded:
    for data in response.iter_raw():  # a JSON body's last piece, a stream's end event and on
        out = meter.feed(data)
        ending = ending or bool(_ENDS_STREAM.search(out))  # seen before the scrubber holds any
        out = scrub.feed(out)
        if not meter.sse:
            held, out = out, held
        elif ending:
            held, out = held + out, b""
        settle()
        _write(client, out, chunked)
    tail = held + scrub.feed(meter.finish()) + scrub.finish()
    record()
    _write(client, tail, chunked)
    if chunked:
        client.wfile.write(b"0\r\n\r\n")


def _copy_error(
    client: BaseHTTPRequestHandler,
    response: httpx.Response,
    meter: UsageMeter,
    record: Callable[[], None],
    redact: Callable[[str], str],
) -> None:
    """An error answer: read whole (capped), recorded, then passed on redacted."""
    body = bytearray()
    for data in response.iter_raw():
        body += meter.feed(data)
        if len(body) > MAX_ERROR_BYTES:
            break
    meter.finish()
    record()
    text = redact(bytes(body[:MAX_ERROR_BYTES]).decode(errors="replace"))
    client.send_response_only(response.status_code, response.reason_phrase)
    for k, v in response.headers.multi_items():
        if k.lower() not in HOP:
            client.send_header(k, v)
    client.send_header("Content-Length", str(len(text.encode())))
    client.end_headers()
    client.wfile.write(text.encode())


def _write(client: BaseHTTPRequestHandler, data: bytes, chunked: bool) -> None:
    if data:
        client.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
