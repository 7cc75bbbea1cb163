"""The model gateway and its in-sandbox forwarder.

Host-only tests drive the real pieces: ``ScriptedModelServer`` (or a small
upstream of the test's own) on loopback, the ``Gateway`` on a unix socket in
``tmp_path``, and ``sandbox/forwarder.py`` relaying a loopback port to it, as
it does inside the container. Docker tests run the forwarder in a
``--network none`` sandbox started the way the control loop starts one, and
attack from inside: direct network access, and the real key looked for in the
sandbox's environment and filesystem.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest

from runner.gateway import usage as gateway_usage
from runner.gateway.core import (
    DUMMY_KEY,
    FORWARDER_SOURCE,
    Gateway,
    GatewayError,
    runtime_problem,
)
from runner.gateway.routes import Upstream
from runner.gateway.usage import UsageMeter, prepare_request
from runner.llm.scripted_server import ScriptedModelServer, ScriptedReply
from sandbox import forwarder
from sandbox.engine import EngineStatus
from tests.support.loopback import upstream_of
from tests.support.responses_server import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    ScriptedResponses,
    _events,
)

KEY = "sk-real-secret-0123456789abcdef"
WAIT_S = 10.0  # hang guard only: every wait below is for an event that should come at once


@dataclass
class Events:
    """What the gateway handed to ``on_event``, with a way to wait for the next one."""

    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, kind: str, data: Any) -> None:
        with self.cond:
            self.items.append((kind, dict(data)))
            self.cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for k, d in self.items if k == kind]

    def wait(self, kind: str, n: int = 1) -> list[dict[str, Any]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.of(kind)) >= n, WAIT_S), self.items
        return self.of(kind)


@dataclass
class Rig:
    gateway: Gateway
    events: Events
    port: int  # the forwarder's loopback port

    @property
    def base_url(self) -> str:
        return self.gateway.container_base_url(self.port)

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = self.conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            hdrs = {"Authorization": f"Bearer {DUMMY_KEY}", "Content-Type": "application/json"}
            conn.request(method, path, body=data, headers={**hdrs, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def chat(self, **body: Any) -> tuple[int, bytes]:
        return self.request(
            "POST", "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [], **body}
        )


@contextmanager
def forwarding(socket_path: Path, **kw: Any) -> Iterator[int]:
    """The forwarder on a free loopback port (in a thread, as the script runs it in the sandbox)."""
    stop, ready = threading.Event(), threading.Event()
    port: list[int] = []

    def on_ready(p: int) -> None:
        port.append(p)
        ready.set()

    t = threading.Thread(
        target=forwarder.serve, args=("127.0.0.1", 0, str(socket_path)),
        kwargs={"ready": on_ready, "stop": stop, **kw}, daemon=True,
    )  # fmt: skip
    t.start()
    assert ready.wait(WAIT_S)
    try:
        yield port[0]
    finally:
        stop.set()
        t.join(WAIT_S)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Start a gateway (and a forwarder to it) for the given upstreams and options."""
    stack: list[Any] = []

    def make(upstreams: list[Upstream], **kw: Any) -> Rig:
        events = Events()
        kw.setdefault("max_tokens", None)
        kw.setdefault("max_cost_usd", None)
        gw = Gateway(tmp_path / f"gw{len(stack)}.sock", upstreams, on_event=events, **kw)
        gw.start()
        stack.append(gw)
        fwd = forwarding(gw.socket_path)
        port = fwd.__enter__()
        stack.append(fwd)
        return Rig(gw, events, port)

    yield make
    for item in reversed(stack):
        if isinstance(item, Gateway):
            item.close()
        else:
            item.__exit__(None, None, None)


