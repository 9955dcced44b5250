"""The Qdrant store behind one interface: the embedded engine (qdrant-edge) by default,
a Qdrant server through qdrant-client when `[qdrant] url` is set.

Two collections. `<collection>` holds one point per chunk, in LangChain's layout
(`page_content` + `metadata`), so a search team can point a stock retriever at it.
`<collection>_pages` holds one record per page: its state (live or gone), its CMS modified
time and the ids of its live chunks. Flipping that record is the single write that moves a
page from its old version to its new one, so /search (which keeps only hits listed there)
never sees half a page. Both live in Qdrant: there is no second database to drift from it.

`<collection>` is an alias of one physical collection (a Catalog): `ragsync reindex` builds
the next one beside it and switches the alias in one atomic step.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragsync.config import StoreSettings
from ragsync.errors import StoreError
from ragsync.keywords import SPARSE, Keywords
from ragsync.source import env_secret

log = logging.getLogger("ragsync.index")

PAGE_NS = uuid.UUID("0d7d2b8e-3f1a-4c55-9e41-7a0c6f2b9d13")
FINGERPRINT_ID = str(uuid.uuid5(PAGE_NS, "ragsync:fingerprint"))   # a record beside the page records
ID_LISTS = ["live_ids", "previous_ids"]     # a page record's chunk ids: O(points) in all
_PAGE_VECTOR = [1.0]          # page records need a vector in Qdrant; they are never searched by it
_SCROLL = 1000
RRF_K = 2                         # reciprocal-rank constant: Qdrant's default (60 let neither side's weight tell)
# The embedded engine optimizes only when asked, and holds the GIL while it does: segments are
# kept to ~65k points (one pass ≈ 7 s on 2 cores, measured) and a pass runs after every
# OPTIMIZE_EVERY points written or deleted, so no single pause grows with the index.
SEGMENT_KB = 100_000
INDEX_KB = 10_000                 # a segment past this (~6,500 points) gets its graph and int8 copies
OPTIMIZE_EVERY = 20_000


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
        for name, fn in list(vars(cls).items()):
            if inspect.isfunction(fn) and not name.startswith("_"):
                setattr(cls, name, _guarded(fn))

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

    # chunks
    def doc_chunks(self, source: str, doc_id: str) -> dict[str, dict[str, Any]]:
        """id → payload of every chunk point Qdrant holds for the page, live or not."""
        return {pid: payload for pid, payload in self.iter_chunks({"metadata.source": source,
                                                                 "metadata.doc_id": doc_id})}

    def iter_chunks(self, match: dict[str, str] | None = None,
                    fields: list[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, payload) of every chunk point matching; `fields`: only these payload keys."""
        raise NotImplementedError

    def iter_vectors(self, match: dict[str, str] | None = None) -> Iterator[tuple[str, list[float], dict[str, Any]]]:
        """(id, vector, payload) of every chunk point: for copying points between collections."""
        raise NotImplementedError

    def upsert_chunks(self, points: list[tuple[str, list[float], dict[str, Any]]]) -> None:
        raise NotImplementedError

    def set_metadata(self, ids: list[str], metadata: dict[str, Any]) -> None:
        """Merge keys into `metadata` of existing points, vectors untouched."""
        raise NotImplementedError

    def delete_chunks(self, ids: list[str]) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    # pages
    def count_pages(self, source: str, state: str) -> int:
        """Page records of a source in a state, counted inside Qdrant (no record is read)."""
        raise NotImplementedError

    def pages(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PageRecord]:
        raise NotImplementedError

    def page(self, source: str, doc_id: str) -> PageRecord | None:
        return self.pages([(source, doc_id)]).get((source, doc_id))

    def put_page(self, record: PageRecord) -> None:
        raise NotImplementedError

    def iter_pages(self, source: str | None = None, ids: bool = True) -> Iterator[PageRecord]:
        """Every page record; `ids` False leaves out the chunk id lists, so a caller that keeps
        the records holds O(pages), not O(points)."""
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any] | None:
        """What built this collection (see ragsync.fingerprint); None for one never stamped."""
        raise NotImplementedError

    def layout(self) -> dict[str, Any]:
        """Points, indexed vectors, segments, and the storage settings Qdrant reports for the
        chunk collection (`applied`: one entry per distinct layout of its indexed segments, so
        a converged collection has exactly one)."""
        raise NotImplementedError

    def optimize(self) -> None:
        """Bring segments to the store's settings now (a server does this by itself)."""

    def set_fingerprint(self, fp: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


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


def _forget_quantization(path: Path) -> None:
    """The embedded engine reads an unset quantization as "keep the shard's": turning it off
    means removing it from the config the engine persisted (replaced atomically)."""
    if not path.exists():
        return
    persisted = json.loads(path.read_text())
    if persisted.pop("quantization_config", None) is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(persisted))
        os.replace(tmp, path)


