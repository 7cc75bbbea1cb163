"""A scripted OpenAI-compatible model server on loopback: test agents and policies without tokens.

``ScriptedModelServer`` is a real HTTP server (the standard library's
``ThreadingHTTPServer``, bound to 127.0.0.1 only) that answers
``POST /v1/chat/completions`` with the next reply of a script: a message, tool
calls, or a fault (429 with ``Retry-After``, 500, a hang, malformed JSON, a
``context_length_exceeded`` 400, a connection reset). ``stream: true`` is answered with
server-sent events in the API's chunk format. Every request is recorded
(path, headers, body) so tests can check what a client sent, and the server
counts usage like the real API does.

    with ScriptedModelServer([ScriptedReply(tool_calls=[ToolCall("bash", {"command": "ls"})]),
                              ScriptedReply(content="done")]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")

When the script runs out, the server answers 500 with a message saying so
(a test that needs more replies fails loudly, not by hanging).

For pytest, the ``scripted_model_server`` fixture (``runner.llm.pytest_plugin``,
loaded through corral's ``pytest11`` entry point) starts servers and stops
them after the test. This module does not import pytest.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Fault = Literal["429", "500", "hang", "malformed", "too_long", "huge", "401", "reset"]
"""``reset``: the request is read, then the connection is reset (TCP RST, no response at all)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the scripted model makes: a tool name and its arguments.

    A ``str`` is sent as the arguments text verbatim (malformed JSON on purpose).
    """

    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One reply: ``content`` and/or ``tool_calls``, or a ``fault``."""

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] | list[ToolCall] = ()
    fault: Fault | None = None
    retry_after: float = 1.0
    hang_seconds: float = 30.0
    huge_bytes: int = 4 * 1024 * 1024
    prompt_tokens: int = 100
    completion_tokens: int = 20


@dataclass
class RecordedRequest:
    """What a client sent."""

    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: dict[str, Any] | None


@dataclass
class ScriptedModelServer:
    """Serve ``replies`` in order on ``127.0.0.1:port`` (0: any free port). Use as a context manager."""

    replies: Sequence[ScriptedReply]
    port: int = 0
    model: str = "scripted-model"
    requests: list[RecordedRequest] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(
                        200, {"object": "list", "data": [{"id": server.model, "object": "model"}]}
                    )
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                server.requests.append(
                    RecordedRequest(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                reply = server._take()
                if reply is None:
                    self._json(
                        500,
                        {"error": {"message": "scripted model: the script has no more replies"}},
                    )
                    return
                server._answer(self, reply, body or {})

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def extend(self, replies: Sequence[ScriptedReply]) -> None:
        """Add replies (a test can let the 'endpoint' recover)."""
        with self._lock:
            self.replies = [*self.replies, *replies]

    @property
    def served(self) -> int:
        return self._next

    def _take(self) -> ScriptedReply | None:
        with self._lock:
            if self._next >= len(self.replies):
                return None
            reply = self.replies[self._next]
            self._next += 1
            return reply

    def _answer(self, h: Any, reply: ScriptedReply, body: dict[str, Any]) -> None:
        if reply.fault == "reset":  # linger 0, closed at once: RST instead of FIN
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            os.close(h.connection.detach())  # not .close(): rfile/wfile would keep the fd open
            return
        if reply.fault == "429":
            h._json(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}},
                    {"Retry-After": f"{reply.retry_after:g}"})  # fmt: skip
            return
        if reply.fault == "500":
            h._json(500, {"error": {"message": "internal error", "type": "server_error"}})
            return
        if reply.fault == "401":
            h._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
            return
        if reply.fault == "too_long":
            h._json(400, {"error": {"message": "maximum context length exceeded",
                                    "type": "invalid_request_error", "code": "context_length_exceeded"}})  # fmt: skip
            return
        if reply.fault == "hang":
            time.sleep(reply.hang_seconds)
            h._json(500, {"error": {"message": "hung"}})
            return
        if reply.fault == "malformed":
            data = b'{"id": "x", "choices": [ this is not json'
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        if reply.fault == "huge":  # a reply far longer than any context: the client must cope
            reply = ScriptedReply(
                content="x" * reply.huge_bytes, completion_tokens=reply.huge_bytes // 4
            )
        completion = self._completion(reply)
        if body.get("stream"):
            self._stream(h, completion)
        else:
            h._json(200, completion)

    def _completion(self, reply: ScriptedReply) -> dict[str, Any]:
        calls = [
            {"id": f"call_{self._next}_{i}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments if isinstance(c.arguments, str)
                          else json.dumps(c.arguments)}}
            for i, c in enumerate(reply.tool_calls)
        ]  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        usage = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        }
        return {
            "id": f"chatcmpl-{self._next}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            ],
            "usage": usage,
        }

    def _stream(self, h: Any, completion: dict[str, Any]) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        for chunk in _chunks(completion):
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
        h.close_connection = True


def _chunks(completion: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The completion as the API's streaming chunks: role, content pieces, tool calls, usage."""
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"
    }
    msg = completion["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    content = msg.get("content") or ""
    for i in range(0, len(content), 16):
        yield chunk({"content": content[i : i + 16]})
    for i, call in enumerate(msg.get("tool_calls", [])):
        yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"], "arguments": ""}}]})  # fmt: skip
        args = call["function"]["arguments"]
        for j in range(0, len(args), 16):
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[j : j + 16]}}]})
    yield chunk({}, completion["choices"][0]["finish_reason"])
    yield base | {"choices": [], "usage": completion["usage"]}


StartServer = Callable[[Sequence[ScriptedReply]], ScriptedModelServer]
