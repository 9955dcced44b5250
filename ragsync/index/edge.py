"""The embedded engine (qdrant-edge), the default: the index in data_dir, owned by one process."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragsync.config import StoreSettings
from ragsync.index.base import (_SCROLL, DATETIME_FIELDS, KEYWORD_FIELDS, RRF_K, Catalog, Found, Hit, Store, _grouped,
                                _prefetch)
from ragsync.keywords import SPARSE, Keywords

log = logging.getLogger("ragsync.index")

# The embedded engine optimizes only when asked, and holds the GIL while it does: segments are
# kept to ~65k points (one pass ≈ 7 s on 2 cores, measured) and a pass runs after every
# OPTIMIZE_EVERY points written or deleted, so no single pause grows with the index.
SEGMENT_KB = 100_000
INDEX_KB = 10_000                 # a segment past this (~6,500 points) gets its graph and int8 copies
OPTIMIZE_EVERY = 20_000
READ_AHEAD = ("vector_index/*", f"vector_index-{SPARSE}/*")      # per segment: the graph, the keyword index
STAMP = "fingerprint.json"        # the fingerprint again, beside the shards: readable without opening them


class EdgeStore(Store):
    """Embedded Qdrant (qdrant-edge): one process owns the folder; WAL-backed, so it
    survives kill -9; keyword indexes make per-page operations sub-millisecond at 1M points."""

    def __init__(self, path: Path, dim: int, settings: StoreSettings = StoreSettings(),
                 keywords: Keywords | None = None,
                 quiet: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        """`quiet`: held around each optimize pass (see Catalog.quiet)."""
        super().__init__(keywords or Keywords())
        self.quiet = quiet
        import qdrant_edge as qe
        self.qe, self.settings, self.path = qe, settings, path
        self._unoptimized = 0                      # points written or deleted since the last optimize
        self._optimizing = threading.Lock()
        path.mkdir(parents=True, exist_ok=True)
        kinds = qe.PayloadSchemaType
        self.sparse = _has_sparse(path / "chunks")      # False: built before keyword vectors (reindex adds them)
        self._chunks = self._open(path / "chunks", self._config(dim, sparse=self.sparse), {
            **dict.fromkeys(KEYWORD_FIELDS, kinds.Keyword), **dict.fromkeys(DATETIME_FIELDS, kinds.Datetime)})
        self._pages = self._open(path / "pages", self._config(1, graph=False), {"source": kinds.Keyword})
        _read_ahead(path / "chunks")
        int8 = settings.quantization == "int8"
        self.params = qe.SearchParams(hnsw_ef=settings.search_ef, quantization=qe.QuantizationSearchParams(
            rescore=True, oversampling=settings.oversampling) if int8 else None)
        self.ranking = qe.SearchParams(hnsw_ef=settings.search_ef, quantization=qe.QuantizationSearchParams(
            rescore=False) if int8 else None)      # see base._prefetch
        self.optimize()                            # segments written under other settings converge now
        if not (path / STAMP).exists() and (stamp := self.fingerprint()) is not None:
            _replace(path / STAMP, json.dumps(stamp))      # stamped before the copy existed

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
        with self._optimizing, self.quiet():
            self._unoptimized = 0
            started = time.monotonic()
            if self._chunks.optimize() | self._pages.optimize():
                info = self._chunks.info()
                log.info("index optimized in %.1fs: %d points, %d indexed, %d segments", time.monotonic() - started,
                         info.points_count, info.indexed_vectors_count, info.segments_count)

    def _changed(self, points: int) -> None:
        self._unoptimized += points
        if self._unoptimized >= OPTIMIZE_EVERY:
            self.optimize()

    def layout(self):
        info = self._chunks.info()
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

    def _match(self, key, value):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchValue(value))

    def _prefix(self, key, prefix):
        return self.qe.FieldCondition(key=key, match=self.qe.MatchPrefix(prefix))

    def _datetime(self, key, gte, lt):
        return self.qe.FieldCondition(key=key, range=self.qe.RangeDateTime(gte=gte, lt=lt))

    def _all(self, conditions):
        return self.qe.Filter(must=conditions)

    def _scroll_batch(self, collection, flt, offset, include, exclude, with_vector):
        selector = self.qe.PayloadSelector
        payload = selector.Include(include) if include else selector.Exclude(exclude) if exclude else True
        return collection.scroll(self.qe.ScrollRequest(offset=offset, limit=_SCROLL, filter=flt, with_payload=payload,
                                                       with_vector=with_vector))

    def _retrieve(self, collection, ids):
        return collection.retrieve(ids, True, False)

    def _count(self, collection, flt):
        return collection.count(self.qe.CountRequest(exact=True, filter=flt))

    def _upsert(self, collection, points):
        collection.update(self.qe.UpdateOperation.upsert_points([self.qe.Point(*p) for p in points]))

    def _set_payload(self, ids, metadata):
        self._chunks.update(self.qe.UpdateOperation.set_payload(ids, metadata, key="metadata"))

    def _update_vectors(self, vectors):
        self._chunks.update(self.qe.UpdateOperation.update_vectors([self.qe.PointVectors(*v) for v in vectors]))

    def _delete(self, ids):
        self._chunks.update(self.qe.UpdateOperation.delete_points(ids))

    def search(self, vector, limit, where=None, exact=False, text=None, weights=(1.0, 1.0)):
        qe = self.qe
        params, ranking = (qe.SearchParams(exact=True),) * 2 if exact else (self.params, self.ranking)
        flt = self._filter(None, where)
        sparse = self._keyword_query(text)
        if vector is None and sparse is None:
            return []
        dense = qe.Query.Nearest(vector) if vector is not None else None
        keyword = qe.Query.Nearest(sparse, using=SPARSE) if sparse is not None else None
        if dense is not None and keyword is not None:
            fetch = _prefetch(limit)
            request = qe.QueryRequest(limit=limit, prefetches=[
                qe.Prefetch(limit=fetch, query=dense, params=ranking, filter=flt),
                qe.Prefetch(limit=fetch, query=keyword, filter=flt)],
                query=qe.Fusion.Rrf(k=RRF_K, weights=list(weights)), with_payload=True, with_vector=False)
        else:
            request = qe.QueryRequest(limit=limit, query=dense or keyword, params=params if dense else None,
                                      filter=flt, with_payload=True, with_vector=False)
        return [Hit(str(h.id), h.score, h.payload) for h in self._chunks.query(request)]

    def search_groups(self, vector, groups, per_group, where=None, text=None, weights=(1.0, 1.0)):
        """The embedded engine has no grouping query: the best points, grouped here."""
        return _grouped(self.search(vector, groups * per_group * 4, where, text=text, weights=weights),
                        groups, per_group)

    def set_fingerprint(self, fp):
        super().set_fingerprint(fp)
        _replace(self.path / STAMP, json.dumps(fp))

    def close(self):
        for shard in (self._chunks, self._pages):
            shard.flush()
            shard.close()


def _read_ahead(shard: Path) -> None:
    """Ask the kernel to read what every search walks into its page cache now, not a page per
    fault during the first searches: the HNSW graphs and the keyword inverted indexes, a few MB a
    segment. Qdrant's `cached` tier does this, but the embedded engine rebuilds every segment to
    change a tier (a minute at 1M points, measured). At 1M points in 1.5 GB, the first search
    after a start took 190-240 ms without it, 50-65 ms with it."""
    for pattern in READ_AHEAD:
        for file in shard.glob(f"segments/*/{pattern}"):
            with contextlib.suppress(OSError):          # a segment an optimize has just replaced
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)


def _forget_quantization(path: Path) -> None:
    """The embedded engine reads an unset quantization as "keep the shard's": turning it off
    means removing it from the config the engine persisted (replaced atomically)."""
    if not path.exists():
        return
    persisted = json.loads(path.read_text())
    if persisted.pop("quantization_config", None) is not None:
        _replace(path, json.dumps(persisted))


def _replace(path: Path, text: str) -> None:
    """Write a small file whole or not at all (os.replace after fsync): a crash leaves the old or the new."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _has_sparse(shard: Path) -> bool:
    """Whether a shard has the keyword vectors (a new one will); one written before them has not."""
    config = shard / "edge_config.json"
    return not config.exists() or bool(json.loads(config.read_text()).get("sparse_vectors"))


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
        return EdgeStore(self.root / physical, dim or self.dim, self.settings, keywords or self.keywords, self.quiet)

    def found(self) -> Found | None:
        physical = self.live()
        path = self.root / physical
        shard = path / "chunks" / "edge_config.json"
        if not shard.exists():
            return None
        dense = json.loads(shard.read_text()).get("vectors", {}).get("", {})
        stamp = path / STAMP
        return Found(physical, dense.get("size"), (path / "pages").is_dir(), None,
                     json.loads(stamp.read_text()) if stamp.exists() else None)

    def switch(self, physical: str) -> str:
        old = self.live()
        _replace(self.alias, physical)
        return old

    def drop(self, physical: str) -> None:
        shutil.rmtree(self.root / physical, ignore_errors=True)


def embedded_root(data_dir: Path) -> Path:
    """Where the embedded engine keeps the index inside data_dir (absent: nothing synced yet)."""
    return data_dir / "qdrant"