def _record(payload: dict[str, Any]) -> PageRecord:
    return PageRecord(**{k: payload[k] for k in PageRecord.__dataclass_fields__ if k in payload})


class EdgeStore(Store):
    """Embedded Qdrant (qdrant-edge): one process owns the folder; WAL-backed, so it
    survives kill -9; keyword indexes make per-page operations sub-millisecond at 1M points."""

    def __init__(self, path: Path, dim: int, settings: StoreSettings = StoreSettings(),
                 keywords: Keywords | None = None) -> None:
        super().__init__(keywords or Keywords())
        import qdrant_edge as qe
        self.qe, self.settings, self.path = qe, settings, path
        self._changed = 0                          # points written or deleted since the last optimize
        self._optimizing = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        kinds = qe.PayloadSchemaType
        self.sparse = _has_sparse(path / "chunks")      # False: built before keyword vectors (reindex adds them)
        self.chunks = self._open(path / "chunks", self._config(dim, sparse=self.sparse), {
            **dict.fromkeys(KEYWORD_FIELDS, kinds.Keyword), **dict.fromkeys(DATETIME_FIELDS, kinds.Datetime)})
        self.pages_shard = self._open(path / "pages", self._config(1, graph=False), {"source": kinds.Keyword})
        quantized = qe.QuantizationSearchParams(rescore=True, oversampling=settings.oversampling)
        self.params = qe.SearchParams(hnsw_ef=settings.search_ef,
                                      quantization=quantized if settings.quantization == "int8" else None)
        self.optimize()                            # segments written under other settings converge now

    def _config(self, dim: int, graph: bool = True, sparse: bool = False):
        """The shard's layout from the settings. Page records are fetched by id, never searched:
        no graph (m=0) and no quantization."""
        qe, s = self.qe, self.settings
        disk = qe.Memory.Cold if s.on_disk else qe.Memory.Cached
        quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine, memory=disk),
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=disk)} if sparse else None,
            payload_memory=disk,
            hnsw_config=qe.HnswIndexConfig(m=s.hnsw_m if graph else 0, ef_construct=s.hnsw_ef_construct,
                                           full_scan_threshold=10_000, memory=disk),
            quantization_config=quantization if graph and s.quantization == "int8" else None,
            optimizers=qe.EdgeOptimizersConfig(max_segment_size=SEGMENT_KB, indexing_threshold=INDEX_KB))

    def _open(self, path: Path, config, indexes: dict[str, Any]):
        """Load or create a shard with the settings (a loaded one takes them as its own: the
        next optimize rebuilds what differs), with its payload indexes memory-mapped from disk
        too when `on_disk` (0.2 KB a point less in RAM, measured at 150k points)."""
        qe = self.qe
        if (path / "edge_config.json").exists() or (path / "segments").exists():
            if config.quantization_config is None:
                _forget_quantization(path / "edge_config.json")
            shard = qe.EdgeShard.load(str(path), config)
        else:
            shard = qe.EdgeShard.create(str(path), config)
        have, cold = shard.info().payload_schema, qe.Memory.Cold if self.settings.on_disk else None
        for name, kind in indexes.items():
            if name in have and getattr(have[name].params, "memory", None) == cold:
                continue
            if name in have:                                   # placed otherwise: rebuilt where the settings say
                shard.update(qe.UpdateOperation.delete_field_index(name))
            params = {qe.PayloadSchemaType.Keyword: qe.KeywordIndexParams,
                      qe.PayloadSchemaType.Datetime: qe.DatetimeIndexParams}[kind](memory=cold) if cold else kind
            shard.update(qe.UpdateOperation.create_field_index(name, params))
        return shard

    def optimize(self):
        with self._optimizing:
            self._changed = 0
            started = time.monotonic()
            if self.chunks.optimize() | self.pages_shard.optimize():
                info = self.chunks.info()
                log.info("index optimized in %.1fs: %d points, %d indexed, %d segments", time.monotonic() - started,
                         info.points_count, info.indexed_vectors_count, info.segments_count)

    def _count_change(self, n: int) -> None:
        self._changed += n
        if self._changed >= OPTIMIZE_EVERY:
            self.optimize()

    def layout(self):
        info = self.chunks.info()
        applied = []
        for seg in (self.path / "chunks" / "segments").glob("*/segment.json"):
            vectors = json.loads(seg.read_text())["config"]["vector_data"][""]
            if vectors["index"]["type"] != "hnsw":             # the appendable segment: plain until optimized
                continue
            scalar = (vectors.get("quantization_config") or {}).get("scalar") or {}
            found = {"on_disk": vectors["storage_type"] == "Mmap", "quantization": scalar.get("type", "none"),
                     "hnsw_m": vectors["index"]["options"]["m"],
                     "hnsw_ef_construct": vectors["index"]["options"]["ef_construct"]}
            if found not in applied:
                applied.append(found)
        # the engine counts every sparse (keyword) vector as indexed too: one per point
        indexed = max(0, info.indexed_vectors_count - (info.points_count if self.sparse else 0))
        return {"points": info.points_count, "indexed": indexed, "segments": info.segments_count, "applied": applied}

    def _filter(self, match: dict[str, str] | None, where: SearchFilter | None = None):
        qe = self.qe
        must = [qe.FieldCondition(key=k, match=qe.MatchValue(v)) for k, v in (match or {}).items()]
        if where is not None:
            if where.source:
                must.append(qe.FieldCondition(key="metadata.source", match=qe.MatchValue(where.source)))
            if where.url_prefix:
                must.append(qe.FieldCondition(key="metadata.url", match=qe.MatchPrefix(where.url_prefix)))
            if where.modified_after or where.modified_before:
                must.append(qe.FieldCondition(key="metadata.modified", range=qe.RangeDateTime(
                    gte=where.modified_after, lt=where.modified_before)))
        return qe.Filter(must=must) if must else None

    def _scroll(self, shard, match, with_vector: bool = False, include: list[str] | None = None,
                exclude: list[str] | None = None) -> Iterator[Any]:
        selector = self.qe.PayloadSelector
        payload = selector.Include(include) if include else selector.Exclude(exclude) if exclude else True
        offset = None
        while True:
            records, offset = shard.scroll(self.qe.ScrollRequest(
                offset=offset, limit=_SCROLL, filter=self._filter(match), with_payload=payload, with_vector=with_vector))
            yield from records
            if offset is None:
                return

    def iter_chunks(self, match=None, fields=None):
        for rec in self._scroll(self.chunks, match, include=fields):
            yield str(rec.id), rec.payload

    def iter_vectors(self, match=None):
        for rec in self._scroll(self.chunks, match, with_vector=True):
            yield str(rec.id), _dense(rec.vector), rec.payload

    def upsert_chunks(self, points):
        if points:
            self.chunks.update(self.qe.UpdateOperation.upsert_points(
                [self.qe.Point(pid, {"": vec, SPARSE: self.keywords.document(payload)} if self.sparse else vec, payload)
                 for pid, vec, payload in points]))
            self._wrote()
            self._count_change(len(points))

    def set_metadata(self, ids, metadata):
        if ids:
            self.chunks.update(self.qe.UpdateOperation.set_payload(list(ids), metadata, key="metadata"))
            if _retitled(metadata) and self.sparse:
                self.chunks.update(self.qe.UpdateOperation.update_vectors(
                    [self.qe.PointVectors(r.id, {SPARSE: self.keywords.document(r.payload)})
                     for r in self.chunks.retrieve(list(ids), True, False)]))
            self._wrote()

    def delete_chunks(self, ids):
        if ids:
            self.chunks.update(self.qe.UpdateOperation.delete_points(list(ids)))
            self._wrote()
            self._count_change(len(ids))

    def search(self, vector, limit, where=None, exact=False, text=None, weights=(1.0, 1.0)):
        qe = self.qe
        params = qe.SearchParams(exact=True) if exact else self.params
        flt = self._filter(None, where)
        sparse = self._keyword_query(text)
        if vector is None and sparse is None:
            return []
        dense = qe.Query.Nearest(vector) if vector is not None else None
        keyword = qe.Query.Nearest(sparse, using=SPARSE) if sparse is not None else None
        if dense is not None and keyword is not None:
            fetch = _prefetch(limit)
            request = qe.QueryRequest(limit=limit, prefetches=[
                qe.Prefetch(limit=fetch, query=dense, params=params, filter=flt),
                qe.Prefetch(limit=fetch, query=keyword, filter=flt)],
                query=qe.Fusion.Rrf(k=RRF_K, weights=list(weights)), with_payload=True, with_vector=False)
        else:
            request = qe.QueryRequest(limit=limit, query=dense or keyword, params=params if dense else None,
                                      filter=flt, with_payload=True, with_vector=False)
        return [Hit(str(h.id), h.score, h.payload) for h in self.chunks.query(request)]

    def search_groups(self, vector, groups, per_group, where=None, text=None, weights=(1.0, 1.0)):
        """The embedded engine has no grouping query: the best points, grouped here."""
        return _grouped(self.search(vector, groups * per_group * 4, where, text=text, weights=weights),
                        groups, per_group)

    def count_chunks(self, match=None):
        return self.chunks.count(self.qe.CountRequest(exact=True, filter=self._filter(match)))

    def count_pages(self, source, state):
        return self.pages_shard.count(self.qe.CountRequest(exact=True, filter=self._filter(
            {"source": source, "state": state})))

    def pages(self, keys):
        ids = [page_point_id(s, d) for s, d in keys]
        if not ids:
            return {}
        recs = [_record(r.payload) for r in self.pages_shard.retrieve(ids, True, False)]
        return {r.key: r for r in recs}

    def put_page(self, record):
        self.pages_shard.update(self.qe.UpdateOperation.upsert_points(
            [self.qe.Point(record.point_id, _PAGE_VECTOR, asdict(record))]))
        self._wrote()

    def iter_pages(self, source=None, ids=True):
        for rec in self._scroll(self.pages_shard, {"source": source} if source else None,
                                exclude=None if ids else ID_LISTS):
            if "source" in rec.payload:
                yield _record(rec.payload)

    def fingerprint(self):
        found = self.pages_shard.retrieve([FINGERPRINT_ID], True, False)
        return found[0].payload.get("fingerprint") if found else None

    def set_fingerprint(self, fp):
        self.pages_shard.update(self.qe.UpdateOperation.upsert_points(
            [self.qe.Point(FINGERPRINT_ID, _PAGE_VECTOR, {"fingerprint": fp})]))

    def close(self):
        for shard in (self.chunks, self.pages_shard):
            shard.flush()
            shard.close()