def _reply(h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
    data = json.dumps(obj).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _until_closed(s: socket.socket) -> bytes:
    """Everything the peer sends until it closes (a refusal closes the connection)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _everything(rig: Rig, *bodies: bytes) -> str:
    return json.dumps(rig.events.items) + "".join(b.decode(errors="replace") for b in bodies)


# ---------------------------------------------------------------- forwarding and the key


def test_request_reaches_the_upstream_with_the_real_key_and_never_the_dummy(
    rig: Callable[..., Rig],
) -> None:
    with ScriptedModelServer([ScriptedReply(content="hello")]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        status, body = r.chat(temperature=0)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hello"
        sent = srv.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert DUMMY_KEY not in json.dumps(sent.headers)
    assert sent.body == {"model": "gpt-4o-mini", "messages": [], "temperature": 0}
    (event,) = r.events.of("gateway_request")  # recorded before the reply's end
    assert event["status"] == 200 and event["path"] == "/v1/chat/completions"
    assert event["host"] == "127.0.0.1" and event["upstream"] == "model"
    assert event["model"] == "gpt-4o-mini" and event["streamed"] is False
    assert KEY not in _everything(r, body)


def test_the_key_goes_in_the_header_style_the_client_used(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([ScriptedReply(content="a")]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        r.request("POST", "/v1/chat/completions", {"model": "m"},
                  {"Authorization": "", "x-api-key": DUMMY_KEY})  # fmt: skip
        sent = srv.requests[0].headers
    assert sent["x-api-key"] == KEY and "authorization" not in sent


def test_the_official_sdk_works_through_the_gateway_streamed_and_not(
    rig: Callable[..., Rig],
) -> None:
    with ScriptedModelServer(
        [ScriptedReply(content="one"), ScriptedReply(content="two" * 20)]
    ) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        client = openai.OpenAI(base_url=r.base_url, api_key=DUMMY_KEY, max_retries=0)
        plain = client.chat.completions.create(model="gpt-4o-mini", messages=[])
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True))
    assert plain.choices[0].message.content == "one"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "two" * 20
    # the gateway asked for usage on the client's behalf, and kept the usage-only chunk from it
    assert srv.requests[1].body is not None
    assert srv.requests[1].body["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert [e["tokens"] for e in r.events.of("gateway_request")] == [120, 120]
    assert r.gateway.used_tokens == 240


def test_usage_counted_for_plain_and_streamed_responses_with_cost_by_model(
    rig: Callable[..., Rig],
) -> None:
    replies = [ScriptedReply(content="x", prompt_tokens=1000, completion_tokens=500)] * 2
    with ScriptedModelServer(replies) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        assert r.chat(model="gpt-4o")[0] == 200
        status, body = r.chat(model="gpt-4o", stream=True, stream_options={"include_usage": True})
    assert status == 200 and b'"usage"' in body  # asked for by the client: passed on
    a, b = r.events.of("gateway_request")
    assert (a["prompt_tokens"], a["completion_tokens"], a["usage"]) == (1000, 500, "reported")
    assert (b["tokens"], b["streamed"], b["usage"]) == (1500, True, "reported")
    assert a["cost_usd"] == pytest.approx((1000 * 2.5 + 500 * 10.0) / 1e6)
    assert r.gateway.used_tokens == 3000
    assert r.gateway.used_cost == pytest.approx(2 * a["cost_usd"])


def test_a_response_without_usage_is_estimated_so_budgets_still_hold(
    rig: Callable[..., Rig],
) -> None:
    with upstream_of(
        lambda h: _reply(h, 200, {"choices": [{"message": {"content": "y" * 400}}]})
    ) as url:
        r = rig([Upstream(url, KEY)])
        assert r.chat()[0] == 200
    (event,) = r.events.of("gateway_request")
    assert event["usage"] == "estimated" and event["completion_tokens"] >= 100


# ---------------------------------------------------------------- streaming


def test_streaming_passes_event_by_event_not_buffered(rig: Callable[..., Rig]) -> None:
    seen_first = threading.Event()
    outcome: list[bool] = []

    def stream(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b'data: {"choices": [{"delta": {"content": "first"}}]}\n\n')
        h.wfile.flush()
        outcome.append(seen_first.wait(WAIT_S))  # the client must see it before the rest is sent
        if not outcome[-1]:
            return
        h.wfile.write(b'data: {"choices": [{"delta": {"content": "second"}}]}\n\n')
        h.wfile.write(
            b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}\n\n'
        )
        h.wfile.write(b"data: [DONE]\n\n")
        h.close_connection = True

    with upstream_of(stream) as url:
        r = rig([Upstream(url, KEY)])
        conn = r.conn()
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "stream": True}))
        resp = conn.getresponse()
        assert b"first" in resp.readline()
        seen_first.set()
        rest = resp.read()
        conn.close()
    assert outcome == [True]
    assert b"second" in rest and b"[DONE]" in rest
    assert b'"usage"' not in rest  # the gateway asked for it; this client did not
    (event,) = r.events.of("gateway_request")
    assert (event["prompt_tokens"], event["completion_tokens"], event["streamed"]) == (7, 3, True)


def test_a_client_that_leaves_mid_stream_ends_only_its_own_request(rig: Callable[..., Rig]) -> None:
    sent_first, gone = threading.Event(), threading.Event()

    def stream(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        if h.path.endswith("/models"):
            _reply(h, 200, {"data": []})
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n')
        h.wfile.flush()
        sent_first.set()
        gone.wait(WAIT_S)
        for _ in range(1000):  # keep writing into a connection nobody reads any more
            try:
                h.wfile.write(
                    b'data: {"choices": [{"delta": {"content": "' + b"z" * 4096 + b'"}}]}\n\n'
                )
                h.wfile.flush()
            except OSError:
                return

    with upstream_of(stream) as url:
        r = rig([Upstream(url, KEY)])
        conn = r.conn()
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m", "stream": True}))
        resp = conn.getresponse()
        resp.readline()
        assert sent_first.wait(WAIT_S)
        conn.close()
        gone.set()
        (event,) = r.events.wait("gateway_request")
        assert event["error"] == "client disconnected" and event["usage"] == "estimated"
        status, _ = r.request("POST", "/v1/models", {})  # gateway and forwarder still serve
    assert status == 200


# ---------------------------------------------------------------- refusals


def test_other_paths_hosts_and_connect_are_refused_and_recorded(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        cases = {
            "/admin": "/admin",
            "/v1/../admin": "/v1/../admin",
            "/v1/%2e%2e/admin": "/v1/%2e%2e/admin",
            "/v1%2fchat/completions": "/v1%2fchat/completions",
            "http://evil.example/v1/chat/completions": "/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions": "/v1/chat/completions",
            "http://127.0.0.1:notaport/v1/chat/completions": "/v1/chat/completions",
        }
        bodies = []
        for target in cases:
            status, body = r.request("POST", target, {"model": "m"})
            assert status == 403, target
            assert json.loads(body)["error"]["type"] == "corral_gateway_refused"
            bodies.append(body)
        with socket.create_connection(("127.0.0.1", r.port), timeout=WAIT_S) as s:
            s.sendall(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")
            answer = _until_closed(s)
        assert srv.requests == []  # nothing reached the upstream
    assert answer.startswith(b"HTTP/1.1 403")
    refused = r.events.of("gateway_refused")
    assert [e["path"] for e in refused[: len(cases)]] == list(cases.values())
    assert refused[4]["host"] == "evil.example" and refused[5]["host"] == "api.openai.com"
    assert "malformed request target" in refused[6]["reason"]
    assert refused[-1] == {"method": "CONNECT", "host": "evil.example", "path": "", "status": 403,
                           "reason": "corral gateway: CONNECT to a host the policy does not allow"}  # fmt: skip
    assert r.events.of("gateway_request") == []
    assert KEY not in _everything(r, *bodies, answer)


def test_a_proxy_style_request_for_the_upstream_itself_is_forwarded(
    rig: Callable[..., Rig],
) -> None:
    with ScriptedModelServer([ScriptedReply(content="via proxy")]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        assert r.chat()[0] == 200
        status, _ = r.request("POST", f"{srv.base_url}/chat/completions", {"model": "m"})
        assert status == 500  # the script had one reply; the point is that it got there
        assert [q.headers["authorization"] for q in srv.requests] == [f"Bearer {KEY}"] * 2


def test_allowed_hosts_pass_without_the_key_plain_and_connect(rig: Callable[..., Rig]) -> None:
    seen: list[dict[str, str]] = []

    def files(h: BaseHTTPRequestHandler) -> None:
        seen.append({k.lower(): v for k, v in h.headers.items()})
        _reply(h, 200, {"files": ["pkg-1.0.tar.gz"]})

    echo = socket.create_server(("127.0.0.1", 0))
    echo_port = echo.getsockname()[1]

    def echo_once() -> None:
        conn, _ = echo.accept()
        with conn:
            conn.sendall(conn.recv(100))

    threading.Thread(target=echo_once, daemon=True).start()
    with upstream_of(files) as url, ScriptedModelServer([]) as srv:
        host = url.removeprefix("http://").removesuffix("/v1")
        r = rig([Upstream(srv.base_url, KEY)], allow_hosts=[host, f"127.0.0.1:{echo_port}"])
        status, body = r.request("GET", f"http://{host}/simple/pkg/")
        with socket.create_connection(("127.0.0.1", r.port), timeout=WAIT_S) as s:
            s.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
            head = s.recv(4096)
            s.sendall(b"tunnelled")
            echoed = s.recv(100)
    echo.close()
    assert status == 200 and json.loads(body) == {"files": ["pkg-1.0.tar.gz"]}
    assert seen[0]["authorization"] == f"Bearer {DUMMY_KEY}"  # passed as the client sent it
    assert KEY not in json.dumps(seen)
    assert head.startswith(b"HTTP/1.1 200") and echoed == b"tunnelled"
    plain, tunnel = r.events.wait("gateway_request", 2)
    assert plain["upstream"] == "host" and "tokens" not in plain
    assert tunnel["method"] == "CONNECT" and tunnel["bytes"] == 2 * len(b"tunnelled")


def test_an_allowed_name_that_resolves_to_this_machine_is_refused(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([]) as srv:
        r = rig([Upstream(srv.base_url, KEY)], allow_hosts=["localhost:2375", "localhost"])
        with socket.create_connection(("127.0.0.1", r.port), timeout=WAIT_S) as s:
            s.sendall(b"CONNECT localhost:2375 HTTP/1.1\r\n\r\n")  # a docker API on TCP, say
            answer = _until_closed(s)
        status, body = r.request("GET", "http://localhost/latest/meta-data/")
    assert answer.startswith(b"HTTP/1.1 403") and b"resolves to" in answer
    assert status == 403 and b"not a public address" in body
    assert [e["host"] for e in r.events.of("gateway_refused")] == ["localhost", "localhost"]


NOT_PUBLIC = [
    "127.0.0.1", "10.1.2.3", "172.17.0.1", "192.168.1.20", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "198.18.0.1", "::1", "fc00::7", "fe80::1", "::ffff:127.0.0.1",
    "::ffff:172.17.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "::7f00:1",
]  # fmt: skip


def _gateway(tmp_path: Path, answers: Callable[[str, int], list[str]], **kw: Any) -> Gateway:
    """A gateway (not started: routing needs no socket) whose names resolve through ``answers``."""
    kw.setdefault("allow_hosts", ["mirror.example.org", "*.example.net"])
    return Gateway(tmp_path / "gw.sock", [Upstream("http://10.0.0.5:8000/v1", KEY)],
                   on_event=Events(), max_tokens=None, max_cost_usd=None, resolver=answers,
                   **kw)  # fmt: skip


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_an_allowed_name_that_resolves_to_a_non_public_address_is_refused(
    tmp_path: Path, address: str
) -> None:
    """Private networks (the Docker bridge), this machine, metadata, and IPv6 forms of them."""
    looked: list[tuple[str, int]] = []

    def answers(host: str, port: int) -> list[str]:
        looked.append((host, port))
        return ["93.184.216.34", address]  # one bad answer among good ones is enough

    gw = _gateway(tmp_path, answers)
    routes = [
        gw.resolve("GET", "http://mirror.example.org/simple/"),
        gw.resolve("CONNECT", "mirror.example.org:443"),
        gw.resolve("GET", "http://files.example.net/x"),
    ]
    assert [r.kind for r in routes] == ["refused"] * 3
    assert all("not a public address" in r.reason for r in routes), routes
    assert looked == [("mirror.example.org", 80), ("mirror.example.org", 443),
                      ("files.example.net", 80)]  # fmt: skip
    # a configured model upstream is the user's own choice: a private address is fine, unchecked
    assert gw.resolve("POST", "/v1/chat/completions").kind == "upstream" and len(looked) == 3


def test_an_allowed_host_is_reached_at_the_address_that_was_checked(tmp_path: Path) -> None:
    """One lookup per request, and the route carries its answer: a rebinding DNS server that
    answers a public address first and this machine next gets no second chance."""
    replies = iter([["93.184.216.34"], ["2606:2800:220:1::7", "93.184.216.34"], ["127.0.0.1"]])
    looked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        looked.append(host)
        return next(replies)

    gw = _gateway(tmp_path, rebinding)
    plain = gw.resolve("GET", "http://user@Mirror.Example.org/simple/pkg/?v=1")
    tunnel = gw.resolve("CONNECT", "mirror.example.org:443")
    rebound = gw.resolve("GET", "http://mirror.example.org/simple/pkg/")
    assert (plain.kind, plain.url, plain.name) == (
        "host", "http://93.184.216.34:80/simple/pkg/?v=1", "Mirror.Example.org",
    )  # fmt: skip
    assert (tunnel.kind, tunnel.url, tunnel.name) == (
        "host", "[2606:2800:220:1::7]:443", "mirror.example.org:443",
    )  # fmt: skip
    assert rebound.kind == "refused" and "127.0.0.1" in rebound.reason
    assert looked == ["mirror.example.org"] * 3

    def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    gone = _gateway(tmp_path, broken).resolve("GET", "http://mirror.example.org/")
    assert gone.kind == "refused" and gone.reason.startswith("cannot resolve mirror.example.org")
    nothing = _gateway(tmp_path, lambda h, p: []).resolve("CONNECT", "mirror.example.org:443")
    assert nothing.kind == "refused" and "no address" in nothing.reason


def test_an_allowed_host_gets_the_name_it_was_checked_for_as_its_host_header(
    rig: Callable[..., Rig],
) -> None:
    """Not the client's own ``Host`` (which could name another site on the same server)."""
    seen: list[tuple[str, str]] = []

    def files(h: BaseHTTPRequestHandler) -> None:
        seen.append((h.headers["Host"], h.path))
        _reply(h, 200, {"ok": True})

    with upstream_of(files, host="127.0.0.2") as url, ScriptedModelServer([]) as srv:
        authority = url.removeprefix("http://").removesuffix("/v1")
        r = rig([Upstream(srv.base_url, KEY)], allow_hosts=[authority])
        status, _ = r.request("GET", f"http://{authority}/simple/?q=1",
                              headers={"Host": "admin.internal"})  # fmt: skip
    assert status == 200 and seen == [(authority, "/simple/?q=1")]
    assert [e["host"] for e in r.events.wait("gateway_request")] == ["127.0.0.2"]


def test_chunked_request_bodies_and_http10_clients_are_served(rig: Callable[..., Rig]) -> None:
    replies = [ScriptedReply(content="chunked"), ScriptedReply(content="old client")]
    with ScriptedModelServer(replies) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        pieces = b"".join(b"%x\r\n%b\r\n" % (len(body[i : i + 7]), body[i : i + 7])
                          for i in range(0, len(body), 7))  # fmt: skip
        with socket.create_connection(("127.0.0.1", r.port), timeout=WAIT_S) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\n\r\n" + pieces + b"0\r\n\r\n")  # fmt: skip
            first = _until_closed(s)
        stream = json.dumps({"model": "m", "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", r.port), timeout=WAIT_S) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%b"
                      % (len(stream), stream))  # fmt: skip
            old = _until_closed(s)
        assert srv.requests[0].body == json.loads(body)
    assert first.startswith(b"HTTP/1.1 200") and b"chunked" in first
    head, _, rest = old.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head  # no chunks for 1.0
    assert rest.startswith(b"data: ") and b"old client" in rest and rest.endswith(b"[DONE]\n\n")


