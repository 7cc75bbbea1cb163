"""Where a request from the sandbox may go: the gateway's routing, as data and pure decisions.

``Router.resolve(method, target)`` answers a ``Route`` and sends nothing:

- requests under an upstream's path (``/v1/...`` for ``https://api.openai.com/v1``),
  or absolute-URI proxy requests for exactly that scheme, host, port and path
  prefix, go to that upstream if they are GET/HEAD/POST to one of its
  inference endpoints (``MODEL_ENDPOINTS``: chat/completions, responses,
  messages, embeddings, models; never files, fine-tuning or anything else
  the key could manage); upstream ``i > 0`` is reached under
  ``/corral/upstream/i`` (``Router.prefix``);
- hosts listed in ``allow_hosts`` (the policy's ``[gateway]``, off by default)
  pass as plain HTTP proxy requests or ``CONNECT`` tunnels, with no key. A
  listed *name* is looked up once (``resolver``) and refused unless every
  address it resolves to is public (``ipaddress`` ``is_global``, IPv4-mapped
  IPv6 unmapped first, and the IPv4 address inside a 6to4, NAT64 or
  IPv4-compatible one public too): no loopback, private (Docker's bridge, 10/8,
  192.168/16 ...), link-local (metadata services), shared or unspecified
  address. The route then carries exactly the address that was checked
  (no second lookup a rebinding DNS server could answer differently), and the
  name for the request's ``Host`` header. A literal address in
  ``allow_hosts`` is taken as meant (the policy's author listed that very
  address). Model upstreams are not checked at all: they are configured by
  the user (a vLLM on a private address, a test server on loopback) and
  reached as configured;
- ``POST /corral/validate`` is local (an agent's command hook), when the
  gateway has a validator;
- anything else (other paths, other hosts, ``CONNECT`` elsewhere, dot
  segments or encoded slashes in a path) is refused, with the reason.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from runner.errors import UsageError

#: Gateway-local routes (not forwarded anywhere).
LOCAL_PREFIX = "/corral/"
VALIDATE_PATH = "/corral/validate"

#: The inference endpoints of the OpenAI, Anthropic and compatible APIs, below an upstream's
#: base URL (with or without its own ``/v1``): what agents need, and nothing that manages the
#: account behind the key (files, fine-tuning, batches, assistants, organisation).
MODEL_ENDPOINTS = (
    r"(/v1)?/(chat/completions|completions|responses|embeddings|messages(/count_tokens)?"
    r"|models(/[A-Za-z0-9._:-]+)?)"
)
#: Methods forwarded to an upstream (inference is POST; listing models is GET).
MODEL_METHODS = frozenset(("GET", "HEAD", "POST"))

#: An agent's command hook behind ``VALIDATE_PATH``: a command -> ``(decision, reason)``.
Validate = Callable[[str], tuple[str, str]]
#: Looks a host name up: the addresses (IP text) it resolves to; raises ``OSError`` when it cannot.
Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """``host``'s addresses from the system resolver (``getaddrinfo``)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@dataclass(frozen=True)
class Upstream:
    """A model endpoint the gateway forwards to."""

    base_url: str
    """``http://127.0.0.1:PORT/v1``, ``https://api.openai.com/v1`` ..."""
    api_key: str | None
    """Injected on the host side; the container holds only the gateway's dummy key."""
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


class Router:
    """The routes of one gateway: its upstreams and the hosts its policy allows."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        allow_hosts: Sequence[str] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        """``resolver`` looks up the names of ``allow_hosts`` (and only those).

        Raises ``UsageError`` (a ``ValueError``) without upstreams or for one whose
        base URL is not ``http(s)://HOST[:PORT][/PATH]``.
        """
        if not upstreams:
            raise UsageError("the gateway needs at least one upstream")
        for up in upstreams:
            scheme, host, _, _ = _origin(up.base_url)
            if scheme not in ("http", "https") or not host:
                raise UsageError(
                    f"upstream base URL must be http(s)://HOST[:PORT][/PATH]: {up.base_url}"
                )
        self.upstreams = tuple(upstreams)
        self.allow_hosts = tuple(h.lower() for h in allow_hosts)
        self.resolver = resolver

    def prefix(self, index: int) -> str:
        """The path upstream ``index`` is served under (its own path; ``/corral/upstream/i/...``
        for every upstream but the first)."""
        path = _origin(self.upstreams[index].base_url)[3]
        return path if index == 0 else f"{LOCAL_PREFIX}upstream/{index}{path}"

    def resolve(self, method: str, target: str, *, local: bool = False) -> Route:
        """Where ``method target`` goes (nothing is sent; an allowed host's name is looked up).

        ``local``: whether ``POST VALIDATE_PATH`` is served here (the gateway has a
        validator). Never raises: a malformed target is a refusal.
        """
        try:
            return self._resolve(method, target, local)
        except ValueError as exc:  # a port that is no number, an unparsable URL
            return Route("refused", reason=f"malformed request target ({exc})")

    def _resolve(self, method: str, target: str, local: bool) -> Route:
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
                    return _to_upstream(method, up, rest, query)
            if scheme == "http" and self.host_allowed(host, port):
                return self._to_host(host, port, urlsplit(target))
            return Route("refused", reason="not a configured model endpoint or allowed host")
        if split.path.startswith(LOCAL_PREFIX):
            for i in range(1, len(self.upstreams)):
                rest = _under(split.path, self.prefix(i))
                if rest is not None:
                    return _to_upstream(method, self.upstreams[i], rest, query)
            if split.path == VALIDATE_PATH and method == "POST" and local:
                return Route("local", split.path)
            return Route("refused", reason="no such gateway route")
        rest = _under(split.path, self.prefix(0))
        if rest is not None:
            return _to_upstream(method, self.upstreams[0], rest, query)
        return Route("refused", reason=f"path outside the model endpoint's {self.prefix(0)}/")

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


def _to_upstream(method: str, up: Upstream, rest: str, query: str) -> Route:
    if method not in MODEL_METHODS:
        return Route("refused", reason=f"{method} is not forwarded to the model endpoint")
    if up.endpoints is not None and not re.fullmatch(up.endpoints, rest):
        return Route("refused", reason=f"{rest or '/'} is not a model endpoint")
    return Route("upstream", up.base_url.rstrip("/") + rest + query, up)


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
