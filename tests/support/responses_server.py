"""A scripted OpenAI Responses API server on loopback: enough of ``/v1/responses`` for Codex CLI.

Every request that offers a shell tool (``exec_command``, ``shell_command`` or
``shell``, whichever the client declares) gets the next scripted command as a
``function_call`` output item with that tool's argument shape; everything else
(and a request once the script is used up) gets the assistant text ``Done.``.
A script entry may instead be a function of the request body returning
``(tool name, arguments)``: any call, built from what the client sent so far
(Codex's ``write_stdin`` needs the session id its last tool output named).
``stream: true`` is answered with the API's server-sent events
(``response.created``, ``response.output_item.added``/``done``,
``response.output_text.delta`` for text, ``response.completed`` carrying the
response and its usage); otherwise with the response object as JSON. Usage is
reported as 100 input + 20 output tokens a response. Requests are recorded
(path, lower-case headers, body). Other paths answer 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import loopback

#: What one scripted response reports (the gateway's count is checked against it).
INPUT_TOKENS, OUTPUT_TOKENS = 100, 20
SHELL_TOOLS = ("exec_command", "shell_command", "shell")
#: A scripted call built from the request: ``(tool name, arguments)``.
Call = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]


def shell_arguments(tool: str, command: str) -> dict[str, Any]:
    """The arguments of ``tool`` that run ``command`` (Codex's three shell tool shapes)."""
    if tool == "exec_command":
        return {"cmd": command}
    if tool == "shell_command":
        return {"command": command}
    return {"command": ["bash", "-lc", command]}


class ScriptedResponses:
    """Serve ``commands`` as shell function calls on ``127.0.0.1``; use as a context manager."""

    def __init__(self, commands: Sequence[str | Call], *, model: str = "scripted-model") -> None:
        self.commands: list[str | Call] = list(commands)
        self.model = model
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return loopback.base_url(self._server)

    @property
    def served(self) -> int:
        """How many ``/responses`` requests were answered."""
        return self._count

    def __enter__(self) -> ScriptedResponses:
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers), None))
                self._send(404, "application/json", b'{"error": {"message": "no route"}}')

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    body = {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.path, headers, body))
                if not self.path.rstrip("/").endswith("/responses"):
                    self._send(404, "application/json", b'{"error": {"message": "no route"}}')
                    return
                response = outer._respond(body if isinstance(body, dict) else {})
                if not body.get("stream"):
                    self._send(200, "application/json", json.dumps(response).encode())
                    return
                self._send(200, "text/event-stream", b"".join(_events(response)))

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self._server = loopback.serve(H)
        return self

    def __exit__(self, *a: object) -> None:
        loopback.stop(self._server)

    def _respond(self, body: dict[str, Any]) -> dict[str, Any]:
        """The next scripted response object (``status: completed``, with usage)."""
        offered = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        tool = next((t for t in SHELL_TOOLS if t in offered), None)
        with self._lock:
            self._count += 1
            n = self._count
            entry = self.commands.pop(0) if tool is not None and self.commands else None
        item: dict[str, Any]
        if entry is not None and tool is not None:
            name, args = (
                (tool, shell_arguments(tool, entry)) if isinstance(entry, str) else entry(body)
            )
            item = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                    "name": name, "arguments": json.dumps(args), "status": "completed"}  # fmt: skip
        else:
            item = {"type": "message", "id": f"msg_{n}", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}  # fmt: skip
        return {
            "id": f"resp_{n}", "object": "response", "status": "completed",
            "model": body.get("model") or self.model, "output": [item],
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS,
                      "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS},
        }  # fmt: skip


def _events(response: dict[str, Any]) -> list[bytes]:
    """``response`` as the Responses API's server-sent events, usage in the last one."""

    def ev(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    item = response["output"][0]
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    out = [ev("response.created", {"response": started})]
    out.append(ev("response.output_item.added", {"output_index": 0,
                                                 "item": {**item, "status": "in_progress"}}))  # fmt: skip
    if item["type"] == "message":
        text = item["content"][0]["text"]
        out.append(ev("response.output_text.delta", {"item_id": item["id"], "output_index": 0,
                                                     "content_index": 0, "delta": text}))  # fmt: skip
    out.append(ev("response.output_item.done", {"output_index": 0, "item": item}))
    out.append(ev("response.completed", {"response": response}))
    return out
