"""The TOML configuration: one frozen object, loaded once, with one-line errors.

Secrets never live in the file: it names the environment variables that hold them, and
they are read when needed so that `ragsync search` works without the webhook secrets.
"""

from __future__ import annotations

import os
import tomllib
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragsync.errors import ConfigError

_TOP_KEYS = {"data_dir", "server", "qdrant", "queue", "chunking", "reconcile", "embedding", "sources"}
_SERVER_KEYS = {"host", "port", "admin_token_env", "search_token_env", "workers", "http_threads", "max_body_bytes",
                "timestamp_tolerance_s", "reconcile_on_start", "search_rate_limit_per_s"}
_QDRANT_KEYS = {"collection", "url", "api_key_env"}
_QUEUE_KEYS = {"max_attempts", "backoff_base_s", "backoff_max_s", "redis_url", "lease_s"}
_CHUNKING_KEYS = {"max_tokens"}
_RECONCILE_KEYS = {"max_delete_share", "delete_window_s"}
_EMBEDDING_KEYS = {"provider", "backend", "model", "url", "api_key_env", "batch_size", "timeout_s", "max_concurrency",
                   "query_prefix", "document_prefix"}
PROVIDERS = ("local", "openai")
BACKENDS = ("torch", "torch-int8", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"           # measured: scripts/bench-embed, README "Embedding"
_SOURCE_KEYS = {"name", "type", "base_url", "webhook_secret_env", "allow_ips", "rate_limit_per_s", "rate_limit_burst"}


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
        if not self.allow_ips:
            return True
        try:
            ip = ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.allow_ips)

    def secret(self) -> str:
        """The webhook secret, read from the environment variable the config names."""
        if not self.webhook_secret_env:
            raise ConfigError(f"source {self.name!r}: webhook_secret_env is not set in the config")
        return env_secret(self.webhook_secret_env, f"source {self.name!r}")


@dataclass(frozen=True)
class EmbeddingConfig:
    """`[embedding]`: a local model (the packaged all-MiniLM-L6-v2 by default) or an
    OpenAI-compatible embedding server."""
    provider: str = "local"
    backend: str = DEFAULT_BACKEND          # local only
    model: str | None = None                # local: a folder or hub id; openai: the model name sent
    url: str | None = None                  # openai: e.g. http://gpu-box:8080/v1
    api_key_env: str | None = None
    batch_size: int | None = None           # texts per model call / request (local 8, openai 64)
    timeout_s: float = 30.0
    max_concurrency: int = 4                # requests in flight to the server
    query_prefix: str = ""                  # e5: "query: ", bge: "Represent this sentence ...: "
    document_prefix: str = ""               # e5: "passage: "


@dataclass(frozen=True)
class Config:
    path: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8787
    admin_token_env: str = "RAGSYNC_ADMIN_TOKEN"
    search_token_env: str | None = None        # set: GET /search needs this bearer token
    workers: int = 2
    http_threads: int = 16
    max_body_bytes: int = 1024 * 1024
    timestamp_tolerance_s: int = 300
    reconcile_on_start: bool = True
    search_rate_limit_per_s: float = 20.0     # per client address; 0 = no limit
    collection: str = "ragsync"
    qdrant_url: str | None = None
    qdrant_api_key_env: str | None = None
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    redis_url: str | None = None
    lease_s: float = 60.0
    max_tokens: int = 200
    max_delete_share: float = 0.2
    delete_window_s: float = 3600.0            # webhook-path deletion guard: max_delete_share per window
    embedding: EmbeddingConfig = EmbeddingConfig()
    sources: dict[str, SourceConfig] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def admin_token(self) -> str | None:
        """The admin bearer token, or None when its variable is unset (admin API closed)."""
        token = os.environ.get(self.admin_token_env) or None
        if token is not None:
            _not_an_example(token, self.admin_token_env)
        return token

    def search_token(self) -> str | None:
        """The search API key; None when search is open. Named but unset is an error."""
        return env_secret(self.search_token_env, "[server] search_token_env") if self.search_token_env else None

    def source(self, name: str) -> SourceConfig:
        try:
            return self.sources[name]
        except KeyError:
            raise ConfigError(f"unknown source {name!r} (configured: {', '.join(self.sources) or 'none'})") from None


def env_secret(var: str, what: str) -> str:
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{what}: environment variable {var} is not set")
    _not_an_example(value, var)
    return value


def _not_an_example(value: str, var: str) -> None:
    """A placeholder copied from an example file works for anyone who read that file."""
    if "change-me" in value.lower() or "change+me" in value.lower() or value.lower() in ("changeme", "secret"):
        raise ConfigError(f"environment variable {var} holds an example value: set a secret of your own")


def config_path(explicit: str | os.PathLike | None) -> Path:
    """--config wins, then RAGSYNC_CONFIG; there is no silent default file."""
    chosen = explicit or os.environ.get("RAGSYNC_CONFIG")
    if not chosen:
        raise ConfigError("no config file: pass --config PATH or set RAGSYNC_CONFIG")
    return Path(chosen)


