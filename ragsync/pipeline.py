"""The pass for one key (source, doc_id): read the desired state from the CMS, read the
actual state from Qdrant, apply the difference. Level-triggered, so it is idempotent:
a duplicate, late or reordered event just finds less (or nothing) to do.

Write order is what keeps search whole: new chunk points first (invisible: not yet listed
in the page record, and `metadata.live` false for readers of Qdrant itself), then one write
of the page record that switches the live set, then the new points are marked live and the
superseded ones deleted. A pass that dies anywhere leaves the old version serving.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.base import Gone, Page
from ragsync.chunk import Chunk, Chunker, point_id
from ragsync.embed import Embedder
from ragsync.extract import extract
from ragsync.index import PageRecord, Store
from ragsync.times import utcnow

log = logging.getLogger("ragsync.pipeline")

_PAYLOAD_FIELDS = ("title", "url", "modified", "chunk_index")


@dataclass(frozen=True)
class Outcome:
    """What one pass did; `embedded` counts texts sent to the model."""
    action: str               # indexed | updated | unchanged | stale | tombstoned | absent
    embedded: int = 0
    deleted: int = 0
    reused: int = 0           # chunks already in the index with the right text: not embedded
    modified: str = ""        # the CMS's modified time of what is now searchable
    seconds: dict[str, float] = field(default_factory=dict, compare=False)   # per step: where the pass's time went

    def __str__(self) -> str:
        return self.action


class _Steps:
    """Seconds per step of one pass (read, extract, embed, write, switch), for its log line:
    where the time from webhook to searchable goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._last
        self._last = now


LINKABLE = ("http://", "https://", "file:")   # what a page's URL may be: search teams render it as a link


class Pipeline:
    def __init__(self, store: Store, embedder: Embedder, chunker: Chunker, fingerprint: str) -> None:
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.fingerprint = fingerprint                           # stamped on every point written

    def settle(self, source: str, doc_id: str, result: Page | Gone) -> Outcome:
        if isinstance(result, Gone):
            return self.tombstone(source, doc_id, result.reason, result.modified)
        return self.apply(source, result)

    def apply(self, source: str, page: Page) -> Outcome:
        if page.url and not page.url.lower().startswith(LINKABLE):
            log.warning("%s/%s: its URL is not http(s) (%r...): indexed without it", source, page.doc_id, page.url[:20])
            page = replace(page, url="")
        steps = _Steps()
        current = self.store.page(source, page.doc_id)
        if current and current.state == "live" and page.modified < current.modified:
            log.info("ignored %s/%s: fetched %s is older than indexed %s", source, page.doc_id,
                     page.modified, current.modified)
            return Outcome("stale")
        steps.done("read")
        desired = _identify(source, page.doc_id, self.chunker.chunk(extract(page.html)))
        steps.done("extract")
        existing = self.store.doc_chunks(source, page.doc_id)
        change = diff(existing, desired, page)
        new_ids = change.new
        steps.done("read")
        vectors = self.embedder.embed([desired[pid][1].embed_text for pid in new_ids])
        steps.done("embed")
        now = utcnow()
        self.store.upsert_chunks([(pid, vec, _payload(source, page, *desired[pid], indexed_at=now,
                                                       fingerprint=self.fingerprint))
                                  for pid, vec in zip(new_ids, vectors)])
        for changed, pids in _alike(change.metadata):              # metadata-only changes: no embedding
            self.store.set_metadata(pids, changed)
        steps.done("write")

        live_before = current.live_ids if current and current.state == "live" else []
        previous = live_before if live_before != list(desired) else (current.previous_ids if current else [])
        record = PageRecord(source, page.doc_id, "live", page.modified, page.title, page.url,
                            live_ids=list(desired), previous_ids=previous, indexed_at=now)
        switched = not current or _differs(current, record)
        if switched:
            self.store.put_page(record)                          # the switch: one write
        # then visible to a raw Qdrant reader's filter too (a failed pass's points included)
        self.store.set_metadata(new_ids + change.revived, {"live": True})
        stale = change.stale
        self.store.delete_chunks(stale)
        steps.done("switch")
        if current and current.state == "live" and not new_ids and not stale and not switched:
            return Outcome("unchanged", reused=len(desired), seconds=steps.seconds)
        return Outcome("updated" if current and current.state == "live" else "indexed", len(new_ids), len(stale),
                       reused=len(desired) - len(new_ids), modified=page.modified, seconds=steps.seconds)

    def tombstone(self, source: str, doc_id: str, reason: str, modified: str = "") -> Outcome:
        """Hide the page at once (record first), then delete its points. The record stays,
        with the revision the CMS still lists it at, if any, so reconcile need not refetch."""
        current = self.store.page(source, doc_id)
        existing = list(self.store.doc_chunks(source, doc_id))
        known = current is not None and current.state == "gone" and current.modified == modified
        if not known and (current is not None or modified):
            self.store.put_page(PageRecord(source, doc_id, "gone", modified, current.title if current else "",
                                           current.url if current else "", indexed_at=utcnow(), reason=reason))
        self.store.delete_chunks(existing)
        if not existing and (known or current is None or current.state == "gone"):
            return Outcome("absent")
        log.info("tombstoned %s/%s (%s): %d point(s)", source, doc_id, reason, len(existing))
        return Outcome("tombstoned", deleted=len(existing))


