"""Everything one process needs, built from the config: the store, the model, the
connectors, the pass and the queue. The daemon owns one; a CLI command opens one itself
when no daemon is running (the embedded store admits one process at a time)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import httpx

from connectors import open_connectors
from connectors.base import Connector, Gone
from ragsync.chunk import Chunker
from ragsync.config import Config
from ragsync.embed import Embedder, open_embedder
from ragsync.errors import RagsyncError, StoreError
from ragsync.fingerprint import fingerprint, mismatch, short
from ragsync.guard import DeletionGuard
from ragsync.index import Catalog, SearchFilter, Store, open_catalog
from ragsync.metrics import Metrics
from ragsync.notes import open_notes
from ragsync.pipeline import Outcome, Pipeline
from ragsync.queue import Tally, WorkQueue
from ragsync.search import PageResult, Probe, SearchResult, nearest, nearest_pages, probe_for
from ragsync.snapshot import Snapshot, take

log = logging.getLogger("ragsync.engine")

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class Engine:
    def __init__(self, config: Config, *, embedder: Embedder | None = None, store: Store | None = None,
                 lazy_store: bool = False) -> None:
        """`lazy_store`: open the index on first use (`ragsync web` next to a worker that owns an
        embedded store opens it only when searched); otherwise at once, failing early."""
        self.config = config
        self.instance: str | None = None           # set by the daemon that owns an embedded data_dir
        self._own_embedder = embedder is None
        self.embedder = embedder or open_embedder(config.embedding, config.data_dir)
        self.chunker = Chunker(self.embedder.tokenizer_file, config.max_tokens)
        self._store = store
        self.pipeline: Pipeline                    # writes the live collection; set when the store opens
        if store is not None:
            self.pipeline = self._pipeline_for(store)
        self._live = ""                            # the physical collection behind the name, once opened
        self._store_lock = threading.Lock()
        self._snapshot: tuple[float, Any, Snapshot] | None = None   # (when, key, what) for snapshot(max_age_s)
        self.http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                 headers={"user-agent": "ragsync/0.1"})
        self.connectors: dict[str, Connector] = open_connectors(config.sources, self.http)
        self._shadow: Pipeline | None = None       # a reindex's new collection: passes go there too
        self.key_locks = [threading.Lock() for _ in range(64)]   # one pass per key at a time (passes, reindex)
        self.passes = Tally()                      # passes this process has finished: a reader may wait for one
        self.metrics = Metrics(self.snapshot)
        self.embedder.on_batch, self.embedder.on_error = self.metrics.embedded_batch, self.metrics.embed_error
        self.guard = DeletionGuard(config.max_delete_share, config.delete_window_s, config.delete_floor)
        self.queue = WorkQueue.for_config(config, self._pass)
        self.queue.on_outcome = self.metrics.pass_done
        self.notes = open_notes(config.data_dir, config.redis_url)   # shared: reconcile figures, poll clocks, leases
        if not lazy_store:
            try:
                self.store
            except BaseException:
                self.close()
                raise

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.config, self.embedder)

    @cached_property
    def catalog(self) -> Catalog:
        catalog = open_catalog(self.config, self.embedder.dim)
        catalog.quiet = self.queue.quiet
        return catalog

    @property
    def store(self) -> Store:
        with self._store_lock:
            if self._store is None:
                try:
                    self._live = self.catalog.live()
                    self._store = self.catalog.open(self._live)
                    if self._store.fingerprint() is None and self._store.count_chunks() == 0:
                        self._store.set_fingerprint(self.fingerprint)     # a new collection: this config builds it
                    self.pipeline = self._pipeline_for(self._store)
                except RagsyncError:
                    raise
                except Exception as exc:
                    raise RagsyncError(f"cannot open the index in {self.config.data_dir}: {exc} "
                                       "(is a ragsync daemon already running on this data_dir?)") from None
            return self._store

    def _pipeline_for(self, store: Store) -> Pipeline:
        return Pipeline(store, self.embedder, self.chunker, short(self.fingerprint))

    def check_fingerprint(self) -> None:
        """Refuse to write into a collection built another way. One with points but no stamp was
        built before fingerprints existed, by these settings: stamp it."""
        stored = self.store.fingerprint()
        if stored is None:
            self.store.set_fingerprint(self.fingerprint)
        elif why := mismatch(stored, self.fingerprint, self.config.collection):
            raise RagsyncError(why)

    def switch(self, physical: str, store: Store, pipeline: Pipeline, config: Config) -> Store:
        """After a reindex: serve and write the new collection (with its embedder) from now on;
        returns the old store. A new embedder takes over the old one's observers (metrics), and
        the old one is closed when this engine made it."""
        retired = self.embedder if pipeline.embedder is not self.embedder else None
        if retired is not None:
            pipeline.embedder.on_batch, pipeline.embedder.on_error = retired.on_batch, retired.on_error
        with self._store_lock:
            old, self._store, self._live = self._store, store, physical
            self.pipeline = pipeline
            self.config, self.chunker, self.embedder = config, pipeline.chunker, pipeline.embedder
            self.__dict__["fingerprint"] = fingerprint(config, pipeline.embedder)
        if retired is not None:
            if self._own_embedder:
                retired.close()
            self._own_embedder = True                   # the reindex made the new one for this engine
        return old

    def _follow_alias(self) -> None:
        """Server mode: another process may have switched the alias (a reindex); follow it."""
        live = self.catalog.live()
        if live != self._live:
            new = self.catalog.open(live)
            self.switch(live, new, self._pipeline_for(new), self.config).close()

    def _pass(self, source: str, doc_id: str) -> Outcome:
        if source not in self.connectors:
            raise RagsyncError(f"source {source!r} is no longer configured")
        if self.queue.shared and self._store is not None:
            self._follow_alias()
        with self.key_lock(source, doc_id):                        # a reindex works the same keys
            began = time.perf_counter()
            result = self.connectors[source].fetch(doc_id)          # one fetch, applied to both collections
            fetched = time.perf_counter() - began
            counted = False
            if isinstance(result, Gone):
                counted = self._guard_deletion(source, doc_id)
            else:
                self.guard.release(source, doc_id)
            try:
                outcome = self.pipeline.settle(source, doc_id, result)
                if (shadow := self._shadow) is not None:
                    shadow.settle(source, doc_id, result)
            finally:
                if counted:
                    self.guard.applied(source)
        self.metrics.pass_applied(source, outcome, time.time())
        self.passes.rise()
        steps = {"fetch": fetched, **outcome.seconds}
        log.info("pass %s: %s (embedded %d, reused %d, deleted %d) in %.0f ms: %s", outcome, doc_id, outcome.embedded,
                 outcome.reused, outcome.deleted, (time.perf_counter() - began) * 1000,
                 ", ".join(f"{step} {s * 1000:.0f}" for step, s in steps.items()),
                 extra={"source": source, "doc_id": doc_id, "outcome": outcome.action,
                        "ms": {step: round(s * 1000, 1) for step, s in steps.items()}})
        return outcome

    def _guard_deletion(self, source: str, doc_id: str) -> bool:
        """Tombstoning a live page counts against the source's deletion budget (raises Held);
        True when it was counted (the guard is told once it is applied)."""
        current = self.store.page(source, doc_id)
        if current is None or current.state != "live":
            return False
        self.guard.admit(source, doc_id, lambda: self.store.count_pages(source, "live"))
        return True

    def key_lock(self, source: str, doc_id: str) -> threading.Lock:
        return self.key_locks[hash((source, doc_id)) % len(self.key_locks)]

    @contextlib.contextmanager
    def shadowed(self, pipeline: Pipeline) -> Iterator[None]:
        """While a reindex fills a new collection, every pass is applied to it too."""
        self._shadow = pipeline
        try:
            yield
        finally:
            self._shadow = None

    def search(self, query: str, limit: int = 10, where: SearchFilter = SearchFilter(),
               pages: bool = False, mode: str | None = None) -> list[SearchResult] | list[PageResult]:
        """Chunks, or with `pages` one entry per page; `mode` hybrid, dense or keyword (default:
        `[search] mode`)."""
        asked = probe_for(query, mode or self.config.search_mode, self.embedder.embed_query, self.config.search_language)
        return self.search_probe(asked, limit, where, pages)

    def search_vector(self, vector: list[float], limit: int = 10, where: SearchFilter = SearchFilter(),
                      pages: bool = False) -> list[SearchResult] | list[PageResult]:
        return self.search_probe(Probe(vector), limit, where, pages)

    def search_probe(self, probe: Probe, limit: int = 10, where: SearchFilter = SearchFilter(),
                     pages: bool = False) -> list[SearchResult] | list[PageResult]:
        find = nearest_pages if pages else nearest
        store = self.store
        try:
            return find(store, probe, limit, where)
        except StoreError:
            if self.store is store:
                raise
            return find(self.store, probe, limit, where)     # a reindex switched (and dropped) it meanwhile

    def snapshot(self, max_age_s: float = 0.0) -> Snapshot:
        """`max_age_s`: a snapshot that young may be reused while no pass has written and the
        queue's counts are the same (a status page or a scrape under load reads the stores
        once a second at most)."""
        store, summary = self.store, self.queue.summary()
        key = (summary, store.writes, id(store))           # what changes when passes run: then read afresh
        cached = self._snapshot
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] <= max_age_s:
            return cached[2]
        snap = take(self.config, store, summary, self.queue.depth(), self.notes, self.guard, self.embedder.embedded,
                    self._live or None, self.fingerprint)
        self._snapshot = (time.monotonic(), key, snap)
        return snap

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.queue.close()
        self.notes.close()
        if self._store is not None:
            self._store.close()
        if self._own_embedder:
            self.embedder.close()
        self.http.close()
