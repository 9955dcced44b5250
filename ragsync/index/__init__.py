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

from ragsync.index.base import (ID_LISTS, RRF_K, Catalog, Found, Hit, PageRecord, SearchFilter, Store, describe,
                                page_point_id)
from ragsync.index.edge import INDEX_KB, EdgeCatalog, EdgeStore, embedded_root
from ragsync.index.server import ClientCatalog, ClientStore, collection_params
from ragsync.keywords import Keywords
from ragsync.source import env_secret

__all__ = ["ID_LISTS", "INDEX_KB", "RRF_K", "Catalog", "ClientCatalog", "ClientStore", "EdgeCatalog", "EdgeStore", "Found",
           "Hit", "PageRecord", "SearchFilter", "Store", "collection_params", "describe", "embedded_root", "found",
           "open_catalog", "page_point_id", "server_client"]


def open_catalog(config, dim: int) -> Catalog:
    """A server when the config names one, else the embedded engine in data_dir."""
    if config.qdrant_url:
        return ClientCatalog(server_client(config), config.collection, dim, config.store, Keywords(config.search_language))
    root = embedded_root(config.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    return EdgeCatalog(root, config.collection, dim, config.store, Keywords(config.search_language))


def found(config) -> Found | None:
    """The collection the config names, as it is, read without writing (None: not made yet)."""
    if not config.qdrant_url:
        return EdgeCatalog(embedded_root(config.data_dir), config.collection, 0).found()
    client = server_client(config, timeout=5, check_compatibility=False)
    try:
        return ClientCatalog(client, config.collection, 0).found()
    finally:
        client.close()


def server_client(config, **options):
    """A qdrant-client for `[qdrant] url`, with the API key its variable holds."""
    from qdrant_client import QdrantClient
    api_key = env_secret(config.qdrant_api_key_env, "[qdrant]") if config.qdrant_api_key_env else None
    return QdrantClient(url=config.qdrant_url, api_key=api_key, **options)