@dataclass(frozen=True)
class Diff:
    """What a pass must write to turn the points a page has into the points it should have."""
    new: list[str]                                  # to embed and write, in page order
    metadata: dict[str, dict[str, Any]]             # kept points whose metadata changed: only that
    revived: list[str]                              # kept points a failed pass left marked not live
    stale: list[str]                                # to delete


def diff(existing: dict[str, dict[str, Any]], desired: dict[str, tuple[int, Chunk]], page: Page) -> Diff:
    """Pure: `existing` (point id → payload, what Qdrant holds) against `desired` (point id →
    (chunk_index, chunk), what the page should be). A point id is its content, so an equal
    chunk anywhere in the page is kept and only its metadata (index, title, …) may change."""
    metadata = {}
    for pid, (index, _) in desired.items():
        if pid in existing:
            want = {"title": page.title, "url": page.url, "modified": page.modified, "chunk_index": index}
            have = existing[pid].get("metadata", {})
            if changed := {k: v for k, v in want.items() if have.get(k) != v}:
                metadata[pid] = changed
    return Diff(new=[pid for pid in desired if pid not in existing], metadata=metadata,
                revived=[pid for pid in existing if pid in desired
                         and existing[pid].get("metadata", {}).get("live") is False],
                stale=[pid for pid in existing if pid not in desired])


def _alike(changes: dict[str, dict[str, Any]]) -> list[tuple[dict[str, Any], list[str]]]:
    """Points whose metadata changes the same way, together: an edit gives every kept point
    of the page the new `modified`, one write for all of them rather than one each."""
    groups: dict[tuple, list[str]] = {}
    for pid, changed in changes.items():
        groups.setdefault(tuple(sorted(changed.items())), []).append(pid)
    return [(dict(key), pids) for key, pids in groups.items()]


def _identify(source: str, doc_id: str, chunks: list[Chunk]) -> dict[str, tuple[int, Chunk]]:
    """Point id → (chunk_index, chunk), in page order. A chunk repeated within a page gets
    its occurrence number in the id, so identical chunks stay distinct points."""
    seen: Counter[str] = Counter()
    out: dict[str, tuple[int, Chunk]] = {}
    for index, chunk in enumerate(chunks):
        out[point_id(source, doc_id, chunk.content_hash, seen[chunk.content_hash])] = (index, chunk)
        seen[chunk.content_hash] += 1
    return out


def _payload(source: str, page: Page, index: int, chunk: Chunk, *, indexed_at: str,
             fingerprint: str) -> dict[str, Any]:
    """LangChain's Qdrant layout: `page_content` + `metadata`."""
    return {
        "page_content": chunk.text,
        "metadata": {
            "source": source, "doc_id": page.doc_id, "url": page.url, "title": page.title,
            "modified": page.modified, "chunk_index": index, "content_hash": chunk.content_hash,
            "heading_path": list(chunk.heading_path), "indexed_at": indexed_at, "fingerprint": fingerprint,
            "live": False,                 # until the page record lists it (a point without the key is live)
        },
    }


def _differs(a: PageRecord, b: PageRecord) -> bool:
    return (a.state, a.modified, a.title, a.url, a.live_ids) != (b.state, b.modified, b.title, b.url, b.live_ids)