class ClientStore(Store):
    """A Qdrant server (or qdrant-client's local mode, which tests use to check the same
    calls a server gets) through qdrant-client."""

    def __init__(self, client, collection: str, dim: int, close_client: bool = True,
                 settings: StoreSettings = StoreSettings(), keywords: Keywords | None = None) -> None:
        super().__init__(keywords or Keywords())
        from qdrant_client import models
        self.m, self.settings = models, settings
        self.client = client
        self.close_client = close_client
        self.collection = collection
        self.pages_collection = f"{collection}_pages"
        kinds = models.PayloadSchemaType
        chunk_indexes = {**dict.fromkeys(KEYWORD_FIELDS, kinds.KEYWORD), **dict.fromkeys(DATETIME_FIELDS, kinds.DATETIME)}
        for name, size, indexes in ((collection, dim, chunk_indexes), (self.pages_collection, 1, {"source": kinds.KEYWORD})):
            graph = name == collection
            if not client.collection_exists(name):
                client.create_collection(name, **collection_params(settings, size, graph))
            if not self._server:
                continue                                 # local mode: no payload indexes, no layout to apply
            info = client.get_collection(name)
            self._apply(name, info.config, graph)
            for key, kind in indexes.items():
                if key not in info.payload_schema:
                    client.create_payload_index(name, key, _index_schema(models, kind, settings.on_disk))
        self.sparse = SPARSE in (client.get_collection(collection).config.params.sparse_vectors or {})
        quantized = models.QuantizationSearchParams(rescore=True, oversampling=settings.oversampling)
        self.search_params = models.SearchParams(hnsw_ef=settings.search_ef, quantization=quantized if (
            settings.quantization == "int8") else None) if self._server else None   # local mode searches exactly

    @property
    def _server(self) -> bool:
        return self.client.init_options.get("location") is None and self.client.init_options.get("path") is None

    def _apply(self, name: str, config, graph: bool) -> None:
        """Settings changed since the collection was made: the server takes them in place and
        rebuilds its segments in the background."""
        want = collection_params(self.settings, 1, graph)
        wanted = {"on_disk": want["vectors_config"].on_disk, "quantization": "int8" if want["quantization_config"]
                  else "none", "hnsw_m": want["hnsw_config"].m, "hnsw_ef_construct": want["hnsw_config"].ef_construct}
        if (_reported(config), bool(config.params.on_disk_payload)) == (wanted, want["on_disk_payload"]):
            return
        m = self.m
        log.info("applying the [qdrant] storage settings to %s in place", name)
        self.client.update_collection(
            name, vectors_config={"": m.VectorParamsDiff(on_disk=want["vectors_config"].on_disk)},
            hnsw_config=want["hnsw_config"], quantization_config=want["quantization_config"] or m.Disabled.DISABLED,
            collection_params=m.CollectionParamsDiff(on_disk_payload=want["on_disk_payload"]))

    def _filter(self, match, where=None):
        m = self.m
        must = [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in (match or {}).items()]
        if where is not None:
            if where.source:
                must.append(m.FieldCondition(key="metadata.source", match=m.MatchValue(value=where.source)))
            if where.url_prefix:
                must.append(m.FieldCondition(key="metadata.url", match=m.MatchPrefix(prefix=where.url_prefix)))
            if where.modified_after or where.modified_before:
                must.append(m.FieldCondition(key="metadata.modified", range=m.DatetimeRange(
                    gte=where.modified_after, lt=where.modified_before)))
        return m.Filter(must=must) if must else None

    def _scroll(self, collection, match, with_vectors: bool = False, include: list[str] | None = None,
                exclude: list[str] | None = None):
        m = self.m
        payload = m.PayloadSelectorInclude(include=include) if include else \
            m.PayloadSelectorExclude(exclude=exclude) if exclude else True
        offset = None
        while True:
            records, offset = self.client.scroll(collection, scroll_filter=self._filter(match), limit=_SCROLL,
                                                 offset=offset, with_payload=payload, with_vectors=with_vectors)
            yield from records
            if offset is None:
                return

    def iter_chunks(self, match=None, fields=None):
        for rec in self._scroll(self.collection, match, include=fields):
            yield str(rec.id), rec.payload

    def iter_vectors(self, match=None):
        for rec in self._scroll(self.collection, match, with_vectors=True):
            yield str(rec.id), _dense(rec.vector), rec.payload

    def _sparse(self, vector):
        return self.m.SparseVector(indices=list(vector.indices), values=list(vector.values))

    def upsert_chunks(self, points):
        if points:
            self.client.upsert(self.collection, wait=True, points=[
                self.m.PointStruct(id=pid, payload=payload, vector={
                    "": vec, SPARSE: self._sparse(self.keywords.document(payload))} if self.sparse else vec)
                for pid, vec, payload in points])
            self._wrote()

    def set_metadata(self, ids, metadata):
        if ids:
            self.client.set_payload(self.collection, payload=metadata, points=list(ids), key="metadata", wait=True)
            if _retitled(metadata) and self.sparse:
                self.client.update_vectors(self.collection, wait=True, points=[
                    self.m.PointVectors(id=r.id, vector={SPARSE: self._sparse(self.keywords.document(r.payload))})
                    for r in self.client.retrieve(self.collection, list(ids), with_payload=True)])
            self._wrote()

    def delete_chunks(self, ids):
        if ids:
            self.client.delete(self.collection, points_selector=self.m.PointIdsList(points=list(ids)), wait=True)
            self._wrote()

    def _query(self, vector, limit, where, exact, text, weights) -> dict[str, Any] | None:
        """query_points arguments for a dense, keyword or fused search (None: nothing to match)."""
        m = self.m
        params = m.SearchParams(exact=True) if exact and self._server else self.search_params
        flt = self._filter(None, where)
        sparse = self._keyword_query(text)
        if vector is None and sparse is None:
            return None
        if vector is not None and sparse is not None:
            fetch = _prefetch(limit)
            return {"prefetch": [m.Prefetch(query=vector, limit=fetch, filter=flt, params=params),
                                 m.Prefetch(query=self._sparse(sparse), using=SPARSE, limit=fetch, filter=flt)],
                    "query": m.RrfQuery(rrf=m.Rrf(k=RRF_K, weights=list(weights)))}
        if vector is not None:
            return {"query": vector, "search_params": params, "query_filter": flt}
        return {"query": self._sparse(sparse), "using": SPARSE, "query_filter": flt}

    def search(self, vector, limit, where=None, exact=False, text=None, weights=(1.0, 1.0)):
        args = self._query(vector, limit, where, exact, text, weights)
        if args is None:
            return []
        res = self.client.query_points(self.collection, limit=limit, with_payload=True, **args)
        return [Hit(str(p.id), p.score, p.payload) for p in res.points]

    def search_groups(self, vector, groups, per_group, where=None, text=None, weights=(1.0, 1.0)):
        args = self._query(vector, groups, where, False, text, weights)
        if args is None:
            return []
        res = self.client.query_points_groups(self.collection, group_by=GROUP_BY, limit=groups, group_size=per_group,
                                              with_payload=True, **args)
        return [[Hit(str(p.id), p.score, p.payload) for p in group.hits] for group in res.groups]

    def count_chunks(self, match=None):
        return self.client.count(self.collection, count_filter=self._filter(match), exact=True).count

    def count_pages(self, source, state):
        return self.client.count(self.pages_collection, count_filter=self._filter({"source": source, "state": state}),
                                 exact=True).count

    def pages(self, keys):
        ids = [page_point_id(s, d) for s, d in keys]
        if not ids:
            return {}
        recs = [_record(r.payload) for r in self.client.retrieve(self.pages_collection, ids, with_payload=True)]
        return {r.key: r for r in recs}

    def put_page(self, record):
        self.client.upsert(self.pages_collection, wait=True, points=[
            self.m.PointStruct(id=record.point_id, vector=_PAGE_VECTOR, payload=asdict(record))])
        self._wrote()

    def iter_pages(self, source=None, ids=True):
        for rec in self._scroll(self.pages_collection, {"source": source} if source else None,
                                exclude=None if ids else ID_LISTS):
            if "source" in rec.payload:
                yield _record(rec.payload)

    def layout(self):
        info = self.client.get_collection(self.collection)
        return {"points": info.points_count, "indexed": info.indexed_vectors_count, "segments": info.segments_count,
                "applied": [_reported(info.config)]}

    def fingerprint(self):
        found = self.client.retrieve(self.pages_collection, [FINGERPRINT_ID], with_payload=True)
        return found[0].payload.get("fingerprint") if found else None

    def set_fingerprint(self, fp):
        self.client.upsert(self.pages_collection, wait=True, points=[
            self.m.PointStruct(id=FINGERPRINT_ID, vector=_PAGE_VECTOR, payload={"fingerprint": fp})])

    def close(self):
        if self.close_client:
            self.client.close()


