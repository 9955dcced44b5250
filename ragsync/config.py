"""The TOML configuration: one frozen object, loaded once, with one-line errors.

Secrets never live in the file: it names the environment variables that hold them, and
they are read when needed so that `ragsync search` works without the webhook secrets.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

from connectors import connector_class
from ragsync.embed import PROVIDERS, EmbeddingConfig
from ragsync.errors import ConfigError
from ragsync.keywords import check_language
from ragsync.source import SourceConfig, env_secret, strong_token

_TOP_KEYS = {"data_dir", "server", "qdrant", "queue", "chunking", "reconcile", "embedding", "search", "sources"}
MODES = ("hybrid", "dense", "keyword")      # search modes (search.py), the first the default
_SOURCE_KEYS = {"name", "type", "base_url", "webhook_secret_env", "allow_ips", "rate_limit_per_s", "rate_limit_burst"}
# Each table's keys → the Config field each sets; a field's type and default are the dataclass's.
_TABLES = {
    "server": {k: k for k in ("host", "port", "admin_token_env", "search_token_env", "workers", "http_threads",
                              "max_body_bytes", "timestamp_tolerance_s", "reconcile_on_start",
                              "search_rate_limit_per_s", "worker_host", "worker_port")},
    "qdrant": {"collection": "collection", "url": "qdrant_url", "api_key_env": "qdrant_api_key_env"},
    "queue": {k: k for k in ("max_attempts", "backoff_base_s", "backoff_max_s", "redis_url", "lease_s",
                              "outage_horizon_s")},
    "chunking": {"max_tokens": "max_tokens"},
    "search": {"language": "search_language", "mode": "search_mode"},
    "reconcile": {k: k for k in ("max_delete_share", "delete_floor", "delete_window_s", "poll_interval_s", "audit_interval_s")},
}
_KINDS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool}


@dataclass(frozen=True)
class StoreSettings:
    """`[qdrant]` storage layout, chosen by scripts/bench at up to 1M points for a 2 GB machine:
    original vectors and payload memory-mapped from disk, int8 copies of the vectors in RAM
    searched through HNSW and rescored from the originals. Every one can change on a live
    index (Qdrant rebuilds its segments in place); only a new model needs `ragsync reindex`."""
    on_disk: bool = True                    # original vectors and payload memory-mapped, not in RAM
    quantization: str = "int8"              # "int8": scalar-quantized copies in RAM; "none": originals only
    hnsw_m: int = 16                        # graph edges per point
    hnsw_ef_construct: int = 100            # candidates while building the graph
    search_ef: int = 512                    # candidates while searching: recall@10 >= 0.98 up to 1M (scripts/bench)
    oversampling: float = 2.0               # quantized candidates per result, rescored exactly


QUANTIZATIONS = ("int8", "none")


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
    worker_host: str = "127.0.0.1"             # `ragsync worker`'s health/metrics port: loopback unless set
    worker_port: int = 8788                    # `ragsync worker`: /healthz, /readyz, /metrics; 0 = none
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()   # their X-Forwarded-For names the client
    allowed_hosts: tuple[str, ...] = ()        # Host names the console, search and admin answer (DNS rebinding)
    collection: str = "ragsync"
    qdrant_url: str | None = None
    qdrant_api_key_env: str | None = None
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    redis_url: str | None = None
    lease_s: float = 60.0
    outage_horizon_s: float = 3 * 86400.0       # a CMS that is down is waited out this long before a key parks
    max_tokens: int = 200
    max_delete_share: float = 0.2
    delete_floor: int = 10                     # a source may always lose this many pages per window
    delete_window_s: float = 3600.0            # the deletion budget's window (every path)
    poll_interval_s: float = 60.0              # ask each CMS what changed since the last poll; 0 = off
    audit_interval_s: float = 900.0            # compare each CMS's listing with the page records; 0 = off
    search_language: str = "english"          # the keyword side's tokenizer, stemmer and stopwords (keywords.py)
    search_mode: str = "hybrid"                # what /search does without mode=: chosen by scripts/bench-search
    embedding: EmbeddingConfig = EmbeddingConfig()
    store: StoreSettings = StoreSettings()
    sources: dict[str, SourceConfig] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def exclusive(self) -> bool:
        """The store or the queue is embedded in data_dir: one working process owns it (its
        DataLock), and CLI commands go through that process. False only in server mode."""
        return not (self.qdrant_url and self.redis_url)

    def admin_token(self) -> str | None:
        """The admin bearer token, or None when its variable is unset (admin API closed)."""
        token = os.environ.get(self.admin_token_env) or None
        return strong_token(token, self.admin_token_env) if token is not None else None

    def search_token(self) -> str | None:
        """The search API key; None when search is open. Named but unset is an error."""
        if not self.search_token_env:
            return None
        return strong_token(env_secret(self.search_token_env, "[server] search_token_env"), self.search_token_env)

    def source(self, name: str) -> SourceConfig:
        try:
            return self.sources[name]
        except KeyError:
            raise ConfigError(f"unknown source {name!r} (configured: {', '.join(self.sources) or 'none'})") from None


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
    base = path.parent
    _check_keys(raw, _TOP_KEYS, "top level")
    settings: dict[str, Any] = {}
    store_keys = {f.name: f.name for f in fields(StoreSettings)}
    extra = {"server": {"trusted_proxies", "allowed_hosts"}, "qdrant": set(store_keys)}
    for name, keys in _TABLES.items():
        table = _table(raw, name, set(keys) | extra.get(name, set()))
        settings.update(_settings(Config, table, keys))
        if "trusted_proxies" in table:
            settings["trusted_proxies"] = _networks(table["trusted_proxies"], "[server]", "trusted_proxies")
        if "allowed_hosts" in table:
            hosts = table["allowed_hosts"]
            if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
                raise ConfigError('[server] allowed_hosts must be a list of host names, e.g. ["search.example.com"]')
            settings["allowed_hosts"] = tuple(h.strip().lower() for h in hosts)
        if name == "qdrant":
            store = _store(table, store_keys)
    if not 0 <= settings.get("max_delete_share", 0) <= 1 or settings.get("delete_floor", 0) < 0:
        raise ConfigError("[reconcile] max_delete_share must be between 0 and 1 and delete_floor 0 or more")
    check_language(settings.get("search_language", "english"))
    if settings.get("search_mode", "hybrid") not in MODES:
        raise ConfigError(f"[search] mode must be one of {', '.join(MODES)}, got {settings['search_mode']!r}")
    for key in ("poll_interval_s", "audit_interval_s"):
        if settings.get(key, 0) < 0:
            raise ConfigError(f"[reconcile] {key} must be 0 (off) or a number of seconds, got {settings[key]!r}")
    if settings.get("outage_horizon_s", 0) < 0:
        raise ConfigError("[queue] outage_horizon_s must be 0 (park after max_attempts) or a number of seconds")
    embedding_keys = {f.name: f.name for f in fields(EmbeddingConfig)}
    embedding = _embedding(_table(raw, "embedding", set(embedding_keys)), embedding_keys)
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
            options=options, base_dir=base, allow_ips=_networks(src.get("allow_ips", []), where, "allow_ips"),
            **_settings(SourceConfig, src, {"rate_limit_per_s": "rate_limit_per_s",
                                            "rate_limit_burst": "rate_limit_burst"}))
    data_dir = raw.get("data_dir", "var")
    if not isinstance(data_dir, str):
        raise ConfigError("data_dir must be a string")
    return Config(path=path, data_dir=(base / data_dir).resolve(), embedding=embedding, store=store, sources=sources, **settings)


def _settings(cls: type, table: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """The fields a table sets, each checked against its field's type; the rest keep the
    dataclass's defaults, which are therefore written in one place."""
    types = {f.name: str(f.type).removesuffix(" | None") for f in fields(cls)}
    out = {}
    for key, name in keys.items():
        if key in table:
            value = _get(table, key, _KINDS[types[name]], None)
            out[name] = float(value) if types[name] == "float" and value is not None else value
    return out


