"""The store's contract and records, and what both engines share: every operation written
once over a few engine-specific steps (`_match`, `_scroll_batch`, `_upsert`, …), the way
huey's BaseSqlStorage writes its queue over each database's statements."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ragsync.errors import StoreError
from ragsync.keywords import SPARSE, Keywords

PAGE_NS = uuid.UUID("0d7d2b8e-3f1a-4c55-9e41-7a0c6f2b9d13")
FINGERPRINT_ID = str(uuid.uuid5(PAGE_NS, "ragsync:fingerprint"))   # a record beside the page records
ID_LISTS = ["live_ids", "previous_ids"]     # a page record's chunk ids: O(points) in all
_PAGE_VECTOR = [1.0]          # page records need a vector in Qdrant; they are never searched by it
_SCROLL = 1000
RRF_K = 2                         # reciprocal-rank constant: Qdrant's default (60 let neither side's weight tell)

@dataclass
class PageRecord:
    source: str
    doc_id: str
    state: str                                  # "live" or "gone"
    modified: str = ""                          # the CMS's modified time, ISO 8601 UTC
    title: str = ""
    url: str = ""
    live_ids: list[str] = field(default_factory=list)
    previous_ids: list[str] = field(default_factory=list)   # the version before the last switch
    indexed_at: str = ""
    reason: str = ""                            # why it is gone

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.doc_id)

    @property
    def point_id(self) -> str:
        return page_point_id(self.source, self.doc_id)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchFilter:
    """What a search team narrows by, applied inside Qdrant with payload indexes (so a narrow
    filter returns every hit there is). ISO 8601 UTC times."""
    source: str | None = None
    url_prefix: str | None = None
    modified_after: str | None = None     # inclusive
    modified_before: str | None = None    # exclusive


# payload indexes of the chunk collection: what passes look up and what searches filter by
KEYWORD_FIELDS = ("metadata.source", "metadata.doc_id", "metadata.url")
DATETIME_FIELDS = ("metadata.modified",)
GROUP_BY = "metadata.url"                 # one page, one URL: what `group=page` groups by


def page_point_id(source: str, doc_id: str) -> str:
    return str(uuid.uuid5(PAGE_NS, f"{source}\x1f{doc_id}"))


class Store:
    """What the pipeline needs from Qdrant. `writes` counts write calls (tests, benchmark).
    Every public method of an implementation raises StoreError, whatever the client threw,
    so the queue can tell "Qdrant is down, retry" from a bug."""

    sparse = True                              # the collection has keyword vectors (one built before them has not)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _guard_public(cls)

    _chunks: Any                               # the engine's handles of its two collections
    _pages: Any

    def __init__(self, keywords: Keywords) -> None:
        self.writes = 0
        self.keywords = keywords               # makes every chunk's sparse vector, and the queries'
        self._count_lock = threading.Lock()

    def _wrote(self) -> None:
        with self._count_lock:
            self.writes += 1

    def _keyword_query(self, text: str | None):
        """The sparse query for `text`; None without text or when it has no terms (only
        stopwords: nothing to match). An index without keyword vectors refuses."""
        if text is None:
            return None
        if not self.sparse:
            raise StoreError("this index has no keyword vectors (built before them): run `ragsync reindex`")
        sparse = self.keywords.query(text)
        return sparse if sparse.indices else None

    # -- the engine's steps: each engine writes these few, on its own client ------------------
    # `collection` below is the engine's handle of one of its two collections: `self._chunks`
    # or `self._pages`.

    def _match(self, key: str, value: Any) -> Any:
        raise NotImplementedError

    def _prefix(self, key: str, prefix: str) -> Any:
        raise NotImplementedError

    def _datetime(self, key: str, gte: str | None, lt: str | None) -> Any:
        raise NotImplementedError

    def _all(self, conditions: list[Any]) -> Any:
        """A filter that every condition must pass."""
        raise NotImplementedError

    def _scroll_batch(self, collection: Any, flt: Any, offset: Any, include: list[str] | None,
                      exclude: list[str] | None, with_vector: bool) -> tuple[list[Any], Any]:
        """One page of records (each with .id, .payload, .vector) and the next offset (None: done)."""
        raise NotImplementedError

    def _retrieve(self, collection: Any, ids: list[str]) -> list[Any]:
        raise NotImplementedError

    def _count(self, collection: Any, flt: Any) -> int:
        raise NotImplementedError

    def _upsert(self, collection: Any, points: list[tuple[str, Any, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def _set_payload(self, ids: list[str], metadata: dict[str, Any]) -> None:
        """Merge `metadata` into the chunk points' `metadata`."""
        raise NotImplementedError

    def _update_vectors(self, vectors: list[tuple[str, dict[str, Any]]]) -> None:
        """Replace named vectors of chunk points, the others untouched."""
        raise NotImplementedError

    def _delete(self, ids: list[str]) -> None:
        raise NotImplementedError

    def _sparse_vector(self, sparse: Any) -> Any:
        """A keyword vector (keywords.Keywords gives qdrant-edge's) as this engine sends it."""
        return sparse

    def _changed(self, points: int) -> None:
        """Chunk points written or deleted (the embedded engine optimizes after so many)."""

    # -- written once, over those steps ---------------------------------------------------------

    def _filter(self, match: dict[str, Any] | None, where: SearchFilter | None = None) -> Any:
        must = [self._match(k, v) for k, v in (match or {}).items()]
        if where is not None:
            if where.source:
                must.append(self._match("metadata.source", where.source))
            if where.url_prefix:
                must.append(self._prefix("metadata.url", where.url_prefix))
            if where.modified_after or where.modified_before:
                must.append(self._datetime("metadata.modified", where.modified_after, where.modified_before))
        return self._all(must) if must else None

    def _scroll(self, collection: Any, match: dict[str, Any] | None, with_vector: bool = False,
                include: list[str] | None = None, exclude: list[str] | None = None) -> Iterator[Any]:
        flt, offset = self._filter(match), None
        while True:
            records, offset = self._scroll_batch(collection, flt, offset, include, exclude, with_vector)
            yield from records
            if offset is None:
                return

    def _vectors(self, vector: list[float], payload: dict[str, Any]) -> Any:
        """A chunk point's vectors: the dense one, and its keyword one where the collection has them."""
        return {"": vector, SPARSE: self._sparse_vector(self.keywords.document(payload))} if self.sparse else vector

    # chunks
    def doc_chunks(self, source: str, doc_id: str) -> dict[str, dict[str, Any]]:
        """id → payload of every chunk point Qdrant holds for the page, live or not."""
        return {pid: payload for pid, payload in self.iter_chunks({"metadata.source": source,
                                                                 "metadata.doc_id": doc_id})}

    def iter_chunks(self, match: dict[str, str] | None = None,
                    fields: list[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, payload) of every chunk point matching; `fields`: only these payload keys."""
        for rec in self._scroll(self._chunks, match, include=fields):
            yield str(rec.id), rec.payload

    def iter_vectors(self, match: dict[str, str] | None = None) -> Iterator[tuple[str, list[float], dict[str, Any]]]:
        """(id, vector, payload) of every chunk point: for copying points between collections."""
        for rec in self._scroll(self._chunks, match, with_vector=True):
            yield str(rec.id), _dense(rec.vector), rec.payload

    def upsert_chunks(self, points: list[tuple[str, list[float], dict[str, Any]]]) -> None:
        if points:
            self._upsert(self._chunks, [(pid, self._vectors(vec, payload), payload) for pid, vec, payload in points])
            self._wrote()
            self._changed(len(points))

    def set_metadata(self, ids: list[str], metadata: dict[str, Any]) -> None:
        """Merge keys into `metadata` of existing points, vectors untouched (but the keyword
        vector, which reads the title and heading path)."""
        if ids:
            self._set_payload(list(ids), metadata)
            if _retitled(metadata) and self.sparse:
                self._update_vectors([(r.id, {SPARSE: self._sparse_vector(self.keywords.document(r.payload))})
                                      for r in self._retrieve(self._chunks, list(ids))])
            self._wrote()

    def delete_chunks(self, ids: list[str]) -> None:
        if ids:
            self._delete(list(ids))
            self._wrote()
            self._changed(len(ids))

    def search(self, vector: list[float] | None, limit: int, where: SearchFilter | None = None,
               exact: bool = False, text: str | None = None, weights: tuple[float, float] = (1.0, 1.0)) -> list[Hit]:
        """The best points: nearest to `vector` (dense), best for `text` (keyword, BM25), or —
        both given — both lists fused inside Qdrant by reciprocal rank with `weights` (dense,
        keyword). `exact`: a full scan of the original vectors (no graph, no quantization),
        the yardstick for the default search's recall."""
        raise NotImplementedError

    def search_groups(self, vector: list[float] | None, groups: int, per_group: int,
                      where: SearchFilter | None = None, text: str | None = None,
                      weights: tuple[float, float] = (1.0, 1.0)) -> list[list[Hit]]:
        """The best pages (points grouped by URL), best first, each its best hits first."""
        raise NotImplementedError

    def count_chunks(self, match: dict[str, str] | None = None) -> int:
        return self._count(self._chunks, self._filter(match))

    # pages
    def count_pages(self, source: str, state: str) -> int:
        """Page records of a source in a state, counted inside Qdrant (no record is read)."""
        return self._count(self._pages, self._filter({"source": source, "state": state}))

    def pages(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PageRecord]:
        ids = [page_point_id(s, d) for s, d in keys]
        if not ids:
            return {}
        records = [_record(r.payload) for r in self._retrieve(self._pages, ids)]
        return {r.key: r for r in records}

    def page(self, source: str, doc_id: str) -> PageRecord | None:
        return self.pages([(source, doc_id)]).get((source, doc_id))

    def put_page(self, record: PageRecord) -> None:
        self._upsert(self._pages, [(record.point_id, _PAGE_VECTOR, asdict(record))])
        self._wrote()

    def iter_pages(self, source: str | None = None, ids: bool = True) -> Iterator[PageRecord]:
        """Every page record; `ids` False leaves out the chunk id lists, so a caller that keeps
        the records holds O(pages), not O(points)."""
        for rec in self._scroll(self._pages, {"source": source} if source else None, exclude=None if ids else ID_LISTS):
            if "source" in rec.payload:                  # not the fingerprint record
                yield _record(rec.payload)

    def fingerprint(self) -> dict[str, Any] | None:
        """What built this collection (see ragsync.fingerprint); None for one never stamped."""
        found = self._retrieve(self._pages, [FINGERPRINT_ID])
        return found[0].payload.get("fingerprint") if found else None

    def layout(self) -> dict[str, Any]:
        """Points, indexed vectors, segments, and the storage settings Qdrant reports for the
        chunk collection (`applied`: one entry per distinct layout of its indexed segments, so
        a converged collection has exactly one)."""
        raise NotImplementedError

    def optimize(self) -> None:
        """Bring segments to the store's settings now (a server does this by itself)."""

    def set_fingerprint(self, fp: dict[str, Any]) -> None:
        """A stamp, not content: `writes` counts what passes write."""
        self._upsert(self._pages, [(FINGERPRINT_ID, _PAGE_VECTOR, {"fingerprint": fp})])

    def close(self) -> None:
        pass


def _guard_public(cls: type) -> None:
    """Every public method a class defines raises StoreError, whatever the client threw."""
    for name, fn in list(vars(cls).items()):
        if inspect.isfunction(fn) and not name.startswith("_"):
            setattr(cls, name, _guarded(fn))


def _guarded(fn):
    """Wrap a store method (or generator) so that any client error surfaces as StoreError."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            with _as_store_error():
                yield from fn(*args, **kwargs)
        return gen

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with _as_store_error():
            return fn(*args, **kwargs)
    return call


@contextlib.contextmanager
def _as_store_error() -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"Qdrant: {type(exc).__name__}: {exc}") from exc


_guard_public(Store)


def _grouped(hits: list[Hit], groups: int, per_group: int) -> list[list[Hit]]:
    """Hits (best first) → at most `groups` groups by URL, in the order of each one's best."""
    out: dict[str, list[Hit]] = {}
    for hit in hits:
        key = str(((hit.payload or {}).get("metadata") or {}).get("url", ""))
        if key in out or len(out) < groups:
            members = out.setdefault(key, [])
            if len(members) < per_group:
                members.append(hit)
    return list(out.values())


def _record(payload: dict[str, Any]) -> PageRecord:
    return PageRecord(**{k: payload[k] for k in PageRecord.__dataclass_fields__ if k in payload})


def _dense(vector: Any) -> list[float]:
    """A point's dense vector, whether the engine gave it alone or among its named vectors."""
    return list(vector[""] if isinstance(vector, dict) else vector)


def _retitled(metadata: dict[str, Any]) -> bool:
    """A metadata change the keyword side reads (keywords.text): its sparse vector is remade."""
    return "title" in metadata or "heading_path" in metadata


def _prefetch(limit: int) -> int:
    """Candidates each side of a fused search brings: enough that a page ranked low by one
    side and high by the other still meets in the fusion. The dense side's are ranked by their
    int8 copies alone (no rescoring): the fusion reads only ranks, and reading the candidates'
    originals from disk to rescore them was half of a fused search at 1M points, for the same
    hit@10 and MRR@10 there (measured on the shared corpus's identifier and question sets)."""
    return max(50, 3 * limit)


@dataclass(frozen=True)
class Found:
    """The collection a name means, as it is, read without writing anything: what `ragsync
    check` and the daemon's start judge before a write (ragsync.fingerprint.refusal)."""
    physical: str
    dim: int | None                             # its dense vectors' size; None: not one unnamed vector
    ours: bool                                  # ragsync's page records are beside it
    points: int | None                          # None where it cannot be counted without opening it
    fingerprint: dict[str, Any] | None          # its stamp; None: never stamped, or not readable closed


class Catalog:
    """The name users query (`collection`) → the physical collection it means now. A reindex
    builds `next_name()` beside the live one and `switch`es to it in one atomic step."""

    # What must hold still while an embedded store it opens optimizes (the daemon's queue).
    quiet: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext

    def live(self) -> str:
        raise NotImplementedError

    def found(self) -> Found | None:
        """The live collection as it is, without creating or opening it; None when there is none."""
        raise NotImplementedError

    def next_name(self) -> str:
        raise NotImplementedError

    def open(self, physical: str, dim: int | None = None, keywords: Keywords | None = None) -> Store:
        """The physical collection, created with `dim` (default: the catalog's) when new, its
        keyword vectors made by `keywords` (default: the catalog's)."""
        raise NotImplementedError

    def switch(self, physical: str) -> str:
        """Point the name at `physical`; return the collection it meant before."""
        raise NotImplementedError

    def drop(self, physical: str) -> None:
        raise NotImplementedError


def describe(layout: dict[str, Any]) -> str:
    """A store's layout in one line, for `ragsync status` and the status page."""
    kinds = [f"{'int8 in RAM, ' if a['quantization'] == 'int8' else ''}vectors "
             f"{'on disk' if a['on_disk'] else 'in RAM'}, HNSW m={a['hnsw_m']}" for a in layout["applied"]]
    return (f"{layout['points']:,} points, {layout['indexed']:,} indexed, {layout['segments']} segments"
            + (f"; {' | '.join(kinds)}" if kinds else ""))