def test_a_failing_event_sink_does_not_fail_the_request(
    rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedModelServer([ScriptedReply(content="fine")]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])

        def broken(kind: str, data: Any) -> None:
            raise OSError(f"disk full while logging {KEY}")

        r.gateway.on_event = broken
        status, _ = r.chat()
    assert status == 200
    assert "gateway event gateway_request not recorded" in caplog.text and KEY not in caplog.text


def test_an_oversized_body_is_refused(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([]) as srv:
        r = rig([Upstream(srv.base_url, KEY)], max_body_bytes=1000)
        status, body = r.chat(messages=[{"role": "user", "content": "x" * 2000}])
        assert srv.requests == []
    assert status == 413 and b"over 1000 bytes" in body


# ---------------------------------------------------------------- budgets


def test_token_budget_the_crossing_call_succeeds_the_next_is_refused(
    rig: Callable[..., Rig],
) -> None:
    with ScriptedModelServer([ScriptedReply(content="ok")] * 3) as srv:
        r = rig([Upstream(srv.base_url, KEY)], max_tokens=200)
        first = r.chat()
        assert r.gateway.exhausted is None and r.gateway.used_tokens == 120
        second = r.chat(stream=True)  # crosses 200: served in full
        third = r.chat()
        assert srv.served == 2
    assert first[0] == 200 and second[0] == 200
    assert third[0] == 403
    error = json.loads(third[1])["error"]
    assert error["message"] == "corral: token budget spent (240/200)"
    assert error["code"] == "corral_budget_spent"
    assert r.gateway.exhausted == "tokens" and r.gateway.used_tokens == 240
    assert r.events.of("gateway_budget_exhausted") == [
        {"resource": "tokens", "used": 240, "limit": 200}
    ]
    assert r.events.of("gateway_refused")[-1]["reason"] == error["message"]


def test_cost_budget_sets_exhausted_cost(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([ScriptedReply(content="ok")] * 3) as srv:
        r = rig([Upstream(srv.base_url, KEY)], max_cost_usd=0.0005)
        assert r.chat(model="gpt-4o")[0] == 200
        assert r.gateway.exhausted is None
        assert r.chat(model="gpt-4o")[0] == 200
        status, body = r.chat(model="gpt-4o")
    assert r.gateway.exhausted == "cost_usd" and status == 403
    assert b"cost budget spent" in body


# ---------------------------------------------------------------- upstream failures


def test_upstream_down_is_a_clear_502(rig: Callable[..., Rig]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        r = rig([Upstream(f"http://127.0.0.1:{dead}/v1", KEY)])
        status, body = r.chat()
    assert status == 502
    assert "the upstream is unreachable" in json.loads(body)["error"]["message"]
    (event,) = r.events.of("gateway_request")
    assert event["status"] == 502 and "ConnectError" in event["error"]


def test_upstream_that_hangs_is_a_504_not_a_hang(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([ScriptedReply(fault="hang", hang_seconds=3)]) as srv:
        r = rig([Upstream(srv.base_url, KEY)], timeout_s=0.3)
        status, body = r.chat()
    assert status == 504 and b"timed out" in body


def test_an_upstream_error_that_echoes_the_key_is_redacted(rig: Callable[..., Rig]) -> None:
    def echo_key(h: BaseHTTPRequestHandler) -> None:
        _reply(
            h,
            401,
            {"error": {"message": f"Incorrect API key provided: {h.headers['Authorization']}"}},
        )

    with upstream_of(echo_key) as url:
        r = rig([Upstream(url, KEY)])
        status, body = r.chat()
    assert status == 401 and b"Incorrect API key" in body
    assert KEY not in _everything(r, body)


def test_upstream_tls_is_verified_against_the_host_ca_bundle(
    rig: Callable[..., Rig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TLS-intercepting proxy's CA, named by the host's SSL_CERT_FILE, is what the gateway trusts."""
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with upstream_of(lambda h: _reply(h, 200, {"usage": {"prompt_tokens": 1}}), tls) as url:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = rig([Upstream(url, KEY)])  # ca_bundle None: the host's, from SSL_CERT_FILE
        assert trusted.chat()[0] == 200
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusted = rig([Upstream(url, KEY)], ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"))
        status, body = untrusted.chat()
    assert status == 502 and b"CERTIFICATE_VERIFY_FAILED" in body
    with pytest.raises(GatewayError, match="cannot use the CA bundle"):
        rig([Upstream(url, KEY)], ca_bundle=key)  # a file with no certificate in it


# ---------------------------------------------------------------- the rest of the surface


def test_validate_route_asks_the_runner_and_is_refused_without_it(rig: Callable[..., Rig]) -> None:
    with ScriptedModelServer([]) as srv:
        r = rig([Upstream(srv.base_url, KEY)])
        assert r.request("POST", "/corral/validate", {"command": "ls"})[0] == 403
        r.gateway.validate = lambda cmd: ("deny", f"no {cmd}")
        status, body = r.request("POST", "/corral/validate", {"command": "rm -rf /"})
        bad, _ = r.request("POST", "/corral/validate", {"cmd": 1})

        def broken(cmd: str) -> tuple[str, str]:
            raise RuntimeError("validator down")

        r.gateway.validate = broken
        failed, failure = r.request("POST", "/corral/validate", {"command": "ls"})
    assert failed == 500 and b"validator down" in failure
    assert status == 200 and json.loads(body) == {"decision": "deny", "reason": "no rm -rf /"}
    assert bad == 400


def test_second_upstream_is_under_its_own_prefix() -> None:
    gw = Gateway(Path("/nonexistent/gw.sock"),
                 [Upstream("https://api.openai.com/v1", KEY), Upstream("http://10.0.0.5:8000", None)],
                 on_event=lambda k, d: None, max_tokens=None, max_cost_usd=None)  # fmt: skip
    assert gw.container_base_url(18080) == "http://127.0.0.1:18080/v1"
    assert gw.container_base_url(18080, 1) == "http://127.0.0.1:18080/corral/upstream/1"
    r = gw.resolve("POST", "/corral/upstream/1/v1/chat/completions?x=1")
    assert (r.kind, r.url) == ("upstream", "http://10.0.0.5:8000/v1/chat/completions?x=1")
    assert (
        gw.resolve("POST", "/v1/chat/completions").url
        == "https://api.openai.com/v1/chat/completions"
    )
    assert (
        gw.resolve("POST", "http://api.openai.com/v1/chat/completions").kind == "refused"
    )  # scheme
    assert gw.resolve("POST", "https://api.openai.com:444/v1/x").kind == "refused"  # port
    assert gw.resolve("POST", "/v10/chat").kind == "refused"  # prefix is by segment
    # the key reaches inference endpoints only, never what manages the account behind it
    assert gw.resolve("GET", "/v1/models/gpt-4o").kind == "upstream"
    assert gw.resolve("POST", "/v1/responses").kind == "upstream"
    assert gw.resolve("POST", "/corral/upstream/1/v1/messages").kind == "upstream"
    for method, path in [("GET", "/v1/files"), ("POST", "/v1/fine_tuning/jobs"),
                         ("DELETE", "/v1/models/ft:mine"), ("PUT", "/v1/chat/completions"),
                         ("GET", "/v1/organization/api_keys")]:  # fmt: skip
        route = gw.resolve(method, path)
        assert route.kind == "refused" and ("model endpoint" in route.reason), (method, path)
    anything = Gateway(Path("/x/gw.sock"), [Upstream("http://127.0.0.1:9/v1", None, endpoints=None)],
                       on_event=lambda k, d: None, max_tokens=None, max_cost_usd=None)  # fmt: skip
    assert anything.resolve("POST", "/v1/files").kind == "upstream"
    assert "[key]" in repr(gw.upstreams[0]) and KEY not in repr(gw.upstreams)


def test_bad_upstreams_and_an_unservable_socket_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one upstream"):
        Gateway(tmp_path / "s", [], on_event=lambda k, d: None, max_tokens=None, max_cost_usd=None)
    with pytest.raises(ValueError, match="must be http"):
        Gateway(tmp_path / "s", [Upstream("ftp://x/v1", None)], on_event=lambda k, d: None,
                max_tokens=None, max_cost_usd=None)  # fmt: skip
    gw = Gateway(tmp_path / "missing-dir" / "s", [Upstream("http://127.0.0.1:1/v1", None)],
                 on_event=lambda k, d: None, max_tokens=None, max_cost_usd=None)  # fmt: skip
    with pytest.raises(GatewayError, match="cannot serve the gateway on"):
        gw.start()


def test_a_socket_path_longer_than_af_unix_allows_still_works(
    rig: Callable[..., Rig], tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    with ScriptedModelServer([ScriptedReply(content="deep")]) as srv:
        gw = Gateway(deep / "gw.sock", [Upstream(srv.base_url, KEY)], on_event=lambda k, d: None,
                     max_tokens=None, max_cost_usd=None)  # fmt: skip
        with gw, forwarding(deep / "gw.sock") as port:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
            conn.request("POST", "/v1/chat/completions", json.dumps({"model": "m"}))
            assert conn.getresponse().status == 200
            conn.close()
        assert not (deep / "gw.sock").exists()  # close() removed it


def test_forwarder_answers_502_when_the_gateway_is_gone_and_503_past_its_bound(
    tmp_path: Path,
) -> None:
    with (
        forwarding(tmp_path / "nothing.sock") as port,
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s,
    ):
        s.sendall(b"GET /v1/models HTTP/1.1\r\n\r\n")
        gone = _until_closed(s)
    assert gone.startswith(b"HTTP/1.1 502") and b"not reachable" in gone
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "slow.sock"))
    listener.listen(4)  # accepts, never answers: the first relay stays open
    with forwarding(tmp_path / "slow.sock", max_connections=1) as port:
        first = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        held, _ = listener.accept()  # the first relay is up: its slot is taken
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as second:
            busy = _until_closed(second)
        first.close()
        held.close()
    listener.close()
    assert busy.startswith(b"HTTP/1.1 503") and b"more than 1 connections" in busy


def test_relay_copies_both_ways_passes_a_half_close_on_and_ends_when_idle() -> None:
    client, near = socket.socketpair()
    far, server = socket.socketpair()
    moved: list[int] = []
    t = threading.Thread(target=lambda: moved.append(forwarder.relay(near, far, WAIT_S)))
    t.start()
    client.sendall(b"ping")
    assert server.recv(10) == b"ping"
    server.sendall(b"pong")
    assert client.recv(10) == b"pong"
    client.shutdown(socket.SHUT_WR)
    assert server.recv(10) == b""  # the half-close reached the other end
    server.sendall(b"late")
    assert client.recv(10) == b"late"  # and the other direction still flows
    server.shutdown(socket.SHUT_WR)
    t.join(WAIT_S)
    assert moved == [12]
    quiet_a, quiet_b = socket.socketpair()
    assert forwarder.relay(quiet_a, quiet_b, 0.05) == 0  # nothing moves: it gives up
    for s in (client, near, far, server, quiet_a, quiet_b):
        s.close()


def test_gateway_answers_503_past_its_connection_bound(tmp_path: Path) -> None:
    gw = Gateway(tmp_path / "gw.sock", [Upstream("http://127.0.0.1:9/v1", None)],
                 on_event=Events(), max_tokens=None, max_cost_usd=None, max_connections=1)  # fmt: skip
    with gw, socket.socket(socket.AF_UNIX) as first, socket.socket(socket.AF_UNIX) as second:
        first.connect(str(gw.socket_path))
        first.sendall(b"GET /v1/models HTTP/1.1\r\n")  # a request begun: its handler holds the slot
        second.connect(str(gw.socket_path))
        busy = _until_closed(second)
    assert busy.startswith(b"HTTP/1.1 503") and b"too many connections" in busy


def test_forwarder_cli_refuses_a_non_loopback_listen() -> None:
    with pytest.raises(SystemExit) as exc:
        forwarder.main(["--listen", "0.0.0.0:18080", "--socket", "/x"])
    assert exc.value.code == 2


def test_usage_meter_reads_anthropic_streams_and_split_events() -> None:
    events = (
        b'event: message_start\ndata: {"type": "message_start", "message": {"model": "claude-sonnet-4",'
        b' "usage": {"input_tokens": 50, "cache_read_input_tokens": 10, "output_tokens": 1}}}\n\n'
        b'event: content_block_delta\ndata: {"type": "content_block_delta"}\n\n'
        b'event: message_delta\ndata: {"type": "message_delta", "usage": {"output_tokens": 42}}\n\n'
    )
    meter = UsageMeter(sse=True)
    out = b"".join(meter.feed(events[i : i + 1]) for i in range(len(events))) + meter.finish()
    assert out == events  # unchanged, even fed a byte at a time
    assert meter.usage() == (60, 42) and meter.model == "claude-sonnet-4"


def test_usage_meter_finds_usage_in_the_tail_of_a_body_too_large_to_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_usage, "MAX_PARSE_BYTES", 100)
    body = json.dumps({"choices": [{"message": {"content": "x" * 500}}],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                 "prompt_tokens_details": {"cached_tokens": 0}}}).encode()  # fmt: skip
    meter = UsageMeter(sse=False)
    for i in range(0, len(body), 64):
        meter.feed(body[i : i + 64])
    meter.finish()
    assert meter.usage() == (9, 4)
    assert UsageMeter(sse=False).usage() is None


def test_prepare_request_asks_for_stream_usage_only_where_it_is_missing() -> None:
    body, model, streamed, added = prepare_request(
        "/v1/chat/completions", b'{"model": "m", "stream": true}'
    )
    assert (model, streamed, added) == ("m", True, True)
    assert json.loads(body)["stream_options"] == {"include_usage": True}
    same = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    assert prepare_request("/v1/chat/completions", same) == (same, "m", True, False)
    assert prepare_request("/v1/messages", b'{"model": "c", "stream": true}')[3] is False
    assert prepare_request("/v1/chat/completions", b"not json") == (b"not json", "", False, False)


def test_runtime_problem_names_the_fix_for_gvisor_without_host_uds() -> None:
    bare = EngineStatus(True, runtimes=("runc", "runsc"), runsc_network_none=True)
    assert "corral doctor --fix" in (runtime_problem("runsc", bare) or "")
    assert runtime_problem("runc", bare) is None
    ok = EngineStatus(
        True, runtimes=("runc", "runsc"), runsc_network_none=True, runsc_host_uds=True
    )
    assert runtime_problem("runsc", ok) is None


def test_an_agent_cli_under_gvisor_without_host_uds_stops_up_front_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from policies.policy import Policy
    from runner.agents import load_preset
    from runner.agents.external import CliAgent
    from runner.ops import environment
    from sandbox.errors import EngineUnavailable

    agent = CliAgent(load_preset("mini-swe-agent", None), Policy(), model=None, base_url=None,
                     api_key=None)  # fmt: skip
    old_runsc = EngineStatus(True, runtimes=("runc", "runsc"), runsc_network_none=True)
    monkeypatch.setattr(environment, "probe", lambda: old_runsc)  # an engine set up before the flag
    with pytest.raises(EngineUnavailable, match=r"--host-uds=open.*corral doctor --fix"):
        environment.check_gateway_runtime(agent, "runsc", Policy())
    gvisor_policy = Policy.model_validate({"sandbox": {"runtime": "runsc"}})
    with pytest.raises(EngineUnavailable):
        environment.check_gateway_runtime(agent, None, gvisor_policy)
    environment.check_gateway_runtime(
        agent, "runc", gvisor_policy
    )  # the flag wins: runc needs nothing


# ---------------------------------------------------------------- the Responses API (Codex)


def _sse(commands: list[str], tools: list[str]) -> bytes:
    server = ScriptedResponses(commands)
    body = {"model": "gpt-5", "stream": True, "tools": [{"name": t} for t in tools]}
    return b"".join(_events(server._respond(body)))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_usage_is_read_from_a_streamed_responses_completed_event(chunk: int) -> None:
    stream = _sse(["ls"], ["exec_command"])
    meter = UsageMeter(sse=True)
    out = b"".join(meter.feed(stream[i : i + chunk]) for i in range(0, len(stream), chunk))
    out += meter.finish()
    assert out == stream  # nothing held back or dropped
    assert meter.usage() == (INPUT_TOKENS, OUTPUT_TOKENS) and meter.model == "gpt-5"
    assert b'"usage": null' in stream  # response.created carries none: counted once, at the end


def test_usage_is_read_from_a_responses_json_body() -> None:
    response = ScriptedResponses([])._respond({"model": "gpt-5"})
    body = json.dumps(response).encode()
    meter = UsageMeter(sse=False)
    assert meter.feed(body[:10]) + meter.feed(body[10:]) + meter.finish() == body
    assert meter.usage() == (INPUT_TOKENS, OUTPUT_TOKENS)


def test_a_responses_stream_without_usage_reports_none() -> None:
    stream = _sse([], []).replace(b'"usage": {', b'"nousage": {')
    meter = UsageMeter(sse=True)
    meter.feed(stream)
    meter.finish()
    assert meter.usage() is None  # the gateway then estimates (above)


@pytest.fixture
def responses() -> Iterator[ScriptedResponses]:
    with ScriptedResponses(["ls", "ls"]) as server:
        yield server


@pytest.mark.parametrize("stream", [True, False])
def test_the_gateway_counts_a_responses_call_before_its_end(
    rig: Callable[..., Rig], responses: ScriptedResponses, stream: bool
) -> None:
    r = rig([Upstream(responses.base_url, KEY)])
    body = {"model": "gpt-5", "stream": stream, "tools": [{"name": "shell_command"}]}
    status, data = r.request("POST", "/v1/responses", body)
    assert status == 200
    if stream:
        kinds = [ln for ln in data.decode().splitlines() if ln.startswith("event: ")]
        assert kinds[0] == "event: response.created" and kinds[-1] == "event: response.completed"
    call = json.loads(data) if not stream else None
    assert call is None or call["output"][0]["arguments"] == '{"command": "ls"}'
    (event,) = r.events.wait("gateway_request")
    assert (event["path"], event["streamed"], event["usage"]) == (
        "/v1/responses",
        stream,
        "reported",
    )
    assert (event["prompt_tokens"], event["completion_tokens"]) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert r.gateway.used_tokens == INPUT_TOKENS + OUTPUT_TOKENS
    assert responses.requests[0][1]["authorization"] == f"Bearer {KEY}"


# ---------------------------------------------------------------- in a real sandbox


def _sandbox(image: str, runtime: str, tmp_path: Path, gw: Gateway) -> Any:
    """A sandbox as the control loop starts one for an agent CLI: worktree, gateway dir, forwarder."""
    from sandbox.docker_backend import DockerBackend
    from sandbox.spec import Mount, SandboxSpec

    ws = tmp_path / "ws"
    ws.mkdir()
    spec = SandboxSpec(
        image=image,
        runtime=runtime,  # type: ignore[arg-type]
        workspace=str(ws),
        mounts=(
            Mount(source=str(gw.socket_path.parent), target="/run/corral/gateway"),
            Mount(source=str(FORWARDER_SOURCE), target="/run/corral/forwarder.py"),
        ),
        run_id="test-gateway",
    )
    return DockerBackend().start(spec)


FORWARD = (
    "python3 /run/corral/forwarder.py --listen 127.0.0.1:18080 --socket /run/corral/gateway/gw.sock"
    " >/tmp/fwd.log 2>&1 & "
    "for _ in $(seq 100); do (: </dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.05; done; "
)
URLOPEN = (
    "python3 -c 'import json, os, sys, urllib.request as u\n"
    'req = u.Request(sys.argv[1], data=json.dumps({"model": "m"}).encode(),'
    ' headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})\n'
    "print(u.urlopen(req, timeout=20).read().decode())' "
)


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    d = tmp_path / "gateway"
    d.mkdir()
    d.chmod(0o755)
    tmp_path.chmod(0o755)
    return d


def _bridge_address(docker_client: Any) -> str:
    """The host's own address on Docker's default bridge (what a container would reach the host by).

    The engine reports it as the IPAM ``Gateway`` only when it was configured explicitly; a fresh
    dockerd lists just the subnet, so the bridge interface's address is read from the host.
    """
    attrs = docker_client.networks.get("bridge").attrs
    gateway = (attrs["IPAM"]["Config"] or [{}])[0].get("Gateway")
    if gateway:
        return str(gateway)
    name = (attrs.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    addresses = [
        a.address for a in psutil.net_if_addrs().get(name, []) if a.family == socket.AF_INET
    ]
    assert addresses, f"no IPv4 address on the bridge interface {name}"
    return addresses[0]


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_in_the_sandbox_the_forwarder_reaches_the_model_and_nothing_else(
    sandbox_image: str, tmp_path: Path, gateway_dir: Path, docker_client: Any, runtime: str
) -> None:
    from sandbox.engine import probe

    problem = runtime_problem(runtime, probe())
    assert problem is None, problem
    events = Events()
    host_listener = socket.create_server(("0.0.0.0", 0))  # on every host address, bridge included
    bridge = _bridge_address(docker_client)
    with ScriptedModelServer([ScriptedReply(content="from the host")]) as srv:
        gw = Gateway(gateway_dir / "gw.sock", [Upstream(srv.base_url, KEY)], on_event=events,
                     max_tokens=None, max_cost_usd=None)  # fmt: skip
        with gw, _sandbox(sandbox_image, runtime, tmp_path, gw) as sb:
            base = gw.container_base_url(18080)
            env = {"OPENAI_API_KEY": DUMMY_KEY}
            ok = sb.exec_once(FORWARD + URLOPEN + f"{base}/chat/completions", timeout=60, env=env)
            assert ok.exit_code == 0, ok.stderr
            assert json.loads(ok.stdout)["choices"][0]["message"]["content"] == "from the host"
            assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"
            # through the gateway, another host is refused (and recorded)
            other = sb.exec_once(
                FORWARD + URLOPEN + "http://127.0.0.1:18080/admin", timeout=60, env=env
            )
            assert other.exit_code != 0 and "403" in other.stderr
            proxied = {**env, "http_proxy": "http://127.0.0.1:18080"}  # a proxy-aware tool
            fetch = sb.exec_once(
                FORWARD + URLOPEN + "http://pypi.org/simple/", timeout=60, env=proxied
            )
            assert fetch.exit_code != 0 and "403" in fetch.stderr
            # around it, nothing: exit 0 means breached
            port = host_listener.getsockname()[1]
            for host, p in (
                ("127.0.0.1", srv.base_url.split(":")[2].split("/")[0]),
                (bridge, port),
            ):
                probe_cmd = f"python3 -c 'import socket; socket.create_connection((\"{host}\", {p}), timeout=5)'"
                breach = sb.exec_once(probe_cmd, timeout=30)
                assert breach.exit_code != 0, f"connected to {host}:{p} from the sandbox"
    host_listener.close()
    refused = events.of("gateway_refused")
    assert [(e["host"], e["path"]) for e in refused] == [("", "/admin"), ("pypi.org", "/simple/")]


@pytest.mark.docker
def test_the_sandbox_holds_no_real_key_in_env_or_files(
    sandbox_image: str, tmp_path: Path, gateway_dir: Path
) -> None:
    with ScriptedModelServer([ScriptedReply(content="x")]) as srv:
        gw = Gateway(gateway_dir / "gw.sock", [Upstream(srv.base_url, KEY)], on_event=Events(),
                     max_tokens=None, max_cost_usd=None)  # fmt: skip
        with gw, _sandbox(sandbox_image, "runc", tmp_path, gw) as sb:
            env = {"OPENAI_API_KEY": DUMMY_KEY}
            assert sb.exec_once(FORWARD + URLOPEN + f"{gw.container_base_url(18080)}/chat/completions",
                                timeout=60, env=env).exit_code == 0  # fmt: skip
            key = f"{KEY[:8]}''{KEY[8:]}"  # the shell joins it: the literal is in no command line
            search = (
                f"env | grep -c -F {key}; cat /proc/[0-9]*/environ 2>/dev/null | grep -c -a -F {key}; "
                f"grep -r -l -a -F {key} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev"
                " 2>/dev/null; echo done"
            )
            look = sb.exec_once(search, timeout=600, env=env)
            # the same search finds a key that is there (so its silence above means something)
            planted = sb.exec_once(
                f"printf %s {key} > /tmp/planted; {search}", timeout=600, env=env
            )
    assert look.stdout.split() == ["0", "0", "done"], look.stdout
    assert planted.stdout.split() == ["0", "0", "/tmp/planted", "done"], planted.stdout
