"""The model gateway: the sandbox's only way out, on a unix socket, holding the key on the host.

The sandbox keeps ``--network none``. ``Gateway`` serves HTTP on a unix
socket in a runner-owned directory that is bind-mounted into the container;
``sandbox/forwarder.py`` (mounted too) relays ``127.0.0.1:PORT`` inside the
container to it, so an agent CLI just sees a base URL
(``container_base_url``) and a dummy key (``DUMMY_KEY``).

What passes:
- requests under an upstream's path (``/v1/...`` for ``https://api.openai.com/v1``),
  or absolute-URI proxy requests for exactly that scheme, host, port and path
  prefix, go to that upstream if they are GET/HEAD/POST to one of its
  inference endpoints (``MODEL_ENDPOINTS``: chat/completions, responses,
  messages, embeddings, models; never files, fine-tuning or anything else
  the key could manage); the client's ``Authorization`` / ``api-key`` /
  ``x-api-key`` headers are dropped and the real key is added here, in the
  header style the client used;
- hosts listed in ``allow_hosts`` (the policy's ``[gateway]``, off by default)
  pass as plain HTTP proxy requests or ``CONNECT`` tunnels, with no key. A
  listed *name* is looked up once (``resolver``) and refused unless every
  address it resolves to is public (``ipaddress`` ``is_global``, IPv4-mapped
  IPv6 unmapped first, and the IPv4 address inside a 6to4, NAT64 or
  IPv4-compatible one public too): no loopback, private (Docker's bridge, 10/8,
  192.168/16 ...), link-local (metadata services), shared or unspecified
  address. The connection then goes to exactly the address that was checked
  (no second lookup a rebinding DNS server could answer differently); the
  request keeps the name in its ``Host`` header, and a ``CONNECT`` tunnel's
  TLS is the client's own, end to end, so its SNI and certificate check name
  the host. A literal address in ``allow_hosts`` is taken as meant (the
  policy's author listed that very address). Model upstreams are not checked
  at all: they are configured by the user (a vLLM on a private address, a
  test server on loopback) and reached as configured;
- ``POST /corral/validate`` asks ``validate`` (an agent's command hook);
- anything else (other paths, other hosts, ``CONNECT`` elsewhere, dot
  segments or encoded slashes in a path) is refused with an OpenAI-style JSON
  error and a ``gateway_refused`` event (method, host, path, reason).

Responses pass through unchanged and incrementally (SSE event by event). The
gateway reads ``usage`` from every model response (the JSON body, or the SSE
events; a streamed chat completion is sent upstream with
``stream_options.include_usage`` and the usage-only chunk it adds is kept
from a client that did not ask for it) and counts tokens and cost by the
request's model (``runner.llm.client.price``). A 2xx model response without usage
is estimated at 4 bytes a token, so budgets hold for any agent. Once
``max_tokens`` or ``max_cost_usd`` is crossed, the call that crossed it has
succeeded, ``exhausted`` names the budget and every later model request is
refused (403, ``corral: token budget spent (N/M)``). Each request becomes a
``gateway_request`` event (method, path, model, status, tokens, cost,
duration, streamed): never a key, never a body.

Bounds: request bodies (``max_body_bytes``), connections
(``max_connections``, idle ones closed after ``idle_timeout_s``), requests in
flight upstream (``max_concurrent``), upstream connect/read timeouts. An
upstream that is down or times out is a 502/504 JSON error, never a hang.

Upstream HTTP is ``httpx2`` (the HTTP client the ``openai`` SDK installs here;
``httpx``'s API, pooled connections, streaming, timeouts), with TLS verified
against the host's CA bundle (``sandbox.images.find_ca_bundle``), so a
TLS-intercepting proxy works; ``HTTPS_PROXY``-style variables are honoured.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import httpx2 as httpx

from runner.gateway.http import Server
from runner.llm.client import PRICES, price, redact
from sandbox import forwarder
from sandbox.engine import EngineStatus
from sandbox.images import find_ca_bundle
from sandbox.spec import SANDBOX_GID, SANDBOX_UID

log = logging.getLogger(__name__)

#: What agents inside the sandbox get as their API key; the real one never leaves the host.
DUMMY_KEY = "sk-corral-dummy-key"
#: The forwarder script, bind-mounted read-only into the sandbox.
FORWARDER_SOURCE = Path(forwarder.__file__)
#: Gateway-local routes (not forwarded anywhere).
LOCAL_PREFIX = "/corral/"
VALIDATE_PATH = "/corral/validate"

#: Defaults of the bounds (see ``Gateway``): request body, connections from the sandbox,
#: requests in flight upstream, seconds a connection may sit idle.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_CONNECTIONS = 64
MAX_CONCURRENT = 8
IDLE_TIMEOUT_S = 600.0

OnEvent = Callable[[str, Mapping[str, Any]], None]
Validate = Callable[[str], tuple[str, str]]
#: Looks a host name up: the addresses (IP text) it resolves to; raises ``OSError`` when it cannot.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """``host``'s addresses from the system resolver (``getaddrinfo``)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class GatewayError(Exception):
    """The gateway cannot serve (its socket cannot be bound); the message says why."""


