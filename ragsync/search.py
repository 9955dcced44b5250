"""Search: the best chunks of the live version of each page, never a mix of versions and
never a half-written page, narrowed inside Qdrant by what a search team filters on — as
chunks, or as pages (`group=page`: one entry per page with its best chunks).

Three modes (`mode=`): `dense` (the embedding model's nearest neighbours), `keyword` (BM25 on
Qdrant's sparse vectors) and `hybrid`, both fused inside Qdrant by weighted reciprocal rank.
The weights follow the query and the site's language (`weights`), as scripts/bench-search
measured: an identifier or code, or any query on a site whose language the packaged English
model does not read, leans on keywords; a short English query weighs both alike; a longer
English question is the model's (keywords only lowered its MRR@10 there)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ragsync.index import Hit, SearchFilter, Store

CHUNKS_PER_PAGE = 3                  # a page entry's best chunks
CODE_LIKE = re.compile(r"[_:./()#<>\[\]{}=-]|\d|[a-z][A-Z]")    # unwrap_or_else, E0502, --locked, HashMap
# (dense, keyword) weights of Qdrant's weighted RRF (k=2: a weight divides that side's ranks)
KEYWORD_LEANING = (1.0, 5.0)
EVEN = (1.0, 1.0)
SHORT_WORDS = 3


@dataclass(frozen=True)
class Probe:
    """What one search asks the store: a dense vector, a keyword text, or both with weights."""
    vector: list[float] | None
    text: str | None = None
    weights: tuple[float, float] = (1.0, 1.0)


def weights(query: str, language: str = "english") -> tuple[float, float] | None:
    """(dense, keyword) weights for a hybrid query, or None for the dense ranking alone: an
    identifier or code anywhere in it (dense models blur `or_insert` into `insert`), or a site
    in another language than the packaged model's, leans on keywords; a short English query
    weighs both alike; a longer English question is left to the model."""
    words = query.split()
    if language != "english" or any(CODE_LIKE.search(w) for w in words):
        return KEYWORD_LEANING
    return EVEN if len(words) <= SHORT_WORDS else None


def probe_for(query: str, mode: str, embed: Callable[[str], list[float]], language: str = "english") -> Probe:
    """What a search in `mode` (dense, keyword or hybrid) asks the store; `embed` gives the
    query's vector."""
    if mode == "keyword":
        return Probe(None, query)
    vector = embed(query)
    if mode == "dense":
        return Probe(vector)
    fused = weights(query, language)
    return Probe(vector, query, fused) if fused else Probe(vector)


@dataclass(frozen=True)
class SearchResult:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(self.score, 6), "text": self.text, **self.metadata}


@dataclass(frozen=True)
class PageResult:
    """One page, scored by its best chunk; its chunks best first."""
    chunks: list[SearchResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        best = self.chunks[0].metadata
        return {"score": round(self.chunks[0].score, 6), "source": best.get("source"), "doc_id": best.get("doc_id"),
                "title": best.get("title"), "url": best.get("url"), "modified": best.get("modified"),
                "heading_paths": _unique([c.metadata.get("heading_path") or [] for c in self.chunks]),
                "chunks": [c.as_dict() for c in self.chunks]}


def _unique(paths: list[list[str]]) -> list[list[str]]:
    """Each heading path once, in the order of its best chunk."""
    seen: list[list[str]] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen


def _page_key(payload: dict[str, Any] | None) -> tuple[str, str]:
    """(source, doc_id) of a chunk point; points not written by ragsync map to no page."""
    meta = (payload or {}).get("metadata") or {}
    return str(meta.get("source", "")), str(meta.get("doc_id", ""))


def _visible(store: Store, hits: list[Hit]) -> set[str]:
    """The hits that belong to one whole live version of their page: the page record lists
    the live chunk ids (and the previous version's, for a query that ran just before a switch
    whose record it then read)."""
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
    return visible


def _result(hit: Hit) -> SearchResult:
    return SearchResult(hit.id, hit.score, hit.payload.get("page_content", ""), hit.payload["metadata"])


def nearest(store: Store, probe: Probe, limit: int, where: SearchFilter) -> list[SearchResult]:
    """Best visible chunks; over-fetches to make up for hidden points."""
    fetch = limit * 2 + 8
    while True:
        hits = store.search(probe.vector, fetch, where, text=probe.text, weights=probe.weights)
        visible = _visible(store, hits)
        results = [_result(h) for h in hits if h.id in visible]
        if len(results) >= limit or len(hits) < fetch or fetch >= limit * 32:
            return results[:limit]
        fetch *= 4


def nearest_pages(store: Store, probe: Probe, limit: int, where: SearchFilter) -> list[PageResult]:
    """Best pages, each once, by Qdrant's grouping on the page URL; a page whose hits are
    all outside its live version is skipped (and more groups asked for)."""
    groups = limit + 2
    while True:
        found = store.search_groups(probe.vector, groups, CHUNKS_PER_PAGE, where, text=probe.text,
                                    weights=probe.weights)
        visible = _visible(store, [h for group in found for h in group])
        pages = [PageResult([_result(h) for h in group if h.id in visible]) for group in found]
        pages = [p for p in pages if p.chunks]
        if len(pages) >= limit or len(found) < groups or groups >= limit * 16:
            return pages[:limit]
        groups *= 4