def _has_sparse(shard: Path) -> bool:
    """Whether a shard has the keyword vectors (a new one will); one written before them has not."""
    config = shard / "edge_config.json"
    return not config.exists() or bool(json.loads(config.read_text()).get("sparse_vectors"))


def _dense(vector: Any) -> list[float]:
    """A point's dense vector, whether the engine gave it alone or among its named vectors."""
    return list(vector[""] if isinstance(vector, dict) else vector)


def _retitled(metadata: dict[str, Any]) -> bool:
    """A metadata change the keyword side reads (keywords.text): its sparse vector is remade."""
    return "title" in metadata or "heading_path" in metadata


def _prefetch(limit: int) -> int:
    """Candidates each side of a fused search brings: enough that a page ranked low by one
    side and high by the other still meets in the fusion."""
    return max(50, 3 * limit)


def _reported(config) -> dict[str, Any]:
    """The layout a server reports for a collection, in `Store.layout()`'s terms."""
    scalar = getattr(config.quantization_config, "scalar", None)
    return {"on_disk": bool(config.params.vectors.on_disk), "quantization": scalar.type.value if scalar else "none",
            "hnsw_m": config.hnsw_config.m, "hnsw_ef_construct": config.hnsw_config.ef_construct}


def _index_schema(m, kind, on_disk: bool):
    """A server's payload index, memory-mapped from disk when the settings say so."""
    if not on_disk:
        return kind
    if kind == m.PayloadSchemaType.KEYWORD:
        return m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, on_disk=True)
    return m.DatetimeIndexParams(type=m.DatetimeIndexType.DATETIME, on_disk=True)