def _embedding(table: dict[str, Any], keys: dict[str, str]) -> EmbeddingConfig:
    """The provider's own class checks what only it reads (embed.PROVIDERS)."""
    settings = EmbeddingConfig(**_settings(EmbeddingConfig, table, keys))
    if settings.provider not in PROVIDERS:
        raise ConfigError(f"[embedding] provider must be one of {', '.join(PROVIDERS)}, got {settings.provider!r}")
    for key in ("batch_size", "max_concurrency", "timeout_s", "threads"):
        value = getattr(settings, key)
        if value is not None and value <= 0:
            raise ConfigError(f"[embedding] {key} must be positive, got {value!r}")
    PROVIDERS[settings.provider].validate(settings, table)
    return settings


def _store(table: dict[str, Any], keys: dict[str, str]) -> StoreSettings:
    settings = StoreSettings(**_settings(StoreSettings, table, keys))
    if settings.quantization not in QUANTIZATIONS:
        raise ConfigError(f"[qdrant] quantization must be one of {', '.join(QUANTIZATIONS)}, got {settings.quantization!r}")
    for key, low in (("hnsw_m", 4), ("hnsw_ef_construct", 4), ("search_ef", 1), ("oversampling", 1)):
        if getattr(settings, key) < low:
            raise ConfigError(f"[qdrant] {key} must be at least {low}, got {getattr(settings, key)!r}")
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


def _networks(values: Any, where: str, key: str) -> tuple[IPv4Network | IPv6Network, ...]:
    if not isinstance(values, list):
        raise ConfigError(f"{where}: '{key}' must be a list of addresses or CIDR ranges")
    try:
        return tuple(ip_network(v, strict=False) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: '{key}': {exc}") from None


def _opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string")
    return value
