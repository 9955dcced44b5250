"""Both stores behind one interface: the embedded engine, and qdrant-client (the server
path) checked in qdrant-client's local mode, which takes the same calls a server gets."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from qdrant_client import QdrantClient

from ragsync.index import ClientStore, EdgeStore, PageRecord, SearchFilter
from tests.support import page_html, write_config, wp_source


@pytest.fixture(params=["edge", "client"])
def store(request, tmp_path):
    s = EdgeStore(tmp_path / "edge", 4) if request.param == "edge" else \
        ClientStore(QdrantClient(path=str(tmp_path / "local")), "ragsync", 4)
    yield s
    s.close()


def _point(i: int, doc: str, source: str = "blog"):
    rnd = random.Random(i)
    return (f"00000000-0000-0000-0000-{i:012d}", [rnd.random() for _ in range(4)],
            {"page_content": f"chunk {i}", "metadata": {"source": source, "doc_id": doc, "chunk_index": i,
                                                        "url": f"https://x.test/{doc}", "modified": f"2026-01-{i + 1:02d}T00:00:00Z"}})


def test_store_contract(store):
    store.upsert_chunks([_point(i, "a") for i in range(3)] + [_point(9, "b"), _point(10, "c", "other")])
    assert set(store.doc_chunks("blog", "a")) == {_point(i, "a")[0] for i in range(3)}
    assert store.count_chunks() == 5 and store.count_chunks({"metadata.source": "blog"}) == 4

    store.set_metadata([_point(0, "a")[0]], {"title": "T", "chunk_index": 7})
    meta = store.doc_chunks("blog", "a")[_point(0, "a")[0]]["metadata"]
    assert meta == {**_point(0, "a")[2]["metadata"], "chunk_index": 7, "title": "T"}

    near = _point(9, "b")[1]
    hits = store.search(near, 2, SearchFilter(source="other"))
    assert [h.id for h in hits] == [_point(10, "c")[0]] and hits[0].payload["page_content"] == "chunk 10"
    assert {h.id for h in store.search(near, 9, SearchFilter(url_prefix="https://x.test/a"))} == \
        {_point(i, "a")[0] for i in range(3)}
    assert [h.id for h in store.search(near, 9, SearchFilter(modified_after="2026-01-02T00:00:00Z",
                                                                modified_before="2026-01-03T00:00:00Z"))] == [_point(1, "a")[0]]
    groups = store.search_groups(near, 3, 2)                        # by page URL, each page once
    urls = [g[0].payload["metadata"]["url"] for g in groups]
    assert sorted(urls) == ["https://x.test/a", "https://x.test/b", "https://x.test/c"] and len(groups[urls.index(
        "https://x.test/a")]) == 2 and all(g == sorted(g, key=lambda h: -h.score) for g in groups)

    store.delete_chunks([_point(1, "a")[0]])
    assert len(store.doc_chunks("blog", "a")) == 2
    assert store.writes == 3

    rec = PageRecord("blog", "a", "live", "2026-01-01T00:00:00Z", "T", "u", live_ids=["x", "y"])
    store.put_page(rec)
    store.put_page(PageRecord("other", "c", "gone", reason="not found"))
    assert store.page("blog", "a") == rec
    assert store.page("blog", "zzz") is None
    assert [r.doc_id for r in store.iter_pages("blog")] == ["a"]
    assert (store.count_pages("blog", "live"), store.count_pages("other", "gone"), store.count_pages("blog", "gone")) \
        == (1, 1, 0)
    assert len(list(store.iter_pages())) == 2
    assert [r.live_ids for r in store.iter_pages("blog", ids=False)] == [[]]      # O(pages): no id lists read
    assert replace(next(store.iter_pages("blog", ids=False)), live_ids=rec.live_ids) == rec
    assert len(list(store.iter_chunks())) == 4
    assert {pid: p for pid, p in store.iter_chunks({"metadata.doc_id": "a"}, fields=["metadata.doc_id"])} == \
        {_point(i, "a")[0]: {"metadata": {"doc_id": "a"}} for i in (0, 2)}
    assert store.search(near, 1, exact=True)[0].id == store.search(near, 1)[0].id


def test_the_whole_pass_runs_on_qdrant_client(tmp_path, embedder, wp):
    """The server path: the same loop through qdrant-client (local mode stands in for a server)."""
    cfg = write_config(tmp_path, wp_source(wp))
    from ragsync import config as config_mod
    from ragsync.engine import Engine
    store = ClientStore(QdrantClient(path=str(tmp_path / "qdrant-local")), "ragsync", embedder.dim)
    engine = Engine(config_mod.load(cfg), embedder=embedder, store=store)
    try:
        wp.publish(1, "Traits", page_html(["Traits define shared behavior in an abstract way.", "Second part."]))
        engine.queue.add("blog", "1")
        engine.queue.drain()
        results = engine.search("shared behavior", 3)
        assert results and results[0].metadata["doc_id"] == "1"
        wp.edit(1, html=page_html(["Traits define shared behavior in an abstract way.", "Edited part."]))
        embedded = embedder.embedded
        engine.queue.add("blog", "1")
        engine.queue.drain()
        assert embedder.embedded - embedded == 1
        wp.edit(1, status="draft")
        engine.queue.add("blog", "1")
        engine.queue.drain()
        assert store.doc_chunks("blog", "1") == {} and store.page("blog", "1").state == "gone"
    finally:
        engine.close()
