"""The HTTP door, shared by every blueprint: who the client is (its address, read through
trusted proxies only as far as they vouch), the bearer token it shows, the Host it asked for,
and the per-client budgets. Every comparison of a secret goes through `same`."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict
from ipaddress import IPv6Address, IPv6Network
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.wrappers import Request

from ragsync.config import Config
from ragsync.errors import Rejected
from ragsync.source import parse_address, within

if TYPE_CHECKING:
    from ragsync.engine import Engine
    from ragsync.operations import Local

MAX_BUCKETS = 10_000                  # rate-limit buckets kept; the least recently used go first
LOCAL_NAMES = ("localhost",)


def current_engine() -> Engine:
    """The engine of the app serving this request."""
    return current_app.extensions["ragsync"]


def current_ops() -> Local:
    """The operations layer over that engine (what every view calls)."""
    return current_app.extensions["ragsync.operations"]


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two texts, whatever characters a client sent."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def bearer() -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ").strip()


def client(config: Config, req: Request) -> str | None:
    """The client's address: the peer's, or — when the peer is one of `[server] trusted_proxies`
    — the nearest address in X-Forwarded-For that is not a trusted proxy (a client can write
    anything at the far end of that header, so it is read from the proxy's side; what is not an
    address is skipped)."""
    peer = parse_address(req.remote_addr)
    if peer is None or not config.trusted_proxies or not within(str(peer), config.trusted_proxies):
        return str(peer) if peer is not None else req.remote_addr
    hops = [parse_address(h) for h in req.headers.get("X-Forwarded-For", "").split(",")]
    return str(next((hop for hop in reversed(hops) if hop is not None and not within(str(hop), config.trusted_proxies)),
                    peer))


def client_key(config: Config) -> str:
    """What a per-client budget is keyed by: the address, or its /64 for IPv6 (one host
    rotates through a whole /64)."""
    ip = parse_address(client(config, request))
    if isinstance(ip, IPv6Address):
        return str(IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def https(config: Config) -> bool:
    """The client reached us over HTTPS (directly, or through a trusted proxy that says so)."""
    if request.is_secure:
        return True
    return (bool(config.trusted_proxies) and within(request.remote_addr, config.trusted_proxies)
            and request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https")


def host_allowed(config: Config) -> bool:
    """A browser page on another site can rebind its own name to 127.0.0.1 and read what this
    port answers; it cannot make the Host header say anything but its own name. So: an IP
    literal, localhost, or a name in `[server] allowed_hosts`."""
    name = _host_name()
    return (parse_address(name) is not None or name in LOCAL_NAMES or name in config.allowed_hosts
            or "*" in config.allowed_hosts)


def origin_allowed(config: Config) -> bool:
    """A browser page may call us only from our own origin, this machine or a name in `[server]
    allowed_hosts` (a page served from some IP address may not); agents and scripts send no
    Origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        name = (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return False
    address = parse_address(name)
    return (name == _host_name() or name in LOCAL_NAMES or (address is not None and address.is_loopback)
            or name in config.allowed_hosts or "*" in config.allowed_hosts)


def _host_name() -> str:
    """The Host header's name, without port or IPv6 brackets."""
    host = request.host.lower()
    return host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]


class RateLimiter:
    """Token buckets by key (a source, a client): a flood gets 429 with Retry-After instead of
    a slow server. At most MAX_BUCKETS are kept, so junk keys cost bounded memory."""

    def __init__(self) -> None:
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()     # key → (tokens, at)
        self.lock = threading.Lock()

    def wait_s(self, key: str, rate: float, burst: int) -> float:
        """0 when a request may pass now (and take a token), else seconds until one may."""
        with self.lock:
            now = time.monotonic()
            tokens, at = self.buckets.pop(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            passed = tokens >= 1
            self.buckets[key] = (tokens - 1 if passed else tokens, now)
            while len(self.buckets) > MAX_BUCKETS:
                self.buckets.popitem(last=False)
            return 0.0 if passed else (1 - tokens) / rate

    def charge(self, key: str, rate: float, burst: int, message: str) -> None:
        """Take a token or raise 429 (`message`) with the wait."""
        if rate and (wait := self.wait_s(key, rate, burst)):
            raise Rejected(429, message, retry_after=math.ceil(wait))


def charge_search(config: Config) -> None:
    """A query's token from its client's budget, whichever door it came in by (the API, the
    status page, MCP): queries share the model with the passes."""
    current_app.extensions["ragsync.limiter"].charge(f"search {client_key(config)}", config.search_rate_limit_per_s,
                                                     max(1, int(2 * config.search_rate_limit_per_s)), "search rate limit exceeded")