def collection_params(settings: StoreSettings, dim: int, graph: bool = True) -> dict[str, Any]:
    """create_collection arguments for a server: the layout the embedded engine gets (page
    records are fetched by id, never searched: no graph, no quantization)."""
    from qdrant_client import models as m
    quantization = m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99,
                                                                          always_ram=True))
    return {"vectors_config": m.VectorParams(size=dim, distance=m.Distance.COSINE, on_disk=settings.on_disk),
            "on_disk_payload": settings.on_disk,
            "hnsw_config": m.HnswConfigDiff(m=settings.hnsw_m if graph else 0, ef_construct=settings.hnsw_ef_construct,
                                            on_disk=settings.on_disk),
            "quantization_config": quantization if graph and settings.quantization == "int8" else None,
            "sparse_vectors_config": {SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF, index=m.SparseIndexParams(
                on_disk=settings.on_disk))} if graph else None}


class Catalog:
    """The name users query (`collection`) → the physical collection it means now. A reindex
    builds `next_name()` beside the live one and `switch`es to it in one atomic step."""

    def live(self) -> str:
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


class EdgeCatalog(Catalog):
    """Embedded: physical collections are folders `<collection>`, `<collection>.2`, …; the
    alias is a file naming one, replaced atomically (os.replace after fsync), so a crash
    leaves either the old name or the new one."""

    def __init__(self, root: Path, collection: str, dim: int, settings: StoreSettings = StoreSettings(),
                 keywords: Keywords | None = None) -> None:
        self.root, self.collection, self.dim, self.settings = root, collection, dim, settings
        self.keywords = keywords or Keywords()
        self.alias = root / f"{collection}.alias"

    def live(self) -> str:
        return self.alias.read_text().strip() if self.alias.exists() else self.collection

    def next_name(self) -> str:
        taken = [p.name.rpartition(".")[2] for p in self.root.glob(f"{self.collection}.*") if p.is_dir()]
        return f"{self.collection}.{max([1, *(int(t) for t in taken if t.isdigit())]) + 1}"

    def open(self, physical: str, dim: int | None = None, keywords: Keywords | None = None) -> Store:
        return EdgeStore(self.root / physical, dim or self.dim, self.settings, keywords or self.keywords)

    def switch(self, physical: str) -> str:
        old = self.live()
        tmp = self.alias.with_suffix(".alias.tmp")
        with open(tmp, "w") as f:
            f.write(physical)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.alias)
        return old

    def drop(self, physical: str) -> None:
        shutil.rmtree(self.root / physical, ignore_errors=True)


