"""A Qdrant server through qdrant-client (`[qdrant] url`; qdrant-client's local mode in tests)."""

from __future__ import annotations

import logging
from typing import Any

from ragsync.config import StoreSettings
from ragsync.index.base import (_SCROLL, DATETIME_FIELDS, FINGERPRINT_ID, GROUP_BY, KEYWORD_FIELDS, RRF_K, Catalog,
                                Found, Hit, Store, _prefetch)
from ragsync.keywords import SPARSE, Keywords

log = logging.getLogger("ragsync.index")


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
        self._chunks, self._pages = collection, f"{collection}_pages"
        kinds = models.PayloadSchemaType
        chunk_indexes = {**dict.fromkeys(KEYWORD_FIELDS, kinds.KEYWORD), **dict.fromkeys(DATETIME_FIELDS, kinds.DATETIME)}
        for name, size, indexes in ((collection, dim, chunk_indexes), (self._pages, 1, {"source": kinds.KEYWORD})):
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
        int8 = settings.quantization == "int8"
        self.search_params = self.ranking_params = None       # local mode searches exactly
        if self._server:
            self.search_params = models.SearchParams(hnsw_ef=settings.search_ef, quantization=models.QuantizationSearchParams(
                rescore=True, oversampling=settings.oversampling) if int8 else None)
            self.ranking_params = models.SearchParams(hnsw_ef=settings.search_ef, quantization=models.QuantizationSearchParams(
                rescore=False) if int8 else None)             # see base._prefetch

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

    def _match(self, key, value):
        return self.m.FieldCondition(key=key, match=self.m.MatchValue(value=value))

    def _prefix(self, key, prefix):
        return self.m.FieldCondition(key=key, match=self.m.MatchPrefix(prefix=prefix))

    def _datetime(self, key, gte, lt):
        return self.m.FieldCondition(key=key, range=self.m.DatetimeRange(gte=gte, lt=lt))

    def _all(self, conditions):
        return self.m.Filter(must=conditions)

    def _scroll_batch(self, collection, flt, offset, include, exclude, with_vector):
        m = self.m
        payload = m.PayloadSelectorInclude(include=include) if include else \
            m.PayloadSelectorExclude(exclude=exclude) if exclude else True
        return self.client.scroll(collection, scroll_filter=flt, limit=_SCROLL, offset=offset, with_payload=payload,
                                  with_vectors=with_vector)

    def _retrieve(self, collection, ids):
        return self.client.retrieve(collection, ids, with_payload=True)

    def _count(self, collection, flt):
        return self.client.count(collection, count_filter=flt, exact=True).count

    def _upsert(self, collection, points):
        self.client.upsert(collection, wait=True, points=[
            self.m.PointStruct(id=pid, vector=vector, payload=payload) for pid, vector, payload in points])

    def _set_payload(self, ids, metadata):
        self.client.set_payload(self._chunks, payload=metadata, points=ids, key="metadata", wait=True)

    def _update_vectors(self, vectors):
        self.client.update_vectors(self._chunks, wait=True,
                                   points=[self.m.PointVectors(id=pid, vector=vector) for pid, vector in vectors])

    def _delete(self, ids):
        self.client.delete(self._chunks, points_selector=self.m.PointIdsList(points=ids), wait=True)

    def _sparse_vector(self, sparse):
        return self.m.SparseVector(indices=list(sparse.indices), values=list(sparse.values))

    def _query(self, vector, limit, where, exact, text, weights) -> dict[str, Any] | None:
        """query_points arguments for a dense, keyword or fused search (None: nothing to match)."""
        m = self.m
        params, ranking = (m.SearchParams(exact=True),) * 2 if exact and self._server else (
            self.search_params, self.ranking_params)
        flt = self._filter(None, where)
        sparse = self._keyword_query(text)
        if vector is None and sparse is None:
            return None
        if vector is not None and sparse is not None:
            fetch = _prefetch(limit)
            return {"prefetch": [m.Prefetch(query=vector, limit=fetch, filter=flt, params=ranking),
                                 m.Prefetch(query=self._sparse_vector(sparse), using=SPARSE, limit=fetch, filter=flt)],
                    "query": m.RrfQuery(rrf=m.Rrf(k=RRF_K, weights=list(weights)))}
        if vector is not None:
            return {"query": vector, "search_params": params, "query_filter": flt}
        return {"query": self._sparse_vector(sparse), "using": SPARSE, "query_filter": flt}

    def search(self, vector, limit, where=None, exact=False, text=None, weights=(1.0, 1.0)):
        args = self._query(vector, limit, where, exact, text, weights)
        if args is None:
            return []
        res = self.client.query_points(self._chunks, limit=limit, with_payload=True, **args)
        return [Hit(str(p.id), p.score, p.payload) for p in res.points]

    def search_groups(self, vector, groups, per_group, where=None, text=None, weights=(1.0, 1.0)):
        args = self._query(vector, groups, where, False, text, weights)
        if args is None:
            return []
        res = self.client.query_points_groups(self._chunks, group_by=GROUP_BY, limit=groups, group_size=per_group,
                                              with_payload=True, **args)
        return [[Hit(str(p.id), p.score, p.payload) for p in group.hits] for group in res.groups]

    def layout(self):
        info = self.client.get_collection(self._chunks)
        return {"points": info.points_count, "indexed": info.indexed_vectors_count, "segments": info.segments_count,
                "applied": [_reported(info.config)]}

    def close(self):
        if self.close_client:
            self.client.close()


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

    def found(self) -> Found | None:
        physical = self._aliases().get(self.collection, self.collection)
        if not self.client.collection_exists(physical):
            return None
        dense = self.client.get_collection(physical).config.params.vectors
        dense = dense.get("") if isinstance(dense, dict) else dense
        pages = f"{physical}_pages"
        ours = self.client.collection_exists(pages)
        stamp = self.client.retrieve(pages, [FINGERPRINT_ID]) if ours else []
        return Found(physical, dense.size if dense else None, ours, self.client.count(physical, exact=True).count,
                     stamp[0].payload.get("fingerprint") if stamp else None)

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
