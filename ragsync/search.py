"""Search: the nearest chunks of the live version of each page, never a mix of versions
and never a half-written page, narrowed by what a search team filters on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragsync.index import Store


@dataclass(frozen=True)
class SearchResult:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "text": self.text, **self.metadata}


@dataclass(frozen=True)
class SearchFilter:
    """What a search team narrows by. Source is pushed into Qdrant; the others are checked on
    each hit's metadata (URLs and ISO 8601 UTC times compare as strings)."""
    source: str | None = None
    url_prefix: str | None = None
    modified_after: str | None = None     # inclusive
    modified_before: str | None = None    # exclusive

    def admits(self, meta: dict[str, Any]) -> bool:
        modified = str(meta.get("modified", ""))
        return ((not self.url_prefix or str(meta.get("url", "")).startswith(self.url_prefix))
                and (not self.modified_after or modified >= self.modified_after)
                and (not self.modified_before or modified < self.modified_before))


def _page_key(payload: dict[str, Any] | None) -> tuple[str, str]:
    """(source, doc_id) of a chunk point; points not written by ragsync map to no page."""
    meta = (payload or {}).get("metadata") or {}
    return str(meta.get("source", "")), str(meta.get("doc_id", ""))


def nearest(store: Store, vector: list[float], limit: int, where: SearchFilter) -> list[SearchResult]:
    """Nearest chunks of one whole version per page: the page record lists the live
    chunk ids (and the previous version's, for a query that ran just before a switch
    whose record it then read). Never a mix of versions, never a half page; over-fetches
    to make up for hidden points."""
    match = {"metadata.source": where.source} if where.source else None
    fetch = limit * 2 + 8
    while True:
        hits = store.search(vector, fetch, match)
        by_page: dict[tuple[str, str], set[str]] = {}
        for h in hits:
            by_page.setdefault(_page_key(h.payload), set()).add(h.id)
        visible: set[str] = set()
        for key, rec in store.pages(by_page).items():
            if rec.state != "live":
                continue
            for version in (set(rec.live_ids), set(rec.previous_ids)):
                if by_page[key] & version:
                    visible |= by_page[key] & version
                    break
        results = [SearchResult(h.id, h.score, h.payload.get("page_content", ""), h.payload["metadata"])
                   for h in hits if h.id in visible and where.admits(h.payload["metadata"])]
        if len(results) >= limit or len(hits) < fetch or fetch >= limit * 32:
            return results[:limit]
        fetch *= 4
