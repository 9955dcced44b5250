"""`ragsync check`: what a first start and the first webhook need, tried now — variables and
secrets, the store, Redis, the embedding server, and per source the CMS itself (its listing
and one document through the real connector, with the verdict the pass would reach) — and
the exact settings to give each CMS. One line per finding, naming the source and what to do;
nothing is written, and an embedded store held by a running daemon is left alone."""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from connectors import connector_class
from connectors.base import Connector, Gone
from ragsync import index
from ragsync.config import Config
from ragsync.datalock import DataLock
from ragsync.embed import PROVIDERS, open_embedder
from ragsync.errors import FetchError, RagsyncError
from ragsync.fingerprint import fingerprint, refusal
from ragsync.index import embedded_root

TIMEOUT = httpx.Timeout(10.0, connect=3.0)


@dataclass
class Finding:
    what: str                 # "server", "store", "queue", "embedding" or "source <name>"
    ok: bool
    text: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    setup: dict[str, list[str]] = field(default_factory=dict)     # source → what to set in its CMS

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, what: str, ok: bool, text: str) -> None:
        self.findings.append(Finding(what, ok, text))

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def run(config: Config, source: str | None = None) -> Report:
    report = Report()
    _tokens(config, report)
    _store(config, report)
    _queue(config, report)
    _embedding(config, report)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, headers={"user-agent": "ragsync/0.1 check"}) as http:
        _mcp(config, http, report)
        for name in [config.source(source).name] if source else list(config.sources):
            _source(config, name, http, report)
    if not config.sources:
        report.add("server", False, "no [[sources]] configured: add one (see config/ragsync.toml)")
    return report


def _tokens(config: Config, report: Report) -> None:
    try:
        admin = config.admin_token()
        report.add("server", True, f"admin API {'enabled' if admin else 'closed'} (${config.admin_token_env}"
                                   f"{' is set' if admin else ' is not set: the CLI cannot talk to a running daemon'})")
    except RagsyncError as exc:
        report.add("server", False, str(exc))
    try:
        key = config.search_token()
        report.add("server", True, "search needs a bearer key" if key else
                   "search is open to anyone who can reach the port (set [server] search_token_env to close it)")
    except RagsyncError as exc:
        report.add("server", False, str(exc))


def _store(config: Config, report: Report) -> None:
    if config.qdrant_url:
        _server(config, report)
    if config.exclusive:
        _data_dir(config, report)
    if all(f.ok for f in report.findings if f.what == "store"):
        _collection(config, report)


def _server(config: Config, report: Report) -> None:
    try:
        client = index.server_client(config, timeout=5, check_compatibility=False)
        version = client.info().version
        names = {c.name for c in client.get_collections().collections} | {
            a.alias_name for a in client.get_aliases().aliases}
        client.close()
        report.add("store", True, f"Qdrant server {version} at {config.qdrant_url}; collection "
                                  f"{config.collection!r} {'exists' if config.collection in names else 'is created at first start'}")
    except RagsyncError as exc:
        report.add("store", False, str(exc))
    except Exception as exc:
        report.add("store", False, f"cannot reach the Qdrant server at {config.qdrant_url}: "
                                   f"{type(exc).__name__}: {exc}")


def _data_dir(config: Config, report: Report) -> None:
    data = config.data_dir
    lock = DataLock(data, create=False)
    existing = next(p for p in (data, *data.parents) if p.exists())
    if not existing.is_dir():
        report.add("store", False, f"data_dir {data} cannot be created: {existing} is a file, not a folder")
    elif not os.access(existing, os.W_OK | os.X_OK):
        report.add("store", False, f"data_dir {data} is not writable by this user (run check as the user that runs "
                                   "`ragsync serve`)" if existing == data else
                                   f"data_dir {data} cannot be created ({existing} is not writable by this user)")
    elif not data.exists():
        report.add("store", True, f"data_dir {data} does not exist yet: the first `ragsync serve` creates it")
    elif lock.held():
        url = (lock.announced() or {}).get("url")
        report.add("store", True, f"data_dir {data} is held by a running ragsync daemon" + (f" at {url}" if url else ""))
    elif not config.qdrant_url:
        report.add("store", True, f"data_dir {data}: " + ("an index is there" if embedded_root(data).exists() else
                                                           "no index yet (the first `ragsync serve` builds it)"))


def _collection(config: Config, report: Report) -> None:
    """What `serve` judges before its first write (ragsync.fingerprint.refusal), judged the same
    way here, reading the collection without opening it for writing."""
    try:
        found = index.found(config)
    except Exception as exc:
        report.add("store", False, f"cannot read the collection {config.collection!r}: {type(exc).__name__}: {exc}")
        return
    if found is None:
        return
    try:
        expected = fingerprint(config, open_embedder(config.embedding, config.data_dir))
    except RagsyncError:
        return                                   # the embedding line says why; serve checks at start
    why = refusal(found, expected, config.collection)
    built = "was built with these settings" if found.fingerprint else "fits this embedder (`serve` reads its stamp)"
    report.add("store", why is None, why or f"the collection {config.collection!r} ({found.physical}) {built}")