#: The inference endpoints of the OpenAI, Anthropic and compatible APIs, below an upstream's
#: base URL (with or without its own ``/v1``): what agents need, and nothing that manages the
#: account behind the key (files, fine-tuning, batches, assistants, organisation).
MODEL_ENDPOINTS = (
    r"(/v1)?/(chat/completions|completions|responses|embeddings|messages(/count_tokens)?"
    r"|models(/[A-Za-z0-9._:-]+)?)"
)
#: Methods forwarded to an upstream (inference is POST; listing models is GET).
MODEL_METHODS = frozenset(("GET", "HEAD", "POST"))


@dataclass(frozen=True)
class Upstream:
    """A model endpoint the gateway forwards to."""

    base_url: str
    """``http://127.0.0.1:PORT/v1``, ``https://api.openai.com/v1`` ..."""
    api_key: str | None
    """Injected on the host side; the container holds only ``DUMMY_KEY``."""
    endpoints: str | None = MODEL_ENDPOINTS
    """A regular expression the path below ``base_url`` must match in full (default: the
    inference endpoints); None lets anything below ``base_url`` through."""

    def __repr__(self) -> str:  # never the key, not even in a traceback's locals
        key = "[key]" if self.api_key else None
        return f"Upstream(base_url={self.base_url!r}, api_key={key}, endpoints={self.endpoints!r})"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: an upstream (key injected), a listed host (no key), or here."""

    kind: Literal["upstream", "host", "local", "refused"]
    url: str = ""
    """What is requested upstream; for a listed host, with the checked address as its host
    (``http://203.0.113.7:80/path``, ``203.0.113.7:443`` for a tunnel)."""
    upstream: Upstream | None = None
    reason: str = ""
    name: str = ""
    """A listed host as the client named it (``HOST[:PORT]``): its ``Host`` header and events."""


def _origin(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def _unsafe_path(path: str) -> str:
    """Why ``path`` (no query) could leave its prefix on the upstream; '' when it cannot."""
    if re.search(r"%2f|%5c|\\", path, re.IGNORECASE):
        return "encoded slash or backslash in the path"
    if any(seg in (".", "..") for seg in unquote(path).split("/")):
        return "dot segment in the path"
    return ""


def _under(path: str, prefix: str) -> str | None:
    """The rest of ``path`` below ``prefix`` ('' or '/...'), or None when it is not below it."""
    if path == prefix or path.startswith(prefix + "/") or (prefix == "" and path.startswith("/")):
        return path[len(prefix) :]
    return None


class Gateway:
    """The model gateway of one run; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        socket_path: str | Path,
        upstreams: Sequence[Upstream],
        *,
        on_event: OnEvent,
        max_tokens: int | None,
        max_cost_usd: float | None,
        prices: Mapping[str, tuple[float, float]] = PRICES,
        allow_hosts: Sequence[str] = (),
        resolver: Resolver = system_resolver,
        ca_bundle: Path | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        max_concurrent: int = MAX_CONCURRENT,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        """``ca_bundle`` None: the host's (``find_ca_bundle``). ``resolver`` looks up the
        names of ``allow_hosts`` (and only those; tests give one of their own).

        Raises ``ValueError`` on a bad upstream, ``GatewayError`` on an unusable CA bundle.
        """
        if not upstreams:
            raise ValueError("the gateway needs at least one upstream")
        for up in upstreams:
            scheme, host, _, _ = _origin(up.base_url)
            if scheme not in ("http", "https") or not host:
                raise ValueError(
                    f"upstream base URL must be http(s)://HOST[:PORT][/PATH]: {up.base_url}"
                )
        self.socket_path = Path(socket_path)
        self.upstreams = tuple(upstreams)
        self.on_event = on_event
        self.max_tokens, self.max_cost_usd = max_tokens, max_cost_usd
        self.prices = dict(prices)
        self.allow_hosts = tuple(h.lower() for h in allow_hosts)
        self.resolver = resolver
        self.validate: Validate | None = None
        self.used_tokens = 0
        self.used_cost = 0.0
        self.exhausted: str | None = None
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._keys = tuple(u.api_key for u in upstreams if u.api_key)
        self._lock = threading.Lock()
        self._event_lock = threading.Lock()
        self._conn_slots = threading.BoundedSemaphore(max_connections)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        bundle = ca_bundle if ca_bundle is not None else find_ca_bundle(os.environ)
        try:
            self._ssl = ssl.create_default_context(cafile=str(bundle) if bundle else None)
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError(f"cannot use the CA bundle {bundle}: {exc}") from exc
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._client: httpx.Client | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Serve on ``socket_path`` in a thread. Raises ``GatewayError`` when it cannot be bound."""
        if self._server is not None:
            return
        self._client = httpx.Client(verify=self._ssl, timeout=self._timeout, follow_redirects=False)
        server = Server(self)
        try:
            _bind_unix(server.socket, self.socket_path)
            _open_to_sandbox(self.socket_path)
            server.server_activate()
        except OSError as exc:
            server.server_close()
            self._client.close()
            raise GatewayError(f"cannot serve the gateway on {self.socket_path}: {exc}") from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
            name="corral-gateway",
        )  # fmt: skip
        self._thread.start()

    def close(self) -> None:
        """Stop serving, end open connections, remove the socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.end_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> Gateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ routing

    def container_base_url(self, port: int, index: int = 0) -> str:
        """The base URL of upstream ``index`` as an agent in the sandbox sees it (forwarder on ``port``)."""
        return f"http://127.0.0.1:{port}{self._prefix(index)}"

    def _prefix(self, index: int) -> str:
        path = _origin(self.upstreams[index].base_url)[3]
        return path if index == 0 else f"{LOCAL_PREFIX}upstream/{index}{path}"

    def _to_upstream(self, method: str, up: Upstream, rest: str, query: str) -> Route:
        if method not in MODEL_METHODS:
            return Route("refused", reason=f"{method} is not forwarded to the model endpoint")
        if up.endpoints is not None and not re.fullmatch(up.endpoints, rest):
            return Route("refused", reason=f"{rest or '/'} is not a model endpoint")
        return Route("upstream", up.base_url.rstrip("/") + rest + query, up)

    def resolve(self, method: str, target: str) -> Route:
        """Where ``method target`` goes (nothing is sent; an allowed host's name is looked up)."""
        try:
            return self._resolve(method, target)
        except ValueError as exc:  # a port that is no number, an unparsable URL
            return Route("refused", reason=f"malformed request target ({exc})")

    def _resolve(self, method: str, target: str) -> Route:
        if method == "CONNECT":
            name, _, number = target.rpartition(":")
            if number.isdigit() and self.host_allowed(name.strip("[]"), int(number)):
                return self._to_host(name.strip("[]"), int(number))
            return Route("refused", reason="CONNECT to a host the policy does not allow")
        split = urlsplit(target)
        if _unsafe_path(split.path):
            return Route("refused", reason=_unsafe_path(split.path))
        query = f"?{split.query}" if split.query else ""
        if split.scheme:  # an absolute-URI (proxy) request
            scheme, host, port, path = _origin(target)
            for up in self.upstreams:
                us, uh, up_port, upath = _origin(up.base_url)
                rest = _under(path, upath)
                if (scheme, host, port) == (us, uh, up_port) and rest is not None:
                    return self._to_upstream(method, up, rest, query)
            if scheme == "http" and self.host_allowed(host, port):
                return self._to_host(host, port, urlsplit(target))
            return Route("refused", reason="not a configured model endpoint or allowed host")
        if split.path.startswith(LOCAL_PREFIX):
            for i in range(1, len(self.upstreams)):
                rest = _under(split.path, self._prefix(i))
                if rest is not None:
                    return self._to_upstream(method, self.upstreams[i], rest, query)
            if split.path == VALIDATE_PATH and method == "POST" and self.validate is not None:
                return Route("local", split.path)
            return Route("refused", reason="no such gateway route")
        rest = _under(split.path, self._prefix(0))
        if rest is not None:
            return self._to_upstream(method, self.upstreams[0], rest, query)
        return Route("refused", reason=f"path outside the model endpoint's {self._prefix(0)}/")

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether ``allow_hosts`` lets ``host:port`` through (``host`` means ports 80 and 443)."""
        host = host.lower()
        for entry in self.allow_hosts:
            name, _, want = entry.partition(":")
            ports = (int(want),) if want else (80, 443)
            wild = name.startswith("*.") and host.endswith(name[1:])
            if (host == name or wild) and port in ports:
                return True
        return False

    def _to_host(self, host: str, port: int, url: SplitResult | None = None) -> Route:
        """The route to an allowed ``host`` (a plain ``url``, or a tunnel when None), pinned to
        the address that was checked, or a refusal.

        A literal address is taken as meant. A name is looked up once and
        refused when any address it has is not public (see the module
        docstring): that would reach this machine, a private network (the
        Docker bridge) or a cloud metadata endpoint.
        """
        try:
            checked = ipaddress.ip_address(host)
        except ValueError:
            try:
                found = [_unmapped(ipaddress.ip_address(a)) for a in self.resolver(host, port)]
            except (OSError, ValueError) as exc:
                return Route("refused", reason=f"cannot resolve {host} ({_why(exc)})")
            if not found:
                return Route("refused", reason=f"{host} resolves to no address")
            for ip in found:
                if not all(a.is_global for a in (ip, *_embedded(ip))):
                    return Route("refused", reason=(
                        f"{host} resolves to {ip}, not a public address (this machine, "
                        "a private network or a metadata service)"
                    ))  # fmt: skip
            checked = found[0]
        address = f"[{checked}]" if checked.version == 6 else str(checked)
        name = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        if url is None:
            return Route("host", f"{address}:{port}", name=name)
        rest = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return Route("host", f"http://{address}:{port}{rest}", name=url.netloc.rpartition("@")[2])

    # ------------------------------------------------------------ accounting

    def budget_refusal(self) -> str | None:
        """The refusal message once a budget is spent, else None."""
        with self._lock:
            if self.exhausted == "tokens":
                return f"corral: token budget spent ({self.used_tokens}/{self.max_tokens})"
            if self.exhausted == "cost_usd":
                return f"corral: cost budget spent (${self.used_cost:.4f}/${self.max_cost_usd:g})"
            return None

    def charge(self, model: str, prompt: int, completion: int) -> float:
        """Count one response's tokens and cost; set ``exhausted`` once a budget is crossed."""
        cost = price(self.prices, model, prompt, completion)
        crossed: dict[str, Any] | None = None
        with self._lock:
            self.used_tokens += prompt + completion
            self.used_cost += cost
            if self.exhausted is None:
                if self.max_tokens is not None and self.used_tokens > self.max_tokens:
                    self.exhausted = "tokens"
                    crossed = {"used": self.used_tokens, "limit": self.max_tokens}
                elif self.max_cost_usd is not None and self.used_cost > self.max_cost_usd:
                    self.exhausted = "cost_usd"
                    crossed = {"used": round(self.used_cost, 6), "limit": self.max_cost_usd}
        if crossed is not None:
            self.emit("gateway_budget_exhausted", {"resource": self.exhausted, **crossed})
        return cost

    def emit(self, kind: str, data: Mapping[str, Any]) -> None:
        """Hand an event to ``on_event`` (one at a time; a failing sink is logged, not raised)."""
        with self._event_lock:
            try:
                self.on_event(kind, data)
            except Exception as exc:  # the request was served; losing its event must not kill it
                log.warning("gateway event %s not recorded: %s", kind, self.redact(str(exc)))

    def redact(self, text: str) -> str:
        """``text`` without any upstream key."""
        for key in self._keys:
            text = redact(text, key)
        return redact(text, None)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise GatewayError("the gateway is not started")
        return self._client

    def acquire(self, timeout: float) -> bool:
        return self._slots.acquire(timeout=timeout)

    def release(self) -> None:
        self._slots.release()


def _unmapped(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address inside an IPv4-mapped IPv6 one (``::ffff:127.0.0.1``), else ``ip``."""
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped if mapped is not None else ip


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64's well-known prefix
#: and the deprecated IPv4-compatible form (``::127.0.0.1``).
_CARRIERS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one leads to as well (6to4, NAT64, IPv4-compatible)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    inside = [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) for net in _CARRIERS if ip in net]
    return inside + ([ip.sixtofour] if ip.sixtofour is not None else [])


def _why(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def runtime_problem(runtime: str, status: EngineStatus) -> str | None:
    """Why a sandbox on ``runtime`` cannot reach a gateway socket on this engine, or None.

    gVisor refuses connections to host unix sockets unless runsc runs with
    ``--host-uds=open`` (``corral doctor --fix`` registers it so).
    """
    if runtime == "runsc" and status.runsc_registered and not status.runsc_host_uds:
        return (
            "gVisor (runsc) is registered without --host-uds=open, so the sandbox cannot reach "
            "the model gateway's socket; run `corral doctor --fix` (or use --runtime runc)"
        )
    return None


def _bind_unix(sock: socket.socket, path: Path) -> None:
    """Bind ``sock`` at ``path`` (a stale socket of an earlier, dead gateway is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    with forwarder.unix_path(path) as address:
        sock.bind(address)


def _open_to_sandbox(path: Path) -> None:
    """Let the sandbox user connect: owned by it (root), else world-connectable (rootless)."""
    try:
        os.chown(path, SANDBOX_UID, SANDBOX_GID)
        path.chmod(0o600)
    except PermissionError:
        path.chmod(0o666)