def load(path: str | os.PathLike) -> Config:
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Config:
    from connectors import connector_class   # the registry knows each type's own keys

    base = path.parent
    _check_keys(raw, _TOP_KEYS, "top level")
    server = _table(raw, "server", _SERVER_KEYS)
    qdrant = _table(raw, "qdrant", _QDRANT_KEYS)
    queue = _table(raw, "queue", _QUEUE_KEYS)
    chunking = _table(raw, "chunking", _CHUNKING_KEYS)
    reconcile = _table(raw, "reconcile", _RECONCILE_KEYS)
    embedding = _embedding(_table(raw, "embedding", _EMBEDDING_KEYS))
    sources: dict[str, SourceConfig] = {}
    raw_sources = raw.get("sources", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("[[sources]] must be an array of tables")
    for i, src in enumerate(raw_sources):
        where = f"sources[{i}]"
        for key in ("name", "type"):
            if not isinstance(src.get(key), str) or not src[key]:
                raise ConfigError(f"{where}: '{key}' is required")
        name, type_ = src["name"], src["type"]
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '-' or '_' (it is a URL segment)")
        if name in sources:
            raise ConfigError(f"{where}: duplicate source name {name!r}")
        cls = connector_class(type_)
        _check_keys(src, _SOURCE_KEYS | set(cls.options), f"source {name!r}")
        options = {k: v for k, v in src.items() if k not in _SOURCE_KEYS}
        sources[name] = SourceConfig(
            name=name, type=type_, base_url=_opt_str(src, "base_url", where),
            webhook_secret_env=_opt_str(src, "webhook_secret_env", where),
            options=options, base_dir=base, allow_ips=_networks(src.get("allow_ips", []), where),
            rate_limit_per_s=_get(src, "rate_limit_per_s", (int, float), None),
            rate_limit_burst=_get(src, "rate_limit_burst", int, 20),
        )
    data_dir = raw.get("data_dir", "var")
    if not isinstance(data_dir, str):
        raise ConfigError("data_dir must be a string")
    return Config(
        path=path,
        data_dir=(base / data_dir).resolve(),
        host=_get(server, "host", str, "127.0.0.1"),
        port=_get(server, "port", int, 8787),
        admin_token_env=_get(server, "admin_token_env", str, "RAGSYNC_ADMIN_TOKEN"),
        search_token_env=_get(server, "search_token_env", str, None),
        workers=_get(server, "workers", int, 2),
        http_threads=_get(server, "http_threads", int, 16),
        max_body_bytes=_get(server, "max_body_bytes", int, 1024 * 1024),
        timestamp_tolerance_s=_get(server, "timestamp_tolerance_s", int, 300),
        reconcile_on_start=_get(server, "reconcile_on_start", bool, True),
        search_rate_limit_per_s=float(_get(server, "search_rate_limit_per_s", (int, float), 20.0)),
        collection=_get(qdrant, "collection", str, "ragsync"),
        qdrant_url=_get(qdrant, "url", str, None),
        qdrant_api_key_env=_get(qdrant, "api_key_env", str, None),
        max_attempts=_get(queue, "max_attempts", int, 6),
        backoff_base_s=_get(queue, "backoff_base_s", (int, float), 1.0),
        backoff_max_s=_get(queue, "backoff_max_s", (int, float), 300.0),
        redis_url=_get(queue, "redis_url", str, None),
        lease_s=_get(queue, "lease_s", (int, float), 60.0),
        max_tokens=_get(chunking, "max_tokens", int, 200),
        max_delete_share=_get(reconcile, "max_delete_share", (int, float), 0.2),
        delete_window_s=_get(reconcile, "delete_window_s", (int, float), 3600.0),
        embedding=embedding,
        sources=sources,
    )


def _embedding(table: dict[str, Any]) -> EmbeddingConfig:
    default = EmbeddingConfig()
    provider = _get(table, "provider", str, default.provider)
    if provider not in PROVIDERS:
        raise ConfigError(f"[embedding] provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    backend = _get(table, "backend", str, default.backend)
    if backend not in BACKENDS:
        raise ConfigError(f"[embedding] backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if provider == "openai":
        if "backend" in table:
            raise ConfigError('[embedding] backend applies to provider "local" only')
        for key in ("url", "model"):
            if not table.get(key):
                raise ConfigError(f'[embedding] provider "openai" needs {key}')
        if not str(table["url"]).startswith(("http://", "https://")):
            raise ConfigError(f"[embedding] url must start with http:// or https://, got {table['url']!r}")
    settings = EmbeddingConfig(
        provider=provider, backend=backend, model=_get(table, "model", str, None), url=_get(table, "url", str, None),
        api_key_env=_get(table, "api_key_env", str, None), batch_size=_get(table, "batch_size", int, None),
        timeout_s=float(_get(table, "timeout_s", (int, float), default.timeout_s)),
        max_concurrency=_get(table, "max_concurrency", int, default.max_concurrency),
        query_prefix=_get(table, "query_prefix", str, ""), document_prefix=_get(table, "document_prefix", str, ""))
    for key in ("batch_size", "max_concurrency", "timeout_s"):
        value = getattr(settings, key)
        if value is not None and value <= 0:
            raise ConfigError(f"[embedding] {key} must be positive, got {value!r}")
    return settings


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _table(raw: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    _check_keys(table, allowed, f"[{name}]")
    return table


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = table.get(key, default)
    if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
        raise ConfigError(f"{key}: expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _networks(values: Any, where: str) -> tuple[IPv4Network | IPv6Network, ...]:
    if not isinstance(values, list):
        raise ConfigError(f"{where}: 'allow_ips' must be a list of addresses or CIDR ranges")
    try:
        return tuple(ip_network(v, strict=False) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: 'allow_ips': {exc}") from None


def _opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string")
    return value
