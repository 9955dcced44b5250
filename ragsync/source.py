"""What a connector is given: one source's settings, and the secrets the environment holds
for it. A leaf module, so connectors depend on it and not on the whole config loader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
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


def within(address: str | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    """Whether an address (as a request gives it) is in one of the networks; garbage is not."""
    try:
        ip = ip_address((address or "").strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)
