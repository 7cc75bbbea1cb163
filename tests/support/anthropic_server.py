"""A scripted Anthropic Messages API server on loopback: enough of ``/v1/messages`` for Claude Code.

Every request that offers the ``Bash`` tool gets the next scripted command as a
``tool_use`` block; everything else (and a request once the script is used
up) gets the text ``Done.``. Streaming requests are answered with the API's
server-sent events; usage is reported (100 prompt + 20 completion tokens).
Requests are recorded (path, lower-case headers, body).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import loopback


class ScriptedAnthropic:
    """Serve ``commands`` as Bash tool calls on ``127.0.0.1``; use as a context manager."""

    def __init__(self, commands: list[str]) -> None:
        self.commands = list(commands)
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return loopback.base_url(self._server)

    def __enter__(self) -> ScriptedAnthropic:
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers), None))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                outer.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                if "count_tokens" in self.path:
                    return self._json({"input_tokens": 10})
                block = outer._next(body)
                msg = {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "m"),
                    "content": [block],
                    "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                }
                if not body.get("stream"):
                    return self._json(msg)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()

                def ev(kind: str, data: dict[str, Any]) -> None:
                    self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

                start = dict(
                    msg,
                    content=[],
                    stop_reason=None,
                    usage={"input_tokens": 100, "output_tokens": 1},
                )
                ev("message_start", {"type": "message_start", "message": start})
                if block["type"] == "tool_use":
                    ev(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": dict(block, input={}),
                        },
                    )
                    ev(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": json.dumps(block["input"]),
                            },
                        },
                    )
                else:
                    ev(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                    ev(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": block["text"]},
                        },
                    )
                ev("content_block_stop", {"type": "content_block_stop", "index": 0})
                ev(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": 20},
                    },
                )
                ev("message_stop", {"type": "message_stop"})
                self.wfile.flush()

            def _json(self, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = loopback.serve(H)
        return self

    def __exit__(self, *a: object) -> None:
        loopback.stop(self._server)

    def _next(self, body: dict[str, Any]) -> dict[str, Any]:
        tools = [t.get("name") for t in body.get("tools", [])]
        with self._lock:
            if "Bash" in tools and self.commands:
                c = self.commands.pop(0)
                return {
                    "type": "tool_use",
                    "id": f"toolu_{len(self.commands)}",
                    "name": "Bash",
                    "input": {"command": c, "description": "run"},
                }
        return {"type": "text", "text": "Done."}
