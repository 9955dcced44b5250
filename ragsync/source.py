"""What a connector is given: one source's settings, and the secrets the environment holds
for it. A leaf module, so connectors depend on it and not on the whole config loader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

from ragsync.errors import ConfigError


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: str
    base_url: str | None = None
    webhook_secret_env: str | None = None
    options: dict[str, Any] = field(default_factory=dict)   # connector-specific keys
    base_dir: Path = Path(".")                                # the config file's folder
    allow_ips: tuple[IPv4Network | IPv6Network, ...] = ()    # empty: any address may deliver
    rate_limit_per_s: float | None = None                     # deliveries per second, then 429
    rate_limit_burst: int = 20

    def allows(self, address: str | None) -> bool:
        """Whether a delivery from this client address is allowed (no list: all are)."""
        return not self.allow_ips or within(address, self.allow_ips)

    def secret(self) -> str:
        """The webhook secret, read from the environment variable the config names."""
        if not self.webhook_secret_env:
            raise ConfigError(f"source {self.name!r}: webhook_secret_env is not set in the config")
        return env_secret(self.webhook_secret_env, f"source {self.name!r}")


def redact_url(url: str | None) -> str:
    """A URL as it may be shown (logs, pages, errors): any `user:password@` replaced by `***@`."""
    scheme, sep, rest = str(url or "").partition("://")
    if not sep:
        return str(url or "")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


def env_secret(var: str, what: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{what}: environment variable {var} is not set")
    not_an_example(value, var)
    return value


def not_an_example(value: str, var: str) -> None:
    """A placeholder copied from an example file works for anyone who read that file."""
    if "change-me" in value.lower() or "change+me" in value.lower() or value.lower() in ("changeme", "secret"):
        raise ConfigError(f"environment variable {var} holds an example value: set a secret of your own")


MIN_TOKEN_CHARS = 24


def strong_token(value: str, var: str) -> str:
    """A bearer token (admin, search) long enough that guessing it over HTTP is hopeless."""
    not_an_example(value, var)
    if len(value) < MIN_TOKEN_CHARS:
        raise ConfigError(f"environment variable {var} holds a token of {len(value)} characters; use at least "
                          f"{MIN_TOKEN_CHARS} (python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return value


def parse_address(text: str | None) -> IPv4Address | IPv6Address | None:
    """An IP address as a request or a header gives it, or None for anything else. An IPv4
    peer of a socket bound to `::` arrives as `::ffff:a.b.c.d`: it is that IPv4 address."""
    try:
        ip = ip_address((text or "").strip())
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if isinstance(ip, IPv6Address) else ip


def within(address: str | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    """Whether an address (as a request gives it) is in one of the networks; garbage is not."""
    ip = parse_address(address)
    return ip is not None and any(ip in net for net in networks)
