"""Usage metering of the model gateway: what a response says it cost, read as it passes.

``prepare_request`` asks a streamed chat completion for its usage;
``UsageMeter`` reads ``usage`` out of a JSON body or an SSE stream without
holding it back (OpenAI, Responses and Anthropic shapes); ``Bill`` charges
the gateway (its ``charge``) as soon as the usage is known, before the client
can have the end of the response.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

#: An SSE event longer than this is passed on unparsed.
MAX_EVENT_BYTES = 1024 * 1024
#: How much of a JSON response is kept to read its usage (past it: the tail only).
MAX_PARSE_BYTES = 16 * 1024 * 1024
TAIL_BYTES = 64 * 1024
#: A response that reports no usage is estimated at this many bytes a token.
BYTES_PER_TOKEN = 4
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_CHAT = re.compile(r"/(chat/)?completions$")

#: Counts one answer's tokens against the budgets and returns its cost in USD
#: (``Gateway.charge``): ``(model, prompt tokens, completion tokens)``.
Charge = Callable[[str, int, int], float]


def prepare_request(path: str, body: bytes) -> tuple[bytes, str, bool, bool]:
    """``(body to send, model, streamed, usage chunk added)`` for a request to an upstream.

    A streamed (chat) completion that does not ask for usage gets
    ``stream_options.include_usage`` so the gateway can count it.
    """
    try:
        obj = json.loads(body) if body else None
    except ValueError:
        return body, "", False, False
    if not isinstance(obj, dict):
        return body, "", False, False
    model = str(obj.get("model") or "")
    streamed = obj.get("stream") is True
    options = obj.get("stream_options")
    if not streamed or not _CHAT.search(path):
        return body, model, streamed, False
    if isinstance(options, dict) and options.get("include_usage"):
        return body, model, streamed, False
    obj["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return json.dumps(obj).encode(), model, streamed, True


class UsageMeter:
    """Reads ``usage`` out of a response passing through (JSON body or SSE events).

    ``feed`` returns the bytes to pass on: all of them, except (``drop_usage_only``)
    the usage-only chunk the gateway asked for on behalf of a client that did not.
    OpenAI (``prompt_tokens``/``completion_tokens``), Responses and Anthropic
    (``input_tokens``/``output_tokens``, cache tokens included) shapes are read;
    counts seen more than once in a stream are merged by maximum.
    """

    def __init__(self, *, sse: bool, drop_usage_only: bool = False) -> None:
        self.sse, self.drop = sse, drop_usage_only
        self.size = 0
        self.prompt = self.completion = 0
        self.found = False
        self.model = ""
        self._buf = bytearray()
        self._tail = b""
        self._overflow = False

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        if not self.sse:
            self._tail = (self._tail + data)[-TAIL_BYTES:]
            if not self._overflow and len(self._buf) + len(data) <= MAX_PARSE_BYTES:
                self._buf += data
            else:
                self._overflow, self._buf = True, bytearray()
            return data
        self._buf += data
        out = bytearray()
        while (m := _EVENT_END.search(self._buf)) is not None:
            event = bytes(self._buf[: m.end()])
            del self._buf[: m.end()]
            if self._keep(event):
                out += event
        if len(self._buf) > MAX_EVENT_BYTES:  # no event boundary in sight: pass it on unread
            out += self._buf
            self._buf.clear()
        return bytes(out)

    def finish(self) -> bytes:
        """The bytes still held back (an unterminated last event); reads a JSON body's usage."""
        rest, self._buf = bytes(self._buf), bytearray()
        if self.sse:
            return rest if not rest or self._keep(rest) else b""
        if not self._overflow:
            with contextlib.suppress(ValueError):
                self.observe(json.loads(rest))
        if not self.found:  # too large to parse whole (or not JSON): the last "usage" in the tail
            at = self._tail.rfind(b'"usage"')
            brace = self._tail.find(b"{", at) if at >= 0 else -1
            if brace >= 0:
                with contextlib.suppress(ValueError):
                    obj, _ = json.JSONDecoder().raw_decode(
                        self._tail[brace:].decode(errors="replace")
                    )
                    self.observe({"usage": obj})
        return b""

    def usage(self) -> tuple[int, int] | None:
        """``(prompt, completion)`` tokens, or None when the response reported none."""
        return (self.prompt, self.completion) if self.found else None

    def observe(self, obj: Any) -> None:
        """Take usage and model from one parsed JSON object (a body or an SSE event's data)."""
        if not isinstance(obj, dict):
            return
        for holder in (obj, obj.get("message"), obj.get("response")):
            if not isinstance(holder, dict):
                continue
            if isinstance(holder.get("model"), str) and not self.model:
                self.model = holder["model"]
            u = holder.get("usage")
            if not isinstance(u, dict):
                continue
            prompt = _int(u.get("prompt_tokens", u.get("input_tokens")))
            prompt += _int(u.get("cache_creation_input_tokens"))
            prompt += _int(u.get("cache_read_input_tokens"))
            completion = _int(u.get("completion_tokens", u.get("output_tokens")))
            self.prompt, self.completion = (
                max(self.prompt, prompt),
                max(self.completion, completion),
            )
            self.found = True

    def _keep(self, event: bytes) -> bool:
        lines = [ln[5:].lstrip() for ln in event.splitlines() if ln.startswith(b"data:")]
        payload = b"\n".join(lines).strip()
        if not payload or payload == b"[DONE]":
            return True
        try:
            obj = json.loads(payload)
        except ValueError:
            return True
        self.observe(obj)
        usage_only = isinstance(obj, dict) and obj.get("choices") == [] and bool(obj.get("usage"))
        return not (self.drop and usage_only)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


class Bill:
    """One model response's charge, made as soon as its usage is known.

    ``settle`` is called before each write to the client, so the charge is in
    the gateway's counters before the client can have the end of the response
    (an agent that exits on its last reply cannot outrun the budget). A 2xx
    response that reported no usage is estimated once it ends (``final``).
    """

    def __init__(self, charge: Charge, model: str, request_bytes: int) -> None:
        self.charge, self.model, self.request_bytes = charge, model, request_bytes
        self.prompt = self.completion = 0
        self.cost = 0.0
        self.source = "none"
        self.final = False

    def settle(self, meter: UsageMeter, status: int, *, final: bool = False) -> None:
        if self.final:
            return
        usage = meter.usage()
        if usage is not None:
            self.source = "reported"
        elif final and 200 <= status < 300:
            usage = (self.request_bytes // BYTES_PER_TOKEN, meter.size // BYTES_PER_TOKEN)
            self.source = "estimated"
        if usage is not None:
            prompt, completion = max(usage[0] - self.prompt, 0), max(usage[1] - self.completion, 0)
            if prompt or completion:
                self.cost += self.charge(self.model or meter.model, prompt, completion)
                self.prompt, self.completion = self.prompt + prompt, self.completion + completion
        self.final = final

    def summary(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "tokens": self.prompt + self.completion, "cost_usd": round(self.cost, 6),
                "usage": self.source}  # fmt: skip