def _mcp(config: Config, http: httpx.Client, report: Report) -> None:
    """The running daemon's /mcp lists its tools to a client showing the search key; with no
    daemon, the tools are built here (the SDK is installed and they register)."""
    from ragsync.mcp import TOOLS
    from ragsync.operations import healthz
    lock = DataLock(config.data_dir, create=False) if config.exclusive and config.data_dir.exists() else None
    url = (lock.announced() or {}).get("url") if lock and lock.held() else config.base_url
    if url is None or healthz(url) is None:
        report.add("mcp", True, f"tools {', '.join(TOOLS)}: at {config.base_url}/mcp once the daemon runs; "
                                "`ragsync mcp` serves them over stdio")
        return
    try:
        key = config.search_token()
    except RagsyncError:
        key = None                                       # already reported by _tokens
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25",
               **({"authorization": f"Bearer {key}"} if key else {})}
    try:
        resp = http.post(f"{url}/mcp", json=call, headers=headers)
        names = [t["name"] for t in resp.json()["result"]["tools"]]
    except httpx.HTTPError as exc:
        report.add("mcp", False, f"{url}/mcp cannot be reached: {type(exc).__name__}")
        return
    except (ValueError, KeyError, TypeError):
        report.add("mcp", False, f"{url}/mcp answered HTTP {resp.status_code} without its tools"
                                 + (" (the search key in the environment is not the daemon's)" if resp.status_code == 401
                                    else ": is a proxy in front of it, or the daemon older than this ragsync?"))
        return
    report.add("mcp", set(names) == set(TOOLS), f"{url}/mcp answers with tools {', '.join(names)}")


def _queue(config: Config, report: Report) -> None:
    if not config.redis_url:
        report.add("queue", True, f"embedded queue in {config.data_dir} (one process: `ragsync serve`)")
        return
    try:
        import redis
        client = redis.Redis.from_url(config.redis_url, socket_timeout=3, socket_connect_timeout=3)
        client.ping()
        client.close()
        report.add("queue", True, "Redis answers (server mode: `ragsync web` plus `ragsync worker`s)")
    except Exception as exc:
        report.add("queue", False, f"cannot reach Redis at [queue] redis_url: {type(exc).__name__}: {exc}")


def _embedding(config: Config, report: Report) -> None:
    report.add("embedding", *PROVIDERS[config.embedding.provider].check(config.embedding))


def _source(config: Config, name: str, http: httpx.Client, report: Report) -> None:
    what, source = f"source {name}", config.sources[name]
    try:
        connector: Connector = connector_class(source.type)(source, http)
        connector.check_settings()
    except RagsyncError as exc:
        report.add(what, False, str(exc))
        return
    if not source.webhook_secret_env:
        report.add(what, False, f"source {name!r}: webhook_secret_env is not set: every webhook from it is refused "
                                "(set it to the name of the variable that holds the secret)")
    else:
        try:
            connector.check_secrets()
            report.add(what, True, f"webhook secret ${source.webhook_secret_env} is set and usable")
        except RagsyncError as exc:
            report.add(what, False, str(exc))
    report.setup[name] = connector.setup(f"{config.base_url}/webhooks/{name}")
    try:
        first = next(itertools.islice(connector.list(), 1), None)
    except RagsyncError as exc:
        report.add(what, False, f"source {name!r}: listing failed: {exc} ({_hint(exc)})")
        return
    except Exception as exc:
        report.add(what, False, f"source {name!r}: the listing is not what {source.type} answers: "
                                f"{type(exc).__name__}: {exc}")
        return
    if first is None:
        report.add(what, True, "the CMS lists no published document yet")
        return
    try:
        result = connector.fetch(first.doc_id)
    except RagsyncError as exc:
        report.add(what, False, f"source {name!r}: fetching {_shown(first.doc_id)} failed: {exc} ({_hint(exc)})")
        return
    if isinstance(result, Gone):
        report.add(what, False, f"source {name!r}: {_shown(first.doc_id)} is listed as published but its fetch says "
                                f"not public ({result.reason}): ragsync reads the CMS anonymously — is the API "
                                "behind a login or a different address?")
    else:
        report.add(what, True, f"listing and fetch work: {_shown(first.doc_id)} {result.title!r} ({len(result.html)} "
                               "bytes of HTML) would be indexed")


def _shown(text: str) -> str:
    """A CMS's text as a terminal may show it: control characters (escape sequences) quoted."""
    return text if text.isprintable() else repr(text)


def _hint(exc: RagsyncError) -> str:
    """What an operator can do about a failed listing or fetch."""
    if isinstance(exc, FetchError) and exc.transient:
        return ("not the CMS's own answer: is it down, or is a firewall, CDN or proxy answering for it? The daemon "
                "retries such answers and never deletes on them")
    if isinstance(exc, FetchError):
        return "the CMS itself refuses: check base_url, the API token and that its API is public"
    return "fix the setting named above"
