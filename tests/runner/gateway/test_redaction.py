"""No response through the gateway hands the sandbox the real key: error, success, stream.

An upstream that echoes what it was sent (a debugging proxy, a misconfigured endpoint) puts the
key in its answer. Each test here serves that answer from loopback, through the real gateway,
its forwarder and (where a client's view matters) the official SDK, and looks for the key in
everything the client got: the scripted model server (``runner.llm.scripted_server``) streams
a reply's text 16 characters per event, so a key in it arrives spread over several events; a
hand-written upstream splits it inside one event and inside a JSON body instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import openai
import pytest

from runner.gateway.core import DUMMY_KEY
from runner.gateway.routes import Upstream
from runner.gateway.scrub import MAX_HELD_BYTES, Scrubber
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply, ToolCall
from tests.runner.gateway.test_gateway import KEY, Rig
from tests.support.loopback import upstream_of


def _sdk(r: Rig) -> openai.OpenAI:
    return openai.OpenAI(base_url=r.base_url, api_key=DUMMY_KEY, max_retries=0)


def test_a_successful_body_that_echoes_the_key_is_redacted(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([ScriptedReply(content=f"you sent Bearer {KEY}, thanks")]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        status, body = r.chat()
    assert status == 200 and KEY.encode() not in body
    content = json.loads(body)["choices"][0]["message"]["content"]
    assert content == "you sent Bearer [key], thanks"


def test_a_key_spread_over_stream_events_never_reaches_the_client(
    rig: Callable[..., Rig],
) -> None:
    text = f"header: Bearer {KEY} (end)"
    call = ToolCall("bash", {"command": f"echo {KEY}"})
    replies = [ScriptedReply(content=text), ScriptedReply(content="x", tool_calls=[call])]
    with ScriptedModelServer(replies) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        client = _sdk(r)
        chunks = list(client.chat.completions.create(model="m", messages=[], stream=True))
        calls = list(client.chat.completions.create(model="m", messages=[], stream=True))
        srv.extend([ScriptedReply(content=text)])
        raw = r.request("POST", "/v1/chat/completions", {"model": "m", "stream": True})[1]
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == "header: Bearer [key] (end)"
    args = "".join(
        t.function.arguments or ""
        for c in calls
        for t in c.choices[0].delta.tool_calls or []
        if t.function is not None
    )
    assert json.loads(args) == {"command": "echo [key]"}
    pieces = {KEY[i : i + 6] for i in range(len(KEY) - 5)}  # the stream's bytes: no piece of it
    assert b"[key]" in raw and not [p for p in pieces if p.encode() in raw], raw


def test_text_that_only_begins_like_the_key_comes_through_whole(
    rig: Callable[..., Rig],
) -> None:
    text = f"{KEY[:10]} and {KEY[:-1]}! and sk-"
    with ScriptedModelServer([ScriptedReply(content=text)]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        chunks = list(_sdk(r).chat.completions.create(model="m", messages=[], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text


def test_a_key_split_inside_an_event_or_a_body_and_in_a_header_is_redacted(
    rig: Callable[..., Rig],
) -> None:
    half = len(KEY) // 2
    sent_first = threading.Event()

    def split(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        stream = json.loads(h.headers.get("X-Test-Stream", "false"))
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream" if stream else "application/json")
        h.send_header("X-Echo", f"Bearer {KEY}")
        h.send_header("Connection", "close")
        h.end_headers()
        prefix = b'data: {"choices": [{"delta": {"content": "' if stream else b'{"echo": "'
        h.wfile.write(prefix + KEY[:half].encode())
        h.wfile.flush()
        sent_first.wait(0.2)  # a pause, so that the two halves come as two pieces
        h.wfile.write(KEY[half:].encode() + (b'"}}]}\n\ndata: [DONE]\n\n' if stream else b'"}'))
        h.close_connection = True

    with upstream_of(split) as url:
        r = rig([Upstream(url, KEY)])
        for stream in (False, True):
            conn = r.conn()
            conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m"}),
                         {"X-Test-Stream": json.dumps(stream)})  # fmt: skip
            resp = conn.getresponse()
            body, echo = resp.read(), resp.getheader("X-Echo")
            conn.close()
            assert KEY.encode() not in body and KEY[:half].encode() not in body, body
            assert b"[key]" in body and echo == "Bearer [key]"


def test_streaming_still_goes_event_by_event_when_no_key_may_be_forming() -> None:
    scrub = Scrubber([KEY], sse=True)
    first = b'data: {"choices": [{"delta": {"content": "hello"}}]}\n\n'
    assert scrub.feed(first) == first  # at once: "hello" cannot begin the key
    held = b'data: {"choices": [{"delta": {"content": "hello sk"}}]}\n\n'
    assert scrub.feed(held) == b""  # "sk" may: held until the text goes on
    done = b"data: [DONE]\n\n"
    assert scrub.feed(done) == b""
    more = b'data: {"choices": [{"delta": {"content": "y, all"}}]}\n\n'
    assert scrub.feed(more) == held + done + more  # "hello sky, all": no key, in order
    assert scrub.finish() == b""


def test_an_event_held_past_the_bound_goes_with_the_dangling_start_cut() -> None:
    scrub = Scrubber([KEY], sse=True)
    out = scrub.feed(b'data: {"a": "x ' + KEY[:5].encode() + b'"}\n\n')
    filler = b'data: {"b": "' + b"y" * 1000 + b'"}\n\n'
    for _ in range(MAX_HELD_BYTES // len(filler) + 2):
        out += scrub.feed(filler)
    out += scrub.feed(b'data: {"a": "' + KEY[5:].encode() + b'"}\n\n') + scrub.finish()
    assert KEY[:5].encode() not in out and KEY[5:].encode() in out  # the rest alone is no key


@pytest.mark.parametrize("sse", [False, True])
def test_without_keys_nothing_is_touched_or_held(sse: bool) -> None:
    scrub = Scrubber([], sse=sse)
    assert not scrub.active and scrub.feed(b"data: sk") == b"data: sk" and scrub.finish() == b""
