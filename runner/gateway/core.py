"""The model gateway: the sandbox's only way out, on a unix socket, holding the key on the host.

The sandbox keeps ``--network none``. ``Gateway`` serves HTTP on a unix
socket in a runner-owned directory that is bind-mounted into the container;
``sandbox/forwarder.py`` (mounted too) relays ``127.0.0.1:PORT`` inside the
container to it, so an agent CLI just sees a base URL
(``container_base_url``) and a dummy key (``DUMMY_KEY``).

Where a request may go is ``runner.gateway.routes`` (``Router``): an upstream's
inference endpoints (the client's ``Authorization`` / ``api-key`` /
``x-api-key`` headers are dropped and the real key is added here, in the
header style the client used), a host the policy's ``[gateway]`` allows (no
key; a name looked up once and refused unless public), ``POST /corral/validate``
(``validate``, an agent's command hook), or a refusal: an OpenAI-style JSON
error and a ``gateway_refused`` event (method, host, path, reason).
``runner.gateway.http`` serves the socket and moves the bytes;
``runner.gateway.usage`` reads what each answer cost.

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
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2 as httpx

from runner.errors import GatewayError as GatewayError
from runner.gateway.http import Server
from runner.gateway.routes import Resolver, Route, Router, Upstream, Validate, system_resolver
from runner.gateway.scrub import Scrubber
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
#: Defaults of the bounds (see ``Gateway``): request body, connections from the sandbox,
#: requests in flight upstream, seconds a connection may sit idle.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_CONNECTIONS = 64
MAX_CONCURRENT = 8
IDLE_TIMEOUT_S = 600.0

OnEvent = Callable[[str, Mapping[str, Any]], None]


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
        self.router = Router(upstreams, allow_hosts, resolver)
        self.socket_path = Path(socket_path)
        self.upstreams, self.allow_hosts = self.router.upstreams, self.router.allow_hosts
        self.on_event = on_event
        self.max_tokens, self.max_cost_usd = max_tokens, max_cost_usd
        self.prices = dict(prices)
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
        self._max_connections = max_connections
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
        server = Server(self, self._max_connections)
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
        return f"http://127.0.0.1:{port}{self.router.prefix(index)}"

    def resolve(self, method: str, target: str) -> Route:
        """Where ``method target`` goes (nothing is sent; an allowed host's name is looked up)."""
        return self.router.resolve(method, target, local=self.validate is not None)

    def host_allowed(self, host: str, port: int) -> bool:
        """Whether ``allow_hosts`` lets ``host:port`` through (``host`` means ports 80 and 443)."""
        return self.router.host_allowed(host, port)

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

    def scrubber(self, *, sse: bool) -> Scrubber:
        """What takes the upstream keys out of one response as it is copied."""
        return Scrubber(self._keys, sse=sse)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise GatewayError("the gateway is not started")
        return self._client

    def acquire(self, timeout: float) -> bool:
        return self._slots.acquire(timeout=timeout)

    def release(self) -> None:
        self._slots.release()


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