class ClientCatalog(Catalog):
    """A Qdrant server: physical collections `<collection>_g<N>` (and `…_pages`) behind two
    Qdrant aliases, `<collection>` and `<collection>_pages`, switched in one alias update."""

    def __init__(self, client, collection: str, dim: int, settings: StoreSettings = StoreSettings(),
                 keywords: Keywords | None = None) -> None:
        from qdrant_client import models
        self.m, self.client, self.collection, self.dim, self.settings = models, client, collection, dim, settings
        self.keywords = keywords or Keywords()

    def _aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def live(self) -> str:
        target = self._aliases().get(self.collection)
        if target:
            return target
        if self.client.collection_exists(self.collection):
            return self.collection                      # made before aliases: switched on the first reindex
        first = f"{self.collection}_g1"
        self.open(first).close()
        self.switch(first)
        return first

    def next_name(self) -> str:
        gens = [c.name.removeprefix(f"{self.collection}_g") for c in self.client.get_collections().collections]
        return f"{self.collection}_g{max([1, *(int(g) for g in gens if g.isdigit())]) + 1}"

    def open(self, physical: str, dim: int | None = None, keywords: Keywords | None = None) -> Store:
        return ClientStore(self.client, physical, dim or self.dim, close_client=False, settings=self.settings,
                           keywords=keywords or self.keywords)

    def switch(self, physical: str) -> str:
        aliases = self._aliases()
        old = aliases.get(self.collection, self.collection)
        if old == self.collection:                      # a plain collection holds the name: it must go first
            for name in (self.collection, f"{self.collection}_pages"):
                if self.client.collection_exists(name):
                    self.client.delete_collection(name)
        actions = []
        for alias, target in ((self.collection, physical), (f"{self.collection}_pages", f"{physical}_pages")):
            if alias in aliases:
                actions.append(self.m.DeleteAliasOperation(delete_alias=self.m.DeleteAlias(alias_name=alias)))
            actions.append(self.m.CreateAliasOperation(create_alias=self.m.CreateAlias(
                collection_name=target, alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=actions)
        return old

    def drop(self, physical: str) -> None:
        for name in (physical, f"{physical}_pages"):
            if self.client.collection_exists(name):
                self.client.delete_collection(name)


def describe(layout: dict[str, Any]) -> str:
    """A store's layout in one line, for `ragsync status` and the status page."""
    kinds = [f"{'int8 in RAM, ' if a['quantization'] == 'int8' else ''}vectors "
             f"{'on disk' if a['on_disk'] else 'in RAM'}, HNSW m={a['hnsw_m']}" for a in layout["applied"]]
    return (f"{layout['points']:,} points, {layout['indexed']:,} indexed, {layout['segments']} segments"
            + (f"; {' | '.join(kinds)}" if kinds else ""))


def embedded_root(data_dir: Path) -> Path:
    """Where the embedded engine keeps the index inside data_dir (absent: nothing synced yet)."""
    return data_dir / "qdrant"


def open_catalog(config, dim: int) -> Catalog:
    """A server when the config names one, else the embedded engine in data_dir."""
    if config.qdrant_url:
        from qdrant_client import QdrantClient
        api_key = env_secret(config.qdrant_api_key_env, "[qdrant]") if config.qdrant_api_key_env else None
        return ClientCatalog(QdrantClient(url=config.qdrant_url, api_key=api_key), config.collection, dim, config.store,
                             Keywords(config.search_language))
    root = embedded_root(config.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return EdgeCatalog(root, config.collection, dim, config.store, Keywords(config.search_language))
