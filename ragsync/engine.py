"""Everything one process needs, built from the config: the store, the model, the
connectors, the pass and the queue. The daemon owns one; a CLI command opens one itself
when no daemon is running (the embedded store admits one process at a time)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from connectors import connector_class
from connectors.base import Connector
from ragsync.chunk import Chunker
from ragsync.config import Config
from ragsync.embed import Embedder
from ragsync.errors import RagsyncError
from ragsync.index import Store, open_store
from ragsync.metrics import Metrics
from ragsync.queue import WorkQueue
from ragsync.worker import Outcome, Pipeline

log = logging.getLogger("ragsync.engine")

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


@dataclass(frozen=True)
class SearchResult:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "text": self.text, **self.metadata}


def _page_key(payload: dict[str, Any] | None) -> tuple[str, str]:
    """(source, doc_id) of a chunk point; points not written by ragsync map to no page."""
    meta = (payload or {}).get("metadata") or {}
    return str(meta.get("source", "")), str(meta.get("doc_id", ""))


class Engine:
    def __init__(self, config: Config, *, embedder: Embedder | None = None, store: Store | None = None) -> None:
        self.config = config
        self.embedder = embedder or Embedder()
        try:
            self.store = store or open_store(config, self.embedder.dim)
        except RagsyncError:
            raise
        except Exception as exc:
            raise RagsyncError(f"cannot open the index in {config.data_dir}: {exc} "
                               "(is a ragsync daemon already running on this data_dir?)") from None
        self.http = httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                 headers={"user-agent": "ragsync/0.1"})
        self.connectors: dict[str, Connector] = {
            name: connector_class(src.type)(src, self.http) for name, src in config.sources.items()}
        self.chunker = Chunker(self.embedder.tokenizer_file, config.max_tokens)
        self.pipeline = Pipeline(self.store, self.embedder, self.chunker, self.connectors)
        self.metrics = Metrics()
        self.queue = WorkQueue(config.data_dir, self._pass, redis_url=config.redis_url,
                               max_attempts=config.max_attempts, backoff_base_s=config.backoff_base_s,
                               backoff_max_s=config.backoff_max_s, lease_s=config.lease_s)
        self.queue.on_outcome = self.metrics.pass_done

    def _pass(self, source: str, doc_id: str) -> Outcome:
        if source not in self.connectors:
            raise RagsyncError(f"source {source!r} is no longer configured")
        outcome = self.pipeline.sync(source, doc_id)
        self.metrics.chunks_embedded.labels(source).inc(outcome.embedded)
        return outcome

    def search(self, query: str, limit: int = 10, source: str | None = None) -> list[SearchResult]:
        return self.search_vector(self.embedder.embed([query])[0], limit, source)

    def search_vector(self, vector: list[float], limit: int = 10, source: str | None = None) -> list[SearchResult]:
        """Nearest chunks of one whole version per page: the page record lists the live
        chunk ids (and the previous version's, for a query that ran just before a switch
        whose record it then read). Never a mix of versions, never a half page; over-fetches
        to make up for hidden points."""
        match = {"metadata.source": source} if source else None
        fetch = limit * 2 + 8
        while True:
            hits = self.store.search(vector, fetch, match)
            by_page: dict[tuple[str, str], set[str]] = {}
            for h in hits:
                by_page.setdefault(_page_key(h.payload), set()).add(h.id)
            visible: set[str] = set()
            for key, rec in self.store.pages(by_page).items():
                if rec.state != "live":
                    continue
                for version in (set(rec.live_ids), set(rec.previous_ids)):
                    if by_page[key] & version:
                        visible |= by_page[key] & version
                        break
            results = [SearchResult(h.id, h.score, h.payload.get("page_content", ""), h.payload["metadata"])
                       for h in hits if h.id in visible]
            if len(results) >= limit or len(hits) < fetch or fetch >= limit * 32:
                return results[:limit]
            fetch *= 4

    def status(self) -> dict[str, Any]:
        sources = {}
        for name in self.config.sources:
            pages = list(self.store.iter_pages(name))
            sources[name] = {
                "pages_live": sum(p.state == "live" for p in pages),
                "pages_gone": sum(p.state == "gone" for p in pages),
                "points": self.store.count_chunks({"metadata.source": name}),
            }
        return {
            "points": self.store.count_chunks(),
            "pending": len(self.queue.pending()),
            "oldest_pending_s": round(self.queue.oldest_pending_age(), 3),
            "dead": len(self.queue.dead()),
            "chunks_embedded": self.embedder.embedded,
            "sources": sources,
            "reconcile": self.queue.record.reconciles(),
        }

    def close(self) -> None:
        self.queue.close()
        self.store.close()
        self.http.close()
