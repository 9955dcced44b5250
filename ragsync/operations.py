"""The operations that the `ragsync` commands, the HTTP API and the MCP tools offer, written
once: for readers (search token) search, a page's text, the sources and the index's health;
for operators (admin token) status, export, reconcile, reindex and the dead-letter queue.
Each returns JSON-ready data. `Local` runs them on an engine in this process (the daemon's admin views
and a command run while no daemon is); `Remote` asks a running daemon for the same over
HTTP. `connect()` chooses between them once per command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import httpx

from ragsync import reconcile, reindex
from ragsync.config import MODES, Config
from ragsync.datalock import DataLock
from ragsync.embed import Embedder
from ragsync.engine import Engine
from ragsync.errors import RagsyncError, Rejected
from ragsync.index import ID_LISTS, SearchFilter, embedded_root
from ragsync.snapshot import SNAPSHOT_AGE_S
from ragsync.times import iso_utc, utcnow

DAEMON_WAIT_S = 60                  # for a daemon that holds the data_dir to answer
MAX_QUERY_CHARS = 1000              # the model reads 256 word pieces; more is only cost
MAX_LIMIT = 100

MAX_WAIT_S = 60                     # a page read waiting for a revision holds an HTTP thread this long at most
LOOK_AGAIN_S = 0.25                 # ...and reads the record again this often (server mode: passes run elsewhere)

Keys = Iterable[tuple[str, str]] | None     # None: every parked key


class Operations:
    """The contract. `daemon` is the URL of the daemon that answers, or None when this
    process holds the store itself."""

    daemon: str | None = None

    def status(self) -> dict[str, Any]:
        """Points, pages per source, pending work, the DLQ, reconcile figures, the collection."""
        raise NotImplementedError

    def export(self) -> Iterator[str]:
        """Every chunk point's payload (and id) as one JSON text per point; no vectors."""
        raise NotImplementedError

    def search(self, query: str, limit: int = 10, *, source: str | None = None, url_prefix: str | None = None,
               modified_after: str | None = None, modified_before: str | None = None,
               group: str | None = None, mode: str | None = None) -> list[dict[str, Any]]:
        """The best chunks of live pages, best first — or with group="page" one entry per
        page with its best chunks; a bad argument raises Rejected(400)."""
        raise NotImplementedError

    def document(self, source: str, doc_id: str) -> dict[str, Any]:
        """A live page as indexed, for a reader after a search hit: title, url, CMS modified time,
        when it was indexed, and its sections (heading path, text) in page order."""
        raise NotImplementedError

    def sources(self) -> list[dict[str, Any]]:
        """Each source: its CMS type, live pages, the last webhook and change seen (ISO 8601 or
        None), and CMS change → searchable p50/p95 seconds over the last hour (None: no change)."""
        raise NotImplementedError

    def index_status(self) -> dict[str, Any]:
        """How far to trust an answer now: pending keys and the oldest one's age, the DLQ, held
        deletions, the embedder and the collection."""
        raise NotImplementedError

    def page(self, source: str, doc_id: str, until: str | None = None, wait_s: float = 0) -> dict[str, Any]:
        """What the index holds for one page: its record (state, CMS modified time, when it was
        indexed), the chunks its live version lists and the points Qdrant holds for it.
        `until` (a CMS modified time): first wait up to `wait_s` for the record to reach it, so
        a publisher learns when its change is searchable without polling."""
        raise NotImplementedError

    def reconcile(self, source: str | None = None, dry_run: bool = False, force: bool = False) -> list[dict[str, Any]]:
        """One report per source (all when None), after its differences are applied."""
        raise NotImplementedError

    def reindex(self, source: str | None = None, drop_old: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def dlq(self) -> list[dict[str, Any]]:
        """The parked keys with their last error, oldest first."""
        raise NotImplementedError

    def replay(self, keys: Keys = None) -> list[list[str]]:
        """Queue parked keys again; returns the keys moved."""
        raise NotImplementedError

    def drop(self, keys: Keys = None) -> list[list[str]]:
        """Forget parked keys; returns the keys dropped."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Operations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Local(Operations):
    def __init__(self, engine: Engine, *, standalone: bool = False, lock: DataLock | None = None) -> None:
        """`standalone`: no daemon runs, so a reconcile works the queue in this process.
        `lock`: the data_dir lock this command holds until it closes."""
        self.engine, self.standalone, self.lock = engine, standalone, lock

    def status(self) -> dict[str, Any]:
        return self.engine.snapshot().as_dict()

    def export(self) -> Iterator[str]:
        for pid, payload in self.engine.store.iter_chunks():
            yield json.dumps({"id": pid, **payload})

    def search(self, query: str, limit: int = 10, *, source: str | None = None, url_prefix: str | None = None,
               modified_after: str | None = None, modified_before: str | None = None,
               group: str | None = None, mode: str | None = None) -> list[dict[str, Any]]:
        query = query.strip()
        if group not in (None, "", "page"):
            raise Rejected(400, "'group' must be 'page' (or absent: chunks)")
        if mode not in (None, "", *MODES):
            raise Rejected(400, f"'mode' must be one of {', '.join(MODES)} (or absent: the configured default)")
        if not query:
            raise Rejected(400, "missing query parameter 'q'")
        if len(query) > MAX_QUERY_CHARS:
            raise Rejected(400, f"'q' is longer than {MAX_QUERY_CHARS} characters")
        if not 1 <= limit <= MAX_LIMIT:
            raise Rejected(400, f"'limit' must be between 1 and {MAX_LIMIT}")
        if source:
            self._sources(source)
        times = {name: _time(name, value) for name, value in (("modified_after", modified_after),
                                                               ("modified_before", modified_before)) if value}
        where = SearchFilter(source=source or None, url_prefix=url_prefix or None, **times)
        return [r.as_dict() for r in self.engine.search(query, limit, where, pages=group == "page", mode=mode or None)]

    def document(self, source: str, doc_id: str) -> dict[str, Any]:
        self._sources(source)
        store = self.engine.store
        record = store.page(source, doc_id)
        if record is None or record.state != "live":
            raise Rejected(404, f"no live page {doc_id!r} in source {source!r}")
        points = store.doc_chunks(source, doc_id)
        chunks = sorted((points[i] for i in record.live_ids if i in points), key=lambda p: p["metadata"]["chunk_index"])
        return {"source": source, "doc_id": doc_id, "title": record.title, "url": record.url,
                "modified": record.modified, "indexed_at": record.indexed_at,
                "sections": [{"heading_path": c["metadata"].get("heading_path") or [], "text": c["page_content"]}
                             for c in chunks]}

    def sources(self) -> list[dict[str, Any]]:
        snap, metrics, now = self.engine.snapshot(SNAPSHOT_AGE_S), self.engine.metrics, time.time()
        out = []
        for name, state in snap.sources.items():
            hour = metrics.freshness_last_hour(name, now)
            out.append({"source": name, "type": self.engine.config.sources[name].type, "pages_live": state.pages_live,
                        "last_webhook": _when(metrics.webhook_at.get(name)),
                        "last_change": _when(metrics.changed_at.get(name)),
                        "freshness_p50_s": hour and round(hour[0], 3), "freshness_p95_s": hour and round(hour[1], 3)})
        return out

    def index_status(self) -> dict[str, Any]:
        snap, embedder = self.engine.snapshot(SNAPSHOT_AGE_S), self.engine.embedder
        problem = embedder.ready()
        return {"pending": snap.pending, "oldest_pending_s": snap.oldest_pending_s, "dead": snap.dead,
                "deletions_held": sum(s.deletions_held for s in snap.sources.values()), "points": snap.points,
                "embedder": {"provider": embedder.provider, "model": embedder.identity.get("model"),
                             "ready": problem is None, "problem": problem},
                "collection": {k: snap.collection[k] for k in ("name", "physical", "config_matches")},
                "as_of": utcnow()}

    def page(self, source: str, doc_id: str, until: str | None = None, wait_s: float = 0) -> dict[str, Any]:
        self._sources(source)
        if until is not None:
            until = _time("until", until)
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise Rejected(400, f"'wait_s' must be between 0 and {MAX_WAIT_S}")
        store = self.engine.store
        deadline, passes = time.monotonic() + wait_s, self.engine.passes.count
        while (record := store.page(source, doc_id)) is None or until is not None and record.modified < until:
            if (left := deadline - time.monotonic()) <= 0:
                break
            passes = self.engine.passes.wait(passes, min(left, LOOK_AGAIN_S))   # passes elsewhere: look anyway
        if record is None:
            raise Rejected(404, f"no page {doc_id!r} in source {source!r}")
        summary = {k: v for k, v in asdict(record).items() if k not in ID_LISTS}
        return {**summary, "chunks": len(record.live_ids),
                "points": store.count_chunks({"metadata.source": source, "metadata.doc_id": doc_id})}

    def reconcile(self, source: str | None = None, dry_run: bool = False, force: bool = False) -> list[dict[str, Any]]:
        reports = reconcile.run(self.engine, self._sources(source), dry_run=dry_run, force=force,
                                standalone=self.standalone)
        return [r.as_dict() for r in reports]

    def reindex(self, source: str | None = None, drop_old: bool = False) -> dict[str, Any]:
        if source:
            self._sources(source)
        return reindex.run(self.engine, source=source or None, drop_old=drop_old).as_dict()

    def dlq(self) -> list[dict[str, Any]]:
        return [p.__dict__ for p in self.engine.queue.dead()]

    def replay(self, keys: Keys = None) -> list[list[str]]:
        return [list(k) for k in self.engine.queue.replay(_keys(keys))]

    def drop(self, keys: Keys = None) -> list[list[str]]:
        return [list(k) for k in self.engine.queue.drop(_keys(keys))]

    def close(self) -> None:
        self.engine.close()
        if self.lock:
            self.lock.release()

    def _sources(self, name: str | None) -> list[str]:
        configured = self.engine.config.sources
        if name is None:
            return list(configured)
        if name not in configured:
            raise Rejected(400, f"unknown source {name!r} (configured: {', '.join(configured) or 'none'})")
        return [name]


class Reader(Operations):
    """A reader's calls to a running daemon over HTTP, with the search token when one is set:
    what `Remote` and the LangChain and LlamaIndex retrievers ask."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.daemon, self.token = url.rstrip("/"), token
        self.http = httpx.Client(base_url=self.daemon, timeout=timeout)

    def search_token(self) -> str | None:
        return self.token

    def search(self, query: str, limit: int = 10, **filters: str | None) -> list[dict[str, Any]]:
        params = {"q": query, "limit": limit, **{k: v for k, v in filters.items() if v}}
        return self._read("/search", params=params)["results"]

    def document(self, source: str, doc_id: str) -> dict[str, Any]:
        return self._read(f"/pages/{quote(source, safe='')}/{quote(doc_id, safe='')}")

    def sources(self) -> list[dict[str, Any]]:
        return self._read("/sources")["sources"]

    def index_status(self) -> dict[str, Any]:
        return self._read("/index/status")

    def passages(self, query: str, limit: int = 10, **filters: str | None) -> list[tuple[str, dict[str, Any], float]]:
        """Search results as (text, metadata, score) for a retriever: one per chunk, or with
        group="page" one per page (its best chunks joined, their heading paths listed)."""
        out = []
        for r in self.search(query, limit, **filters):
            chunks = r.get("chunks") or [r]
            meta = {k: r.get(k) for k in ("source", "doc_id", "url", "title", "modified")}
            if "chunks" in r:
                meta["heading_paths"] = r["heading_paths"]
            else:
                meta.update(id=r["id"], heading_path=r.get("heading_path") or [], chunk_index=r.get("chunk_index"))
            out.append(("\n\n".join(c["text"] for c in chunks), meta, r["score"]))
        return out

    def close(self) -> None:
        self.http.close()

    def _read(self, path: str, **kwargs: Any) -> Any:
        token = self.search_token()
        resp = self.http.get(path, headers={"authorization": f"Bearer {token}"} if token else None, **kwargs)
        _check(resp)
        return resp.json()


class Remote(Reader):
    """Every operation of a running daemon: the reader's, and the admin API's (bearer token)."""

    def __init__(self, url: str, config: Config) -> None:
        super().__init__(url)
        self.config = config

    def search_token(self) -> str | None:
        return self.config.search_token()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/admin/status")

    def export(self) -> Iterator[str]:
        with self.http.stream("GET", "/admin/export", headers=self._admin(), timeout=None) as resp:
            _check(resp)
            yield from resp.iter_lines()

    def page(self, source: str, doc_id: str, until: str | None = None, wait_s: float = 0) -> dict[str, Any]:
        wait = {k: v for k, v in (("until", until), ("wait_s", wait_s)) if v}
        return self._call("GET", f"/admin/pages/{quote(source, safe='')}/{quote(doc_id, safe='')}", params=wait,
                          timeout=wait_s + 30)

    def reconcile(self, source: str | None = None, dry_run: bool = False, force: bool = False) -> list[dict[str, Any]]:
        body = {"source": source, "dry_run": dry_run, "force": force}
        return self._call("POST", "/admin/reconcile", json=body, timeout=None)["reports"]

    def reindex(self, source: str | None = None, drop_old: bool = False) -> dict[str, Any]:
        return self._call("POST", "/admin/reindex", json={"source": source, "drop_old": drop_old}, timeout=None)

    def dlq(self) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/dlq")["parked"]

    def replay(self, keys: Keys = None) -> list[list[str]]:
        return self._call("POST", "/admin/dlq/replay", json={"keys": _keys(keys)})["replayed"]

    def drop(self, keys: Keys = None) -> list[list[str]]:
        return self._call("POST", "/admin/dlq/drop", json={"keys": _keys(keys)})["dropped"]

    def _admin(self) -> dict[str, str]:
        token = self.config.admin_token()
        if token is None:
            raise RagsyncError(f"the daemon at {self.daemon} is running; set {self.config.admin_token_env} to talk to it")
        return {"authorization": f"Bearer {token}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, headers=self._admin(), **kwargs)
        _check(resp)
        return resp.json()


def connect(config: Config, read_only: bool = False, embedder: Callable[[], Embedder] | None = None) -> Operations:
    """The daemon that owns this data_dir, over HTTP, when one runs; else the store opened in
    this process. With an embedded store or queue, this command then holds the data_dir's lock
    until it closes, so a daemon that starts meanwhile waits for it instead of failing; and the
    admin token goes only to the daemon whose /healthz repeats the instance id it wrote there.
    `read_only`: a data_dir that holds no index is an error, not a new empty index.
    `embedder`: gives the model when the store is opened here (one kept across calls)."""
    if not config.exclusive:                  # server mode: any number of processes share store and queue
        if healthz(config.base_url) is not None:
            return Remote(config.base_url, config)
        return Local(Engine(config, embedder=embedder and embedder()), standalone=True)
    if read_only and not config.qdrant_url and not embedded_root(config.data_dir).exists():
        raise RagsyncError(f"no index in {config.data_dir}: nothing was ever synced there (is data_dir right? "
                           "`ragsync serve` builds the index)")
    lock = DataLock(config.data_dir)
    if lock.try_acquire():
        try:
            return Local(Engine(config, embedder=embedder and embedder()), standalone=True, lock=lock)
        except BaseException:
            lock.release()
            raise
    deadline = time.monotonic() + DAEMON_WAIT_S
    while time.monotonic() < deadline:        # it may still be starting: loading the model, say
        info = lock.announced() or {}
        answer = healthz(info["url"]) if info.get("url") else None
        if answer is not None and answer.get("instance") == info.get("instance"):
            return Remote(info["url"], config)
        time.sleep(0.2)
    raise RagsyncError(f"another ragsync process holds {config.data_dir} but no daemon of it answers "
                       f"within {DAEMON_WAIT_S}s (a CLI command still working? try again)")


def healthz(url: str) -> dict[str, Any] | None:
    """A ragsync daemon's /healthz answer at this URL, or None when none answers there."""
    try:
        resp = httpx.get(f"{url}/healthz", timeout=0.5)
        body = resp.json()
        return body if resp.status_code == 200 and body.get("service") == "ragsync" else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def _keys(keys: Keys) -> list[tuple[str, str]] | None:
    if keys is None:
        return None
    pairs = list(keys) if isinstance(keys, (list, tuple)) else None
    if not pairs or not all(isinstance(k, (list, tuple)) and len(k) == 2 and all(k) for k in pairs):
        raise Rejected(400, "'keys' must be a non-empty list of [source, doc_id] pairs (leave it out for every "
                       "parked key)")
    return [(str(s), str(d)) for s, d in pairs]


def _check(resp: httpx.Response) -> None:
    """A 4xx is the caller's mistake and keeps its status (Rejected); the rest is the daemon's."""
    if resp.status_code >= 400:
        resp.read()
        try:
            message = resp.json().get("error", resp.text)
        except ValueError:
            message = resp.text[:200]
        text = f"daemon answered {resp.status_code}: {message}"
        raise Rejected(resp.status_code, text) if resp.status_code < 500 else RagsyncError(text)


def _when(epoch_s: float | None) -> str | None:
    return iso_utc(epoch_s) if epoch_s else None


def _time(name: str, value: str) -> str:
    try:
        return iso_utc(value)
    except ValueError:
        raise Rejected(400, f"'{name}' must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z") from None
